/* flashmoe convert: a Hugging Face or MLX checkpoint → packed model
 * (docs/FORMAT.md). The source is opened with the engine's own loader, which
 * validates it and yields every tensor the model uses: dense tensors are
 * written to dense.safetensors (as they are, or quantized), routed experts
 * one aligned extent each into experts/layer_NNN.bin.
 *
 * Crash safety and resume: every output is written under NAME.tmp and renamed
 * when complete, then a sidecar NAME.xxh3 records its checksums; a rerun skips
 * outputs that have their sidecar. The manifest is written last; without it
 * the directory is not a model. Disk space is checked before writing. */
#include "backend/cpu/kernels.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/json_file.h"
#include "model/weights.h"
#include "pack/pack_format.h"
#include "quant/affine.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>


typedef struct {
    const char *src, *dst;
    const fm_convert_options *opt;
    int bits, group, dense_bits;
    int search; /* experts quantized with fm_quantize_row_search */
    fm_model *model;
    weights_record rec;
    pack_expert_layout lay;
    uint64_t done, total;
    double t_last;
} conv;

static void progress(conv *c, const char *what, int force) {
    if (!c->opt->progress) return;
    double now = fm_seconds();
    if (!force && now - c->t_last < 0.25) return;
    c->t_last = now;
    c->opt->progress(c->opt->user, c->done, c->total, what);
}

static fm_status make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return fm_error(FM_ERR_IO, "%s: %s", path, strerror(errno));
    return FM_OK;
}

static fm_status finish_file(int fd, const char *tmp, const char *final) {
    fm_status st = fm_close_synced(fd, tmp);
    if (st == FM_OK && rename(tmp, final) != 0) st = fm_error(FM_ERR_IO, "%s: rename: %s", final, strerror(errno));
    return st;
}

static fm_status write_whole(const char *path, const void *data, size_t n) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fm_error(FM_ERR_IO, "%s: %s", tmp, strerror(errno));
    fm_status st = fm_write_full(fd, data, n, tmp);
    if (st != FM_OK) {
        close(fd);
        unlink(tmp);
        return st;
    }
    return finish_file(fd, tmp, path);
}

/* Sidecar: the checksums of a finished output; NULL sums → does it exist with n sums? */
static int read_sidecar(const char *path, uint64_t *sums, int n) {
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s.xxh3", path);
    FILE *f = fopen(side, "rb");
    if (!f) return 0;
    uint64_t tmp;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) ok = fread(sums ? &sums[i] : &tmp, 8, 1, f) == 1;
    ok = ok && fgetc(f) == EOF;
    fclose(f);
    return ok;
}

static fm_status write_sidecar(const char *path, const uint64_t *sums, int n) {
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s.xxh3", path);
    return write_whole(side, sums, (size_t)n * 8);
}

static void remove_sidecar(const char *path) {
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s.xxh3", path);
    unlink(side);
}

/* ---- dense tensors ---- */

static int is_router(const char *name) {
    size_t n = strlen(name);
    return (n >= 16 && strcmp(name + n - 16, ".mlp.gate.weight") == 0) ||
           (n >= 25 && strcmp(name + n - 25, "shared_expert_gate.weight") == 0);
}

/* Bits a dense tensor is written with (0 = copied as it is). Routers keep 8 bits at least. */
static int dense_target_bits(const conv *c, const weights_used *u) {
    const st_tensor *t = u->tensor;
    size_t n = strlen(t->name);
    if (c->dense_bits == 0 || c->dense_bits == 16 || !u->matrix || t->dtype == FM_DTYPE_U32 || n < 7 ||
        strcmp(t->name + n - 7, ".weight") != 0)
        return 0;
    int bits = is_router(t->name) && c->dense_bits < 8 ? 8 : c->dense_bits;
    return fm_quant_supported(bits, c->group, u->cols) ? bits : 0;
}

typedef struct {
    char name[600];
    fm_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t offset, nbytes;
} out_tensor;

static uint64_t align64(uint64_t v) { return (v + 63) & ~63ull; }

/* The output tensors in order; returns the count (3 per quantized matrix). */
static int plan_dense(const conv *c, out_tensor *out, uint64_t *data_bytes) {
    int k = 0;
    uint64_t at = 0;
    for (int i = 0; i < c->rec.n; i++) {
        const weights_used *u = &c->rec.items[i];
        const st_tensor *t = u->tensor;
        int bits = dense_target_bits(c, u);
        if (!bits) {
            out_tensor *o = &out[k++];
            snprintf(o->name, sizeof o->name, "%s", t->name);
            o->dtype = t->dtype;
            o->n_dims = t->n_dims;
            memcpy(o->shape, t->shape, sizeof o->shape);
            o->offset = at;
            o->nbytes = t->nbytes;
            at = align64(at + o->nbytes);
            continue;
        }
        const int rows = (int)t->shape[0], cols = u->cols;
        size_t base = strlen(t->name) - 7;
        const char *suffix[3] = {"weight", "scales", "biases"};
        for (int j = 0; j < 3; j++) {
            out_tensor *o = &out[k++];
            snprintf(o->name, sizeof o->name, "%.*s.%s", (int)base, t->name, suffix[j]);
            o->dtype = j ? FM_DTYPE_BF16 : FM_DTYPE_U32;
            o->n_dims = 2;
            o->shape[0] = rows;
            o->shape[1] = j ? cols / c->group : cols * bits / 32;
            o->offset = at;
            o->nbytes = j ? fm_quant_scales_bytes(rows, cols, c->group) : fm_quant_weight_bytes(rows, cols, bits);
            at = align64(at + o->nbytes);
        }
    }
    *data_bytes = at;
    return k;
}

static char *dense_header(const out_tensor *out, int n, size_t *len) {
    st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    if (!ts) return NULL;
    for (int i = 0; i < n; i++)
        ts[i] = (st_tensor){.name = (char *)out[i].name, .dtype = out[i].dtype, .n_dims = out[i].n_dims,
                            .offset = out[i].offset, .nbytes = out[i].nbytes};
    for (int i = 0; i < n; i++) memcpy(ts[i].shape, out[i].shape, sizeof ts[i].shape);
    char *head = st_header_build(ts, n, PACK_FORMAT_NAME, len);
    free(ts);
    return head;
}

static fm_status write_dense(conv *c, const char *path, uint64_t *hash, uint64_t *bytes) {
    out_tensor *out = calloc((size_t)c->rec.n * 3 + 1, sizeof *out);
    if (!out) return fm_error(FM_ERR_NOMEM, "out of memory");
    uint64_t data_bytes;
    int n = plan_dense(c, out, &data_bytes);
    size_t head_len = 0;
    char *head = dense_header(out, n, &head_len);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = head ? open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    fm_status st = !head ? fm_error(FM_ERR_NOMEM, "out of memory")
                 : fd < 0 ? fm_error(FM_ERR_IO, "%s: %s", tmp, strerror(errno))
                          : fm_write_full(fd, head, head_len, tmp);
    XXH3_state_t *xs = XXH3_createState();
    XXH3_64bits_reset(xs);
    if (st == FM_OK) XXH3_64bits_update(xs, head, head_len);
    static const char zeros[64];
    uint64_t at = 0;
    float *row = NULL;
    char *buf = NULL;
    for (int i = 0, k = 0; st == FM_OK && i < c->rec.n; i++) {
        const weights_used *u = &c->rec.items[i];
        const st_tensor *t = u->tensor;
        int bits = dense_target_bits(c, u);
        out_tensor *o = &out[k];
        k += bits ? 3 : 1;
        if (o->offset > at) { /* alignment padding */
            st = fm_write_full(fd, zeros, (size_t)(o->offset - at), tmp);
            XXH3_64bits_update(xs, zeros, (size_t)(o->offset - at));
            at = o->offset;
        }
        if (st != FM_OK) break;
        if (!bits) {
            st = fm_write_full(fd, t->data, t->nbytes, tmp);
            XXH3_64bits_update(xs, t->data, t->nbytes);
            at += t->nbytes;
        } else {
            const int rows = (int)t->shape[0], cols = u->cols, groups = cols / c->group;
            size_t wb = fm_quant_weight_bytes(1, cols, bits);
            free(buf);
            free(row);
            buf = malloc((size_t)rows * (wb + 4 * (size_t)groups) + 64);
            row = malloc((size_t)cols * sizeof *row);
            if (!buf || !row) {
                st = fm_error(FM_ERR_NOMEM, "out of memory quantizing %s", t->name);
                break;
            }
            uint32_t *q = (uint32_t *)buf;
            uint16_t *sc = (uint16_t *)(buf + (size_t)rows * wb), *bi = sc + (size_t)rows * groups;
            fm_mat mat = {.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols};
            for (int r = 0; r < rows; r++) {
                cpu_mat_row_f32(&mat, r, row);
                fm_quantize_row(row, cols, bits, c->group, q + (size_t)r * wb / 4, sc + (size_t)r * groups,
                                bi + (size_t)r * groups);
            }
            /* codes, then scales and biases, each at its planned offset */
            const void *parts[3] = {q, sc, bi};
            for (int j = 0; j < 3 && st == FM_OK; j++) {
                if (out[k - 3 + j].offset > at) {
                    size_t pad = (size_t)(out[k - 3 + j].offset - at);
                    st = fm_write_full(fd, zeros, pad, tmp);
                    XXH3_64bits_update(xs, zeros, pad);
                    at += pad;
                }
                size_t nb = (size_t)out[k - 3 + j].nbytes;
                if (st == FM_OK) st = fm_write_full(fd, parts[j], nb, tmp);
                XXH3_64bits_update(xs, parts[j], nb);
                at += nb;
            }
        }
        c->done += t->nbytes;
        progress(c, "dense weights", 0);
    }
    if (st == FM_OK && at < data_bytes) { /* a trailing pad keeps the planned size */
        st = fm_write_full(fd, zeros, (size_t)(data_bytes - at), tmp);
        XXH3_64bits_update(xs, zeros, (size_t)(data_bytes - at));
    }
    *hash = XXH3_64bits_digest(xs);
    *bytes = head_len + data_bytes;
    XXH3_freeState(xs);
    free(buf);
    free(row);
    free(head);
    free(out);
    if (fd >= 0) {
        if (st == FM_OK) return finish_file(fd, tmp, path);
        close(fd);
    }
    return st;
}

/* ---- experts ---- */

/* Writes one projection of an expert into its place in the extent. */
static void pack_projection(const conv *c, const fm_mat *src, const pack_component *pc, char *extent, float *row) {
    const int rows = pc->rows, cols = pc->cols;
    if (c->bits == 16) {
        uint16_t *dst = (uint16_t *)(extent + pc->weight_offset);
        if (!src->bits && src->dtype == FM_DTYPE_BF16) {
            memcpy(dst, src->data, (size_t)rows * cols * 2);
            return;
        }
        for (int r = 0; r < rows; r++) {
            cpu_mat_row_f32(src, r, row);
            for (int j = 0; j < cols; j++) dst[(size_t)r * cols + j] = fm_f32_to_bf16(row[j]);
        }
        return;
    }
    if (src->bits == c->bits && src->group == c->group) { /* already in the target format: copy exactly */
        memcpy(extent + pc->weight_offset, src->data, pc->weight_bytes);
        memcpy(extent + pc->scales_offset, src->scales, pc->scales_bytes);
        memcpy(extent + pc->biases_offset, src->biases, pc->scales_bytes);
        return;
    }
    const size_t words = (size_t)cols * c->bits / 32, groups = (size_t)cols / c->group;
    uint32_t *q = (uint32_t *)(extent + pc->weight_offset);
    uint16_t *sc = (uint16_t *)(extent + pc->scales_offset), *bi = (uint16_t *)(extent + pc->biases_offset);
    for (int r = 0; r < rows; r++) {
        cpu_mat_row_f32(src, r, row);
        (c->search ? fm_quantize_row_search : fm_quantize_row)(row, cols, c->bits, c->group, q + (size_t)r * words,
                                                               sc + (size_t)r * groups, bi + (size_t)r * groups);
    }
}

static fm_status write_layer(conv *c, int layer, const char *path, uint64_t *sums) {
    const fm_layer *l = &c->model->layers[layer];
    const int E = c->model->cfg.n_experts;
    const pack_expert_layout *lay = &c->lay;
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fm_error(FM_ERR_IO, "%s: %s", tmp, strerror(errno));
    fm_status st = FM_OK;
    char what[64];
    snprintf(what, sizeof what, "layer %d experts", layer);
    const int threads = omp_get_max_threads();
    const int H = lay->hidden, F = lay->ffn;
    char *extents = calloc((size_t)threads, lay->stride);
    float *rows = malloc((size_t)threads * (H > F ? H : F) * sizeof *rows);
    if (!extents || !rows) st = fm_error(FM_ERR_NOMEM, "out of memory");
    /* Experts in waves of one per thread: quantize in parallel, write in order. */
    for (int e0 = 0; st == FM_OK && e0 < E; e0 += threads) {
        int n = E - e0 < threads ? E - e0 : threads;
#pragma omp parallel for num_threads(n) schedule(static, 1)
        for (int j = 0; j < n; j++) {
            char *ext = extents + (size_t)j * lay->stride;
            float *row = rows + (size_t)j * (H > F ? H : F);
            const fm_ffn *src = &l->experts[e0 + j];
            pack_projection(c, &src->gate, &lay->gate, ext, row);
            pack_projection(c, &src->up, &lay->up, ext, row);
            pack_projection(c, &src->down, &lay->down, ext, row);
            sums[e0 + j] = XXH3_64bits(ext, lay->expert_bytes);
        }
        st = fm_pwrite_full(fd, extents, (size_t)n * lay->stride, (uint64_t)e0 * lay->stride, tmp);
        c->done += (uint64_t)n * lay->stride;
        progress(c, what, 0);
    }
    free(extents);
    free(rows);
    if (st != FM_OK) {
        close(fd);
        return st;
    }
    return finish_file(fd, tmp, path);
}

/* ---- the rest: files carried over, state, space ---- */

static fm_status copy_side_files(const conv *c) {
    DIR *d = opendir(c->src);
    if (!d) return fm_error(FM_ERR_IO, "%s: %s", c->src, strerror(errno));
    fm_status st = FM_OK;
    struct dirent *de;
    while (st == FM_OK && (de = readdir(d))) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        if (n[0] == '.' || (len > 12 && strcmp(n + len - 12, ".safetensors") == 0) ||
            strcmp(n, "model.safetensors.index.json") == 0 || strcmp(n, PACK_MANIFEST) == 0)
            continue;
        char from[PATH_MAX], to[PATH_MAX];
        snprintf(from, sizeof from, "%s/%s", c->src, n);
        snprintf(to, sizeof to, "%s/%s", c->dst, n);
        struct stat sb;
        if (stat(from, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (64 << 20)) continue;
        int fd = open(from, O_RDONLY | O_CLOEXEC);
        char *buf = malloc((size_t)sb.st_size + 1);
        if (fd < 0 || !buf) st = fm_error(FM_ERR_IO, "%s: %s", from, fd < 0 ? strerror(errno) : "out of memory");
        if (st == FM_OK) st = fm_pread_full(fd, buf, (size_t)sb.st_size, 0, from);
        if (st == FM_OK) st = write_whole(to, buf, (size_t)sb.st_size);
        if (fd >= 0) close(fd);
        free(buf);
    }
    closedir(d);
    return st;
}

static char *state_text(const conv *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", c->src);
    cJSON_AddNumberToObject(o, "bits", c->bits);
    cJSON_AddNumberToObject(o, "group", c->group);
    cJSON_AddNumberToObject(o, "dense_bits", c->dense_bits);
    cJSON_AddNumberToObject(o, "range_search", c->search);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* An unfinished conversion in dst must have been started with the same source and options. */
static fm_status check_state(const conv *c) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", c->dst, PACK_CONVERT_STATE);
    char *want = state_text(c);
    if (!want) return fm_error(FM_ERR_NOMEM, "out of memory");
    fm_status st = FM_OK;
    if (access(path, F_OK) == 0) {
        cJSON *have;
        st = json_file_read(path, &have);
        if (st == FM_OK) {
            char *text = cJSON_PrintUnformatted(have);
            if (!text || strcmp(text, want) != 0)
                st = fm_error(FM_ERR_ARGUMENT,
                              "%s holds an unfinished conversion with other settings (%s); convert with the same "
                              "source and options to resume it, or remove %s",
                              c->dst, text ? text : "?", c->dst);
            free(text);
            cJSON_Delete(have);
        }
    } else {
        st = write_whole(path, want, strlen(want));
    }
    free(want);
    return st;
}

static fm_status check_space(const conv *c, uint64_t needed) {
    struct statvfs vfs;
    if (statvfs(c->dst, &vfs) != 0) return FM_OK; /* cannot tell: the writes will say */
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    /* Headroom for the file system's own blocks: 1/16 of the output + 4 MiB, at most 64 MiB. */
    uint64_t margin = needed / 16 + (4ull << 20);
    if (margin > (64ull << 20)) margin = 64ull << 20;
    if (avail < needed + margin) {
        const double gb = 1e9, mb = 1e6, want = (double)(needed + margin), have = (double)avail;
        const int in_gb = want >= gb;
        return fm_error(FM_ERR_IO, "%s: not enough free disk space: the conversion needs %.2f %s more, %.2f %s are free",
                        c->dst, want / (in_gb ? gb : mb), in_gb ? "GB" : "MB", have / (in_gb ? gb : mb),
                        in_gb ? "GB" : "MB");
    }
    return FM_OK;
}

/* mkdir -p */
static fm_status make_dirs(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return fm_error(FM_ERR_ARGUMENT, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            fm_status st = make_dir(buf);
            *p = '/';
            if (st != FM_OK) return st;
        }
    return make_dir(buf);
}

static fm_status prepare_dst(const conv *c) {
    fm_status st = make_dirs(c->dst);
    if (st != FM_OK) return st;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", c->dst, PACK_MANIFEST);
    if (access(path, F_OK) == 0) {
        if (!c->opt->force)
            return fm_error(FM_ERR_ARGUMENT, "%s already holds a packed model (--force replaces it)", c->dst);
        if (unlink(path) != 0) return fm_error(FM_ERR_IO, "%s: %s", path, strerror(errno));
        snprintf(path, sizeof path, "%s/%s", c->dst, PACK_CONVERT_STATE);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/experts", c->dst);
    return make_dir(path);
}

fm_status fm_convert(const char *src, const char *dst, const fm_convert_options *options) {
    static const fm_convert_options defaults = {0};
    conv c = {.src = src, .dst = dst, .opt = options ? options : &defaults};
    c.bits = c.opt->bits ? c.opt->bits : 4;
    c.group = c.opt->group ? c.opt->group : 64;
    /* Searched ranges by default at 2 bits, where they measurably help (docs/PERF.md). */
    c.search = c.opt->range_search ? c.opt->range_search > 0 : c.bits == 2;
    /* Dense matrices follow the experts: 8 bits unless the experts stay bf16. */
    c.dense_bits = c.opt->dense_bits ? c.opt->dense_bits : c.bits == 16 ? 16 : 8;
    if (c.dense_bits == 16) c.dense_bits = 0;
    if (c.bits != 2 && c.bits != 4 && c.bits != 8 && c.bits != 16)
        return fm_error(FM_ERR_ARGUMENT, "--bits %d: experts can be 2, 4, 8 or 16 (bf16) bits", c.bits);
    if (c.dense_bits != 0 && c.dense_bits != 4 && c.dense_bits != 8)
        return fm_error(FM_ERR_ARGUMENT, "--dense-bits %d: dense matrices can be 4, 8 or 16 (as they are) bits",
                        c.dense_bits);
    if (pack_is_packed(src)) return fm_error(FM_ERR_ARGUMENT, "%s is already a packed flashmoe model", src);
    char src_real[PATH_MAX], dst_real[PATH_MAX];
    if (!realpath(src, src_real)) return fm_error(FM_ERR_IO, "%s: %s", src, strerror(errno));
    if (realpath(dst, dst_real) && strcmp(src_real, dst_real) == 0)
        return fm_error(FM_ERR_ARGUMENT, "source and destination are the same directory (%s)", src);
    c.src = src_real; /* recorded in the state and the manifest: the same source however it is named */

    fm_model_options mo = {.n_threads = c.opt->n_threads};
    fm_status st = model_open_recording(src, &mo, &c.rec, &c.model);
    if (st != FM_OK) goto done;
    const fm_config *cfg = &c.model->cfg;
    if ((st = pack_layout_init(&c.lay, cfg->hidden_size, cfg->expert_ffn, c.bits, c.group))) goto done;
    if ((st = prepare_dst(&c)) || (st = check_state(&c))) goto done;

    int n_moe = 0;
    for (int i = 0; i < cfg->n_layers; i++) n_moe += cfg->layer_moe[i];
    /* The manifest names the source by its directory name only, so a model packed from the same
     * checkpoint is byte-identical wherever the checkpoint lies. */
    char *src_name = strrchr(src_real, '/');
    src_name = src_name && src_name[1] ? src_name + 1 : src_real;
    pack_manifest man = {.source = src_name, .n_experts = cfg->n_experts,
                         .layout = c.lay, .n_layers = 0};
    man.layers = calloc((size_t)n_moe + 1, sizeof *man.layers);
    char (*paths)[PATH_MAX] = calloc((size_t)n_moe + 1, sizeof *paths);
    char *layer_done = calloc((size_t)n_moe + 1, 1);
    char dense_path[PATH_MAX];
    snprintf(dense_path, sizeof dense_path, "%s/%s", dst, PACK_DENSE);
    if (!man.layers || !paths || !layer_done) {
        st = fm_error(FM_ERR_NOMEM, "out of memory");
        goto free_man;
    }
    /* What is left to write, for the space check and the progress total. */
    uint64_t dense_src = 0, remaining = 0, layer_bytes = (uint64_t)cfg->n_experts * c.lay.stride;
    for (int i = 0; i < c.rec.n; i++) dense_src += c.rec.items[i].tensor->nbytes;
    uint64_t dense_sum[2]; /* XXH3-64 and size of dense.safetensors */
    struct stat sb;
    int dense_done = read_sidecar(dense_path, dense_sum, 2) && stat(dense_path, &sb) == 0 &&
                     (uint64_t)sb.st_size == dense_sum[1];
    if (!dense_done) remaining += dense_src;
    c.total = dense_src + (uint64_t)n_moe * layer_bytes;
    c.done = dense_done ? dense_src : 0;
    for (int i = 0, k = 0; i < cfg->n_layers; i++) {
        if (!cfg->layer_moe[i]) continue;
        pack_layer *pl = &man.layers[k];
        snprintf(paths[k], PATH_MAX, "%s/experts/layer_%03d.bin", dst, i);
        pl->layer = i;
        pl->file = malloc(32);
        pl->checksums = malloc((size_t)cfg->n_experts * sizeof *pl->checksums);
        man.n_layers = ++k;
        if (!pl->file || !pl->checksums) {
            st = fm_error(FM_ERR_NOMEM, "out of memory");
            goto free_man;
        }
        snprintf(pl->file, 32, "experts/layer_%03d.bin", i);
        layer_done[k - 1] = stat(paths[k - 1], &sb) == 0 && (uint64_t)sb.st_size == layer_bytes &&
                            read_sidecar(paths[k - 1], pl->checksums, cfg->n_experts);
        if (layer_done[k - 1])
            c.done += layer_bytes;
        else
            remaining += layer_bytes;
    }
    if ((st = check_space(&c, remaining))) goto free_man;
    progress(&c, "starting", 1);

    if ((st = copy_side_files(&c))) goto free_man;
    if (!dense_done && ((st = write_dense(&c, dense_path, &dense_sum[0], &dense_sum[1])) ||
                        (st = write_sidecar(dense_path, dense_sum, 2))))
        goto free_man;
    man.dense_xxh3 = dense_sum[0];
    man.dense_bytes = dense_sum[1];
    for (int k = 0; k < man.n_layers; k++) {
        if (layer_done[k]) continue; /* done in an earlier run */
        if ((st = write_layer(&c, man.layers[k].layer, paths[k], man.layers[k].checksums)) ||
            (st = write_sidecar(paths[k], man.layers[k].checksums, cfg->n_experts)))
            goto free_man;
    }
    if ((st = pack_manifest_write(dst, &man))) goto free_man;
    progress(&c, "done", 1);
    /* The manifest holds the checksums now. */
    remove_sidecar(dense_path);
    for (int k = 0; k < man.n_layers; k++) remove_sidecar(paths[k]);
    char state[PATH_MAX];
    snprintf(state, sizeof state, "%s/%s", dst, PACK_CONVERT_STATE);
    unlink(state);
free_man:
    man.source = NULL;
    pack_manifest_free(&man);
    free(paths);
    free(layer_done);
done:
    fm_model_close(c.model);
    free(c.rec.items);
    return st;
}

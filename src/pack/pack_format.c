/* Packed model layout and manifest (see pack_format.h, docs/FORMAT.md). */
#include "pack/pack_format.h"

#include "core/error.h"
#include "core/fileio.h"
#include "core/json_file.h"
#include "quant/affine.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static size_t place(pack_component *c, int rows, int cols, int bits, int group, size_t at) {
    c->rows = rows;
    c->cols = cols;
    c->weight_offset = at;
    if (bits == 16) {
        c->weight_bytes = (size_t)rows * cols * 2;
        c->scales_offset = c->biases_offset = c->scales_bytes = 0;
        return align_up(at + c->weight_bytes, PACK_COMPONENT_ALIGN);
    }
    c->weight_bytes = fm_quant_weight_bytes(rows, cols, bits);
    c->scales_bytes = fm_quant_scales_bytes(rows, cols, group);
    c->scales_offset = align_up(at + c->weight_bytes, PACK_COMPONENT_ALIGN);
    c->biases_offset = align_up(c->scales_offset + c->scales_bytes, PACK_COMPONENT_ALIGN);
    return align_up(c->biases_offset + c->scales_bytes, PACK_COMPONENT_ALIGN);
}

fm_status pack_layout_init(pack_expert_layout *lay, int hidden, int ffn, int bits, int group) {
    memset(lay, 0, sizeof *lay);
    if (hidden <= 0 || ffn <= 0)
        return fm_error(FM_ERR_FORMAT, "expert shapes %d x %d are not positive", hidden, ffn);
    if (bits != 16 && (!fm_quant_supported(bits, group, hidden) || !fm_quant_supported(bits, group, ffn)))
        return fm_error(FM_ERR_UNSUPPORTED,
                        "%d-bit experts with groups of %d do not fit hidden size %d and expert width %d "
                        "(bits 2, 4, 8 or 16; group 32, 64 or 128 dividing both)",
                        bits, group, hidden, ffn);
    lay->hidden = hidden;
    lay->ffn = ffn;
    lay->bits = bits;
    lay->group = bits == 16 ? 0 : group;
    size_t at = place(&lay->gate, ffn, hidden, bits, group, 0);
    at = place(&lay->up, ffn, hidden, bits, group, at);
    at = place(&lay->down, hidden, ffn, bits, group, at);
    lay->expert_bytes = at;
    lay->stride = align_up(at, PACK_EXTENT_ALIGN);
    return FM_OK;
}

static fm_mat view(const pack_expert_layout *lay, const pack_component *c, const char *blob) {
    if (lay->bits == 16)
        return (fm_mat){.data = blob + c->weight_offset, .dtype = FM_DTYPE_BF16, .rows = c->rows, .cols = c->cols};
    return (fm_mat){.data = blob + c->weight_offset, .dtype = FM_DTYPE_U32, .rows = c->rows, .cols = c->cols,
                    .bits = lay->bits, .group = lay->group,
                    .scales = (const uint16_t *)(blob + c->scales_offset),
                    .biases = (const uint16_t *)(blob + c->biases_offset)};
}

void pack_expert_view(const pack_expert_layout *lay, const void *blob, fm_ffn *out) {
    out->gate = view(lay, &lay->gate, blob);
    out->up = view(lay, &lay->up, blob);
    out->down = view(lay, &lay->down, blob);
}

int pack_is_packed(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_MANIFEST);
    return access(path, F_OK) == 0;
}

int pack_is_unfinished(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_CONVERT_STATE);
    return access(path, F_OK) == 0;
}

void pack_manifest_free(pack_manifest *m) {
    for (int i = 0; m->layers && i < m->n_layers; i++) {
        free(m->layers[i].file);
        free(m->layers[i].checksums);
    }
    free(m->layers);
    free(m->source);
    memset(m, 0, sizeof *m);
}

static void hex64(uint64_t v, char out[17]) { snprintf(out, 17, "%016" PRIx64, v); }

static int parse_hex64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsString(item) || strlen(item->valuestring) != 16) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(item->valuestring, &end, 16);
    if (*end || errno) return 0;
    *out = v;
    return 1;
}

/* A non-negative integer number field. */
static int get_u64(const cJSON *obj, const char *key, uint64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9007199254740992.0 ||
        it->valuedouble != (double)(uint64_t)it->valuedouble)
        return 0;
    *out = (uint64_t)it->valuedouble;
    return 1;
}

static int get_int(const cJSON *obj, const char *key, int *out) {
    uint64_t v;
    if (!get_u64(obj, key, &v) || v > 1u << 30) return 0;
    *out = (int)v;
    return 1;
}

static fm_status check_file_size(const char *dir, const char *file, uint64_t expected) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (stat(path, &sb) != 0)
        return fm_error(FM_ERR_IO, "%s: %s (listed in %s)", path, strerror(errno), PACK_MANIFEST);
    if ((uint64_t)sb.st_size != expected)
        return fm_error(FM_ERR_FORMAT, "%s: %s: %llu bytes, the manifest says %llu", path,
                        (uint64_t)sb.st_size < expected ? "truncated" : "wrong size", (unsigned long long)sb.st_size,
                        (unsigned long long)expected);
    return FM_OK;
}

static fm_status parse_manifest(const cJSON *root, const char *path, pack_manifest *m);
static fm_status check_files(const char *dir, const pack_manifest *m);

fm_status pack_manifest_read(const char *dir, pack_manifest *m) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_MANIFEST);
    cJSON *root;
    fm_status st = json_file_read(path, &root);
    if (st != FM_OK) return st;
    st = parse_manifest(root, path, m);
    cJSON_Delete(root);
    if (st == FM_OK) st = check_files(dir, m);
    if (st != FM_OK) pack_manifest_free(m);
    return st;
}

fm_status pack_manifest_parse(const char *text, size_t len, const char *label, pack_manifest *m) {
    memset(m, 0, sizeof *m);
    cJSON *root;
    fm_status st = json_parse_text(text, len, label, &root);
    if (st != FM_OK) return st;
    st = parse_manifest(root, label, m);
    cJSON_Delete(root);
    if (st != FM_OK) pack_manifest_free(m);
    return st;
}

/* Every file the manifest lists, with the size it states. */
static fm_status check_files(const char *dir, const pack_manifest *m) {
    fm_status st = check_file_size(dir, PACK_DENSE, m->dense_bytes);
    for (int i = 0; st == FM_OK && i < m->n_layers; i++)
        st = check_file_size(dir, m->layers[i].file, (uint64_t)m->n_experts * m->layout.stride);
    return st;
}

static fm_status parse_manifest(const cJSON *root, const char *path, pack_manifest *m) {
    fm_status st = FM_OK;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(root, "dense");
    const cJSON *experts = cJSON_GetObjectItemCaseSensitive(root, "experts");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(experts, "layers");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(root, "source");
    int hidden, ffn, bits, group;
    uint64_t expert_bytes, stride;
    if (!cJSON_IsString(format) || strcmp(format->valuestring, PACK_FORMAT_NAME) != 0) {
        st = fm_error(FM_ERR_FORMAT, "%s: not a flashmoe packed model manifest (\"format\" is not \"%s\")", path,
                      PACK_FORMAT_NAME);
        goto done;
    }
    if (!get_int(root, "version", &m->version) || m->version != PACK_FORMAT_VERSION) {
        st = fm_error(FM_ERR_UNSUPPORTED, "%s: format version %d; this flashmoe reads version %d (convert again)", path,
                      m->version, PACK_FORMAT_VERSION);
        goto done;
    }
    const cJSON *dense_hash = cJSON_GetObjectItemCaseSensitive(dense, "xxh3");
    if (!cJSON_IsObject(dense) || !get_u64(dense, "bytes", &m->dense_bytes) || !parse_hex64(dense_hash, &m->dense_xxh3) ||
        !cJSON_IsObject(experts) || !get_int(experts, "count", &m->n_experts) || !get_int(experts, "hidden", &hidden) ||
        !get_int(experts, "ffn", &ffn) || !get_int(experts, "bits", &bits) || !get_int(experts, "group", &group) ||
        !get_u64(experts, "expert_bytes", &expert_bytes) || !get_u64(experts, "stride", &stride) ||
        !cJSON_IsArray(layers)) {
        st = fm_error(FM_ERR_FORMAT, "%s: missing or malformed fields (dense.bytes/xxh3, experts.count/hidden/ffn/"
                                     "bits/group/expert_bytes/stride/layers)", path);
        goto done;
    }
    m->source = strdup(cJSON_IsString(source) ? source->valuestring : "");
    if ((st = pack_layout_init(&m->layout, hidden, ffn, bits, group))) goto done;
    if (m->layout.expert_bytes != expert_bytes || m->layout.stride != stride) {
        st = fm_error(FM_ERR_FORMAT, "%s: expert_bytes %llu / stride %llu do not match the layout of %d-bit experts "
                                     "[%d x %d] (%zu / %zu)", path, (unsigned long long)expert_bytes,
                      (unsigned long long)stride, bits, ffn, hidden, m->layout.expert_bytes, m->layout.stride);
        goto done;
    }
    m->n_layers = cJSON_GetArraySize(layers);
    if (!(m->layers = calloc((size_t)m->n_layers + 1, sizeof *m->layers))) {
        st = fm_error(FM_ERR_NOMEM, "out of memory");
        goto done;
    }
    int i = 0;
    for (const cJSON *it = layers->child; it; it = it->next, i++) {
        pack_layer *pl = &m->layers[i];
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(it, "file");
        const cJSON *sums = cJSON_GetObjectItemCaseSensitive(it, "xxh3");
        if (!get_int(it, "layer", &pl->layer) || !cJSON_IsString(file) || strstr(file->valuestring, "..") ||
            file->valuestring[0] == '/' || !cJSON_IsArray(sums) || cJSON_GetArraySize(sums) != m->n_experts) {
            st = fm_error(FM_ERR_FORMAT, "%s: experts.layers[%d] needs layer, a relative file and %d xxh3 sums", path, i,
                          m->n_experts);
            goto done;
        }
        if (!(pl->file = strdup(file->valuestring)) ||
            !(pl->checksums = malloc((size_t)m->n_experts * sizeof *pl->checksums))) {
            st = fm_error(FM_ERR_NOMEM, "out of memory");
            goto done;
        }
        int e = 0;
        for (const cJSON *s = sums->child; s; s = s->next, e++)
            if (!parse_hex64(s, &pl->checksums[e])) {
                st = fm_error(FM_ERR_FORMAT, "%s: layer %d expert %d: checksum is not 16 hex digits", path, pl->layer, e);
                goto done;
            }
    }
done:
    return st;
}

fm_status pack_manifest_write(const char *dir, const pack_manifest *m) {
    cJSON *root = cJSON_CreateObject(), *dense = cJSON_CreateObject(), *experts = cJSON_CreateObject();
    cJSON *layers = cJSON_CreateArray();
    char hex[17];
    cJSON_AddStringToObject(root, "format", PACK_FORMAT_NAME);
    cJSON_AddNumberToObject(root, "version", PACK_FORMAT_VERSION);
    cJSON_AddStringToObject(root, "source", m->source ? m->source : "");
    cJSON_AddNumberToObject(dense, "bytes", (double)m->dense_bytes);
    hex64(m->dense_xxh3, hex);
    cJSON_AddStringToObject(dense, "xxh3", hex);
    cJSON_AddStringToObject(dense, "file", PACK_DENSE);
    cJSON_AddItemToObject(root, "dense", dense);
    const pack_expert_layout *l = &m->layout;
    cJSON_AddNumberToObject(experts, "count", m->n_experts);
    cJSON_AddNumberToObject(experts, "hidden", l->hidden);
    cJSON_AddNumberToObject(experts, "ffn", l->ffn);
    cJSON_AddNumberToObject(experts, "bits", l->bits);
    cJSON_AddNumberToObject(experts, "group", l->group);
    cJSON_AddNumberToObject(experts, "expert_bytes", (double)l->expert_bytes);
    cJSON_AddNumberToObject(experts, "stride", (double)l->stride);
    const pack_component *comps[3] = {&l->gate, &l->up, &l->down};
    const char *names[3] = {"gate_proj", "up_proj", "down_proj"};
    cJSON *components = cJSON_CreateArray();
    for (int c = 0; c < 3; c++) { /* informative: the reader recomputes these */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", names[c]);
        cJSON_AddNumberToObject(o, "rows", comps[c]->rows);
        cJSON_AddNumberToObject(o, "cols", comps[c]->cols);
        cJSON_AddNumberToObject(o, "weight_offset", (double)comps[c]->weight_offset);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)comps[c]->weight_bytes);
        if (l->bits != 16) {
            cJSON_AddNumberToObject(o, "scales_offset", (double)comps[c]->scales_offset);
            cJSON_AddNumberToObject(o, "biases_offset", (double)comps[c]->biases_offset);
            cJSON_AddNumberToObject(o, "scales_bytes", (double)comps[c]->scales_bytes);
        }
        cJSON_AddItemToArray(components, o);
    }
    cJSON_AddItemToObject(experts, "components", components);
    for (int i = 0; i < m->n_layers; i++) {
        cJSON *o = cJSON_CreateObject(), *sums = cJSON_CreateArray();
        cJSON_AddNumberToObject(o, "layer", m->layers[i].layer);
        cJSON_AddStringToObject(o, "file", m->layers[i].file);
        for (int e = 0; e < m->n_experts; e++) {
            hex64(m->layers[i].checksums[e], hex);
            cJSON_AddItemToArray(sums, cJSON_CreateString(hex));
        }
        cJSON_AddItemToObject(o, "xxh3", sums);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON_AddItemToObject(experts, "layers", layers);
    cJSON_AddItemToObject(root, "experts", experts);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return fm_error(FM_ERR_NOMEM, "out of memory writing the manifest");
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_MANIFEST);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    fm_status st = fd < 0 ? fm_error(FM_ERR_IO, "%s: %s", tmp, strerror(errno)) : fm_write_full(fd, text, strlen(text), tmp);
    if (fd >= 0 && st == FM_OK) st = fm_write_full(fd, "\n", 1, tmp);
    if (fd >= 0) {
        fm_status cs = fm_close_synced(fd, tmp);
        if (st == FM_OK) st = cs;
    }
    free(text);
    if (st == FM_OK && rename(tmp, path) != 0) st = fm_error(FM_ERR_IO, "%s: rename: %s", path, strerror(errno));
    if (st != FM_OK) unlink(tmp);
    return st;
}

fm_status pack_hash_file(const char *path, uint64_t *hash, uint64_t *bytes) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fm_error(FM_ERR_IO, "%s: %s", path, strerror(errno));
    XXH3_state_t *state = XXH3_createState();
    const size_t block = 8u << 20;
    char *buf = malloc(block);
    fm_status st = FM_OK;
    if (!state || !buf) st = fm_error(FM_ERR_NOMEM, "out of memory");
    struct stat sb;
    if (st == FM_OK && fstat(fd, &sb) != 0) st = fm_error(FM_ERR_IO, "%s: %s", path, strerror(errno));
    if (st == FM_OK) {
        XXH3_64bits_reset(state);
        for (uint64_t off = 0; off < (uint64_t)sb.st_size && st == FM_OK; off += block) {
            size_t n = (uint64_t)sb.st_size - off < block ? (size_t)((uint64_t)sb.st_size - off) : block;
            if ((st = fm_pread_full(fd, buf, n, off, path)) == FM_OK) XXH3_64bits_update(state, buf, n);
        }
        *hash = XXH3_64bits_digest(state);
        *bytes = (uint64_t)sb.st_size;
    }
    free(buf);
    XXH3_freeState(state);
    close(fd);
    return st;
}

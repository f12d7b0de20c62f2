/* Writes a random-weight Qwen3.5-MoE model directly in flashmoe's packed
 * format (docs/FORMAT.md), without a source checkpoint and without running a
 * quantizer, at about the speed of the disk:
 *   synth_packed OUT_DIR [--layers 4] [--experts 512] [--top-k 10] [--bits 4] [--group 64]
 *                        [--hidden 4096] [--expert-ffn 1024] [--vocab 151936] [--interval 4]
 *                        [--dense-bits 16] [--seed N] [--buffered]
 * Defaults are Qwen3.5-397B-A17B's layer shapes (see synth_common.c) with fewer
 * layers: at 4 bits one expert is 7,077,888 bytes, a layer of 512 is 3.62 GB.
 *
 * Weights are uniform in [-a, a] with a = sqrt(3/fan_in), so activations stay
 * O(1). Quantized experts are random codes (random uint32 words) with every
 * group's scale 2a/(2^bits-1) and bias -a (bf16): exactly that distribution.
 * Dense weights are bf16 (--dense-bits 8 or 4: the same random-code scheme,
 * routers at 8 bits at least, as flashmoe convert does).
 *
 * Output: config.json, generation_config.json, dense.safetensors (header
 * padded so data starts 64-aligned, every tensor 64-aligned),
 * experts/layer_NNN.bin (one PACK_EXTENT_ALIGN-aligned extent per expert,
 * written with O_DIRECT unless --buffered; generation of the next batch
 * overlaps the write of the previous one), and flashmoe.json last (XXH3-64 of
 * every expert's expert_bytes and of the dense file). Every file is written
 * under NAME.tmp and renamed when complete and synced. Free disk space is
 * checked first. */
#include "core/clock.h"
#include "synth_common.h"

#include "core/error.h"
#include "pack/pack_format.h"
#include "quant/affine.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define BATCH_BYTES ((size_t)64 << 20) /* experts per write: at least this many bytes */
#define DENSE_CHUNK ((size_t)32 << 20) /* bytes of the dense file per write */

/* splitmix64: turns (stream id) into a well-mixed non-zero xorshift seed. */
static uint64_t seed_of(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t z = seed + a * 0x9E3779B97F4A7C15ull + b * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

/* ---- progress ---- */

static struct {
    uint64_t done, total;
    double t0, t_last;
} prog;

static void progress(const char *what, int force) {
    double t = fm_seconds();
    if (!force && t - prog.t_last < 0.5) return;
    prog.t_last = t;
    double el = t - prog.t0, rate = el > 0 ? prog.done / el : 0;
    double eta = rate > 0 && prog.done < prog.total ? (prog.total - prog.done) / rate : 0; /* done can pass total (padding) */
    fprintf(stderr, "\r  %-22s %7.2f / %.2f GB  %6.0f MB/s  ETA %4.0f s ", what, prog.done / 1e9, prog.total / 1e9,
            rate / 1e6, eta);
    if (force) fputc('\n', stderr);
}

static int write_full(int fd, const void *buf, size_t n, uint64_t off, const char *path) {
    const char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "\nsynth_packed: %s: write: %s\n", path, w < 0 ? strerror(errno) : "disk full");
            return 1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int finish(int fd, const char *tmp, const char *path) {
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "\nsynth_packed: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- dense.safetensors ---- */

typedef struct {
    char name[168];
    const synth_tensor *src;
    int part;   /* 0: bf16 tensor; quantized: 1 codes, 2 scales, 3 biases */
    int bits;   /* quantized */
    int n_dims; /* of the output */
    int64_t shape[3];
    uint64_t offset, nbytes;
} dense_out;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Bits a dense tensor is written with: 0 = bf16. */
static int dense_bits_of(const synth_tensor *t, int dense_bits, int group) {
    if (dense_bits == 16 || t->n_dims != 2 || !ends_with(t->name, ".weight")) return 0;
    int router = ends_with(t->name, ".mlp.gate.weight") || ends_with(t->name, "shared_expert_gate.weight");
    int bits = router && dense_bits < 8 ? 8 : dense_bits;
    return fm_quant_supported(bits, group, (int)t->shape[1]) ? bits : 0;
}

static uint64_t align64(uint64_t v) { return (v + 63) & ~63ull; }

static int plan_dense(const synth_tensor *ts, int n, int dense_bits, int group, dense_out *out, uint64_t *data_bytes) {
    int k = 0;
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const synth_tensor *t = &ts[i];
        if (t->expert) continue;
        int bits = dense_bits_of(t, dense_bits, group);
        for (int part = bits ? 1 : 0; part <= (bits ? 3 : 0); part++) {
            dense_out *o = &out[k++];
            o->src = t;
            o->part = part;
            o->bits = bits;
            o->n_dims = t->n_dims;
            memcpy(o->shape, t->shape, sizeof o->shape);
            if (!part) {
                snprintf(o->name, sizeof o->name, "%s", t->name);
                o->nbytes = synth_numel(t) * 2;
            } else {
                static const char *suffix[4] = {"", "weight", "scales", "biases"};
                snprintf(o->name, sizeof o->name, "%.*s.%s", (int)(strlen(t->name) - 7), t->name, suffix[part]);
                int rows = (int)t->shape[0], cols = (int)t->shape[1];
                o->shape[1] = part == 1 ? cols * bits / 32 : cols / group;
                o->nbytes = part == 1 ? fm_quant_weight_bytes(rows, cols, bits) : fm_quant_scales_bytes(rows, cols, group);
            }
            o->offset = at;
            at = align64(at + o->nbytes);
        }
    }
    *data_bytes = at;
    return k;
}

/* The 8-byte length + JSON header, padded with spaces so the data starts 64-aligned. */
static char *dense_header(const dense_out *out, int n, size_t *len) {
    st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    if (!ts) return NULL;
    for (int i = 0; i < n; i++) {
        ts[i] = (st_tensor){.name = (char *)out[i].name, .dtype = out[i].part == 1 ? FM_DTYPE_U32 : FM_DTYPE_BF16,
                            .n_dims = out[i].n_dims, .offset = out[i].offset, .nbytes = out[i].nbytes};
        for (int d = 0; d < out[i].n_dims; d++) ts[i].shape[d] = out[i].shape[d];
    }
    char *head = st_header_build(ts, n, PACK_FORMAT_NAME, len);
    free(ts);
    return head;
}

/* splitmix64's finaliser: a counter-based generator, so any byte range of a
 * tensor can be produced on its own (chunks need not align with tensors). */
static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Bytes [b0, b1) of output tensor `o` (index oi) into dst; b0 is a multiple of 8. */
static void fill_tensor_range(const dense_out *o, int oi, uint64_t seed, uint64_t b0, uint64_t b1, char *dst,
                              uint16_t *table) {
    const float a = o->src->scale;
    if (o->part >= 2) { /* scales or biases of random codes: w = s q + b covers [-a, a] */
        uint16_t v = synth_bf16(o->part == 2 ? 2 * a / (float)((1u << o->bits) - 1) : -a);
        for (uint64_t i = b0; i + 1 < b1; i += 2) memcpy(dst + (i - b0), &v, 2);
        return;
    }
    if (o->part == 0) /* bf16: 16 random bits pick one of 65536 evenly spaced values in [-a, a] */
        for (int u = 0; u < 65536; u++) {
            float x = ((float)u + 0.5f) * (2.0f / 65536.0f) - 1.0f;
            table[u] = synth_bf16(a < 0 ? 0.2f * x : a * x);
        }
    const uint64_t salt = mix(seed * 0x9E3779B97F4A7C15ull + (uint64_t)oi * 0xD1B54A32D192ED03ull + 1);
    for (uint64_t w = b0 / 8; w * 8 < b1; w++) {
        uint64_t v = mix(salt + w);
        if (o->part == 0)
            v = (uint64_t)table[v & 0xffff] | (uint64_t)table[(v >> 16) & 0xffff] << 16 |
                (uint64_t)table[(v >> 32) & 0xffff] << 32 | (uint64_t)table[v >> 48] << 48;
        size_t n = b1 - w * 8 < 8 ? (size_t)(b1 - w * 8) : 8;
        memcpy(dst + (w * 8 - b0), &v, n);
    }
}

/* Bytes [off, off + len) of the dense file: header, tensors, zero padding. */
static void fill_dense_range(const dense_out *out, int n, const char *head, size_t head_len, uint64_t seed, uint64_t off,
                             size_t len, char *dst, uint16_t *table) {
    memset(dst, 0, len);
    const uint64_t end = off + len;
    if (off < head_len) memcpy(dst, head + off, (size_t)((end < head_len ? end : head_len) - off));
    for (int i = 0; i < n; i++) {
        uint64_t t0 = head_len + out[i].offset, t1 = t0 + out[i].nbytes;
        if (t1 <= off || t0 >= end) continue;
        uint64_t b0 = off > t0 ? off - t0 : 0, b1 = (end < t1 ? end : t1) - t0;
        fill_tensor_range(&out[i], i, seed, b0, b1, dst + (t0 + b0 - off), table);
    }
}

/* In chunks of DENSE_CHUNK bytes, O_DIRECT (the last chunk padded to 4096,
 * then the file truncated), generating chunk c + 1 while chunk c is written
 * and hashed. */
static int write_dense(const char *dir, const synth_tensor *ts, int n_ts, int dense_bits, int group, uint64_t seed,
                       int direct, uint64_t *hash, uint64_t *bytes) {
    dense_out *out = calloc((size_t)n_ts * 3 + 1, sizeof *out);
    if (!out) return 1;
    uint64_t data_bytes;
    int n = plan_dense(ts, n_ts, dense_bits, group, out, &data_bytes);
    size_t head_len = 0;
    char *head = dense_header(out, n, &head_len);
    const uint64_t total = head_len + data_bytes;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_DENSE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && direct && errno == EINVAL) fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char *bufs[2] = {NULL, NULL};
    uint16_t *tables[2] = {malloc(65536 * 2), malloc(65536 * 2)};
    int ok = head && fd >= 0 && tables[0] && tables[1] && posix_memalign((void **)&bufs[0], 4096, DENSE_CHUNK) == 0 &&
             posix_memalign((void **)&bufs[1], 4096, DENSE_CHUNK) == 0;
    if (!ok) {
        fprintf(stderr, "synth_packed: %s: %s\n", tmp, fd < 0 ? strerror(errno) : "out of memory");
        return 1;
    }
    XXH3_state_t *xs = XXH3_createState();
    XXH3_64bits_reset(xs);
    const uint64_t n_chunks = (total + DENSE_CHUNK - 1) / DENSE_CHUNK;
    fill_dense_range(out, n, head, head_len, seed, 0, total < DENSE_CHUNK ? (size_t)total : DENSE_CHUNK, bufs[0],
                     tables[0]);
    int rc = 0;
    for (uint64_t c = 0; c < n_chunks && !rc; c++) {
        const uint64_t off = c * DENSE_CHUNK, next = off + DENSE_CHUNK;
        const size_t len = total - off < DENSE_CHUNK ? (size_t)(total - off) : DENSE_CHUNK;
        const size_t wlen = (len + 4095) & ~(size_t)4095; /* zeros past the end; truncated below */
        const size_t next_len = next >= total ? 0 : total - next < DENSE_CHUNK ? (size_t)(total - next) : DENSE_CHUNK;
        char *cur = bufs[c & 1], *nb = bufs[(c + 1) & 1];
        int wrc = 0;
#pragma omp parallel num_threads(2)
        {
            if (omp_get_thread_num() == 0) {
                wrc = write_full(fd, cur, wlen, off, tmp);
                XXH3_64bits_update(xs, cur, len);
            }
            if ((omp_get_thread_num() == 1 || omp_get_num_threads() == 1) && next_len)
                fill_dense_range(out, n, head, head_len, seed, next, next_len, nb, tables[1]);
        }
        rc = wrc;
        prog.done += len;
        progress("dense weights", 0);
    }
    if (!rc && ftruncate(fd, (off_t)total) != 0) {
        fprintf(stderr, "\nsynth_packed: %s: truncate: %s\n", tmp, strerror(errno));
        rc = 1;
    }
    *hash = XXH3_64bits_digest(xs);
    *bytes = total;
    XXH3_freeState(xs);
    free(bufs[0]);
    free(bufs[1]);
    free(tables[0]);
    free(tables[1]);
    free(head);
    free(out);
    if (rc) {
        close(fd);
        return rc;
    }
    return finish(fd, tmp, path);
}

/* ---- experts ---- */

static void fill_component(const pack_expert_layout *lay, const pack_component *c, const synth_tensor *src,
                           char *ext, uint64_t *s) {
    const float a = src->scale;
    if (lay->bits == 16) {
        uint16_t *w = (uint16_t *)(ext + c->weight_offset);
        for (size_t i = 0; i < c->weight_bytes / 2; i++) w[i] = synth_bf16(a * synth_uniform(s));
        return;
    }
    uint64_t *w = (uint64_t *)(ext + c->weight_offset); /* weight_bytes is a multiple of 64 bytes... */
    size_t words = c->weight_bytes / 8;
    for (size_t i = 0; i < words; i++) w[i] = synth_next(s);
    if (c->weight_bytes % 8) { /* ...or not: a last uint32 */
        uint32_t last = (uint32_t)synth_next(s);
        memcpy(ext + c->weight_offset + words * 8, &last, 4);
    }
    uint16_t sv = synth_bf16(2 * a / (float)((1u << lay->bits) - 1)), bv = synth_bf16(-a);
    uint16_t *sc = (uint16_t *)(ext + c->scales_offset), *bi = (uint16_t *)(ext + c->biases_offset);
    for (size_t i = 0; i < c->scales_bytes / 2; i++) {
        sc[i] = sv;
        bi[i] = bv;
    }
}

/* One expert's extent (gaps and the tail of the stride are left as they are: zero). */
static void fill_expert(const pack_expert_layout *lay, const synth_tensor *gate_up, const synth_tensor *down,
                        uint64_t seed, int layer, int e, char *ext, uint64_t *sum) {
    uint64_t s = seed_of(seed, 1000003ull * (uint64_t)(layer + 1), (uint64_t)e);
    fill_component(lay, &lay->gate, gate_up, ext, &s);
    fill_component(lay, &lay->up, gate_up, ext, &s);
    fill_component(lay, &lay->down, down, ext, &s);
    *sum = XXH3_64bits(ext, lay->expert_bytes);
}

static int write_layer(const char *dir, const pack_expert_layout *lay, int E, int layer, const synth_tensor *gate_up,
                       const synth_tensor *down, uint64_t seed, int direct, char *bufs[2], int per_batch,
                       uint64_t *sums) {
    char path[4096], tmp[4200], what[64];
    snprintf(path, sizeof path, "%s/experts/layer_%03d.bin", dir, layer);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(what, sizeof what, "layer %d experts", layer);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && direct && errno == EINVAL) fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "\nsynth_packed: %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    const int n_batches = (E + per_batch - 1) / per_batch;
    /* The first batch in parallel, then: write batch b while generating b + 1. */
    int n0 = E < per_batch ? E : per_batch;
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < n0; j++) fill_expert(lay, gate_up, down, seed, layer, j, bufs[0] + (size_t)j * lay->stride, &sums[j]);
    int rc = 0;
    for (int b = 0; b < n_batches && !rc; b++) {
        int e0 = b * per_batch, n = E - e0 < per_batch ? E - e0 : per_batch;
        int e1 = e0 + n, n1 = E - e1 < per_batch ? E - e1 : per_batch;
        char *cur = bufs[b & 1], *next = bufs[(b + 1) & 1];
        int wrc = 0;
#pragma omp parallel num_threads(2)
        {
            if (omp_get_thread_num() == 0 || omp_get_num_threads() == 1)
                wrc = write_full(fd, cur, (size_t)n * lay->stride, (uint64_t)e0 * lay->stride, tmp);
            if (omp_get_thread_num() == 1 || omp_get_num_threads() == 1)
                for (int j = 0; j < n1; j++)
                    fill_expert(lay, gate_up, down, seed, layer, e1 + j, next + (size_t)j * lay->stride, &sums[e1 + j]);
        }
        rc = wrc;
        prog.done += (uint64_t)n * lay->stride;
        progress(what, 0);
    }
    if (rc) {
        close(fd);
        return rc;
    }
    return finish(fd, tmp, path);
}

static int usage(void) {
    fprintf(stderr, "usage: synth_packed OUT_DIR [--layers N] [--experts E] [--top-k K] [--bits 2|4|8|16] [--group G]\n"
                    "                    [--hidden N] [--expert-ffn N] [--vocab N] [--interval N] [--dense-bits 16|8|4]\n"
                    "                    [--seed N] [--buffered]\n");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') return usage();
    const char *dir = argv[1];
    synth_config sc = {.layers = 4, .experts = 512, .top_k = 10, .vocab = 151936, .hidden = 4096, .expert_ffn = 1024,
                       .interval = 4};
    int bits = 4, group = 64, dense_bits = 16, direct = 1;
    uint64_t seed = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--buffered")) {
            direct = 0;
            continue;
        }
        if (i + 1 >= argc) return usage();
        const char *a = argv[i], *v = argv[++i];
        int iv = atoi(v);
        if (!strcmp(a, "--layers")) sc.layers = iv;
        else if (!strcmp(a, "--experts")) sc.experts = iv;
        else if (!strcmp(a, "--top-k")) sc.top_k = iv;
        else if (!strcmp(a, "--vocab")) sc.vocab = iv;
        else if (!strcmp(a, "--hidden")) sc.hidden = iv;
        else if (!strcmp(a, "--expert-ffn")) sc.expert_ffn = iv;
        else if (!strcmp(a, "--interval")) sc.interval = iv;
        else if (!strcmp(a, "--bits")) bits = iv;
        else if (!strcmp(a, "--group")) group = iv;
        else if (!strcmp(a, "--dense-bits")) dense_bits = iv;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 0);
        else {
            fprintf(stderr, "synth_packed: unknown option %s\n", a);
            return usage();
        }
    }
    if (sc.layers < 1 || sc.experts < 1 || sc.top_k < 1 || sc.vocab < 1 || sc.interval < 1 ||
        (dense_bits != 16 && dense_bits != 8 && dense_bits != 4)) {
        fprintf(stderr, "synth_packed: layers, experts, top-k, vocab and interval must be positive; "
                        "--dense-bits 16, 8 or 4\n");
        return 1;
    }
    if (sc.top_k > sc.experts) sc.top_k = sc.experts;
    pack_expert_layout lay;
    if (pack_layout_init(&lay, sc.hidden, sc.expert_ffn, bits, group) != FM_OK) {
        fprintf(stderr, "synth_packed: %s\n", fm_last_error());
        return 1;
    }
    if (dense_bits != 16 && !fm_quant_supported(dense_bits, group, sc.hidden)) {
        fprintf(stderr, "synth_packed: --dense-bits %d with groups of %d does not fit hidden size %d\n", dense_bits,
                group, sc.hidden);
        return 1;
    }
    int n_ts;
    synth_tensor *ts = synth_tensors(&sc, &n_ts);

    /* Sizes and the space check. */
    dense_out *plan = calloc((size_t)n_ts * 3 + 1, sizeof *plan);
    uint64_t dense_data;
    if (!plan) return 1;
    plan_dense(ts, n_ts, dense_bits, group, plan, &dense_data);
    free(plan);
    const uint64_t layer_bytes = (uint64_t)sc.experts * lay.stride;
    prog.total = dense_data + (uint64_t)sc.layers * layer_bytes;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "synth_packed: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_MANIFEST);
    unlink(path); /* no longer a complete model until the manifest is written again */
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        /* Files of an earlier run under the same names are replaced: count them as free. */
        for (int i = 0; i <= sc.layers; i++) {
            struct stat sb;
            if (i < sc.layers) snprintf(path, sizeof path, "%s/experts/layer_%03d.bin", dir, i);
            else snprintf(path, sizeof path, "%s/%s", dir, PACK_DENSE);
            if (stat(path, &sb) == 0) avail += (uint64_t)sb.st_size;
        }
        if (avail < prog.total + (1ull << 30)) {
            fprintf(stderr, "synth_packed: %s: not enough disk space: %.2f GB needed (+1 GB margin), %.2f GB free\n",
                    dir, prog.total / 1e9, avail / 1e9);
            return 1;
        }
    }
    snprintf(path, sizeof path, "%s/experts", dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "synth_packed: %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(stderr,
            "synth_packed %s: %d layers, %d experts (top %d) of [%d x %d] at %d bits (group %d): %zu bytes each, "
            "%.2f GB per layer; dense %s %.2f GB; total %.2f GB\n",
            dir, sc.layers, sc.experts, sc.top_k, sc.expert_ffn, sc.hidden, bits, lay.group, lay.expert_bytes,
            layer_bytes / 1e9, dense_bits == 16 ? "bf16" : dense_bits == 8 ? "8-bit" : "4-bit", dense_data / 1e9,
            prog.total / 1e9);
    /* Qwen3's <|im_end|> and <|endoftext|> when the vocabulary has them, else its last id. */
    char gen[256];
    if (sc.vocab > 151645)
        snprintf(gen, sizeof gen, "{\n  \"bos_token_id\": 151643,\n  \"eos_token_id\": [151645, 151643],\n"
                                  "  \"do_sample\": false\n}\n");
    else
        snprintf(gen, sizeof gen, "{\n  \"eos_token_id\": %d,\n  \"do_sample\": false\n}\n", sc.vocab - 1);
    if (synth_write_config(dir, &sc) || synth_write_text(dir, "generation_config.json", gen)) return 1;

    prog.t0 = prog.t_last = fm_seconds();
    uint64_t dense_hash = 0, dense_bytes = 0;
    if (write_dense(dir, ts, n_ts, dense_bits, group, seed, direct, &dense_hash, &dense_bytes)) return 1;

    int per_batch = (int)((BATCH_BYTES + lay.stride - 1) / lay.stride);
    if (per_batch > sc.experts) per_batch = sc.experts;
    char *bufs[2] = {NULL, NULL};
    for (int b = 0; b < 2; b++)
        if (posix_memalign((void **)&bufs[b], PACK_EXTENT_ALIGN, (size_t)per_batch * lay.stride) != 0) {
            fprintf(stderr, "synth_packed: out of memory\n");
            return 1;
        } else {
            memset(bufs[b], 0, (size_t)per_batch * lay.stride);
        }
    pack_manifest man = {.source = "synthetic (bench/synth_packed)", .dense_bytes = dense_bytes,
                         .dense_xxh3 = dense_hash, .n_experts = sc.experts, .layout = lay, .n_layers = sc.layers};
    man.layers = calloc((size_t)sc.layers, sizeof *man.layers);
    if (!man.layers) return 1;
    for (int i = 0; i < n_ts; i++) {
        if (!ts[i].expert || !strstr(ts[i].name, "gate_up_proj")) continue;
        int layer = atoi(ts[i].name + strlen("model.layers."));
        pack_layer *pl = &man.layers[layer];
        pl->layer = layer;
        pl->file = malloc(32);
        pl->checksums = malloc((size_t)sc.experts * sizeof *pl->checksums);
        if (!pl->file || !pl->checksums) return 1;
        snprintf(pl->file, 32, "experts/layer_%03d.bin", layer);
        if (write_layer(dir, &lay, sc.experts, layer, &ts[i], &ts[i + 1], seed, direct, bufs, per_batch,
                        pl->checksums))
            return 1;
    }
    progress("experts", 1);
    if (pack_manifest_write(dir, &man) != FM_OK) {
        fprintf(stderr, "synth_packed: %s\n", fm_last_error());
        return 1;
    }
    double el = fm_seconds() - prog.t0;
    printf("%s: %d layers, %d experts (top %d), %d-bit experts, %.2f GB in %.1f s (%.0f MB/s)\n", dir, sc.layers,
           sc.experts, sc.top_k, bits, prog.total / 1e9, el, prog.total / el / 1e6);
    man.source = NULL;
    pack_manifest_free(&man);
    free(bufs[0]);
    free(bufs[1]);
    free(ts);
    return 0;
}

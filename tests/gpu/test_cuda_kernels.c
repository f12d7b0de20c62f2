/* The CUDA kernels (src/backend/cuda/cuda_kernels.h) against CPU references,
 * on seeded random non-zero data. A standalone program (no cmocka): one line
 * per check, "ok - <what> (rel <err>)" or "not ok - <what>: <detail>", then
 * "cuda kernels: N passed, M failed"; exit 1 if any failed, 77 (skip) when
 * there is no CUDA device. Every CUDA call is checked; a failure is reported
 * as "not ok" for the check at hand, never a crash.
 *
 * References and tolerances (relative L2 error sqrt(Σ(got−ref)²)/sqrt(Σref²)):
 *   - cuk_matmul, cuk_ffn_grouped: the library's cpu_matmul on the exact
 *     float path ("scalar": dequantize-then-float for quantized weights),
 *     ≤ 1e-5; both are float32 sums in different orders.
 *   - cuk_mat_rows: cpu_mat_row_f32, ≤ 1e-6 (one rounding: s·q + b may be
 *     fused on the GPU).
 *   - cuk_rmsnorm, cuk_norm_rope: cpu_rmsnorm / cpu_rope (cosf/sinf as
 *     attention.c), ≤ 1e-5; cuk_add, cuk_split_q_gate, cuk_regroup_qkvz:
 *     exact.
 *   - cuk_attention, cuk_conv_silu, cuk_deltanet_prep,
 *     cuk_deltanet_recurrence (outputs and carried state), cuk_gated_rmsnorm,
 *     cuk_moe_combine: double-precision loops written here, ≤ 1e-5.
 *   - cuk_route: ids exact against moe.c's rule (cpu_softmax, largest first,
 *     ties to the lower index); probabilities and weights against a double
 *     softmax, ≤ 2e-6 (expf within 2 ulp on the GPU, float sums of up to
 *     1024 terms).
 * Lines starting with '#' are informational (a decode bandwidth probe). */
#include "backend/cpu/kernels.h"
#include "backend/cpu/qkernels.h"
#include "backend/cuda/cuda_kernels.h"
#include "core/dtype.h"
#include "quant/affine.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reporting ------------------------------------------------------------ */

static int n_pass, n_fail;
static cudaStream_t g_stream;

static void tk_ok(double rel, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("ok - %s (rel %.3g)\n", what, rel);
    n_pass++;
}

static void tk_fail(const char *detail, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("not ok - %s: %s\n", what, detail);
    n_fail++;
}

static double tk_rel(const float *got, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        const double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}
static double tk_rel_d(const float *got, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        const double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Reports one comparison: rel ≤ tol passes (NaN fails). */
static void tk_check(double rel, double tol, const char *what) {
    if (rel <= tol) {
        tk_ok(rel, "%s", what);
    } else {
        char d[96];
        snprintf(d, sizeof d, "rel %.3g > %.1g", rel, tol);
        tk_fail(d, "%s", what);
    }
}

/* ---- random data (seeded, never zero) --------------------------------------- */

static uint64_t g_seed = 0x9e3779b97f4a7c15ull;
static uint64_t tk_next(void) {
    g_seed ^= g_seed >> 12;
    g_seed ^= g_seed << 25;
    g_seed ^= g_seed >> 27;
    return g_seed * 0x2545f4914f6cdd1dull;
}
/* Uniform in [-1, 1) with |u| ≥ 1e-3. */
static float tk_rand(void) {
    float u = (float)((double)(tk_next() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
    if (fabsf(u) < 1e-3f) u += u < 0.0f ? -1e-3f : 1e-3f;
    return u;
}
static void tk_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = tk_rand() * scale;
}

/* ---- host memory (abort on exhaustion: a test-harness failure, not a kernel one) */

static void *hmalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(2);
    }
    return p;
}
#define HNEW(T, n) ((T *)hmalloc((size_t)(n) * sizeof(T)))

/* ---- device memory: an arena per check -------------------------------------- */

typedef struct {
    void *p[256];
    int n;
    int failed;       /* a CUDA call failed: skip the rest, report once */
    char detail[160]; /* what failed */
} arena;

static void ar_fail(arena *a, const char *call, cudaError_t e) {
    if (!a->failed) snprintf(a->detail, sizeof a->detail, "%s: %s", call, cudaGetErrorString(e));
    a->failed = 1;
}

static void *dalloc(arena *a, size_t bytes) {
    if (a->failed) return NULL;
    if (a->n == (int)(sizeof a->p / sizeof a->p[0])) {
        snprintf(a->detail, sizeof a->detail, "test arena full");
        a->failed = 1;
        return NULL;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        ar_fail(a, "cudaMalloc", e);
        return NULL;
    }
    a->p[a->n++] = p;
    return p;
}
/* A device copy of host data at byte offset `off` of a fresh allocation (off
 * misaligns on purpose); returns the pointer to the copy. */
static void *dput_off(arena *a, const void *h, size_t bytes, size_t off) {
    char *d = dalloc(a, bytes + off);
    if (!d) return NULL;
    cudaError_t e = cudaMemcpy(d + off, h, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        ar_fail(a, "cudaMemcpy H2D", e);
        return NULL;
    }
    return d + off;
}
static void *dput(arena *a, const void *h, size_t bytes) { return dput_off(a, h, bytes, 0); }
/* Device buffer filled with a NaN pattern (0xff bytes), so unwritten outputs show. */
static void *dpoison(arena *a, size_t bytes) {
    void *d = dalloc(a, bytes);
    if (!d) return NULL;
    cudaError_t e = cudaMemset(d, 0xff, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        ar_fail(a, "cudaMemset", e);
        return NULL;
    }
    return d;
}
static int dget(arena *a, void *h, const void *d, size_t bytes) {
    if (a->failed) return 0;
    cudaError_t e = cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        ar_fail(a, "cudaMemcpy D2H", e);
        return 0;
    }
    return 1;
}
/* After a launch: the launch error, then the execution error. */
static int launched(arena *a, const char *kernel) {
    if (a->failed) return 0;
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        ar_fail(a, kernel, e);
        return 0;
    }
    e = cudaStreamSynchronize(g_stream);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        ar_fail(a, kernel, e);
        return 0;
    }
    return 1;
}
/* Frees everything; if a CUDA call failed, reports the check as not ok. */
static int ar_end(arena *a, const char *what) {
    for (int i = 0; i < a->n; i++) cudaFree(a->p[i]);
    a->n = 0;
    const int failed = a->failed;
    if (failed) tk_fail(a->detail, "%s", what);
    a->failed = 0;
    return !failed;
}

/* ---- weight matrices ---------------------------------------------------------- */

/* A weight matrix in host memory (for cpu_*) and its device twin. */
typedef struct {
    fm_mat h, d;
    void *hdata;
    uint16_t *hs, *hb;
} tmat;

static uint16_t f32_to_f16_trunc(float f) { /* normal range only (|f| in [1e-3, 8]) */
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    const uint32_t sign = (b >> 16) & 0x8000u;
    const int e = (int)((b >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(sign | ((uint32_t)e << 10) | ((b >> 13) & 0x3ffu));
}

static const char *fmt_name(fm_dtype dt, int bits, int group, char *buf, size_t n) {
    if (bits)
        snprintf(buf, n, "q%d/g%d", bits, group);
    else
        snprintf(buf, n, "%s", dt == FM_DTYPE_F32 ? "f32" : dt == FM_DTYPE_F16 ? "f16" : "bf16");
    return buf;
}

/* Random [rows, cols] weights in the given format; the device data sits at
 * byte offset `misalign` of its allocation (0: 256-byte aligned). */
static void tmat_make(tmat *m, arena *a, fm_dtype dt, int bits, int group, int rows, int cols, size_t misalign,
                      float scale) {
    memset(m, 0, sizeof *m);
    float *w = HNEW(float, (size_t)rows * cols);
    tk_fill(w, (size_t)rows * cols, scale);
    m->h.rows = m->d.rows = rows;
    m->h.cols = m->d.cols = cols;
    if (bits) {
        const size_t wb = fm_quant_weight_bytes(rows, cols, bits), sb = fm_quant_scales_bytes(rows, cols, group);
        uint32_t *q = hmalloc(wb);
        m->hs = hmalloc(sb);
        m->hb = hmalloc(sb);
        const int wpr = cols * bits / 32, ng = cols / group;
        for (int r = 0; r < rows; r++)
            fm_quantize_row(w + (size_t)r * cols, cols, bits, group, q + (size_t)r * wpr, m->hs + (size_t)r * ng,
                            m->hb + (size_t)r * ng);
        m->hdata = q;
        m->h.dtype = m->d.dtype = FM_DTYPE_U32;
        m->h.bits = m->d.bits = bits;
        m->h.group = m->d.group = group;
        m->h.data = q;
        m->h.scales = m->hs;
        m->h.biases = m->hb;
        m->d.data = dput_off(a, q, wb, misalign);
        m->d.scales = dput(a, m->hs, sb);
        m->d.biases = dput(a, m->hb, sb);
    } else {
        const size_t n = (size_t)rows * cols;
        size_t bytes;
        if (dt == FM_DTYPE_F32) {
            m->hdata = w;
            w = NULL;
            bytes = n * 4;
        } else {
            uint16_t *h = HNEW(uint16_t, n);
            for (size_t i = 0; i < n; i++) h[i] = dt == FM_DTYPE_BF16 ? fm_f32_to_bf16(w[i]) : f32_to_f16_trunc(w[i]);
            m->hdata = h;
            bytes = n * 2;
        }
        m->h.dtype = m->d.dtype = dt;
        m->h.data = m->hdata;
        m->d.data = dput_off(a, m->hdata, bytes, misalign);
    }
    free(w);
}
static void tmat_free(tmat *m) {
    free(m->hdata);
    free(m->hs);
    free(m->hb);
    memset(m, 0, sizeof *m);
}

/* ---- cuk_matmul ------------------------------------------------------------------ */

static void check_matmul(fm_dtype dt, int bits, int group, int rows, int cols, int T, size_t misalign) {
    char fb[32], what[160];
    snprintf(what, sizeof what, "matmul %s rows=%d cols=%d T=%d%s", fmt_name(dt, bits, group, fb, sizeof fb), rows,
             cols, T, misalign ? " misaligned" : "");
    arena a = {0};
    tmat m;
    tmat_make(&m, &a, dt, bits, group, rows, cols, misalign, 1.0f);
    float *x = HNEW(float, (size_t)T * cols), *ref = HNEW(float, (size_t)T * rows), *got = HNEW(float, (size_t)T * rows);
    tk_fill(x, (size_t)T * cols, 1.0f);
    cpu_matmul(ref, x, T, &m.h);
    float *dx = dput(&a, x, (size_t)T * cols * 4), *dy = dpoison(&a, (size_t)T * rows * 4);
    if (!a.failed) cuk_matmul(g_stream, dy, dx, T, &m.d);
    if (launched(&a, "cuk_matmul") && dget(&a, got, dy, (size_t)T * rows * 4))
        tk_check(tk_rel(got, ref, (size_t)T * rows), 1e-5, what);
    ar_end(&a, what);
    tmat_free(&m);
    free(x);
    free(ref);
    free(got);
}

static void test_matmul(void) {
    static const int Ts[] = {1, 3, 8, 37, 300};
    static const int groups[] = {32, 64, 128};
    static const int bitss[] = {2, 4, 8};
    static const fm_dtype plain[] = {FM_DTYPE_F32, FM_DTYPE_F16, FM_DTYPE_BF16};
    for (int f = 0; f < 3; f++) {
        for (int ti = 0; ti < 5; ti++) {
            check_matmul(plain[f], 0, 0, 77, 256, Ts[ti], 0);
            check_matmul(plain[f], 0, 0, 77, 192, Ts[ti], 0);
            check_matmul(plain[f], 0, 0, 77, 100, Ts[ti], 0); /* odd length: scalar path for f16/bf16 */
        }
        check_matmul(plain[f], 0, 0, 77, 1024, 1, 0);
        check_matmul(plain[f], 0, 0, 77, 1024, 37, 0);
        check_matmul(plain[f], 0, 0, 77, 101, 1, 0);
        check_matmul(plain[f], 0, 0, 77, 101, 37, 0);
        check_matmul(plain[f], 0, 0, 77, 256, 1, plain[f] == FM_DTYPE_F32 ? 4 : 2);
        check_matmul(plain[f], 0, 0, 77, 256, 37, plain[f] == FM_DTYPE_F32 ? 4 : 2);
        check_matmul(plain[f], 0, 0, 40, 9216, 1, 0);  /* more than one staged chunk */
        check_matmul(plain[f], 0, 0, 33, 2560, 37, 0); /* several chunks per token tile */
    }
    for (int b = 0; b < 3; b++)
        for (int g = 0; g < 3; g++) {
            for (int ti = 0; ti < 5; ti++) {
                check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 256, Ts[ti], 0);
                if (192 % groups[g] == 0) check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 192, Ts[ti], 0);
            }
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 1024, 1, 0);
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 1024, 37, 0);
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 256, 1, 4); /* word loads */
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 77, 256, 37, 4);
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 40, 9216, 1, 0);
            check_matmul(FM_DTYPE_U32, bitss[b], groups[g], 33, 2560, 37, 0);
        }
    /* 2-bit rows of an odd number of 32-groups: 16-byte loads impossible */
    check_matmul(FM_DTYPE_U32, 2, 32, 77, 160, 1, 0);
    check_matmul(FM_DTYPE_U32, 2, 32, 77, 160, 8, 0);
    check_matmul(FM_DTYPE_U32, 2, 32, 77, 160, 37, 0);
    /* decode-sized */
    check_matmul(FM_DTYPE_U32, 4, 64, 1000, 4096, 1, 0);
    check_matmul(FM_DTYPE_BF16, 0, 0, 1000, 2048, 1, 0);
    check_matmul(FM_DTYPE_U32, 4, 64, 1, 2048, 5, 0); /* a single row (e.g. a gate vector) */
}

/* ---- cuk_mat_rows ------------------------------------------------------------------ */

static void check_mat_rows(fm_dtype dt, int bits, int group, int rows, int cols) {
    char fb[32], what[160];
    snprintf(what, sizeof what, "mat_rows %s rows=%d cols=%d", fmt_name(dt, bits, group, fb, sizeof fb), rows, cols);
    arena a = {0};
    tmat m;
    tmat_make(&m, &a, dt, bits, group, rows, cols, 0, 1.0f);
    const int n = 6;
    const int32_t ids[6] = {0, rows - 1, 3 % rows, rows / 2, 0, rows - 1};
    float *ref = HNEW(float, (size_t)n * cols), *got = HNEW(float, (size_t)n * cols);
    for (int i = 0; i < n; i++) cpu_mat_row_f32(&m.h, ids[i], ref + (size_t)i * cols);
    int32_t *dids = dput(&a, ids, sizeof ids);
    float *dout = dpoison(&a, (size_t)n * cols * 4);
    if (!a.failed) cuk_mat_rows(g_stream, dout, &m.d, dids, n);
    if (launched(&a, "cuk_mat_rows") && dget(&a, got, dout, (size_t)n * cols * 4))
        tk_check(tk_rel(got, ref, (size_t)n * cols), 1e-6, what);
    ar_end(&a, what);
    tmat_free(&m);
    free(ref);
    free(got);
}

static void test_mat_rows(void) {
    check_mat_rows(FM_DTYPE_F32, 0, 0, 50, 100);
    check_mat_rows(FM_DTYPE_F16, 0, 0, 50, 100);
    check_mat_rows(FM_DTYPE_BF16, 0, 0, 50, 256);
    for (int b = 2; b <= 8; b *= 2)
        for (int g = 32; g <= 128; g *= 2) check_mat_rows(FM_DTYPE_U32, b, g, 50, 384);
}

/* ---- cuk_ffn_grouped -------------------------------------------------------------- */

static float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* jobs with the given counts; each job its own random gate/up/down. With
 * use_rows, entries pick random rows of an x of n_x tokens. */
static void check_ffn(fm_dtype dt, int bits, int group, int H, int F, const int *counts, int n_jobs, int use_rows) {
    char fb[32], what[200], cs[64] = "";
    int total = 0, max_count = 0;
    for (int j = 0; j < n_jobs; j++) {
        char c[12];
        snprintf(c, sizeof c, "%s%d", j ? "," : "", counts[j]);
        strncat(cs, c, sizeof cs - strlen(cs) - 1);
        total += counts[j];
        if (counts[j] > max_count) max_count = counts[j];
    }
    snprintf(what, sizeof what, "ffn_grouped %s H=%d F=%d counts={%s} rows=%s", fmt_name(dt, bits, group, fb, sizeof fb),
             H, F, cs, use_rows ? "gather" : "NULL");
    arena a = {0};
    tmat *g = HNEW(tmat, n_jobs), *u = HNEW(tmat, n_jobs), *dn = HNEW(tmat, n_jobs);
    cuk_ffn_job *jobs = HNEW(cuk_ffn_job, n_jobs);
    const int n_x = use_rows ? 7 : total;
    float *x = HNEW(float, (size_t)(n_x ? n_x : 1) * H);
    tk_fill(x, (size_t)n_x * H, 1.0f);
    int *rows = HNEW(int, total ? total : 1);
    for (int i = 0; i < total; i++) rows[i] = use_rows ? (int)(tk_next() % (uint64_t)n_x) : i;
    float *href = HNEW(float, (size_t)(total ? total : 1) * F), *yref = HNEW(float, (size_t)(total ? total : 1) * H);
    float *hgot = HNEW(float, (size_t)(total ? total : 1) * F), *ygot = HNEW(float, (size_t)(total ? total : 1) * H);
    int first = 0;
    for (int j = 0; j < n_jobs; j++) {
        /* smaller weights keep h and y in a moderate range */
        tmat_make(&g[j], &a, dt, bits, group, F, H, 0, 0.2f);
        tmat_make(&u[j], &a, dt, bits, group, F, H, 0, 0.2f);
        tmat_make(&dn[j], &a, dt, bits, group, H, F, 0, 0.2f);
        jobs[j].gate = g[j].d;
        jobs[j].up = u[j].d;
        jobs[j].down = dn[j].d;
        jobs[j].first = first;
        jobs[j].count = counts[j];
        const int ne = counts[j];
        if (ne > 0) {
            float *xe = HNEW(float, (size_t)ne * H), *gg = HNEW(float, (size_t)ne * F), *uu = HNEW(float, (size_t)ne * F);
            for (int i = 0; i < ne; i++) memcpy(xe + (size_t)i * H, x + (size_t)rows[first + i] * H, (size_t)H * 4);
            cpu_matmul(gg, xe, ne, &g[j].h);
            cpu_matmul(uu, xe, ne, &u[j].h);
            for (size_t i = 0; i < (size_t)ne * F; i++) gg[i] = silu_f(gg[i]) * uu[i];
            memcpy(href + (size_t)first * F, gg, (size_t)ne * F * 4);
            cpu_matmul(yref + (size_t)first * H, gg, ne, &dn[j].h);
            free(xe);
            free(gg);
            free(uu);
        }
        first += ne;
    }
    float *dx = dput(&a, x, (size_t)(n_x ? n_x : 1) * H * 4);
    int *drows = use_rows ? dput(&a, rows, (size_t)(total ? total : 1) * sizeof(int)) : NULL;
    cuk_ffn_job *djobs = dput(&a, jobs, (size_t)n_jobs * sizeof *jobs);
    float *dh = dpoison(&a, (size_t)(total ? total : 1) * F * 4), *dy = dpoison(&a, (size_t)(total ? total : 1) * H * 4);
    if (!a.failed) cuk_ffn_grouped(g_stream, dy, dh, dx, drows, djobs, n_jobs, max_count, F, H);
    if (launched(&a, "cuk_ffn_grouped") && dget(&a, hgot, dh, (size_t)total * F * 4) &&
        dget(&a, ygot, dy, (size_t)total * H * 4)) {
        char w2[240];
        snprintf(w2, sizeof w2, "%s: h", what);
        tk_check(tk_rel(hgot, href, (size_t)total * F), 1e-5, w2);
        snprintf(w2, sizeof w2, "%s: y", what);
        tk_check(tk_rel(ygot, yref, (size_t)total * H), 1e-5, w2);
    }
    ar_end(&a, what);
    for (int j = 0; j < n_jobs; j++) {
        tmat_free(&g[j]);
        tmat_free(&u[j]);
        tmat_free(&dn[j]);
    }
    free(g);
    free(u);
    free(dn);
    free(jobs);
    free(x);
    free(rows);
    free(href);
    free(yref);
    free(hgot);
    free(ygot);
}

static void test_ffn(void) {
    static const int decode[] = {1, 1, 1, 1, 1, 1, 1, 1};
    static const int small[] = {3, 0, 1, 4, 2};
    static const int mixed[] = {9, 0, 3, 1, 17, 0, 2};
    static const int one[] = {37};
    for (int r = 0; r < 2; r++) {
        check_ffn(FM_DTYPE_U32, 4, 64, 256, 192, decode, 8, r);
        check_ffn(FM_DTYPE_U32, 4, 64, 256, 192, small, 5, r);
        check_ffn(FM_DTYPE_U32, 4, 64, 256, 192, mixed, 7, r);
        check_ffn(FM_DTYPE_BF16, 0, 0, 256, 192, decode, 8, r);
        check_ffn(FM_DTYPE_BF16, 0, 0, 256, 192, small, 5, r);
        check_ffn(FM_DTYPE_BF16, 0, 0, 100, 77, mixed, 7, r); /* tails everywhere */
    }
    check_ffn(FM_DTYPE_U32, 2, 32, 224, 96, small, 5, 1);
    check_ffn(FM_DTYPE_U32, 8, 128, 256, 384, mixed, 7, 1);
    check_ffn(FM_DTYPE_U32, 4, 32, 2048, 512, one, 1, 0); /* a shared / dense FFN over a micro-batch */
    check_ffn(FM_DTYPE_F32, 0, 0, 128, 64, small, 5, 1);
    check_ffn(FM_DTYPE_F16, 0, 0, 128, 64, small, 5, 1);
}

/* ---- cuk_rmsnorm, cuk_add ---------------------------------------------------------------- */

static void check_rmsnorm(int n_rows, int dim, int with_w, int in_place) {
    char what[128];
    snprintf(what, sizeof what, "rmsnorm rows=%d dim=%d %s %s", n_rows, dim, with_w ? "w" : "no-w",
             in_place ? "in-place" : "out-of-place");
    arena a = {0};
    const size_t n = (size_t)n_rows * dim;
    float *x = HNEW(float, n), *w = HNEW(float, dim), *ref = HNEW(float, n), *got = HNEW(float, n);
    tk_fill(x, n, 2.0f);
    tk_fill(w, dim, 1.5f);
    for (int r = 0; r < n_rows; r++) cpu_rmsnorm(ref + (size_t)r * dim, x + (size_t)r * dim, with_w ? w : NULL, dim, 1e-6f);
    float *dx = dput(&a, x, n * 4), *dw = dput(&a, w, (size_t)dim * 4), *dy = in_place ? dx : dpoison(&a, n * 4);
    if (!a.failed) cuk_rmsnorm(g_stream, dy, dx, with_w ? dw : NULL, n_rows, dim, 1e-6f);
    if (launched(&a, "cuk_rmsnorm") && dget(&a, got, dy, n * 4)) tk_check(tk_rel(got, ref, n), 1e-5, what);
    ar_end(&a, what);
    free(x);
    free(w);
    free(ref);
    free(got);
}

static void test_norm_add(void) {
    check_rmsnorm(5, 2048, 1, 0);
    check_rmsnorm(5, 2048, 0, 1);
    check_rmsnorm(3, 100, 1, 1);
    check_rmsnorm(64, 4096, 1, 0);
    check_rmsnorm(1, 7, 1, 0);

    const char *what = "add n=1000003";
    arena a = {0};
    const size_t n = 1000003;
    float *x = HNEW(float, n), *y = HNEW(float, n), *got = HNEW(float, n);
    tk_fill(x, n, 1.0f);
    tk_fill(y, n, 1.0f);
    float *dx = dput(&a, x, n * 4), *dy = dput(&a, y, n * 4);
    if (!a.failed) cuk_add(g_stream, dx, dy, n);
    for (size_t i = 0; i < n; i++) x[i] += y[i];
    if (launched(&a, "cuk_add") && dget(&a, got, dx, n * 4)) tk_check(tk_rel(got, x, n), 0.0, what);
    ar_end(&a, what);
    free(x);
    free(y);
    free(got);
}

/* ---- attention ------------------------------------------------------------------ */

static void check_split(int n, int nh, int hd, int gated) {
    char what[128];
    snprintf(what, sizeof what, "split_q_gate n=%d nh=%d hd=%d %s", n, nh, hd, gated ? "gated" : "ungated");
    arena a = {0};
    const int G = gated ? 2 : 1;
    const size_t nq = (size_t)n * nh * hd;
    float *qg = HNEW(float, nq * G), *q = HNEW(float, nq), *gt = HNEW(float, nq), *rq = HNEW(float, nq),
          *rg = HNEW(float, nq);
    tk_fill(qg, nq * G, 1.0f);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
            for (int d = 0; d < hd; d++) {
                const float *src = qg + (size_t)t * nh * hd * G + (size_t)h * hd * G;
                rq[((size_t)t * nh + h) * hd + d] = src[d];
                if (gated) rg[((size_t)t * nh + h) * hd + d] = src[hd + d];
            }
    float *dqg = dput(&a, qg, nq * G * 4), *dq = dpoison(&a, nq * 4), *dg = gated ? dpoison(&a, nq * 4) : NULL;
    if (!a.failed) cuk_split_q_gate(g_stream, dq, dg, dqg, n, nh, hd, gated);
    if (launched(&a, "cuk_split_q_gate") && dget(&a, q, dq, nq * 4) && (!gated || dget(&a, gt, dg, nq * 4))) {
        double rel = tk_rel(q, rq, nq);
        if (gated) rel = fmax(rel, tk_rel(gt, rg, nq));
        tk_check(rel, 0.0, what);
    }
    ar_end(&a, what);
    free(qg);
    free(q);
    free(gt);
    free(rq);
    free(rg);
}

static void check_norm_rope(int n, int n_heads, int hd, int half, int with_norm, int pos0, int extra_cols) {
    char what[160];
    snprintf(what, sizeof what, "norm_rope n=%d heads=%d hd=%d half=%d %s pos0=%d stride+%d", n, n_heads, hd, half,
             with_norm ? "norm" : "no-norm", pos0, extra_cols);
    arena a = {0};
    const int stride = n_heads * hd + extra_cols;
    const size_t nx = (size_t)n * stride;
    float *x = HNEW(float, nx), *ref = HNEW(float, nx), *got = HNEW(float, nx), *w = HNEW(float, hd),
          *inv = HNEW(float, half > 0 ? half : 1);
    tk_fill(x, nx, 2.0f);
    tk_fill(w, hd, 1.5f);
    for (int i = 0; i < half; i++) inv[i] = (float)pow(10000.0, -(double)i / (double)half);
    memcpy(ref, x, nx * 4);
    for (int t = 0; t < n; t++) {
        float cs[512], sn[512];
        for (int i = 0; i < half; i++) {
            const float theta = (float)(pos0 + t) * inv[i];
            cs[i] = cosf(theta);
            sn[i] = sinf(theta);
        }
        for (int h = 0; h < n_heads; h++) {
            float *xh = ref + (size_t)t * stride + (size_t)h * hd;
            if (with_norm) cpu_rmsnorm(xh, xh, w, hd, 1e-6f);
            cpu_rope(xh, half, cs, sn);
        }
    }
    float *dx = dput(&a, x, nx * 4), *dw = dput(&a, w, (size_t)hd * 4),
          *dinv = dput(&a, inv, (size_t)(half > 0 ? half : 1) * 4);
    if (!a.failed) cuk_norm_rope(g_stream, dx, n, n_heads, stride, hd, with_norm ? dw : NULL, 1e-6f, half, dinv, pos0);
    if (launched(&a, "cuk_norm_rope") && dget(&a, got, dx, nx * 4)) tk_check(tk_rel(got, ref, nx), 1e-5, what);
    ar_end(&a, what);
    free(x);
    free(ref);
    free(got);
    free(w);
    free(inv);
}

/* Double-precision causal GQA attention over the cache. */
static void ref_attention(double *out, const float *q, const float *gate, const float *kc, const float *vc, int n,
                          int pos0, int nh, int nkv, int hd, int window, float scale) {
    const int kvw = nkv * hd, group = nh / nkv;
    double *sc = HNEW(double, pos0 + n);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            const int p = pos0 + t, kvh = h / group;
            const int first = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
            const float *qh = q + ((size_t)t * nh + h) * hd;
            double mx = -INFINITY, sum = 0.0;
            for (int j = first; j <= p; j++) {
                double s = 0.0;
                for (int d = 0; d < hd; d++) s += (double)qh[d] * kc[(size_t)j * kvw + (size_t)kvh * hd + d];
                sc[j] = s * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = first; j <= p; j++) sum += (sc[j] = exp(sc[j] - mx));
            double *o = out + ((size_t)t * nh + h) * hd;
            for (int d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int j = first; j <= p; j++) acc += sc[j] * vc[(size_t)j * kvw + (size_t)kvh * hd + d];
                o[d] = acc / sum;
                if (gate) o[d] *= 1.0 / (1.0 + exp(-(double)gate[((size_t)t * nh + h) * hd + d]));
            }
        }
    free(sc);
}

static void check_attention(int n, int pos0, int nh, int nkv, int hd, int window, int gated) {
    char what[160];
    snprintf(what, sizeof what, "attention n=%d pos0=%d nh=%d nkv=%d hd=%d window=%d %s", n, pos0, nh, nkv, hd, window,
             gated ? "gated" : "ungated");
    arena a = {0};
    const int ctx = pos0 + n, kvw = nkv * hd;
    const size_t nq = (size_t)n * nh * hd, nkvv = (size_t)ctx * kvw;
    float *q = HNEW(float, nq), *g = HNEW(float, nq), *kc = HNEW(float, nkvv), *vc = HNEW(float, nkvv),
          *got = HNEW(float, nq);
    double *ref = HNEW(double, nq);
    tk_fill(q, nq, 1.0f);
    tk_fill(g, nq, 2.0f);
    tk_fill(kc, nkvv, 1.0f);
    tk_fill(vc, nkvv, 1.0f);
    const float scale = 1.0f / sqrtf((float)hd) * 4.0f; /* sharper than 1/sqrt(hd) on uniform data */
    ref_attention(ref, q, gated ? g : NULL, kc, vc, n, pos0, nh, nkv, hd, window, scale);
    float *dq = dput(&a, q, nq * 4), *dg = dput(&a, g, nq * 4), *dk = dput(&a, kc, nkvv * 4),
          *dv = dput(&a, vc, nkvv * 4), *dout = dpoison(&a, nq * 4);
    if (!a.failed) cuk_attention(g_stream, dout, dq, gated ? dg : NULL, dk, dv, n, pos0, nh, nkv, hd, window, scale);
    if (launched(&a, "cuk_attention") && dget(&a, got, dout, nq * 4)) tk_check(tk_rel_d(got, ref, nq), 1e-5, what);
    ar_end(&a, what);
    free(q);
    free(g);
    free(kc);
    free(vc);
    free(got);
    free(ref);
}

static void test_attention(void) {
    check_split(3, 4, 64, 1);
    check_split(3, 4, 64, 0);
    check_split(5, 3, 72, 1);
    check_norm_rope(3, 4, 64, 32, 1, 0, 0);
    check_norm_rope(3, 4, 64, 16, 1, 500, 8); /* partial rotary; extra columns untouched */
    check_norm_rope(2, 2, 256, 32, 0, 7, 0);
    check_norm_rope(37, 2, 128, 64, 1, 5, 0);
    static const struct { int n, pos0, nh, nkv, hd, window, gated; } cases[] = {
        {1, 0, 4, 4, 64, 0, 0},     {1, 0, 4, 1, 256, 0, 1},   {1, 500, 8, 2, 256, 0, 1},  {1, 500, 4, 4, 64, 0, 0},
        {1, 500, 4, 4, 64, 16, 1},  {1, 500, 8, 2, 256, 16, 0}, {37, 5, 4, 1, 64, 0, 1},   {37, 5, 4, 4, 64, 0, 0},
        {37, 5, 4, 4, 64, 16, 1},   {37, 5, 8, 2, 256, 16, 0}, {37, 5, 16, 4, 256, 0, 1},  {3, 130, 2, 2, 72, 0, 0},
        {2, 200, 2, 1, 66, 0, 1},   {1, 300, 2, 1, 576, 0, 0}, {20, 1000, 4, 1, 128, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_attention(cases[i].n, cases[i].pos0, cases[i].nh, cases[i].nkv, cases[i].hd, cases[i].window,
                        cases[i].gated);
}

/* ---- Gated DeltaNet ------------------------------------------------------------------ */

static void check_regroup(int n, int nk, int nv, int dk, int dv) {
    char what[128];
    snprintf(what, sizeof what, "regroup_qkvz n=%d nk=%d nv=%d dk=%d dv=%d", n, nk, nv, dk, dv);
    arena a = {0};
    const int r = nv / nk, rdv = r * dv, group = 2 * dk + 2 * rdv, key_dim = nk * dk, conv_dim = 2 * key_dim + nv * dv;
    const size_t np = (size_t)n * nk * group, nba = (size_t)n * 2 * nv, nm = (size_t)n * conv_dim, nz = (size_t)n * nv * dv,
                 nb = (size_t)n * nv;
    float *p = HNEW(float, np), *ba = HNEW(float, nba);
    float *rm = HNEW(float, nm), *rz = HNEW(float, nz), *rb = HNEW(float, nb), *ra = HNEW(float, nb);
    float *gm = HNEW(float, nm), *gz = HNEW(float, nz), *gb = HNEW(float, nb), *ga = HNEW(float, nb);
    tk_fill(p, np, 1.0f);
    tk_fill(ba, nba, 1.0f);
    for (int t = 0; t < n; t++) /* as deltanet.c's regroup_qkvz */
        for (int g = 0; g < nk; g++) {
            const float *pg = p + (size_t)t * nk * group + (size_t)g * group;
            float *mt = rm + (size_t)t * conv_dim, *zt = rz + (size_t)t * nv * dv;
            memcpy(mt + g * dk, pg, (size_t)dk * 4);
            memcpy(mt + key_dim + g * dk, pg + dk, (size_t)dk * 4);
            memcpy(mt + 2 * key_dim + g * rdv, pg + 2 * dk, (size_t)rdv * 4);
            memcpy(zt + g * rdv, pg + 2 * dk + rdv, (size_t)rdv * 4);
            for (int j = 0; j < r; j++) {
                rb[(size_t)t * nv + g * r + j] = ba[(size_t)t * 2 * nv + g * 2 * r + j];
                ra[(size_t)t * nv + g * r + j] = ba[(size_t)t * 2 * nv + g * 2 * r + r + j];
            }
        }
    float *dp = dput(&a, p, np * 4), *dba = dput(&a, ba, nba * 4), *dm = dpoison(&a, nm * 4), *dz = dpoison(&a, nz * 4),
          *db = dpoison(&a, nb * 4), *da = dpoison(&a, nb * 4);
    if (!a.failed) cuk_regroup_qkvz(g_stream, dm, dz, db, da, dp, dba, n, nk, nv, dk, dv);
    if (launched(&a, "cuk_regroup_qkvz") && dget(&a, gm, dm, nm * 4) && dget(&a, gz, dz, nz * 4) &&
        dget(&a, gb, db, nb * 4) && dget(&a, ga, da, nb * 4)) {
        double rel = fmax(fmax(tk_rel(gm, rm, nm), tk_rel(gz, rz, nz)), fmax(tk_rel(gb, rb, nb), tk_rel(ga, ra, nb)));
        tk_check(rel, 0.0, what);
    }
    ar_end(&a, what);
    free(p);
    free(ba);
    free(rm);
    free(rz);
    free(rb);
    free(ra);
    free(gm);
    free(gz);
    free(gb);
    free(ga);
}

/* Conv over two calls (n1 then n2 tokens), state carried on the device. */
static void check_conv(int channels, int K, int n1, int n2) {
    char what[128];
    snprintf(what, sizeof what, "conv_silu channels=%d K=%d n=%d then %d (state carried)", channels, K, n1, n2);
    arena a = {0};
    const int n = n1 + n2;
    float *in = HNEW(float, (size_t)n * channels), *w = HNEW(float, (size_t)channels * K),
          *st = HNEW(float, (size_t)channels * (K - 1) + 1), *got = HNEW(float, (size_t)n * channels),
          *gst = HNEW(float, (size_t)channels * (K - 1) + 1);
    double *ref = HNEW(double, (size_t)n * channels), *rst = HNEW(double, (size_t)channels * (K - 1) + 1);
    tk_fill(in, (size_t)n * channels, 2.0f);
    tk_fill(w, (size_t)channels * K, 1.0f);
    tk_fill(st, (size_t)channels * (K - 1), 2.0f);
    for (int c = 0; c < channels; c++) {
        double hist[16];
        for (int j = 0; j < K - 1; j++) hist[j] = st[(size_t)c * (K - 1) + j];
        for (int t = 0; t < n; t++) {
            const double x = in[(size_t)t * channels + c];
            double s = (double)w[(size_t)c * K + K - 1] * x;
            for (int j = 0; j < K - 1; j++) s += (double)w[(size_t)c * K + j] * hist[j];
            ref[(size_t)t * channels + c] = s / (1.0 + exp(-s));
            for (int j = 0; j + 1 < K - 1; j++) hist[j] = hist[j + 1];
            if (K >= 2) hist[K - 2] = x;
        }
        for (int j = 0; j < K - 1; j++) rst[(size_t)c * (K - 1) + j] = hist[j];
    }
    float *din = dput(&a, in, (size_t)n * channels * 4), *dw = dput(&a, w, (size_t)channels * K * 4),
          *dst = dput(&a, st, ((size_t)channels * (K - 1) + 1) * 4), *dout = dpoison(&a, (size_t)n * channels * 4);
    if (!a.failed) cuk_conv_silu(g_stream, dout, din, dst, dw, n1, channels, K);
    if (launched(&a, "cuk_conv_silu (1st call)") && !a.failed)
        cuk_conv_silu(g_stream, dout + (size_t)n1 * channels, din + (size_t)n1 * channels, dst, dw, n2, channels, K);
    if (launched(&a, "cuk_conv_silu (2nd call)") && dget(&a, got, dout, (size_t)n * channels * 4) &&
        dget(&a, gst, dst, (size_t)channels * (K - 1) * 4)) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s: out", what);
        tk_check(tk_rel_d(got, ref, (size_t)n * channels), 1e-5, w2);
        snprintf(w2, sizeof w2, "%s: state", what);
        tk_check(tk_rel_d(gst, rst, (size_t)channels * (K - 1)), 0.0, w2);
    }
    ar_end(&a, what);
    free(in);
    free(w);
    free(st);
    free(got);
    free(gst);
    free(ref);
    free(rst);
}

static void check_prep(int n, int nk, int nv, int dk) {
    char what[128];
    snprintf(what, sizeof what, "deltanet_prep n=%d nk=%d nv=%d dk=%d", n, nk, nv, dk);
    arena a = {0};
    const int dv = 32, conv_dim = 2 * nk * dk + nv * dv;
    const size_t nc = (size_t)n * conv_dim, nb = (size_t)n * nv;
    float *conv = HNEW(float, nc), *b = HNEW(float, nb), *av = HNEW(float, nb), *nea = HNEW(float, nv),
          *dtb = HNEW(float, nv), *gc = HNEW(float, nc), *gb = HNEW(float, nb), *ga = HNEW(float, nb);
    double *rc = HNEW(double, nc), *rb = HNEW(double, nb), *ra = HNEW(double, nb);
    tk_fill(conv, nc, 2.0f);
    tk_fill(b, nb, 3.0f);
    tk_fill(av, nb, 3.0f);
    for (int h = 0; h < nv; h++) {
        nea[h] = -expf(tk_rand());
        dtb[h] = tk_rand();
    }
    if (nb > 0) av[0] = 25.0f; /* the softplus threshold branch */
    for (size_t i = 0; i < nc; i++) rc[i] = conv[i];
    for (int t = 0; t < n; t++) {
        double *ct = rc + (size_t)t * conv_dim;
        for (int hv = 0; hv < 2 * nk; hv++) {
            double ss = 0.0;
            for (int i = 0; i < dk; i++) ss += ct[hv * dk + i] * ct[hv * dk + i];
            const double inv = 1.0 / sqrt(ss + 1e-6), qs = hv < nk ? 1.0 / sqrt((double)dk) : 1.0;
            for (int i = 0; i < dk; i++) ct[hv * dk + i] *= inv * qs;
        }
        for (int h = 0; h < nv; h++) {
            const size_t i = (size_t)t * nv + h;
            rb[i] = 1.0 / (1.0 + exp(-(double)b[i]));
            const double x = (double)av[i] + dtb[h];
            ra[i] = nea[h] * (x > 20.0 ? x : log1p(exp(x)));
        }
    }
    float *dc = dput(&a, conv, nc * 4), *db = dput(&a, b, nb * 4), *da = dput(&a, av, nb * 4),
          *dnea = dput(&a, nea, (size_t)nv * 4), *ddtb = dput(&a, dtb, (size_t)nv * 4);
    if (!a.failed) cuk_deltanet_prep(g_stream, dc, db, da, dnea, ddtb, n, nk, nv, dk, conv_dim);
    if (launched(&a, "cuk_deltanet_prep") && dget(&a, gc, dc, nc * 4) && dget(&a, gb, db, nb * 4) &&
        dget(&a, ga, da, nb * 4)) {
        const double rel = fmax(tk_rel_d(gc, rc, nc), fmax(tk_rel_d(gb, rb, nb), tk_rel_d(ga, ra, nb)));
        tk_check(rel, 1e-5, what);
    }
    ar_end(&a, what);
    free(conv);
    free(b);
    free(av);
    free(nea);
    free(dtb);
    free(gc);
    free(gb);
    free(ga);
    free(rc);
    free(rb);
    free(ra);
}

/* The delta rule in double (deltanet.c's loop), S [nv, dk, dv] in place. */
static void ref_recurrence(double *core, const float *conv, const float *b, const float *av, double *S, int n, int nk,
                           int nv, int dk, int dv, int conv_dim) {
    const int r = nv / nk, key_dim = nk * dk;
    double *delta = HNEW(double, dv);
    for (int h = 0; h < nv; h++) {
        double *Sh = S + (size_t)h * dk * dv;
        const int kh = h / r;
        for (int t = 0; t < n; t++) {
            const float *ct = conv + (size_t)t * conv_dim;
            const float *q = ct + kh * dk, *k = ct + key_dim + kh * dk, *v = ct + 2 * key_dim + h * dv;
            const double decay = exp((double)av[(size_t)t * nv + h]), beta = b[(size_t)t * nv + h];
            for (int i = 0; i < dk * dv; i++) Sh[i] *= decay;
            for (int j = 0; j < dv; j++) delta[j] = 0.0;
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dv; j++) delta[j] += Sh[i * dv + j] * k[i];
            for (int j = 0; j < dv; j++) delta[j] = beta * (v[j] - delta[j]);
            double *o = core + (size_t)t * nv * dv + (size_t)h * dv;
            for (int j = 0; j < dv; j++) o[j] = 0.0;
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dv; j++) {
                    Sh[i * dv + j] += k[i] * delta[j];
                    o[j] += Sh[i * dv + j] * q[i];
                }
        }
    }
    free(delta);
}

/* Random inputs as the recurrence sees them: q, k L2-normalised (q also by
 * 1/sqrt(dk)), β in (0, 1), decay exponent < 0. */
static void make_recurrence_inputs(float *conv, float *b, float *av, int n, int nk, int nv, int dk, int dv,
                                   int conv_dim) {
    tk_fill(conv, (size_t)n * conv_dim, 1.0f);
    for (int t = 0; t < n; t++)
        for (int hv = 0; hv < 2 * nk; hv++) {
            float *v = conv + (size_t)t * conv_dim + (size_t)hv * dk;
            double ss = 0.0;
            for (int i = 0; i < dk; i++) ss += (double)v[i] * v[i];
            const double s = 1.0 / sqrt(ss) * (hv < nk ? 1.0 / sqrt((double)dk) : 1.0);
            for (int i = 0; i < dk; i++) v[i] = (float)(v[i] * s);
        }
    (void)dv;
    for (size_t i = 0; i < (size_t)n * nv; i++) {
        b[i] = 0.5f + 0.45f * tk_rand();
        av[i] = -0.05f - 0.5f * fabsf(tk_rand());
    }
}

static void check_recurrence(int nk, int nv, int dk, int dv, int n1, int n2) {
    char what[160];
    snprintf(what, sizeof what, "deltanet_recurrence nk=%d nv=%d dk=%d dv=%d n=%d then %d (state carried)", nk, nv, dk,
             dv, n1, n2);
    arena a = {0};
    const int n = n1 + n2, conv_dim = 2 * nk * dk + nv * dv;
    const size_t nc = (size_t)n * conv_dim, nb = (size_t)n * nv, ns = (size_t)nv * dk * dv, no = (size_t)n * nv * dv;
    float *conv = HNEW(float, nc), *b = HNEW(float, nb), *av = HNEW(float, nb), *S0 = HNEW(float, ns),
          *gcore = HNEW(float, no), *gS = HNEW(float, ns);
    double *rcore = HNEW(double, no), *rS = HNEW(double, ns);
    make_recurrence_inputs(conv, b, av, n, nk, nv, dk, dv, conv_dim);
    tk_fill(S0, ns, 0.3f);
    for (size_t i = 0; i < ns; i++) rS[i] = S0[i];
    ref_recurrence(rcore, conv, b, av, rS, n1, nk, nv, dk, dv, conv_dim);
    ref_recurrence(rcore + (size_t)n1 * nv * dv, conv + (size_t)n1 * conv_dim, b + (size_t)n1 * nv,
                   av + (size_t)n1 * nv, rS, n2, nk, nv, dk, dv, conv_dim);
    float *dc = dput(&a, conv, nc * 4), *db = dput(&a, b, nb * 4), *da = dput(&a, av, nb * 4), *dS = dput(&a, S0, ns * 4),
          *dcore = dpoison(&a, no * 4);
    if (!a.failed) cuk_deltanet_recurrence(g_stream, dcore, dc, db, da, dS, n1, nk, nv, dk, dv, conv_dim);
    if (launched(&a, "cuk_deltanet_recurrence (1st call)") && !a.failed)
        cuk_deltanet_recurrence(g_stream, dcore + (size_t)n1 * nv * dv, dc + (size_t)n1 * conv_dim, db + (size_t)n1 * nv,
                                da + (size_t)n1 * nv, dS, n2, nk, nv, dk, dv, conv_dim);
    if (launched(&a, "cuk_deltanet_recurrence (2nd call)") && dget(&a, gcore, dcore, no * 4) &&
        dget(&a, gS, dS, ns * 4)) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s: out", what);
        tk_check(tk_rel_d(gcore, rcore, no), 1e-5, w2);
        snprintf(w2, sizeof w2, "%s: state", what);
        tk_check(tk_rel_d(gS, rS, ns), 1e-5, w2);
    }
    ar_end(&a, what);
    free(conv);
    free(b);
    free(av);
    free(S0);
    free(gcore);
    free(gS);
    free(rcore);
    free(rS);
}

static void check_gated_rmsnorm(int n, int nv, int dv) {
    char what[128];
    snprintf(what, sizeof what, "gated_rmsnorm n=%d nv=%d dv=%d", n, nv, dv);
    arena a = {0};
    const size_t no = (size_t)n * nv * dv;
    float *core = HNEW(float, no), *z = HNEW(float, no), *w = HNEW(float, dv), *got = HNEW(float, no);
    double *ref = HNEW(double, no);
    tk_fill(core, no, 2.0f);
    tk_fill(z, no, 3.0f);
    tk_fill(w, dv, 1.5f);
    for (size_t r = 0; r < (size_t)n * nv; r++) {
        const float *o = core + r * dv;
        double ss = 0.0;
        for (int j = 0; j < dv; j++) ss += (double)o[j] * o[j];
        const double sc = 1.0 / sqrt(ss / dv + 1e-6);
        for (int j = 0; j < dv; j++) {
            const double zz = z[r * dv + j];
            ref[r * dv + j] = o[j] * sc * w[j] * (zz / (1.0 + exp(-zz)));
        }
    }
    float *dc = dput(&a, core, no * 4), *dz = dput(&a, z, no * 4), *dw = dput(&a, w, (size_t)dv * 4);
    if (!a.failed) cuk_gated_rmsnorm(g_stream, dc, dz, dw, n, nv, dv, 1e-6f);
    if (launched(&a, "cuk_gated_rmsnorm") && dget(&a, got, dc, no * 4)) tk_check(tk_rel_d(got, ref, no), 1e-5, what);
    ar_end(&a, what);
    free(core);
    free(z);
    free(w);
    free(got);
    free(ref);
}

static void test_deltanet(void) {
    check_regroup(3, 2, 4, 32, 32);
    check_regroup(3, 16, 32, 128, 128);
    check_regroup(2, 3, 3, 24, 40);
    check_conv(100, 4, 5, 1);
    check_conv(8192, 4, 20, 1);
    check_conv(33, 2, 3, 3);
    check_prep(3, 2, 4, 32);
    check_prep(3, 16, 32, 128);
    check_prep(2, 16, 64, 128);
    check_recurrence(2, 4, 32, 32, 1, 1);
    check_recurrence(2, 4, 32, 32, 20, 20);
    check_recurrence(16, 32, 128, 128, 1, 1);
    check_recurrence(16, 32, 128, 128, 20, 1);
    check_recurrence(16, 64, 128, 128, 3, 1); /* Qwen3.5 sizes */
    check_recurrence(3, 3, 24, 40, 7, 2);     /* dk, dv not multiples of 32 or 8 */
    check_gated_rmsnorm(3, 4, 32);
    check_gated_rmsnorm(3, 32, 128);
    check_gated_rmsnorm(2, 3, 40);
}

/* ---- MoE ------------------------------------------------------------------------------ */

/* moe.c's route for one token: cpu_softmax, then top-k (ties to the lower index). */
static void ref_route(float *p, int E, int K, int renorm, int *sel, float *sw) {
    cpu_softmax(p, E);
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= sel[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        sel[j] = best;
    }
    float sum = 0.0f;
    for (int j = 0; j < K; j++) sum += (sw[j] = p[sel[j]]);
    if (renorm)
        for (int j = 0; j < K; j++) sw[j] /= sum;
}

static void check_route(int n, int E, int K, int renorm, int ties) {
    char what[128];
    snprintf(what, sizeof what, "route n=%d E=%d K=%d %s%s", n, E, K, renorm ? "renormalize" : "plain",
             ties ? " with ties" : "");
    arena a = {0};
    const size_t nl = (size_t)n * E, ns = (size_t)n * K;
    float *lg = HNEW(float, nl), *rp = HNEW(float, nl), *gp = HNEW(float, nl), *rsw = HNEW(float, ns),
          *gsw = HNEW(float, ns);
    int *rsel = HNEW(int, ns), *gsel = HNEW(int, ns);
    tk_fill(lg, nl, 4.0f);
    if (ties)
        for (size_t t = 0; t < (size_t)n; t++) /* a few equal maxima and an equal pair at the cut */
            for (int e = 0; e < E; e++) {
                float *l = lg + t * E;
                if (e % 5 == (int)(t % 5)) l[e] = 9.0f;
                else if (e % 7 == 3) l[e] = 5.0f;
                else l[e] = fminf(l[e], 4.0f);
            }
    memcpy(rp, lg, nl * 4);
    for (int t = 0; t < n; t++) ref_route(rp + (size_t)t * E, E, K, renorm, rsel + (size_t)t * K, rsw + (size_t)t * K);
    /* values against a double softmax: the float reference's own sequential
     * sum over E terms is off by up to ~1e-6 for E = 1024 */
    double *pd = HNEW(double, nl), *wd = HNEW(double, ns);
    for (int t = 0; t < n; t++) {
        const float *l = lg + (size_t)t * E;
        double mx = l[0], sum = 0.0, ws = 0.0;
        for (int e = 1; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        for (int e = 0; e < E; e++) sum += (pd[(size_t)t * E + e] = exp((double)l[e] - mx));
        for (int e = 0; e < E; e++) pd[(size_t)t * E + e] /= sum;
        for (int j = 0; j < K; j++) ws += (wd[(size_t)t * K + j] = pd[(size_t)t * E + rsel[(size_t)t * K + j]]);
        if (renorm)
            for (int j = 0; j < K; j++) wd[(size_t)t * K + j] /= ws;
    }
    float *dl = dput(&a, lg, nl * 4), *dsw = dpoison(&a, ns * 4);
    int *dsel = dpoison(&a, ns * sizeof(int));
    if (!a.failed) cuk_route(g_stream, dsel, dsw, dl, n, E, K, renorm);
    if (launched(&a, "cuk_route") && dget(&a, gsel, dsel, ns * sizeof(int)) && dget(&a, gsw, dsw, ns * 4) &&
        dget(&a, gp, dl, nl * 4)) {
        size_t bad = ns;
        for (size_t i = 0; i < ns; i++)
            if (gsel[i] != rsel[i]) {
                bad = i;
                break;
            }
        if (bad < ns) {
            char d[128];
            snprintf(d, sizeof d, "token %zu slot %zu: id %d, want %d", bad / (size_t)K, bad % (size_t)K, gsel[bad],
                     rsel[bad]);
            tk_fail(d, "%s: ids", what);
        } else {
            tk_ok(0.0, "%s: ids", what);
        }
        char w2[160];
        snprintf(w2, sizeof w2, "%s: weights", what);
        tk_check(tk_rel_d(gsw, wd, ns), 2e-6, w2);
        snprintf(w2, sizeof w2, "%s: probabilities", what);
        tk_check(tk_rel_d(gp, pd, nl), 2e-6, w2);
    }
    ar_end(&a, what);
    free(pd);
    free(wd);
    free(lg);
    free(rp);
    free(gp);
    free(rsw);
    free(gsw);
    free(rsel);
    free(gsel);
}

static void check_combine(int n, int K, int H, int with_shared, int with_logit) {
    char what[128];
    snprintf(what, sizeof what, "moe_combine n=%d K=%d H=%d %s", n, K, H,
             !with_shared ? "no shared" : with_logit ? "shared+logit" : "shared, weight 1");
    arena a = {0};
    const int entries = n * K;
    float *y = HNEW(float, (size_t)entries * H), *w = HNEW(float, entries), *sh = HNEW(float, (size_t)n * H),
          *sl = HNEW(float, n), *got = HNEW(float, (size_t)n * H);
    int *entry = HNEW(int, entries);
    double *ref = HNEW(double, (size_t)n * H);
    tk_fill(y, (size_t)entries * H, 1.0f);
    tk_fill(w, entries, 1.0f);
    tk_fill(sh, (size_t)n * H, 1.0f);
    tk_fill(sl, n, 3.0f);
    for (int i = 0; i < entries; i++) entry[i] = i; /* then shuffled: entries are grouped by expert */
    for (int i = entries - 1; i > 0; i--) {
        const int j = (int)(tk_next() % (uint64_t)(i + 1)), tmp = entry[i];
        entry[i] = entry[j];
        entry[j] = tmp;
    }
    for (int t = 0; t < n; t++)
        for (int d = 0; d < H; d++) {
            double acc = 0.0;
            for (int j = 0; j < K; j++) {
                const int e = entry[t * K + j];
                acc += (double)w[e] * y[(size_t)e * H + d];
            }
            if (with_shared) acc += (with_logit ? 1.0 / (1.0 + exp(-(double)sl[t])) : 1.0) * sh[(size_t)t * H + d];
            ref[(size_t)t * H + d] = acc;
        }
    float *dy = dput(&a, y, (size_t)entries * H * 4), *dw = dput(&a, w, (size_t)entries * 4),
          *dsh = dput(&a, sh, (size_t)n * H * 4), *dsl = dput(&a, sl, (size_t)n * 4), *dout = dpoison(&a, (size_t)n * H * 4);
    int *de = dput(&a, entry, (size_t)entries * sizeof(int));
    if (!a.failed)
        cuk_moe_combine(g_stream, dout, dy, de, dw, n, K, H, with_shared ? dsh : NULL, with_logit ? dsl : NULL);
    if (launched(&a, "cuk_moe_combine") && dget(&a, got, dout, (size_t)n * H * 4))
        tk_check(tk_rel_d(got, ref, (size_t)n * H), 1e-5, what);
    ar_end(&a, what);
    free(y);
    free(w);
    free(sh);
    free(sl);
    free(got);
    free(entry);
    free(ref);
}

static void test_moe(void) {
    for (int rn = 0; rn < 2; rn++) {
        check_route(5, 16, 4, rn, 0);
        check_route(5, 512, 10, rn, 0);
        check_route(5, 16, 4, rn, 1);
        check_route(5, 512, 10, rn, 1);
        check_route(3, 100, 6, rn, 0);
    }
    check_route(64, 128, 8, 1, 0);
    check_route(2, 1024, 8, 1, 0);
    check_combine(4, 3, 300, 1, 1);
    check_combine(4, 3, 300, 1, 0);
    check_combine(4, 3, 300, 0, 0);
    check_combine(1, 10, 2048, 1, 1);
}

/* ---- a decode bandwidth probe (informational) ------------------------------------------- */

static void perf_probe(void) {
    arena a = {0};
    const int rows = 8192, cols = 4096;
    tmat m;
    tmat_make(&m, &a, FM_DTYPE_U32, 4, 64, rows, cols, 0, 1.0f);
    const size_t wbytes = fm_quant_weight_bytes(rows, cols, 4) + 2 * fm_quant_scales_bytes(rows, cols, 64);
    float *x = HNEW(float, cols);
    tk_fill(x, cols, 1.0f);
    float *dx = dput(&a, x, (size_t)cols * 4), *dy = dalloc(&a, (size_t)rows * 4);
    const size_t cbytes = 256u << 20;
    void *src = dalloc(&a, cbytes), *dst = dalloc(&a, cbytes);
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (!a.failed && (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)) a.failed = 1;
    if (!a.failed) {
        float ms_copy = 0.0f, ms_mm = 0.0f;
        const int reps = 20;
        cudaMemcpyAsync(dst, src, cbytes, cudaMemcpyDeviceToDevice, g_stream);
        cudaEventRecord(e0, g_stream);
        for (int i = 0; i < reps; i++) cudaMemcpyAsync(dst, src, cbytes, cudaMemcpyDeviceToDevice, g_stream);
        cudaEventRecord(e1, g_stream);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms_copy, e0, e1);
        cuk_matmul(g_stream, dy, dx, 1, &m.d);
        cudaEventRecord(e0, g_stream);
        for (int i = 0; i < reps * 8; i++) cuk_matmul(g_stream, dy, dx, 1, &m.d);
        cudaEventRecord(e1, g_stream);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms_mm, e0, e1);
        if (launched(&a, "perf probe") && ms_copy > 0.0f && ms_mm > 0.0f) {
            const double copy_bw = 2.0 * (double)cbytes * reps / (ms_copy * 1e-3); /* read + write */
            const double mm_bw = (double)wbytes * reps * 8 / (ms_mm * 1e-3);
            printf("# perf: d2d copy %.0f GB/s (read+write); q4/g64 decode matmul %dx%d: %.1f us, %.0f GB/s of weights "
                   "= %.0f%% of copy\n",
                   copy_bw / 1e9, rows, cols, ms_mm * 1e3 / (reps * 8), mm_bw / 1e9, 100.0 * mm_bw / copy_bw);
        }
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    for (int i = 0; i < a.n; i++) cudaFree(a.p[i]);
    if (a.failed) printf("# perf: probe skipped (%s)\n", a.detail[0] ? a.detail : "cuda event");
    cudaGetLastError(); /* the probe never fails the run */
    tmat_free(&m);
    free(x);
}

int main(void) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        printf("cuda kernels: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 77;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("# device: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    e = cudaStreamCreate(&g_stream);
    if (e != cudaSuccess) {
        printf("not ok - cudaStreamCreate: %s\n", cudaGetErrorString(e));
        printf("cuda kernels: 0 passed, 1 failed\n");
        return 1;
    }
    if (cpu_set_isa("scalar") != 0) printf("# cpu_set_isa(\"scalar\") failed; reference uses %s\n", cpu_isa_name());

    test_matmul();
    test_mat_rows();
    test_ffn();
    test_norm_add();
    test_attention();
    test_deltanet();
    test_moe();
    perf_probe();

    cudaStreamDestroy(g_stream);
    printf("cuda kernels: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

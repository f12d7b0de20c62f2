/* Unit tests of the CPU kernels and of the three blocks (full attention, Gated
 * DeltaNet, sparse MoE), each against a double-precision reference written in
 * this file from the math alone, on random non-zero data (fixed seeds).
 *
 * Tolerances (relative L2 = ‖got − ref‖ / ‖ref‖; "max rel" = max_i |got_i −
 * ref_i| / max(|ref_i|, rms(ref)), so that entries near zero count against
 * the scale of the row rather than against themselves):
 *   - bf16 / f16 → f32: bit-exact (NaN: any NaN of the same sign)
 *   - cpu_dot, cpu_dot_row: |got − ref| / |ref| ≤ 1e-5
 *   - cpu_matmul: relative L2 ≤ 1e-6, max rel ≤ 1e-5; T = 1 and T > 1 paths
 *     agree per row to relative L2 ≤ 1e-6
 *   - cpu_rmsnorm, cpu_softmax, cpu_rope: relative L2 ≤ 1e-6; softmax sums to
 *     1 within 1e-6
 *   - cpu_sigmoid / cpu_silu / cpu_softplus: |got − ref| ≤ 1e-6·|ref| + 1e-37
 *     (results below FLT_MIN may flush to zero)
 *   - attention_forward, deltanet_forward, moe_forward: relative L2 ≤ 1e-5;
 *     chunked calls (prefill then one-token decode steps) agree with one
 *     call to relative L2 ≤ 1e-6 */
#include "test_util.h"

#include "backend/cpu/kernels.h"
#include "model/session.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static float *alloc_f(size_t n) { return test_keep(malloc((n ? n : 1) * sizeof(float))); }
static double *alloc_d(size_t n) { return test_keep(calloc(n ? n : 1, sizeof(double))); }

/* Uniform in [-scale, scale), never exactly zero. */
static float rnd(uint64_t *seed, float scale) {
    float x;
    do x = rand_uniform(seed);
    while (x == 0.0f);
    return x * scale;
}

static float *rand_vec(size_t n, float scale, uint64_t *seed) {
    float *x = alloc_f(n);
    for (size_t i = 0; i < n; i++) x[i] = rnd(seed, scale);
    return x;
}

static uint32_t f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* Reference decodings by arithmetic (no bit manipulation). */
static float ref_f16(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24); /* subnormal: m · 2^-14 · 2^-10 */
    else
        v = ldexp(1024 + m, e - 15 - 10);
    return (float)(s ? -v : v);
}

static float ref_bf16(uint16_t h) {
    const int s = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
    double v;
    if (e == 0xff)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -126 - 7);
    else
        v = ldexp(128 + m, e - 127 - 7);
    return (float)(s ? -v : v);
}

/* float → bf16 / f16, round to nearest even (finite inputs). */
static uint16_t round_to_bf16(float x) {
    uint32_t b = f32_bits(x);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

static uint16_t round_to_f16(float x) {
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    const double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7c00;
    if (a < ldexp(1, -14)) return sign | (uint16_t)nearbyint(ldexp(a, 24)); /* 1024 carries into exp 1 */
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e) */
    int E = e - 1;
    double q = nearbyint(ldexp(a, 10 - E)); /* in [1024, 2048] */
    if (q == 2048.0) {
        q = 1024.0;
        E++;
    }
    if (E > 15) return sign | 0x7c00;
    return sign | (uint16_t)((E + 15) << 10) | (uint16_t)(q - 1024.0);
}

/* A weight matrix in one dtype plus its exact float32 values for the references. */
typedef struct {
    fm_mat m;
    float *f; /* [rows, cols] */
} tmat;

static tmat new_mat(int rows, int cols, fm_dtype dt, float scale, uint64_t *seed) {
    tmat t = {.m = {.dtype = dt, .rows = rows, .cols = cols}};
    const size_t n = (size_t)rows * cols;
    t.f = alloc_f(n);
    if (dt == FM_DTYPE_F32) {
        for (size_t i = 0; i < n; i++) t.f[i] = rnd(seed, scale);
        t.m.data = t.f;
        return t;
    }
    uint16_t *raw = test_keep(malloc((n ? n : 1) * sizeof *raw));
    for (size_t i = 0; i < n; i++) {
        const float x = rnd(seed, scale);
        raw[i] = dt == FM_DTYPE_BF16 ? round_to_bf16(x) : round_to_f16(x);
        t.f[i] = dt == FM_DTYPE_BF16 ? ref_bf16(raw[i]) : ref_f16(raw[i]);
    }
    t.m.data = raw;
    return t;
}

/* An uninitialised matrix to assemble from rows of others. */
static tmat empty_mat(int rows, int cols, fm_dtype dt) {
    tmat t = {.m = {.dtype = dt, .rows = rows, .cols = cols}};
    t.f = alloc_f((size_t)rows * cols);
    t.m.data = dt == FM_DTYPE_F32 ? (void *)t.f : test_keep(malloc((size_t)rows * cols * fm_dtype_size(dt)));
    return t;
}

static void copy_row(tmat *dst, int dr, const tmat *src, int sr) {
    const size_t cols = (size_t)src->m.cols, es = fm_dtype_size(src->m.dtype);
    memcpy(dst->f + dr * cols, src->f + sr * cols, cols * sizeof(float));
    if (src->m.dtype != FM_DTYPE_F32)
        memcpy((char *)dst->m.data + dr * cols * es, (const char *)src->m.data + sr * cols * es, cols * es);
}

static const char *dt_name(fm_dtype dt) { return fm_dtype_name(dt); }

/* y = W·x in double. */
static void ref_mv(double *y, const tmat *W, const double *x) {
    for (int r = 0; r < W->m.rows; r++) {
        const float *w = W->f + (size_t)r * W->m.cols;
        double s = 0;
        for (int c = 0; c < W->m.cols; c++) s += (double)w[c] * x[c];
        y[r] = s;
    }
}

static void to_double(double *d, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
static double ref_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static int has_nan(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 1;
    return 0;
}

/* Prints the report and checks relative L2 (and optionally max rel) against a double reference. */
static void check(const char *label, const float *got, const double *want, size_t n, double tol_l2, double tol_max) {
    float *wf = malloc(n * sizeof *wf);
    double ss = 0, maxrel = 0;
    for (size_t i = 0; i < n; i++) {
        wf[i] = (float)want[i];
        ss += want[i] * want[i];
    }
    const double rms = sqrt(ss / (double)n);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), rms);
        if (d > maxrel || isnan(d)) maxrel = d;
    }
    char buf[160];
    snprintf(buf, sizeof buf, "%s (tol %.0e)", label, tol_l2);
    report(buf, got, wf, n);
    const double e = rel_l2(got, wf, n);
    free(wf);
    if (tol_max > 0) printf("  %-40s max rel %.3e (tol %.0e)\n", "", maxrel, tol_max);
    if (has_nan(got, n)) fail_msg("%s: non-finite output", label);
    if (!(e <= tol_l2)) fail_msg("%s: relative L2 %.3e > %.0e", label, e, tol_l2);
    if (tol_max > 0 && !(maxrel <= tol_max)) fail_msg("%s: max rel %.3e > %.0e", label, maxrel, tol_max);
}

/* got vs want, both float (path-agreement checks). */
static void check_same(const char *label, const float *got, const float *want, size_t n, double tol) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s (tol %.0e)", label, tol);
    report(buf, got, want, n);
    const double e = rel_l2(got, want, n);
    if (has_nan(got, n)) fail_msg("%s: non-finite output", label);
    if (!(e <= tol)) fail_msg("%s: relative L2 %.3e > %.0e", label, e, tol);
}

/* ---- dtype conversions --------------------------------------------------- */

static void test_f16_known(void **state) {
    (void)state;
    static const struct { uint16_t h; uint32_t bits; } cases[] = {
        {0x0000, 0x00000000}, /* +0 */
        {0x8000, 0x80000000}, /* -0 */
        {0x3c00, 0x3f800000}, /* 1 */
        {0xc000, 0xc0000000}, /* -2 */
        {0x3555, 0x3eaaa000}, /* 0.333251953125 */
        {0x7bff, 0x477fe000}, /* 65504, largest finite */
        {0x0400, 0x38800000}, /* 2^-14, smallest normal */
        {0x0001, 0x33800000}, /* 2^-24, smallest subnormal */
        {0x8001, 0xb3800000}, /* -2^-24 */
        {0x0200, 0x38000000}, /* 2^-15 */
        {0x03ff, 0x387fc000}, /* largest subnormal 1023·2^-24 */
        {0x0155, 0x37aa8000}, /* subnormal 341·2^-24 = 1.33203125·2^-16 */
        {0x7c00, 0x7f800000}, /* +inf */
        {0xfc00, 0xff800000}, /* -inf */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const float got = fm_f16_to_f32(cases[i].h);
        if (f32_bits(got) != cases[i].bits)
            fail_msg("f16 %04x → %08x, want %08x", cases[i].h, f32_bits(got), cases[i].bits);
        if (f32_bits(ref_f16(cases[i].h)) != cases[i].bits) fail_msg("test reference wrong for %04x", cases[i].h);
    }
    assert_true(fm_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(fm_f16_to_f32(0x0001) == (float)ldexp(1, -24));
    static const uint16_t nans[] = {0x7e00, 0x7c01, 0x7fff, 0xfe00, 0xfc01};
    for (size_t i = 0; i < sizeof nans / sizeof *nans; i++) {
        const float got = fm_f16_to_f32(nans[i]);
        assert_true(isnan(got));
        assert_int_equal(!!signbit(got), nans[i] >> 15);
    }
    printf("  f16 known values: %zu exact, %zu NaNs\n", sizeof cases / sizeof *cases, sizeof nans / sizeof *nans);
}

static void test_bf16_known(void **state) {
    (void)state;
    static const struct { uint16_t h; uint32_t bits; } cases[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, {0x3f80, 0x3f800000}, {0xc049, 0xc0490000},
        {0x7f7f, 0x7f7f0000}, /* largest finite */
        {0x0080, 0x00800000}, /* FLT_MIN */
        {0x0001, 0x00010000}, /* f32 subnormal */
        {0x807f, 0x807f0000}, {0x7f80, 0x7f800000}, {0xff80, 0xff800000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const float got = fm_bf16_to_f32(cases[i].h);
        if (f32_bits(got) != cases[i].bits)
            fail_msg("bf16 %04x → %08x, want %08x", cases[i].h, f32_bits(got), cases[i].bits);
        if (f32_bits(ref_bf16(cases[i].h)) != cases[i].bits) fail_msg("test reference wrong for %04x", cases[i].h);
    }
    assert_true(fm_bf16_to_f32(0xc049) == -3.140625f);
    assert_true(isnan(fm_bf16_to_f32(0x7fc0)) && isnan(fm_bf16_to_f32(0x7f81)) && isnan(fm_bf16_to_f32(0xffc0)));
    assert_true(signbit(fm_bf16_to_f32(0xffc0)));
    printf("  bf16 known values: %zu exact, 3 NaNs\n", sizeof cases / sizeof *cases);
}

/* All 65536 patterns: scalar and bulk conversion equal the arithmetic
 * reference bit for bit, and rounding back gives the pattern again. */
static void test_all_16bit_patterns(void **state) {
    (void)state;
    uint16_t *src = test_keep(malloc(65536 * sizeof *src));
    float *bulk = alloc_f(65536);
    for (int i = 0; i < 65536; i++) src[i] = (uint16_t)i;
    for (int pass = 0; pass < 2; pass++) {
        const fm_dtype dt = pass ? FM_DTYPE_BF16 : FM_DTYPE_F16;
        fm_dtype_to_f32(bulk, src, dt, 65536);
        int n_nan = 0, n_sub = 0;
        for (int i = 0; i < 65536; i++) {
            const uint16_t h = (uint16_t)i;
            const float got = pass ? fm_bf16_to_f32(h) : fm_f16_to_f32(h);
            const float want = pass ? ref_bf16(h) : ref_f16(h);
            if (f32_bits(bulk[i]) != f32_bits(got))
                fail_msg("%s %04x: bulk %08x, scalar %08x", dt_name(dt), h, f32_bits(bulk[i]), f32_bits(got));
            if (isnan(want)) {
                n_nan++;
                if (!isnan(got) || !!signbit(got) != (h >> 15))
                    fail_msg("%s %04x → %08x, want NaN of sign %d", dt_name(dt), h, f32_bits(got), h >> 15);
                continue;
            }
            if (f32_bits(got) != f32_bits(want))
                fail_msg("%s %04x → %08x (%.9g), want %08x (%.9g)", dt_name(dt), h, f32_bits(got), got,
                         f32_bits(want), want);
            const uint16_t back = pass ? round_to_bf16(got) : round_to_f16(got);
            if (back != h) fail_msg("%s %04x → %.9g → %04x", dt_name(dt), h, got, back);
            n_sub += (pass ? (h & 0x7f80) : (h & 0x7c00)) == 0 && (h & 0x7fff) != 0;
        }
        printf("  %-4s all 65536 patterns bit-exact (%d NaNs, %d subnormals), round trip exact\n", dt_name(dt),
               n_nan, n_sub);
    }
    /* F32 is a copy; n = 0 writes nothing. */
    uint64_t seed = 0x1234567u;
    float *x = rand_vec(1001, 3.0f, &seed), *y = alloc_f(1001);
    fm_dtype_to_f32(y, x, FM_DTYPE_F32, 1001);
    assert_memory_equal(x, y, 1001 * sizeof *x);
    y[0] = 42.0f;
    fm_dtype_to_f32(y, src, FM_DTYPE_F16, 0);
    fm_dtype_to_f32(y, src, FM_DTYPE_BF16, 0);
    fm_dtype_to_f32(y, x, FM_DTYPE_F32, 0);
    assert_true(y[0] == 42.0f);
    /* An odd offset and length. */
    fm_dtype_to_f32(y, src + 0x3c01, FM_DTYPE_F16, 7);
    for (int i = 0; i < 7; i++) assert_true(f32_bits(y[i]) == f32_bits(ref_f16((uint16_t)(0x3c01 + i))));
    assert_int_equal(fm_dtype_size(FM_DTYPE_F16), 2);
    assert_int_equal(fm_dtype_size(FM_DTYPE_BF16), 2);
    assert_int_equal(fm_dtype_size(FM_DTYPE_F32), 4);
    test_free_kept();
}

/* ---- dot products -------------------------------------------------------- */

static const int dot_lengths[] = {1, 15, 16, 17, 100, 4096};

static void check_scalar(const char *label, float got, double want, double tol) {
    const float wf = (float)want;
    char buf[160];
    snprintf(buf, sizeof buf, "%s (tol %.0e)", label, tol);
    report(buf, &got, &wf, 1);
    const double e = fabs((double)got - want) / fabs(want);
    if (!(e <= tol)) fail_msg("%s: got %.9g, want %.12g, relative error %.3e > %.0e", label, got, want, e, tol);
}

static void test_dot(void **state) {
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (size_t li = 0; li < sizeof dot_lengths / sizeof *dot_lengths; li++) {
        const int n = dot_lengths[li];
        float *a = rand_vec((size_t)n, 1.0f, &seed), *b = rand_vec((size_t)n, 2.0f, &seed);
        double want = 0;
        for (int i = 0; i < n; i++) want += (double)a[i] * b[i];
        char label[64];
        snprintf(label, sizeof label, "cpu_dot n=%d", n);
        check_scalar(label, cpu_dot(a, b, n), want, 1e-5);
        /* Symmetric in its arguments. */
        assert_true(cpu_dot(a, b, n) == cpu_dot(b, a, n));
    }
    test_free_kept();
}

static void test_dot_row(void **state) {
    (void)state;
    uint64_t seed = 0x51ed270b2f3a9c4du;
    const fm_dtype dts[] = {FM_DTYPE_F32, FM_DTYPE_BF16, FM_DTYPE_F16};
    for (size_t di = 0; di < 3; di++)
        for (size_t li = 0; li < sizeof dot_lengths / sizeof *dot_lengths; li++) {
            const int n = dot_lengths[li];
            tmat W = new_mat(3, n, dts[di], 1.0f, &seed);
            float *x = rand_vec((size_t)n, 1.0f, &seed);
            for (int row = 0; row < 3; row += 2) {
                double want = 0;
                for (int i = 0; i < n; i++) want += (double)W.f[(size_t)row * n + i] * x[i];
                char label[64];
                snprintf(label, sizeof label, "cpu_dot_row %s n=%d row %d", dt_name(dts[di]), n, row);
                check_scalar(label, cpu_dot_row(&W.m, row, x), want, 1e-5);
            }
        }
    test_free_kept();
}

/* ---- matmul -------------------------------------------------------------- */

static void test_matmul(void **state) {
    (void)state;
    static const int shapes[][2] = {{37, 130}, {256, 512}, {1, 17}, {64, 48}, {16, 16}};
    static const int Ts[] = {1, 3, 64};
    const fm_dtype dts[] = {FM_DTYPE_F32, FM_DTYPE_BF16, FM_DTYPE_F16};
    uint64_t seed = 0x2545f4914f6cdd1du;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (size_t di = 0; di < 3; di++) {
            const int rows = shapes[si][0], cols = shapes[si][1];
            tmat W = new_mat(rows, cols, dts[di], 1.0f, &seed);
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                const int T = Ts[ti];
                const size_t ny = (size_t)T * rows;
                float *x = rand_vec((size_t)T * cols, 1.0f, &seed);
                float *y = alloc_f(ny + 8), *y1 = alloc_f(rows + 8);
                double *want = alloc_d(ny), *xd = alloc_d((size_t)cols);
                for (int i = 0; i < 8; i++) y[ny + i] = y1[rows + i] = 1234.5f; /* guards */
                cpu_matmul(y, x, T, &W.m);
                for (int t = 0; t < T; t++) {
                    to_double(xd, x + (size_t)t * cols, (size_t)cols);
                    ref_mv(want + (size_t)t * rows, &W, xd);
                }
                char label[96];
                snprintf(label, sizeof label, "cpu_matmul %s [%dx%d] T=%d", dt_name(dts[di]), rows, cols, T);
                check(label, y, want, ny, 1e-6, 1e-5);
                /* Each row through the T = 1 path equals the batched row. */
                double worst = 0;
                for (int t = 0; T > 1 && t < T; t++) {
                    cpu_matmul(y1, x + (size_t)t * cols, 1, &W.m);
                    const double e = rel_l2(y1, y + (size_t)t * rows, (size_t)rows);
                    worst = e > worst ? e : worst;
                }
                if (T > 1) {
                    printf("  %-40s T=1 vs T=%d rows: worst rel_l2 %.3e (tol 1e-06)\n", "", T, worst);
                    if (!(worst <= 1e-6)) fail_msg("%s: T=1 and batched rows differ by %.3e", label, worst);
                }
                for (int i = 0; i < 8; i++) assert_true(y[ny + i] == 1234.5f && y1[rows + i] == 1234.5f);
            }
        }
    test_free_kept();
}

/* ---- norms, softmax, rope, activations ---------------------------------- */

static void ref_rmsnorm(double *y, const float *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0);
}

static void test_rmsnorm(void **state) {
    (void)state;
    static const int ns[] = {1, 7, 16, 64, 1000, 4096};
    static const float scales[] = {1.0f, 30.0f, 1e-4f}; /* 1e-4: eps (1e-6) matters */
    uint64_t seed = 0xdeadbeefcafef00du;
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (size_t si = 0; si < 3; si++)
            for (int with_w = 0; with_w < 2; with_w++) {
                const int n = ns[ni];
                const float eps = 1e-6f;
                float *x = rand_vec((size_t)n, scales[si], &seed), *w = with_w ? rand_vec((size_t)n, 2.0f, &seed) : NULL;
                float *y = alloc_f((size_t)n), *inplace = alloc_f((size_t)n);
                double *want = alloc_d((size_t)n);
                ref_rmsnorm(want, x, w, n, eps);
                cpu_rmsnorm(y, x, w, n, eps);
                memcpy(inplace, x, (size_t)n * sizeof *x);
                cpu_rmsnorm(inplace, inplace, w, n, eps);
                char label[96];
                snprintf(label, sizeof label, "cpu_rmsnorm n=%d scale %g %s", n, scales[si], with_w ? "w" : "no w");
                check(label, y, want, (size_t)n, 1e-6, 0);
                assert_memory_equal(y, inplace, (size_t)n * sizeof *y);
            }
    test_free_kept();
}

static void ref_softmax(double *p, const float *x, int n) {
    double max = x[0], sum = 0;
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++) sum += (p[i] = exp((double)x[i] - max));
    for (int i = 0; i < n; i++) p[i] /= sum;
}

static void softmax_case(const char *label, float *x, int n) {
    double *want = alloc_d((size_t)n);
    ref_softmax(want, x, n);
    cpu_softmax(x, n);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    check(label, x, want, (size_t)n, 1e-6, 0);
    printf("  %-40s sum - 1 = %.3e (tol 1e-06)\n", "", sum - 1.0);
    if (!(fabs(sum - 1.0) <= 1e-6)) fail_msg("%s: sums to %.9g", label, sum);
}

static void test_softmax(void **state) {
    (void)state;
    static const int ns[] = {1, 5, 16, 17, 100, 1000};
    uint64_t seed = 0x0123456789abcdefu;
    char label[96];
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        const int n = ns[ni];
        snprintf(label, sizeof label, "cpu_softmax n=%d in [-5, 5)", n);
        softmax_case(label, rand_vec((size_t)n, 5.0f, &seed), n);
        /* Large inputs: 1000 + noise, and a spread of ±1000 (no overflow). */
        float *x = rand_vec((size_t)n, 3.0f, &seed);
        for (int i = 0; i < n; i++) x[i] += 1000.0f;
        snprintf(label, sizeof label, "cpu_softmax n=%d 1000 + [-3, 3)", n);
        softmax_case(label, x, n);
        x = rand_vec((size_t)n, 1000.0f, &seed);
        snprintf(label, sizeof label, "cpu_softmax n=%d in [-1000, 1000)", n);
        softmax_case(label, x, n);
    }
    float one = 1000.0f;
    cpu_softmax(&one, 1);
    assert_true(one == 1.0f);
    float eq[10];
    for (int i = 0; i < 10; i++) eq[i] = -7.25f;
    cpu_softmax(eq, 10);
    for (int i = 0; i < 10; i++) assert_true(fabs(eq[i] - 0.1) <= 1e-7);
    float big[3] = {1000.0f, 999.0f, 998.0f};
    cpu_softmax(big, 3);
    const double e0 = 1.0 / (1.0 + exp(-1.0) + exp(-2.0));
    printf("  cpu_softmax {1000, 999, 998} → %.7f %.7f %.7f\n", big[0], big[1], big[2]);
    assert_true(fabs(big[0] - e0) <= 1e-6 && fabs(big[1] - e0 * exp(-1.0)) <= 1e-6);
    test_free_kept();
}

static void test_rope(void **state) {
    (void)state;
    static const int halves[] = {1, 4, 32, 64};
    static const int positions[] = {0, 1, 7, 1000, 100000};
    uint64_t seed = 0x7777777711111111u;
    for (size_t hi = 0; hi < sizeof halves / sizeof *halves; hi++)
        for (size_t pi = 0; pi < sizeof positions / sizeof *positions; pi++) {
            const int half = halves[hi], extra = 6, n = 2 * half + extra; /* partial rotary: tail untouched */
            const double p = positions[pi];
            float *x = rand_vec((size_t)n, 2.0f, &seed), *orig = alloc_f((size_t)n);
            float *cos_t = alloc_f((size_t)half), *sin_t = alloc_f((size_t)half);
            double *want = alloc_d((size_t)n);
            memcpy(orig, x, (size_t)n * sizeof *x);
            to_double(want, x, (size_t)n);
            for (int i = 0; i < half; i++) {
                const double theta = p * pow(10000.0, -2.0 * i / (2.0 * half));
                cos_t[i] = (float)cos(theta);
                sin_t[i] = (float)sin(theta);
                /* rotate the pair (i, i + half) by theta */
                const double a = orig[i], b = orig[i + half];
                want[i] = a * cos(theta) - b * sin(theta);
                want[i + half] = a * sin(theta) + b * cos(theta);
            }
            cpu_rope(x, half, cos_t, sin_t);
            char label[96];
            snprintf(label, sizeof label, "cpu_rope half=%d pos %d", half, positions[pi]);
            check(label, x, want, (size_t)n, 1e-6, 0);
            assert_memory_equal(x + 2 * half, orig + 2 * half, (size_t)extra * sizeof *x);
            if (positions[pi] == 0) assert_memory_equal(x, orig, (size_t)n * sizeof *x);
        }
    test_free_kept();
}

static void test_activations(void **state) {
    (void)state;
    static const float fixed[] = {-1.0f,  0.5f,   1.0f,  -1e-3f, 1e-3f,  -10.0f, 10.0f, -20.0f, -50.0f, -87.0f,
                                  -88.0f, -100.0f, -1000.0f, 19.99f, 20.0f, 20.5f, 50.0f, 88.0f, 100.0f, 1000.0f};
    const int nf = sizeof fixed / sizeof *fixed, n = nf + 2 + 2000;
    uint64_t seed = 0xabcdef0123456789u;
    float *x = alloc_f((size_t)n);
    memcpy(x, fixed, sizeof fixed);
    x[nf] = nextafterf(20.0f, INFINITY);
    x[nf + 1] = nextafterf(20.0f, 0.0f);
    for (int i = nf + 2; i < n; i++) x[i] = rnd(&seed, 30.0f);
    const char *names[] = {"cpu_sigmoid", "cpu_silu", "cpu_softplus"};
    for (int f = 0; f < 3; f++) {
        float *got = alloc_f((size_t)n);
        double *want = alloc_d((size_t)n), worst = 0;
        int worst_i = 0;
        for (int i = 0; i < n; i++) {
            got[i] = f == 0 ? cpu_sigmoid(x[i]) : f == 1 ? cpu_silu(x[i]) : cpu_softplus(x[i]);
            want[i] = f == 0 ? ref_sigmoid(x[i]) : f == 1 ? ref_silu(x[i]) : ref_softplus(x[i]);
            const double err = fabs((double)got[i] - want[i]), bound = 1e-6 * fabs(want[i]) + 1e-37;
            if (!isfinite(got[i])) fail_msg("%s(%.9g) = %g", names[f], x[i], got[i]);
            if (err / bound > worst) {
                worst = err / bound;
                worst_i = i;
            }
            if (!(err <= bound))
                fail_msg("%s(%.9g) = %.9g, want %.12g (|diff| %.3e > %.3e)", names[f], x[i], got[i], want[i], err,
                         bound);
        }
        float *wf = alloc_f((size_t)n);
        for (int i = 0; i < n; i++) wf[i] = (float)want[i];
        char label[96];
        snprintf(label, sizeof label, "%s over %d inputs", names[f], n);
        report(label, got, wf, (size_t)n);
        printf("  %-40s worst |diff|/(1e-6|ref|+1e-37) = %.3f at x = %.9g\n", "", worst, x[worst_i]);
    }
    /* Ranges and the PyTorch threshold: softplus(x) = x exactly above 20. */
    for (int i = 0; i < n; i++) {
        assert_true(cpu_sigmoid(x[i]) >= 0.0f && cpu_sigmoid(x[i]) <= 1.0f);
        assert_true(cpu_softplus(x[i]) >= 0.0f);
        if (x[i] > 20.0f) assert_true(cpu_softplus(x[i]) == x[i]);
    }
    assert_true(cpu_softplus(-1000.0f) == 0.0f && cpu_softplus(-100.0f) < 1e-40f);
    assert_true(cpu_softplus(nextafterf(20.0f, 0.0f)) <= cpu_softplus(20.0f));
    assert_true(cpu_softplus(20.0f) <= cpu_softplus(nextafterf(20.0f, INFINITY)));
    assert_true(cpu_sigmoid(1000.0f) == 1.0f && cpu_sigmoid(-1000.0f) == 0.0f);
    assert_true(cpu_silu(1000.0f) == 1000.0f && cpu_silu(-1000.0f) == 0.0f);
    printf("  softplus(20) = %.9g, softplus(20⁺) = %.9g, softplus(-100) = %g\n", cpu_softplus(20.0f),
           cpu_softplus(nextafterf(20.0f, INFINITY)), cpu_softplus(-100.0f));
    test_free_kept();
}

/* ---- blocks on a hand-built one-layer model ----------------------------- */

typedef struct {
    fm_model m;
    fm_layer l;
    uint8_t full, moe;
} tiny_model;

static void tiny_init(tiny_model *t, int H) {
    memset(t, 0, sizeof *t);
    t->m.layers = &t->l;
    fm_config *c = &t->m.cfg;
    c->n_layers = 1;
    c->hidden_size = H;
    c->vocab_size = 1;
    c->rms_norm_eps = 1e-6f;
    c->max_position_embeddings = 4096;
    c->layer_full_attention = &t->full;
    c->layer_moe = &t->moe;
}

static fm_session *tiny_session(tiny_model *t) {
    fm_session_options o = {.max_context = 4096};
    fm_session *s = NULL;
    if (fm_session_new(&t->m, &o, &s) != FM_OK) fail_msg("fm_session_new: %s", fm_last_error());
    return s;
}

typedef void (*block_fn)(fm_session *, int, int);

/* Feeds X[T, H] through `fn` in the given chunks (0-terminated; NULL: one
 * call), advancing s->pos as forward_ubatch does; collects out rows. Scratch is
 * poisoned with NaN before each call so stale reads show. */
static void run_block(fm_session *s, block_fn fn, const float *X, int T, const int *chunks, float *out) {
    const int H = s->model->cfg.hidden_size;
    for (int done = 0, ci = 0; done < T; ci++) {
        const int n = chunks ? chunks[ci] : T;
        assert_true(n > 0 && n <= FM_UBATCH && done + n <= T);
        for (int i = 0; i < 6; i++) memset(s->scratch.big[i], 0xff, s->big_size * sizeof(float));
        memset(s->scratch.out, 0xff, (size_t)FM_UBATCH * H * sizeof(float));
        memcpy(s->scratch.xn, X + (size_t)done * H, (size_t)n * H * sizeof *X);
        fn(s, 0, n);
        memcpy(out + (size_t)done * H, s->scratch.out, (size_t)n * H * sizeof *out);
        s->pos += n;
        done += n;
    }
}

static void moe_block(fm_session *s, int layer, int n) { assert_int_equal(moe_forward(s, layer, n), FM_OK); }

static void chunk_label(char *buf, size_t size, const int *chunks) {
    int off = snprintf(buf, size, "chunks");
    for (int i = 0; chunks[i] && off < (int)size; i++) off += snprintf(buf + off, size - (size_t)off, " %d", chunks[i]);
}

/* ---- full attention ---- */

typedef struct {
    const char *name;
    int gate, qk_norm, nh, nkv, hd, rotary_dim, window, H, T;
    fm_dtype dt;
    int chunks[8];
} attn_case;

static const attn_case attn_cases[] = {
    /* Qwen3.5 / Qwen3-Next style: gate, q/k norm, partial rotary 1/4. */
    {"gate+qknorm rot 8/32", 1, 1, 4, 2, 32, 8, 0, 64, 6, FM_DTYPE_F32, {5, 1}},
    /* Plain GQA, full rotary (Qwen3-MoE / Mixtral style, no q/k norm). */
    {"plain rot 16/16", 0, 0, 4, 2, 16, 16, 0, 48, 9, FM_DTYPE_F32, {4, 1, 1, 3}},
    {"qknorm, no gate, rot 12/24", 0, 1, 4, 2, 24, 12, 0, 64, 7, FM_DTYPE_BF16, {2, 3, 1, 1}},
    {"gate, no qknorm, window 3", 1, 0, 4, 2, 16, 8, 3, 32, 8, FM_DTYPE_F32, {5, 1, 1, 1}},
    {"gate+qknorm, T=64, F16", 1, 1, 4, 2, 32, 16, 0, 64, 64, FM_DTYPE_F16, {63, 1}},
    {"MHA 4/4, gate+qknorm", 1, 1, 4, 4, 16, 8, 0, 32, 5, FM_DTYPE_F32, {3, 2}},
};

typedef struct {
    tmat q, k, v, o;
    float *q_norm, *k_norm, *inv_freq;
} attn_weights;

/* Causal GQA attention in double, from the math. */
static void ref_attention(const attn_case *ac, const attn_weights *W, const float *X, double eps, double *out) {
    const int H = ac->H, T = ac->T, nh = ac->nh, nkv = ac->nkv, hd = ac->hd, half = ac->rotary_dim / 2;
    const int qrows = nh * hd * (ac->gate ? 2 : 1);
    double *x = alloc_d((size_t)H), *qg = alloc_d((size_t)qrows);
    double *Q = alloc_d((size_t)T * nh * hd), *G = alloc_d((size_t)T * nh * hd);
    double *K = alloc_d((size_t)T * nkv * hd), *V = alloc_d((size_t)T * nkv * hd);
    double *att = alloc_d((size_t)nh * hd), *p = alloc_d((size_t)T);

    /* Projections, per-head norm, rotation of (i, i + half) by pos · inv_freq[i]. */
    for (int t = 0; t < T; t++) {
        to_double(x, X + (size_t)t * H, (size_t)H);
        ref_mv(qg, &W->q, x);
        ref_mv(K + (size_t)t * nkv * hd, &W->k, x);
        ref_mv(V + (size_t)t * nkv * hd, &W->v, x);
        for (int h = 0; h < nh; h++)
            for (int d = 0; d < hd; d++) {
                /* q_proj rows per head: [q (hd) | gate (hd)] with a gate, else [q (hd)]. */
                const int base = ac->gate ? h * 2 * hd : h * hd;
                Q[((size_t)t * nh + h) * hd + d] = qg[base + d];
                if (ac->gate) G[((size_t)t * nh + h) * hd + d] = qg[base + hd + d];
            }
        for (int which = 0; which < 2; which++) {
            const int nheads = which ? nkv : nh;
            const float *nw = which ? W->k_norm : W->q_norm;
            for (int h = 0; h < nheads; h++) {
                double *v = (which ? K + (size_t)t * nkv * hd : Q + (size_t)t * nh * hd) + (size_t)h * hd;
                if (ac->qk_norm) {
                    double ms = 0;
                    for (int d = 0; d < hd; d++) ms += v[d] * v[d];
                    const double r = 1.0 / sqrt(ms / hd + eps);
                    for (int d = 0; d < hd; d++) v[d] *= r * nw[d];
                }
                for (int i = 0; i < half; i++) {
                    const double th = (double)t * W->inv_freq[i], a = v[i], b = v[i + half];
                    v[i] = a * cos(th) - b * sin(th);
                    v[i + half] = b * cos(th) + a * sin(th);
                }
            }
        }
    }
    const double scale = 1.0 / sqrt((double)hd);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < nh; h++) {
            const int kvh = h / (nh / nkv), j0 = ac->window > 0 && t - ac->window + 1 > 0 ? t - ac->window + 1 : 0;
            const double *q = Q + ((size_t)t * nh + h) * hd;
            double max = -INFINITY, sum = 0;
            for (int j = j0; j <= t; j++) {
                double s = 0;
                for (int d = 0; d < hd; d++) s += q[d] * K[((size_t)j * nkv + kvh) * hd + d];
                p[j] = s * scale;
                max = fmax(max, p[j]);
            }
            for (int j = j0; j <= t; j++) sum += (p[j] = exp(p[j] - max));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = j0; j <= t; j++) o += p[j] / sum * V[((size_t)j * nkv + kvh) * hd + d];
                if (ac->gate) o *= ref_sigmoid(G[((size_t)t * nh + h) * hd + d]);
                att[h * hd + d] = o;
            }
        }
        ref_mv(out + (size_t)t * H, &W->o, att);
    }
}

/* A session whose KV cache (and whatever else fm_session_eval reserves for
 * attention) holds exactly T positions: max_context = T, and one throwaway
 * fm_session_eval of T tokens through the whole one-layer model (embedding,
 * norms and a small dense MLP set up here), then back to position 0. */
static fm_session *attn_session(tiny_model *tm, int T, uint64_t *seed) {
    const int H = tm->m.cfg.hidden_size, F = 8;
    if (!tm->m.embed.data) {
        tm->m.embed = new_mat(1, H, FM_DTYPE_F32, 1.0f, seed).m;
        tm->l.input_norm = rand_vec((size_t)H, 1.0f, seed);
        tm->l.post_norm = rand_vec((size_t)H, 1.0f, seed);
        tm->m.final_norm = rand_vec((size_t)H, 1.0f, seed);
        tm->m.cfg.dense_ffn = F;
        tm->l.dense = (fm_ffn){.gate = new_mat(F, H, FM_DTYPE_F32, 0.1f, seed).m,
                               .up = new_mat(F, H, FM_DTYPE_F32, 0.1f, seed).m,
                               .down = new_mat(H, F, FM_DTYPE_F32, 0.1f, seed).m};
        tm->m.lm_head = tm->m.embed;
    }
    fm_session_options o = {.max_context = T};
    fm_session *s = NULL;
    if (fm_session_new(&tm->m, &o, &s) != FM_OK) fail_msg("fm_session_new: %s", fm_last_error());
    int32_t *tokens = test_keep(calloc((size_t)T, sizeof *tokens));
    if (fm_session_eval(s, tokens, T, FM_LOGITS_NONE, NULL) != FM_OK) fail_msg("fm_session_eval: %s", fm_last_error());
    assert_int_equal(s->kv_capacity, T);
    assert_non_null(s->k_cache[0]);
    assert_non_null(s->v_cache[0]);
    s->pos = 0;
    return s;
}

static void test_attention(void **state) {
    (void)state;
    uint64_t seed = 0x0badc0ffee15600du;
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof *attn_cases; ci++) {
        const attn_case *ac = &attn_cases[ci];
        const int H = ac->H, T = ac->T, hd = ac->hd;
        tiny_model tm;
        tiny_init(&tm, H);
        fm_config *c = &tm.m.cfg;
        tm.full = 1;
        tm.moe = 0;
        c->n_heads = ac->nh;
        c->n_kv_heads = ac->nkv;
        c->head_dim = hd;
        c->rotary_dim = ac->rotary_dim;
        c->rope_theta = 10000.0;
        c->attn_output_gate = ac->gate;
        c->attn_qk_norm = ac->qk_norm;
        c->sliding_window = ac->window;
        attn_weights W;
        const float ws = 1.5f / sqrtf((float)H);
        W.q = new_mat(ac->nh * hd * (ac->gate ? 2 : 1), H, ac->dt, ws, &seed);
        W.k = new_mat(ac->nkv * hd, H, ac->dt, ws, &seed);
        W.v = new_mat(ac->nkv * hd, H, ac->dt, ws, &seed);
        W.o = new_mat(H, ac->nh * hd, ac->dt, 1.0f / sqrtf((float)(ac->nh * hd)), &seed);
        W.q_norm = ac->qk_norm ? rand_vec((size_t)hd, 2.0f, &seed) : NULL;
        W.k_norm = ac->qk_norm ? rand_vec((size_t)hd, 2.0f, &seed) : NULL;
        W.inv_freq = alloc_f((size_t)ac->rotary_dim / 2);
        for (int i = 0; i < ac->rotary_dim / 2; i++)
            W.inv_freq[i] = (float)pow(10000.0, -2.0 * i / ac->rotary_dim);
        tm.l.q = W.q.m;
        tm.l.k = W.k.m;
        tm.l.v = W.v.m;
        tm.l.o = W.o.m;
        tm.l.q_norm = W.q_norm;
        tm.l.k_norm = W.k_norm;
        tm.m.rope_inv_freq = W.inv_freq;

        float *X = rand_vec((size_t)T * H, 1.0f, &seed);
        double *want = alloc_d((size_t)T * H);
        ref_attention(ac, &W, X, c->rms_norm_eps, want);

        float *one = alloc_f((size_t)T * H), *chunked = alloc_f((size_t)T * H);
        fm_session *s = attn_session(&tm, T, &seed);
        run_block(s, attention_forward, X, T, NULL, one);
        fm_session_free(s);
        s = attn_session(&tm, T, &seed);
        run_block(s, attention_forward, X, T, ac->chunks, chunked);
        fm_session_free(s);

        char label[128], cl[64];
        chunk_label(cl, sizeof cl, ac->chunks);
        printf("  attention %s: nh %d nkv %d hd %d rotary %d H %d T %d %s\n", ac->name, ac->nh, ac->nkv, hd,
               ac->rotary_dim, H, T, dt_name(ac->dt));
        snprintf(label, sizeof label, "attention one call");
        check(label, one, want, (size_t)T * H, 1e-5, 0);
        snprintf(label, sizeof label, "attention %s", cl);
        check(label, chunked, want, (size_t)T * H, 1e-5, 0);
        snprintf(label, sizeof label, "attention last row, %s vs one", cl);
        check_same(label, chunked + (size_t)(T - 1) * H, one + (size_t)(T - 1) * H, (size_t)H, 1e-6);
        snprintf(label, sizeof label, "attention all rows, %s vs one", cl);
        check_same(label, chunked, one, (size_t)T * H, 1e-6);
        test_free_kept();
    }
}

/* ---- Gated DeltaNet ---- */

typedef struct {
    const char *name;
    int nk, nv, dk, dv, K, H, T, fused;
    fm_dtype dt;
    int chunks[8];
    float x_scale; /* input scale; small enough that the l2norm eps (1e-6) matters */
} dn_case;

static const dn_case dn_cases[] = {
    {"split (Qwen3.5), r=3", 2, 6, 32, 24, 4, 64, 6, 0, FM_DTYPE_F32, {5, 1}, 1.0f},
    {"fused qkvz/ba (Qwen3-Next), r=3", 2, 6, 32, 24, 4, 64, 10, 1, FM_DTYPE_F32, {7, 1, 1, 1}, 1.0f},
    {"split, r=1, kernel 2, BF16, T=64", 2, 2, 16, 16, 2, 48, 64, 0, FM_DTYPE_BF16, {3, 1, 60}, 1.0f},
    {"fused, r=2, kernel 3, F16", 2, 4, 8, 12, 3, 32, 9, 1, FM_DTYPE_F16, {1, 1, 1, 6}, 1.0f},
    {"split, r=2, inputs x 1e-2 (eps matters)", 2, 4, 16, 8, 4, 32, 7, 0, FM_DTYPE_F32, {6, 1}, 1e-2f},
};

typedef struct {
    tmat qkv, z, b, a, out;
    float *conv, *neg_exp_a, *dt_bias, *lin_norm;
} dn_weights;

/* The recurrent gated delta rule in double, from the documented math:
 *   mixed = [q | k | v] = W_qkv·x, z = W_z·x, b = W_b·x, a = W_a·x
 *   causal depthwise conv (tap K-1 on the current input, zero history) + SiLU
 *   q ← q / √(Σq² + 1e-6) / √dk, k ← k / √(Σk² + 1e-6) per key head
 *   β = σ(b), g = −exp(A_log)·softplus(a + dt_bias)
 *   per value head h (key head h / r), S [dk, dv] from zero:
 *     S ← e^g (I − β k kᵀ) S + β k vᵀ,  o = Sᵀ q
 *   o ← o / √(mean(o²) + eps) · norm_w · silu(z),  out = W_out·o */
static void ref_deltanet_eps(const dn_case *dc, const dn_weights *W, const float *X, double eps, double l2_eps,
                             double *out) {
    const int H = dc->H, T = dc->T, nk = dc->nk, nv = dc->nv, dk = dc->dk, dv = dc->dv, K = dc->K, r = nv / nk;
    const int key_dim = nk * dk, value_dim = nv * dv, conv_dim = 2 * key_dim + value_dim;
    double *x = alloc_d((size_t)H), *mixed = alloc_d((size_t)T * conv_dim), *cv = alloc_d((size_t)conv_dim);
    double *z = alloc_d((size_t)value_dim), *b = alloc_d((size_t)nv), *a = alloc_d((size_t)nv);
    double *S = alloc_d((size_t)nv * dk * dv), *Snew = alloc_d((size_t)dk * dv), *P = alloc_d((size_t)dk * dk);
    double *o = alloc_d((size_t)value_dim);
    for (int t = 0; t < T; t++) {
        to_double(x, X + (size_t)t * H, (size_t)H);
        ref_mv(mixed + (size_t)t * conv_dim, &W->qkv, x);
    }
    for (int t = 0; t < T; t++) {
        to_double(x, X + (size_t)t * H, (size_t)H);
        ref_mv(z, &W->z, x);
        ref_mv(b, &W->b, x);
        ref_mv(a, &W->a, x);
        for (int ch = 0; ch < conv_dim; ch++) {
            double sum = 0;
            for (int j = 0; j < K; j++) {
                const int src = t - (K - 1) + j;
                if (src >= 0) sum += (double)W->conv[ch * K + j] * mixed[(size_t)src * conv_dim + ch];
            }
            cv[ch] = ref_silu(sum);
        }
        for (int h = 0; h < nk; h++) {
            double *q = cv + h * dk, *k = cv + key_dim + h * dk, qq = 0, kk = 0;
            for (int i = 0; i < dk; i++) {
                qq += q[i] * q[i];
                kk += k[i] * k[i];
            }
            for (int i = 0; i < dk; i++) {
                q[i] /= sqrt(qq + l2_eps) * sqrt((double)dk);
                k[i] /= sqrt(kk + l2_eps);
            }
        }
        for (int h = 0; h < nv; h++) {
            const double beta = ref_sigmoid(b[h]);
            const double g = (double)W->neg_exp_a[h] * ref_softplus(a[h] + (double)W->dt_bias[h]);
            const double *q = cv + (h / r) * dk, *k = cv + key_dim + (h / r) * dk, *v = cv + 2 * key_dim + h * dv;
            double *Sh = S + (size_t)h * dk * dv;
            /* P = I − β k kᵀ; S' = e^g P S + β k vᵀ */
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dk; j++) P[i * dk + j] = (i == j) - beta * k[i] * k[j];
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dv; j++) {
                    double s = 0;
                    for (int m = 0; m < dk; m++) s += P[i * dk + m] * Sh[m * dv + j];
                    Snew[i * dv + j] = exp(g) * s + beta * k[i] * v[j];
                }
            memcpy(Sh, Snew, (size_t)dk * dv * sizeof *Sh);
            for (int j = 0; j < dv; j++) {
                double s = 0;
                for (int i = 0; i < dk; i++) s += Sh[i * dv + j] * q[i];
                o[h * dv + j] = s;
            }
            double ms = 0;
            for (int j = 0; j < dv; j++) ms += o[h * dv + j] * o[h * dv + j];
            const double rn = 1.0 / sqrt(ms / dv + eps);
            for (int j = 0; j < dv; j++) o[h * dv + j] *= rn * W->lin_norm[j] * ref_silu(z[h * dv + j]);
        }
        ref_mv(out + (size_t)t * H, &W->out, o);
    }
}

static void ref_deltanet(const dn_case *dc, const dn_weights *W, const float *X, double eps, double *out) {
    ref_deltanet_eps(dc, W, X, eps, 1e-6, out);
}

static void test_deltanet(void **state) {
    (void)state;
    uint64_t seed = 0x6a09e667f3bcc908u;
    for (size_t ci = 0; ci < sizeof dn_cases / sizeof *dn_cases; ci++) {
        const dn_case *dc = &dn_cases[ci];
        const int H = dc->H, T = dc->T, nk = dc->nk, nv = dc->nv, dk = dc->dk, dv = dc->dv, r = nv / nk;
        const int key_dim = nk * dk, value_dim = nv * dv, conv_dim = 2 * key_dim + value_dim;
        tiny_model tm;
        tiny_init(&tm, H);
        fm_config *c = &tm.m.cfg;
        tm.full = 0;
        c->lin_n_k_heads = nk;
        c->lin_n_v_heads = nv;
        c->lin_k_dim = dk;
        c->lin_v_dim = dv;
        c->lin_conv_kernel = dc->K;
        /* Full-attention fields too, as fm_session_new sizes scratch from them. */
        c->n_heads = 1;
        c->n_kv_heads = 1;
        c->head_dim = 2;
        c->rotary_dim = 2;
        dn_weights W;
        const float ws = 1.5f / sqrtf((float)H);
        W.qkv = new_mat(conv_dim, H, dc->dt, ws, &seed);
        W.z = new_mat(value_dim, H, dc->dt, ws, &seed);
        W.b = new_mat(nv, H, dc->dt, ws, &seed);
        W.a = new_mat(nv, H, dc->dt, ws, &seed);
        W.out = new_mat(H, value_dim, dc->dt, 1.0f / sqrtf((float)value_dim), &seed);
        W.conv = rand_vec((size_t)conv_dim * dc->K, 0.8f, &seed);
        W.neg_exp_a = alloc_f((size_t)nv);
        for (int h = 0; h < nv; h++) W.neg_exp_a[h] = -expf(rnd(&seed, 1.0f)); /* A_log in [-1, 1) */
        W.dt_bias = rand_vec((size_t)nv, 1.0f, &seed);
        W.lin_norm = rand_vec((size_t)dv, 2.0f, &seed);
        tm.l.conv = W.conv;
        tm.l.neg_exp_a = W.neg_exp_a;
        tm.l.dt_bias = W.dt_bias;
        tm.l.lin_norm = W.lin_norm;
        tm.l.out_proj = W.out.m;
        if (!dc->fused) {
            tm.l.in_qkv = W.qkv.m;
            tm.l.in_z = W.z.m;
            tm.l.in_b = W.b.m;
            tm.l.in_a = W.a.m;
        } else {
            /* Qwen3-Next: per key head g, rows [q_g | k_g | v_g | z_g] and [b_g | a_g],
             * with v, z, b, a for the r value heads of g. */
            const int rdv = r * dv, group = 2 * dk + 2 * rdv;
            tmat qkvz = empty_mat(nk * group, H, dc->dt), ba = empty_mat(2 * nv, H, dc->dt);
            for (int g = 0; g < nk; g++) {
                for (int i = 0; i < dk; i++) {
                    copy_row(&qkvz, g * group + i, &W.qkv, g * dk + i);
                    copy_row(&qkvz, g * group + dk + i, &W.qkv, key_dim + g * dk + i);
                }
                for (int i = 0; i < rdv; i++) {
                    copy_row(&qkvz, g * group + 2 * dk + i, &W.qkv, 2 * key_dim + g * rdv + i);
                    copy_row(&qkvz, g * group + 2 * dk + rdv + i, &W.z, g * rdv + i);
                }
                for (int j = 0; j < r; j++) {
                    copy_row(&ba, g * 2 * r + j, &W.b, g * r + j);
                    copy_row(&ba, g * 2 * r + r + j, &W.a, g * r + j);
                }
            }
            tm.l.in_qkvz = qkvz.m;
            tm.l.in_ba = ba.m;
        }

        float *X = rand_vec((size_t)T * H, dc->x_scale, &seed);
        double *want = alloc_d((size_t)T * H);
        ref_deltanet(dc, &W, X, c->rms_norm_eps, want);

        float *one = alloc_f((size_t)T * H), *chunked = alloc_f((size_t)T * H);
        fm_session *s = tiny_session(&tm);
        run_block(s, deltanet_forward, X, T, NULL, one);
        fm_session_free(s);
        s = tiny_session(&tm);
        run_block(s, deltanet_forward, X, T, dc->chunks, chunked);
        fm_session_free(s);

        char label[128], cl[64];
        chunk_label(cl, sizeof cl, dc->chunks);
        printf("  deltanet %s: nk %d nv %d dk %d dv %d kernel %d H %d T %d %s (conv_dim %d)\n", dc->name, nk, nv, dk,
               dv, dc->K, H, T, dt_name(dc->dt), conv_dim);
        if (dc->x_scale < 1.0f) {
            /* The same reference without the l2norm eps must be clearly off, or the case tests nothing. */
            double *no_eps = alloc_d((size_t)T * H);
            float *wf = alloc_f((size_t)T * H);
            ref_deltanet_eps(dc, &W, X, c->rms_norm_eps, 0.0, no_eps);
            for (size_t i = 0; i < (size_t)T * H; i++) wf[i] = (float)want[i];
            float *nf = alloc_f((size_t)T * H);
            for (size_t i = 0; i < (size_t)T * H; i++) nf[i] = (float)no_eps[i];
            printf("  %-40s reference without l2norm eps differs by rel_l2 %.3e\n", "", rel_l2(nf, wf, (size_t)T * H));
            assert_true(rel_l2(nf, wf, (size_t)T * H) > 1e-3);
        }
        check("deltanet one call", one, want, (size_t)T * H, 1e-5, 0);
        snprintf(label, sizeof label, "deltanet %s", cl);
        check(label, chunked, want, (size_t)T * H, 1e-5, 0);
        snprintf(label, sizeof label, "deltanet last row, %s vs one", cl);
        check_same(label, chunked + (size_t)(T - 1) * H, one + (size_t)(T - 1) * H, (size_t)H, 1e-6);
        snprintf(label, sizeof label, "deltanet all rows, %s vs one", cl);
        check_same(label, chunked, one, (size_t)T * H, 1e-6);
        test_free_kept();
    }
}

/* ---- MoE ---- */

typedef struct {
    const char *name;
    int moe, E, K, F, Fs, Fd, renorm, shared, H, T;
    fm_dtype dt;
    int ties; /* router rows 0, 2, 4, ... equal: exact ties, which go to the lower index */
} moe_case;

static const moe_case moe_cases[] = {
    {"Qwen3.5/Next: renorm + shared", 1, 8, 2, 32, 48, 0, 1, 1, 64, 5, FM_DTYPE_F32, 0},
    {"Qwen3-MoE/Mixtral: renorm, no shared, T=64", 1, 8, 2, 24, 0, 0, 1, 0, 64, 64, FM_DTYPE_BF16, 0},
    {"no renorm, shared, E=6 K=3", 1, 6, 3, 16, 40, 0, 0, 1, 48, 17, FM_DTYPE_F16, 0},
    {"dense MLP", 0, 0, 0, 0, 0, 96, 0, 0, 64, 4, FM_DTYPE_F32, 0},
    {"exact router ties, E=6 K=2", 1, 6, 2, 16, 24, 0, 1, 1, 32, 6, FM_DTYPE_F32, 1},
};

typedef struct {
    tmat g, u, d;
} tffn;

static tffn new_ffn(int F, int H, fm_dtype dt, uint64_t *seed) {
    tffn f;
    f.g = new_mat(F, H, dt, 2.0f / sqrtf((float)H), seed);
    f.u = new_mat(F, H, dt, 2.0f / sqrtf((float)H), seed);
    f.d = new_mat(H, F, dt, 2.0f / sqrtf((float)F), seed);
    return f;
}

static fm_ffn ffn_mats(const tffn *f) { return (fm_ffn){.gate = f->g.m, .up = f->u.m, .down = f->d.m}; }

/* y += w · down(silu(gate·x) ⊙ up·x) */
static void ref_ffn_add(double *y, const tffn *f, const double *x, double w) {
    const int F = f->g.m.rows, H = f->d.m.rows;
    double *g = alloc_d((size_t)F), *u = alloc_d((size_t)F), *o = alloc_d((size_t)H);
    ref_mv(g, &f->g, x);
    ref_mv(u, &f->u, x);
    for (int i = 0; i < F; i++) g[i] = ref_silu(g[i]) * u[i];
    ref_mv(o, &f->d, g);
    for (int i = 0; i < H; i++) y[i] += w * o[i];
}

static void test_moe(void **state) {
    (void)state;
    uint64_t seed = 0xbb67ae8584caa73bu;
    for (size_t ci = 0; ci < sizeof moe_cases / sizeof *moe_cases; ci++) {
        const moe_case *mc = &moe_cases[ci];
        const int H = mc->H, T = mc->T, E = mc->E, K = mc->K;
        tiny_model tm;
        tiny_init(&tm, H);
        fm_config *c = &tm.m.cfg;
        tm.full = 1;
        tm.moe = (uint8_t)mc->moe;
        c->n_heads = 1;
        c->n_kv_heads = 1;
        c->head_dim = 2;
        c->rotary_dim = 2;
        c->n_experts = E;
        c->n_experts_used = K;
        c->expert_ffn = mc->F;
        c->shared_ffn = mc->Fs;
        c->dense_ffn = mc->Fd;
        c->router_renormalize = mc->renorm;
        c->has_shared_expert = mc->shared;
        tmat router = {0}, sgate = {0};
        tffn *experts = test_keep(calloc((size_t)(E ? E : 1), sizeof *experts)), shared = {0}, dense = {0};
        fm_ffn *ex = test_keep(calloc((size_t)(E ? E : 1), sizeof *ex));
        if (mc->moe) {
            router = new_mat(E, H, mc->dt, 4.0f / sqrtf((float)H), &seed);
            for (int e = 2; mc->ties && e < E; e += 2) copy_row(&router, e, &router, 0);
            tm.l.router = router.m;
            for (int e = 0; e < E; e++) {
                experts[e] = new_ffn(mc->F, H, mc->dt, &seed);
                ex[e] = ffn_mats(&experts[e]);
            }
            tm.l.experts = ex;
            if (mc->shared) {
                shared = new_ffn(mc->Fs, H, mc->dt, &seed);
                sgate = new_mat(1, H, mc->dt, 2.0f / sqrtf((float)H), &seed);
                tm.l.shared = ffn_mats(&shared);
                tm.l.shared_gate = sgate.m;
            }
        } else {
            dense = new_ffn(mc->Fd, H, mc->dt, &seed);
            tm.l.dense = ffn_mats(&dense);
        }

        float *X = rand_vec((size_t)T * H, 1.0f, &seed);
        double *want = alloc_d((size_t)T * H), *x = alloc_d((size_t)H), *p = alloc_d((size_t)(E ? E : 1));
        int *sel = test_keep(calloc((size_t)(K ? K : 1), sizeof *sel));
        double min_margin = INFINITY;
        for (int t = 0; t < T; t++) {
            double *y = want + (size_t)t * H;
            to_double(x, X + (size_t)t * H, (size_t)H);
            if (!mc->moe) {
                ref_ffn_add(y, &dense, x, 1.0);
                continue;
            }
            /* softmax over the router logits, top-k (ties → lower index), optional renormalisation */
            ref_mv(p, &router, x);
            double max = p[0], sum = 0, ksum = 0;
            for (int e = 1; e < E; e++) max = fmax(max, p[e]);
            for (int e = 0; e < E; e++) sum += (p[e] = exp(p[e] - max));
            for (int e = 0; e < E; e++) p[e] /= sum;
            for (int j = 0; j < K; j++) {
                int best = -1;
                for (int e = 0; e < E; e++) {
                    int taken = 0;
                    for (int q = 0; q < j; q++) taken |= sel[q] == e;
                    if (!taken && (best < 0 || p[e] > p[best])) best = e;
                }
                sel[j] = best;
                ksum += p[best];
            }
            /* Margin between the k-th chosen and the best unchosen: a near-tie would make
             * float and double pick differently, which would not be a kernel bug. */
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int q = 0; q < K; q++) taken |= sel[q] == e;
                if (!taken) min_margin = fmin(min_margin, (p[sel[K - 1]] - p[e]) / p[sel[K - 1]]);
            }
            for (int j = 0; j < K; j++) ref_ffn_add(y, &experts[sel[j]], x, p[sel[j]] / (mc->renorm ? ksum : 1.0));
            if (mc->shared) {
                double gl = 0;
                for (int i = 0; i < H; i++) gl += (double)sgate.f[i] * x[i];
                ref_ffn_add(y, &shared, x, ref_sigmoid(gl));
            }
        }

        float *one = alloc_f((size_t)T * H), *rows = alloc_f((size_t)T * H);
        int *ones = test_keep(calloc((size_t)T + 1, sizeof *ones));
        for (int t = 0; t < T; t++) ones[t] = 1;
        fm_session *s = tiny_session(&tm);
        run_block(s, moe_block, X, T, NULL, one);
        run_block(s, moe_block, X, T, ones, rows);
        fm_session_free(s);

        printf("  moe %s: E %d K %d F %d Fs %d Fd %d H %d T %d %s", mc->name, E, K, mc->F, mc->Fs, mc->Fd, H, T,
               dt_name(mc->dt));
        if (mc->moe) printf(" (min top-k margin %.3f)", min_margin);
        printf("\n");
        if (mc->moe && !mc->ties && !(min_margin > 1e-4)) fail_msg("test data has a near-tie in top-k (%.3e)", min_margin);
        check("moe one call", one, want, (size_t)T * H, 1e-5, 0);
        check("moe one token per call", rows, want, (size_t)T * H, 1e-5, 0);
        check_same("moe token-per-call vs one call", rows, one, (size_t)T * H, 1e-6);
        test_free_kept();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_known),   cmocka_unit_test(test_bf16_known), cmocka_unit_test(test_all_16bit_patterns),
        cmocka_unit_test(test_dot),         cmocka_unit_test(test_dot_row),    cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_softmax),    cmocka_unit_test(test_rope),
        cmocka_unit_test(test_activations), cmocka_unit_test(test_attention),  cmocka_unit_test(test_deltanet),
        cmocka_unit_test(test_moe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

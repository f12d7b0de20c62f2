/* Unit tests of the affine quantization (quant/affine.h) and of the quantized
 * CPU kernels (backend/cpu/qkernels.h through cpu_matmul / cpu_dot_row /
 * cpu_mat_row_f32), on random non-zero data from fixed seeds.
 *
 * Notation per group: nb = 2^bits − 1; s, b the scale and bias of the MLX
 * formula in float32 (edge = the min or max of larger magnitude, step =
 * ±max((max − min)/nb, 1e-7) pointing from the edge inwards, q0 = rint(edge /
 * step), s = edge/q0 and b = edge, or s = step and b = 0 when q0 = 0); sr, br
 * their bf16 roundings (what is stored); ε = 4·FLT_EPSILON·(|w| + |br| +
 * nb·|sr|).
 *
 * Tolerances:
 *   - hand-built 2/4/8-bit groups: codes, packed words (LSB first), scales and
 *     biases bit-exact
 *   - random round trip: stored scale and bias = bf16(s), bf16(b) bit-exact;
 *     dequantize = sr·q + br exactly (as float32); when the edge is a bf16
 *     value (always for bf16 weights; one data set is bf16-valued) its element
 *     has code 0 and dequantizes to the edge exactly; every element inside the representable
 *     range [br, br + nb·sr] is within |sr|/2 + ε; elements beyond it (the far
 *     end, which the exact-edge rule and bf16 rounding can leave short by up
 *     to about one step) dequantize to the nearer end and are within
 *     1.004·|sr| + |edge − br| + nb·|s − sr| + ε; no NaN or infinity anywhere
 *   - constant groups: |c − deq| ≤ |c − bf16(c)| + nb·1e-7 + ε (exact for 0)
 *   - 4-bit → 2-bit requantization (dequantize, quantize): the 2-bit
 *     round-trip bound above holds against the 4-bit values, and |w − d2| ≤
 *     bound4 + bound2 against the original weights
 *   - cpu_matmul (every float ISA the CPU has: scalar, avx2, avx512) vs a
 *     double-precision product of the dequantized rows: relative L2 ≤ 2e-6
 *     and max rel ≤ 2e-5 (max rel = max_i |got_i − ref_i| / max(|ref_i|,
 *     rms(ref)))
 *   - cpu_matmul, integer paths (vnni, avxvnni, avx2int), on the same data. Per token and weight
 *     group: dx = fl(amax/127), xq = rint(fl(x·fl(127/amax))) (0 when amax <
 *     1e-30), so |x − dx·xq| ≤ dx/2 + 4u|x| (u = FLT_EPSILON); m =
 *     2^(bits−1). The path computes Σ_g s·(dx·Σq·xq + m·(Σx − dx·Σxq)) +
 *     b·Σx, whose exact value differs from Σ_j (s·q_j + b)·x_j by
 *     Σ_j s·(q_j − m)·(dx·xq_j − x_j). Let A = Σ_g |s|·(dx·|Σq·xq| +
 *     m·(Σ|x| + dx·Σ|xq|)) + |b|·Σ|x| (the magnitude of the float terms) and
 *     γ = (cols/32 + group + 64)·u (their float rounding in any order).
 *       · against the scalar integer reference (the same quantization, exact
 *         integer sums, evaluated in double): |got − iref| ≤ γ·A (only the
 *         float order of the per-group scaling differs)
 *       · against the double product of the dequantized rows, per output:
 *         |got − ref| ≤ Σ_j |s|·|q_j − m|·(dx/2 + 4u|x_j|) + u·Σ_j |deq_j·x_j|
 *         + γ·A (the rounding of x as above; the float32 rounding of the
 *         dequantized weights the reference uses; float order)
 *       · relative L2 against that reference, over all outputs (all shapes
 *         and T) of one bits/group configuration, ≤ 5e-3: the rounding error
 *         per element is ~dx/√12 ≈ 0.23% of max|x|, about 0.4% of rms(x) for
 *         uniform inputs; measured 3.6e-3 to 4.1e-3. Single outputs can be
 *         near zero, so relative error per output is not bounded — the
 *         per-output bound above is absolute.
 *   - every path (float and integer) on exactly representable data (codes
 *     random, scales ±2^-e, biases k/8, inputs integers |x| ≤ 7 with a ±127
 *     in every group so dx = 1, xq = x; every partial sum a multiple of 1/8
 *     below 2^21, which the test asserts): bit-exact against the exact
 *     product (this checks the integer sums of the vnni path bit for bit)
 *   - vnni: a NaN in a token's input makes every output of that token
 *     non-finite
 *   - cpu_dot_row: |got − ref| / max(|ref|, rms(row refs)) ≤ 2e-5
 *   - cpu_mat_row_f32: bit-exact against fm_dequantize_row (quantized) and
 *     the exact widening (bf16, f16, f32) */
#include "test_util.h"

#include "backend/cpu/kernels.h"
#include "backend/cpu/qkernels.h"
#include "quant/affine.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static void *alloc(size_t n) { return test_keep(malloc(n ? n : 1)); }

/* Uniform in [lo, hi), never exactly zero. */
static float rnd_range(uint64_t *seed, float lo, float hi) {
    float x;
    do x = lo + (rand_uniform(seed) + 1.0f) * 0.5f * (hi - lo);
    while (x == 0.0f);
    return x;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* A quantized matrix and its dequantized float32 rows. */
typedef struct {
    fm_mat m;
    float *w;   /* original weights [rows, cols] */
    float *deq; /* [rows, cols] */
} qmat;

static qmat quantize_mat(const float *w, int rows, int cols, int bits, int group) {
    qmat t = {.m = {.dtype = FM_DTYPE_U32, .rows = rows, .cols = cols, .bits = bits, .group = group}};
    assert_true(fm_quant_supported(bits, group, cols));
    uint32_t *q = alloc(fm_quant_weight_bytes(rows, cols, bits));
    uint16_t *s = alloc(fm_quant_scales_bytes(rows, cols, group)), *b = alloc(fm_quant_scales_bytes(rows, cols, group));
    t.deq = alloc((size_t)rows * cols * sizeof(float));
    const size_t wpr = (size_t)cols * bits / 32, ng = (size_t)cols / group;
    for (int r = 0; r < rows; r++) {
        fm_quantize_row(w + (size_t)r * cols, cols, bits, group, q + r * wpr, s + r * ng, b + r * ng);
        fm_dequantize_row(q + r * wpr, s + r * ng, b + r * ng, cols, bits, group, t.deq + (size_t)r * cols);
    }
    t.m.data = q;
    t.m.scales = s;
    t.m.biases = b;
    t.w = (float *)w;
    return t;
}

static qmat random_qmat(int rows, int cols, int bits, int group, uint64_t *seed) {
    float *w = alloc((size_t)rows * cols * sizeof *w);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = rnd_range(seed, -1.0f, 1.0f);
    return quantize_mat(w, rows, cols, bits, group);
}

/* Code c of a packed row, by explicit word/bit arithmetic. */
static unsigned code_at(const uint32_t *q, int c, int bits) {
    const long bit = (long)c * bits;
    return (unsigned)((q[bit / 32] >> (bit % 32)) & ((1u << bits) - 1u));
}

/* The MLX formula for one group, in float32. */
typedef struct {
    float lo, hi, edge, s, b;
    int q0_zero;
} group_formula;

static group_formula formula(const float *x, int group, int bits) {
    group_formula f;
    const float nb = (float)((1 << bits) - 1);
    f.lo = f.hi = x[0];
    for (int i = 1; i < group; i++) {
        f.lo = fminf(f.lo, x[i]);
        f.hi = fmaxf(f.hi, x[i]);
    }
    const int min_edge = fabsf(f.lo) > fabsf(f.hi);
    float step = fmaxf((f.hi - f.lo) / nb, 1e-7f);
    if (!min_edge) step = -step;
    f.edge = min_edge ? f.lo : f.hi;
    const float q0 = rintf(f.edge / step);
    f.q0_zero = q0 == 0.0f;
    f.s = f.q0_zero ? step : f.edge / q0;
    f.b = f.q0_zero ? 0.0f : f.edge;
    return f;
}

/* Checks one quantized group of `w` against the formula and the error bounds;
 * returns the largest |w − deq| / |sr|. `bound` (optional) receives the
 * per-element bound. */
static double check_group(const char *label, const float *w, const uint32_t *q, int c0, uint16_t s16, uint16_t b16,
                          int bits, int group, float *bound) {
    const group_formula f = formula(w, group, bits);
    const float nb = (float)((1 << bits) - 1);
    if (s16 != fm_f32_to_bf16(f.s) || b16 != fm_f32_to_bf16(f.b))
        fail_msg("%s: group at %d: scale/bias %04x/%04x, formula gives %04x/%04x (s %g b %g)", label, c0, s16, b16,
                 fm_f32_to_bf16(f.s), fm_f32_to_bf16(f.b), f.s, f.b);
    const float sr = fm_bf16_to_f32(s16), br = fm_bf16_to_f32(b16);
    if (!isfinite(sr) || !isfinite(br)) fail_msg("%s: non-finite scale or bias", label);
    const float end = br + nb * sr, rlo = fminf(br, end), rhi = fmaxf(br, end);
    double worst = 0;
    int edge_seen = 0;
    for (int i = 0; i < group; i++) {
        const unsigned code = code_at(q, c0 + i, bits);
        const float d = sr * (float)code + br;
        const double eps = 4.0 * FLT_EPSILON * (fabs(w[i]) + fabs(br) + nb * fabs(sr));
        double lim;
        if (w[i] >= rlo && w[i] <= rhi) {
            lim = fabs(sr) / 2 + eps;
        } else {
            lim = 1.004 * fabs(sr) + fabs(f.edge - br) + nb * fabs(f.s - sr) + eps;
            const float nearer = fabsf(w[i] - rlo) < fabsf(w[i] - rhi) ? rlo : rhi;
            if (fabsf(d - nearer) > 4.0f * FLT_EPSILON * (fabsf(nearer) + fabsf(sr)))
                fail_msg("%s: element %d = %g beyond the range [%g, %g] dequantizes to %g, not the nearer end", label,
                         c0 + i, w[i], rlo, rhi, d);
        }
        const double err = fabs((double)w[i] - d);
        if (!(err <= lim))
            fail_msg("%s: element %d: w %.9g deq %.9g |err| %.3g > %.3g (sr %g br %g code %u)", label, c0 + i, w[i], d,
                     err, lim, sr, br, code);
        if (bound) bound[i] = (float)lim;
        if (sr != 0) worst = fmax(worst, err / fabs(sr));
        /* The edge is exact when bf16 can hold it (e.g. bf16 weights); otherwise it
         * is one more element subject to the bounds above. */
        if (w[i] == f.edge && !f.q0_zero && fm_bf16_to_f32(fm_f32_to_bf16(f.edge)) == f.edge) {
            edge_seen = 1;
            if (code != 0 || d != br)
                fail_msg("%s: edge element %d = %g has code %u, dequantizes to %g (bias %g)", label, c0 + i, w[i], code,
                         d, br);
        }
    }
    if (!f.q0_zero && fm_bf16_to_f32(fm_f32_to_bf16(f.edge)) == f.edge && !edge_seen)
        fail_msg("%s: no element equals the edge %g", label, f.edge);
    return worst;
}

/* ---- quantizer ---------------------------------------------------------- */

static void test_pack_known(void **state) {
    (void)state;
    float w[32];
    uint32_t q[8];
    uint16_t s, b;
    /* 4-bit: w = i mod 16 → edge 15 (max), step −1, so code = 15 − w. */
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 16);
    fm_quantize_row(w, 32, 4, 32, q, &s, &b);
    printf("  4-bit: words %08x %08x %08x %08x scale %04x bias %04x\n", q[0], q[1], q[2], q[3], s, b);
    assert_int_equal(s, 0xbf80); /* −1 */
    assert_int_equal(b, 0x4170); /* 15 */
    const uint32_t want4[4] = {0x89abcdefu, 0x01234567u, 0x89abcdefu, 0x01234567u};
    for (int i = 0; i < 4; i++) assert_int_equal(q[i], want4[i]);
    /* Mirrored: w = −(i mod 16) → edge −15 (min), step 1, code = w + 15: same codes. */
    for (int i = 0; i < 32; i++) w[i] = -(float)(i % 16);
    fm_quantize_row(w, 32, 4, 32, q, &s, &b);
    assert_int_equal(s, 0x3f80); /* 1 */
    assert_int_equal(b, 0xc170); /* −15 */
    for (int i = 0; i < 4; i++) assert_int_equal(q[i], want4[i]);

    /* 2-bit: w = i mod 4 → code = 3 − w: bytes 3 | 2<<2 | 1<<4 | 0<<6 = 0x1b. */
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 4);
    fm_quantize_row(w, 32, 2, 32, q, &s, &b);
    printf("  2-bit: words %08x %08x scale %04x bias %04x\n", q[0], q[1], s, b);
    assert_int_equal(s, 0xbf80);
    assert_int_equal(b, 0x4040); /* 3 */
    assert_int_equal(q[0], 0x1b1b1b1bu);
    assert_int_equal(q[1], 0x1b1b1b1bu);

    /* 8-bit: codes c_i chosen, w = 255 − c_i (min 0, max 255 present): edge 255, step −1. */
    unsigned c[32];
    for (int i = 0; i < 32; i++) c[i] = (unsigned)(i * 37 + 11) % 256;
    c[0] = 0;
    c[1] = 255;
    for (int i = 0; i < 32; i++) w[i] = 255.0f - (float)c[i];
    fm_quantize_row(w, 32, 8, 32, q, &s, &b);
    assert_int_equal(s, 0xbf80);
    assert_int_equal(b, 0x437f); /* 255 */
    for (int j = 0; j < 8; j++) {
        const uint32_t want = c[4 * j] | c[4 * j + 1] << 8 | c[4 * j + 2] << 16 | (uint32_t)c[4 * j + 3] << 24;
        if (q[j] != want) fail_msg("8-bit word %d: %08x, want %08x", j, q[j], want);
    }
    /* Dequantization gives the weights back exactly, and fm_quant_code agrees. */
    float d[32];
    fm_dequantize_row(q, &s, &b, 32, 8, 32, d);
    for (int i = 0; i < 32; i++) {
        assert_float_equal(d[i], w[i], 0.0f);
        assert_int_equal(fm_quant_code(q, i, 8), c[i]);
    }
}

static void test_roundtrip_random(void **state) {
    (void)state;
    static const int bits_list[] = {2, 4, 8}, groups[] = {32, 64, 128};
    /* Data ranges: symmetric, all positive, all negative, tiny, large. */
    static const float ranges[][2] = {{-1, 1}, {0.5f, 1.5f}, {-3, -0.25f}, {-1e-3f, 2e-3f}, {-300, 100}, {-1, 1}};
    const int n_ranges = sizeof ranges / sizeof *ranges; /* the last one: bf16-valued weights */
    uint64_t seed = 0x5eed0001;
    for (int bi = 0; bi < 3; bi++)
        for (int gi = 0; gi < 3; gi++) {
            const int bits = bits_list[bi], group = groups[gi], rows = 6, cols = group * 8;
            double worst = 0;
            for (int ri = 0; ri < n_ranges; ri++) {
                const int as_bf16 = ri == n_ranges - 1;
                float *w = alloc((size_t)rows * cols * sizeof *w);
                for (size_t i = 0; i < (size_t)rows * cols; i++) {
                    w[i] = rnd_range(&seed, ranges[ri][0], ranges[ri][1]);
                    if (as_bf16) w[i] = fm_bf16_to_f32(fm_f32_to_bf16(w[i]));
                }
                qmat t = quantize_mat(w, rows, cols, bits, group);
                const uint32_t *q = t.m.data;
                const size_t wpr = (size_t)cols * bits / 32, ng = (size_t)cols / group;
                char label[96];
                snprintf(label, sizeof label, "%d-bit group %d range [%g, %g]%s", bits, group, ranges[ri][0],
                         ranges[ri][1], as_bf16 ? " bf16-valued" : "");
                if (!all_finite(t.deq, (size_t)rows * cols)) fail_msg("%s: non-finite dequantized value", label);
                for (int r = 0; r < rows; r++) {
                    for (int g = 0; g < (int)ng; g++) {
                        double e = check_group(label, w + (size_t)r * cols + (size_t)g * group, q + r * wpr, g * group,
                                               t.m.scales[r * ng + g], t.m.biases[r * ng + g], bits, group, NULL);
                        worst = fmax(worst, e);
                    }
                    /* fm_dequantize_row is sr·q + br in float32. */
                    for (int c = 0; c < cols; c++) {
                        const float want = fm_bf16_to_f32(t.m.scales[r * ng + c / group]) * (float)code_at(q + r * wpr, c, bits) +
                                           fm_bf16_to_f32(t.m.biases[r * ng + c / group]);
                        if (t.deq[(size_t)r * cols + c] != want)
                            fail_msg("%s: fm_dequantize_row[%d] = %g, formula %g", label, c, t.deq[(size_t)r * cols + c],
                                     want);
                    }
                }
            }
            printf("  %d-bit group %3d: max |w − deq| = %.3f·|scale|\n", bits, group, worst);
            test_free_kept();
        }
}

static void test_constant_groups(void **state) {
    (void)state;
    static const float values[] = {0.0f, 1.0f, -1.0f, 0.3f, -7.77e-3f, 1e-30f, -2.5e4f, 3e-8f};
    static const int bits_list[] = {2, 4, 8};
    for (int bi = 0; bi < 3; bi++)
        for (size_t vi = 0; vi < sizeof values / sizeof *values; vi++) {
            const int bits = bits_list[bi], group = 64;
            const float cval = values[vi], nb = (float)((1 << bits) - 1);
            float w[64], d[64];
            uint32_t q[16];
            uint16_t s, b;
            for (int i = 0; i < group; i++) w[i] = cval;
            fm_quantize_row(w, group, bits, group, q, &s, &b);
            fm_dequantize_row(q, &s, &b, group, bits, group, d);
            const float sr = fm_bf16_to_f32(s), br = fm_bf16_to_f32(b);
            const double lim = fabsf(cval - fm_bf16_to_f32(fm_f32_to_bf16(cval))) + nb * 1e-7 +
                               4.0 * FLT_EPSILON * (fabsf(cval) + fabsf(br) + nb * fabsf(sr));
            for (int i = 0; i < group; i++) {
                if (!isfinite(d[i])) fail_msg("constant %g, %d-bit: non-finite %g", cval, bits, d[i]);
                if (!(fabs((double)d[i] - cval) <= lim))
                    fail_msg("constant %g, %d-bit: deq %.9g, |err| %.3g > %.3g", cval, bits, d[i], fabs(d[i] - cval), lim);
                if (cval == 0.0f && d[i] != 0.0f) fail_msg("constant 0, %d-bit: deq %g", bits, d[i]);
            }
            check_group("constant", w, q, 0, s, b, bits, group, NULL);
        }
}

static void test_requant_4_to_2(void **state) {
    (void)state;
    uint64_t seed = 0x5eed0002;
    static const int groups[] = {32, 64, 128};
    for (int gi = 0; gi < 3; gi++) {
        const int group = groups[gi], rows = 8, cols = 512, ng = cols / group;
        qmat t4 = random_qmat(rows, cols, 4, group, &seed);
        qmat t2 = quantize_mat(t4.deq, rows, cols, 2, group);
        float *b4 = alloc((size_t)cols * sizeof *b4), *b2 = alloc((size_t)cols * sizeof *b2);
        double worst = 0, ss = 0, se = 0;
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < ng; g++) {
                const size_t o = (size_t)r * cols + (size_t)g * group;
                check_group("4-bit", t4.w + o, (const uint32_t *)t4.m.data + (size_t)r * cols * 4 / 32, g * group,
                            t4.m.scales[r * ng + g], t4.m.biases[r * ng + g], 4, group, b4 + g * group);
                check_group("4→2-bit", t4.deq + o, (const uint32_t *)t2.m.data + (size_t)r * cols * 2 / 32, g * group,
                            t2.m.scales[r * ng + g], t2.m.biases[r * ng + g], 2, group, b2 + g * group);
            }
            for (int c = 0; c < cols; c++) {
                const size_t i = (size_t)r * cols + c;
                const double e = fabs((double)t4.w[i] - t2.deq[i]);
                if (!(e <= (double)b4[c] + b2[c]))
                    fail_msg("group %d: |w − d2| at %d,%d = %.3g > %.3g", group, r, c, e, (double)b4[c] + b2[c]);
                worst = fmax(worst, e / ((double)b4[c] + b2[c]));
                ss += (double)t4.w[i] * t4.w[i];
                se += e * e;
            }
        }
        printf("  group %3d: |w − d2| ≤ %.2f of the bound; relative RMS error of 2-bit %.3f\n", group, worst,
               sqrt(se / ss));
    }
    test_free_kept();
}

/* ---- kernels ------------------------------------------------------------ */

typedef struct {
    double l2, maxrel;
} errs;

static errs compare(const float *got, const double *want, size_t n) {
    double ss = 0, se = 0, maxrel = 0;
    for (size_t i = 0; i < n; i++) ss += want[i] * want[i];
    const double rms = sqrt(ss / (double)n);
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        se += d * d;
        const double rel = d / fmax(fabs(want[i]), rms);
        if (rel > maxrel || isnan(rel)) maxrel = rel;
    }
    errs e = {sqrt(se / ss), maxrel};
    if (!all_finite(got, n)) e.l2 = e.maxrel = NAN;
    return e;
}

/* The integer scheme of the vnni path (qkernels_vnni.c) in plain C, for
 * tokens x[T, cols]: iref = the scheme's result in double (exact integer
 * sums), mag = A of the header, ebound = the per-output bound against the
 * dequantized double product (without γ·A). All [T, rows]. */
static void int_reference(const qmat *t, const float *x, int T, double *iref, double *mag, double *ebound) {
    const int rows = t->m.rows, cols = t->m.cols, bits = t->m.bits, group = t->m.group, ng = cols / group;
    const int mid = 1 << (bits - 1);
    const size_t wpr = (size_t)cols * bits / 32;
    const double u = FLT_EPSILON;
    int *xq = alloc((size_t)cols * sizeof *xq);
    float *dx = alloc((size_t)ng * sizeof *dx);
    for (int tt = 0; tt < T; tt++) {
        const float *xt = x + (size_t)tt * cols;
        for (int g = 0; g < ng; g++) {
            float amax = 0;
            for (int i = 0; i < group; i++) amax = fmaxf(amax, fabsf(xt[g * group + i]));
            dx[g] = amax / 127.0f;
            const float id = amax >= 1e-30f ? 127.0f / amax : 0.0f;
            for (int i = 0; i < group; i++) {
                const float p = xt[g * group + i] * id;
                xq[g * group + i] = (int)rintf(p);
            }
        }
        for (int r = 0; r < rows; r++) {
            const uint32_t *q = (const uint32_t *)t->m.data + (size_t)r * wpr;
            double y = 0, a = 0, e = 0;
            for (int g = 0; g < ng; g++) {
                const double s = fm_bf16_to_f32(t->m.scales[(size_t)r * ng + g]);
                const double b = fm_bf16_to_f32(t->m.biases[(size_t)r * ng + g]);
                long long isum = 0, sxq = 0, saq = 0;
                double sx = 0, sax = 0;
                for (int i = 0; i < group; i++) {
                    const int c = g * group + i;
                    const unsigned code = code_at(q, c, bits);
                    isum += (long long)code * xq[c];
                    sxq += xq[c];
                    saq += llabs((long long)xq[c]);
                    sx += xt[c];
                    sax += fabs(xt[c]);
                    e += fabs(s) * abs((int)code - mid) * (dx[g] / 2.0 + 4 * u * fabs(xt[c])) +
                         u * fabs((double)t->deq[(size_t)r * cols + c] * xt[c]);
                }
                y += s * (dx[g] * (double)isum + mid * (sx - dx[g] * (double)sxq)) + b * sx;
                a += fabs(s) * (dx[g] * fabs((double)isum) + mid * (sax + dx[g] * (double)saq)) + fabs(b) * sax;
            }
            iref[(size_t)tt * rows + r] = y;
            mag[(size_t)tt * rows + r] = a;
            ebound[(size_t)tt * rows + r] = e;
        }
    }
}

static void test_kernels_all_isas(void **state) {
    (void)state;
    enum { N_ISA = 6, N_T = 4 };
    static const char *isas[N_ISA] = {"scalar", "avx2", "avx512", "vnni", "avxvnni", "avx2int"};
    static const int is_int[N_ISA] = {0, 0, 0, 1, 1, 1};
    static const int bits_list[] = {2, 4, 8}, groups[] = {32, 64, 128}, Ts[N_T] = {1, 3, 40, 64};
    /* (rows, cols in groups or, when negative, absolute cols) */
    static const int shapes[][2] = {{1, 1}, {7, 1}, {3, 3}, {17, 5}, {65, -512}, {64, -384}, {5, -8192}};
    const double tol_l2 = 2e-6, tol_max = 2e-5, tol_vnni_l2 = 5e-3;
    int have[N_ISA];
    for (int i = 0; i < N_ISA; i++) {
        have[i] = cpu_set_isa(isas[i]) == 0;
        printf("  isa %-7s %s\n", isas[i], have[i] ? "available" : "not supported here: skipped");
    }
    assert_true(have[0]);
    uint64_t seed = 0x5eed0003;
    for (int bi = 0; bi < 3; bi++)
        for (int gi = 0; gi < 3; gi++) {
            const int bits = bits_list[bi], group = groups[gi];
            errs worst[N_ISA] = {{0, 0}};
            double worst_dot = 0, worst_order[N_ISA] = {0}, worst_bound[N_ISA] = {0}, pool_se[N_ISA] = {0},
                   pool_ss[N_ISA] = {0};
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                const int rows = shapes[si][0], cols = shapes[si][1] > 0 ? shapes[si][1] * group : -shapes[si][1];
                const int Tmax = 64, ng = cols / group;
                qmat t = random_qmat(rows, cols, bits, group, &seed);
                float *x = alloc((size_t)Tmax * cols * sizeof *x);
                for (size_t i = 0; i < (size_t)Tmax * cols; i++) x[i] = rnd_range(&seed, -1.0f, 1.0f);
                /* Token 1: a group of zeros; token 2: a group below the vnni path's 1e-30 floor. */
                for (int i = 0; i < group; i++) {
                    x[(size_t)cols + i] = 0.0f;
                    x[(size_t)2 * cols + (size_t)(ng - 1) * group + i] *= 1e-31f;
                }
                double *ref = alloc((size_t)Tmax * rows * sizeof *ref);
                for (int tt = 0; tt < Tmax; tt++)
                    for (int r = 0; r < rows; r++) {
                        double s = 0;
                        for (int c = 0; c < cols; c++) s += (double)t.deq[(size_t)r * cols + c] * x[(size_t)tt * cols + c];
                        ref[(size_t)tt * rows + r] = s;
                    }
                double *iref = alloc((size_t)Tmax * rows * sizeof *iref), *mag = alloc((size_t)Tmax * rows * sizeof *mag),
                       *eb = alloc((size_t)Tmax * rows * sizeof *eb);
                int_reference(&t, x, Tmax, iref, mag, eb);
                const double gamma = (cols / 32.0 + group + 64) * FLT_EPSILON;
                float *y = alloc((size_t)Tmax * rows * sizeof *y);
                for (int ii = 0; ii < N_ISA; ii++) {
                    if (!have[ii]) continue;
                    assert_int_equal(cpu_set_isa(isas[ii]), 0);
                    assert_string_equal(cpu_isa_name(), isas[ii]);
                    for (int ti = 0; ti < N_T; ti++) {
                        const int T = Ts[ti];
                        for (size_t i = 0; i < (size_t)T * rows; i++) y[i] = NAN;
                        cpu_matmul(y, x, T, &t.m);
                        const errs e = compare(y, ref, (size_t)T * rows);
                        worst[ii].l2 = fmax(worst[ii].l2, e.l2);
                        worst[ii].maxrel = fmax(worst[ii].maxrel, e.maxrel);
                        if (!is_int[ii]) {
                            if (!(e.l2 <= tol_l2) || !(e.maxrel <= tol_max))
                                fail_msg("%s %d-bit group %d [%d, %d] T=%d: relative L2 %.3e (tol %.0e), max rel %.3e "
                                         "(tol %.0e)",
                                         isas[ii], bits, group, rows, cols, T, e.l2, tol_l2, e.maxrel, tol_max);
                            continue;
                        }
                        for (size_t i = 0; i < (size_t)T * rows; i++) {
                            pool_se[ii] += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
                            pool_ss[ii] += ref[i] * ref[i];
                            const double order = fabs((double)y[i] - iref[i]), lim_o = gamma * mag[i] + 1e-30;
                            const double err = fabs((double)y[i] - ref[i]), lim_e = eb[i] + gamma * mag[i] + 1e-30;
                            if (!(order <= lim_o))
                                fail_msg("%s %d-bit group %d [%d, %d] T=%d output %zu: %.9g vs integer reference %.9g, "
                                         "|diff| %.3g > γ·A %.3g",
                                         isas[ii], bits, group, rows, cols, T, i, y[i], iref[i], order, lim_o);
                            if (!(err <= lim_e))
                                fail_msg("%s %d-bit group %d [%d, %d] T=%d output %zu: %.9g vs %.9g, |err| %.3g > bound "
                                         "%.3g",
                                         isas[ii], bits, group, rows, cols, T, i, y[i], ref[i], err, lim_e);
                            worst_order[ii] = fmax(worst_order[ii], order / lim_o);
                            worst_bound[ii] = fmax(worst_bound[ii], err / lim_e);
                        }
                    }
                }
                /* cpu_dot_row on the first token. */
                double ss = 0;
                for (int r = 0; r < rows; r++) ss += ref[r] * ref[r];
                const double rms = sqrt(ss / rows);
                for (int r = 0; r < rows; r++) {
                    const float d = cpu_dot_row(&t.m, r, x);
                    const double e = fabs((double)d - ref[r]) / fmax(fabs(ref[r]), rms);
                    if (!(e <= tol_max))
                        fail_msg("cpu_dot_row %d-bit group %d [%d, %d] row %d: %.9g vs %.9g, rel %.3e > %.0e", bits, group,
                                 rows, cols, r, d, ref[r], e, tol_max);
                    worst_dot = fmax(worst_dot, e);
                }
                test_free_kept();
            }
            printf("  %d-bit group %3d:", bits, group);
            for (int ii = 0; ii < N_ISA; ii++)
                if (have[ii]) printf(" %s L2 %.1e max %.1e;", isas[ii], worst[ii].l2, worst[ii].maxrel);
            printf(" dot_row max %.1e\n", worst_dot);
            for (int ii = 0; ii < N_ISA; ii++) {
                if (!have[ii] || !is_int[ii]) continue;
                const double l2 = sqrt(pool_se[ii] / pool_ss[ii]);
                printf("      %-7s: relative L2 over all outputs %.2e; |got − iref| ≤ %.3f·γA, |got − ref| ≤ %.3f·bound\n",
                       isas[ii], l2, worst_order[ii], worst_bound[ii]);
                if (!(l2 <= tol_vnni_l2))
                    fail_msg("%s %d-bit group %d: relative L2 over all outputs %.3e > %.0e", isas[ii], bits, group, l2,
                             tol_vnni_l2);
            }
        }
    assert_int_equal(cpu_set_isa(NULL), 0);
}

/* Every path bit-exact on data whose products and sums are exact in float32. */
static void test_kernels_exact(void **state) {
    (void)state;
    enum { N_ISA = 6 };
    static const char *isas[N_ISA] = {"scalar", "avx2", "avx512", "vnni", "avxvnni", "avx2int"};
    static const int is_int[N_ISA] = {0, 0, 0, 1, 1, 1};
    static const int bits_list[] = {2, 4, 8}, groups[] = {32, 64, 128}, Ts[] = {1, 2, 7, 8, 9, 20, 64};
    static const int shapes[][2] = {{1, 1}, {7, 1}, {3, 3}, {17, 5}, {65, -512}, {6, -1024}};
    uint64_t seed = 0x5eed0005;
    int n_isa = 0;
    for (int bi = 0; bi < 3; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                const int bits = bits_list[bi], group = groups[gi], Tmax = 64;
                const int rows = shapes[si][0], cols = shapes[si][1] > 0 ? shapes[si][1] * group : -shapes[si][1];
                const int ng = cols / group, nb = (1 << bits) - 1;
                const size_t wpr = (size_t)cols * bits / 32;
                uint32_t *q = alloc(wpr * rows * sizeof *q);
                uint16_t *sc = alloc((size_t)rows * ng * sizeof *sc), *bs = alloc((size_t)rows * ng * sizeof *bs);
                unsigned *codes = alloc((size_t)rows * cols * sizeof *codes);
                memset(q, 0, wpr * rows * sizeof *q);
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++) {
                        unsigned v = (unsigned)((rand_uniform(&seed) + 1.0f) * 0.5f * (float)(nb + 1));
                        if (v > (unsigned)nb) v = (unsigned)nb;
                        codes[(size_t)r * cols + c] = v;
                        q[(size_t)r * wpr + (size_t)c * bits / 32] |= v << ((c * bits) % 32);
                    }
                for (int i = 0; i < rows * ng; i++) {
                    const int e = 1 + (int)((rand_uniform(&seed) + 1.0f) * 1.5f); /* 1..3 (4 at the edge) */
                    const float sv = ldexpf(rand_uniform(&seed) < 0 ? -1.0f : 1.0f, -e);
                    sc[i] = fm_f32_to_bf16(sv);
                    bs[i] = fm_f32_to_bf16((float)(int)(rand_uniform(&seed) * 16.0f) / 8.0f);
                    assert_true(fm_bf16_to_f32(sc[i]) == sv);
                }
                float *x = alloc((size_t)Tmax * cols * sizeof *x);
                for (int tt = 0; tt < Tmax; tt++)
                    for (int g = 0; g < ng; g++) {
                        float *xg = x + (size_t)tt * cols + (size_t)g * group;
                        for (int i = 0; i < group; i++) xg[i] = (float)(int)(rand_uniform(&seed) * 7.99f);
                        const int at = (int)((rand_uniform(&seed) + 1.0f) * 0.5f * (float)(group - 1));
                        xg[at] = rand_uniform(&seed) < 0 ? -127.0f : 127.0f;
                    }
                const fm_mat m = {.data = q, .dtype = FM_DTYPE_U32, .rows = rows, .cols = cols, .bits = bits,
                                  .group = group, .scales = sc, .biases = bs};
                float *exact = alloc((size_t)Tmax * rows * sizeof *exact), *y = alloc((size_t)Tmax * rows * sizeof *y);
                for (int tt = 0; tt < Tmax; tt++)
                    for (int r = 0; r < rows; r++) {
                        double sum = 0, sabs = 0;
                        for (int c = 0; c < cols; c++) {
                            const int g = c / group;
                            const double w = (double)fm_bf16_to_f32(sc[r * ng + g]) * codes[(size_t)r * cols + c] +
                                             fm_bf16_to_f32(bs[r * ng + g]);
                            const double xv = x[(size_t)tt * cols + c];
                            sum += w * xv;
                            sabs += fabs(w * xv) + fabs(fm_bf16_to_f32(sc[r * ng + g]) * codes[(size_t)r * cols + c] * xv) +
                                    fabs(fm_bf16_to_f32(bs[r * ng + g]) * xv);
                        }
                        if (!(sabs < 2097152.0)) fail_msg("exact data: magnitude %g too large for exact float sums", sabs);
                        exact[(size_t)tt * rows + r] = (float)sum;
                        assert_true((double)exact[(size_t)tt * rows + r] == sum);
                    }
                n_isa = 0;
                for (int ii = 0; ii < N_ISA; ii++) {
                    if (cpu_set_isa(isas[ii])) continue;
                    n_isa++;
                    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                        const int T = Ts[ti];
                        for (size_t i = 0; i < (size_t)T * rows; i++) y[i] = NAN;
                        cpu_matmul(y, x, T, &m);
                        for (size_t i = 0; i < (size_t)T * rows; i++)
                            if (y[i] != exact[i])
                                fail_msg("%s %d-bit group %d [%d, %d] T=%d output %zu (token %zu row %zu): %.9g, exact %.9g",
                                         isas[ii], bits, group, rows, cols, T, i, i / rows, i % rows, y[i], exact[i]);
                    }
                    if (is_int[ii]) { /* NaN in token 1 → all of token 1's outputs non-finite, others unchanged */
                        const float saved = x[(size_t)cols + (size_t)cols / 2];
                        x[(size_t)cols + (size_t)cols / 2] = NAN;
                        for (int T = 1; T <= 20; T += 19) {
                            cpu_matmul(y, x, T, &m);
                            for (int r = 0; r < rows; r++) {
                                if (T > 1 && isfinite(y[(size_t)rows + r]))
                                    fail_msg("%s: NaN input gave %g (row %d, T %d)", isas[ii], y[(size_t)rows + r], r, T);
                                if (y[r] != exact[r]) fail_msg("%s: NaN in token 1 changed token 0, row %d", isas[ii], r);
                            }
                        }
                        cpu_matmul(y, x + cols, 1, &m);
                        for (int r = 0; r < rows; r++)
                            if (isfinite(y[r])) fail_msg("%s: NaN input gave %g (row %d, T 1)", isas[ii], y[r], r);
                        x[(size_t)cols + (size_t)cols / 2] = saved; /* the next path needs the exact data back */
                    }
                }
                test_free_kept();
            }
    printf("  %d paths bit-exact on exactly representable data (2/4/8-bit, groups 32/64/128, T 1..64)\n", n_isa);
    assert_int_equal(cpu_set_isa(NULL), 0);
}

static void test_isa_select(void **state) {
    (void)state;
    assert_int_equal(cpu_set_isa(NULL), 0);
    const char *best = cpu_isa_name();
    printf("  best isa: %s\n", best);
    assert_int_equal(cpu_set_isa("sse9"), -1);
    assert_string_equal(cpu_isa_name(), best);
    assert_int_equal(cpu_set_isa("scalar"), 0);
    assert_string_equal(cpu_isa_name(), "scalar");
    assert_int_equal(cpu_set_isa("auto"), 0);
    assert_string_equal(cpu_isa_name(), best);
}

static void test_mat_row_f32(void **state) {
    (void)state;
    uint64_t seed = 0x5eed0004;
    static const int bits_list[] = {2, 4, 8};
    for (int bi = 0; bi < 3; bi++) {
        const int rows = 5, cols = 384, group = 64;
        qmat t = random_qmat(rows, cols, bits_list[bi], group, &seed);
        float *out = alloc((size_t)cols * sizeof *out);
        for (int r = 0; r < rows; r++) {
            cpu_mat_row_f32(&t.m, r, out);
            if (memcmp(out, t.deq + (size_t)r * cols, (size_t)cols * sizeof *out))
                fail_msg("cpu_mat_row_f32 %d-bit row %d differs from fm_dequantize_row", bits_list[bi], r);
        }
    }
    /* Plain dtypes: exact widening. */
    const int rows = 3, cols = 40;
    float *f = alloc((size_t)rows * cols * sizeof *f), *out = alloc((size_t)cols * sizeof *out);
    uint16_t *h = alloc((size_t)rows * cols * sizeof *h);
    for (int i = 0; i < rows * cols; i++) f[i] = rnd_range(&seed, -2.0f, 2.0f);
    fm_mat m32 = {.data = f, .dtype = FM_DTYPE_F32, .rows = rows, .cols = cols};
    cpu_mat_row_f32(&m32, 2, out);
    assert_memory_equal(out, f + 2 * cols, (size_t)cols * sizeof *out);
    for (int i = 0; i < rows * cols; i++) h[i] = fm_f32_to_bf16(f[i]);
    fm_mat mb = {.data = h, .dtype = FM_DTYPE_BF16, .rows = rows, .cols = cols};
    cpu_mat_row_f32(&mb, 1, out);
    for (int c = 0; c < cols; c++) assert_true(out[c] == fm_bf16_to_f32(h[cols + c]));
    for (int i = 0; i < rows * cols; i++) h[i] = (uint16_t)(0x3c00 + (i * 131) % 0x0800); /* f16 in [1, 4) */
    fm_mat mh = {.data = h, .dtype = FM_DTYPE_F16, .rows = rows, .cols = cols};
    cpu_mat_row_f32(&mh, 2, out);
    for (int c = 0; c < cols; c++) assert_true(out[c] == fm_f16_to_f32(h[2 * cols + c]));
    test_free_kept();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_known),       cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_constant_groups),  cmocka_unit_test(test_requant_4_to_2),
        cmocka_unit_test(test_isa_select),       cmocka_unit_test(test_kernels_all_isas),
        cmocka_unit_test(test_kernels_exact),
        cmocka_unit_test(test_mat_row_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

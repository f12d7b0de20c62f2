/* Quantized matrix products (see qkernels.h).
 *
 * Lane layout of the vector paths. An L-lane kernel (L = 16 for AVX-512, 8 for
 * AVX2) loads L consecutive uint32 code words at a time (a "chunk" of L·cpw
 * codes, cpw = 32/bits codes per word); lane l holds word l, and field k of
 * it (bits k·bits ...) is code l·cpw + k of the chunk. Shifting and masking
 * all lanes by k·bits therefore yields codes {l·cpw + k}, without any
 * shuffle. The activations are reordered once per call to match: position
 * k·L + l of a chunk of xp holds x[l·cpw + k]. Dot products do not care about
 * the order, so decode computes Σ q·xp, and prefill dequantizes rows into the
 * same order and dots them with xp. A word never straddles groups (cpw ≤ 16 <
 * group), so every lane has one scale and one bias per chunk: lane l of a
 * chunk starting at code c0 uses group c0/group + (l·cpw)/group. With L = 1
 * the order is the natural one (the scalar path). */
#include "backend/cpu/qkernels.h"

#include "backend/cpu/qkernels_vnni.h"
#include "core/pool.h"
#include "quant/affine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define QK_X86 1
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define AINL __attribute__((always_inline)) inline
#else
#define QK_X86 0
#endif

/* ---- code path selection ------------------------------------------------ */

enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_VNNI, ISA_AVXVNNI, ISA_AVX2INT, ISA_COUNT };
static const char *const isa_names[ISA_COUNT] = {"scalar", "avx2", "avx512", "vnni", "avxvnni", "avx2int"};
static int isa_cur, isa_best;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static int isa_supported(int isa) {
    if (isa == ISA_SCALAR) return 1;
#if QK_X86
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX2) return avx2;
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl");
    if (isa == ISA_AVX512) return avx512;
    if (isa == ISA_VNNI) return avx512 && fm_qint_supported(FM_QINT_VNNI);
    if (isa == ISA_AVXVNNI) return avx2 && fm_qint_supported(FM_QINT_AVXVNNI);
    if (isa == ISA_AVX2INT) return avx2 && fm_qint_supported(FM_QINT_AVX2);
#endif
    return 0;
}

static int isa_from_name(const char *name) {
    for (int i = 0; i < ISA_COUNT; i++)
        if (!strcmp(name, isa_names[i])) return i;
    return -1;
}

static void isa_init(void) {
    isa_best = isa_supported(ISA_VNNI)      ? ISA_VNNI
               : isa_supported(ISA_AVXVNNI) ? ISA_AVXVNNI
               : isa_supported(ISA_AVX512)  ? ISA_AVX512
               : isa_supported(ISA_AVX2INT) ? ISA_AVX2INT
               : isa_supported(ISA_AVX2)    ? ISA_AVX2
                                            : ISA_SCALAR;
    const char *env = getenv("FM_ISA");
    const int want = env && *env ? isa_from_name(env) : -1;
    isa_cur = want >= 0 && isa_supported(want) ? want : isa_best;
}

int cpu_set_isa(const char *name) {
    pthread_once(&isa_once, isa_init);
    if (!name || !*name || !strcmp(name, "auto")) {
        isa_cur = isa_best;
        return 0;
    }
    const int isa = isa_from_name(name);
    if (isa < 0 || !isa_supported(isa)) return -1;
    isa_cur = isa;
    return 0;
}

const char *cpu_isa_name(void) {
    pthread_once(&isa_once, isa_init);
    return isa_names[isa_cur];
}

/* ---- per-ISA kernels ---------------------------------------------------- */

/* Decode one row: Σ_c W[c]·x[c] given xp (x in lane order), sx (Σx per group)
 * and a scratch sf of ng + 16 floats. */
typedef float (*row_fn)(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                        const float *sx, const float *xp, float *sf);
/* Dequantize one row in lane order into out[colsp]; scratch sf, bf of ng + 16 floats. */
typedef void (*deq_fn)(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                       float *sf, float *bf, float *out);
/* y[t, r + j] = w_j · xp_t for j < nr (≤ 4) rows w_j = w + j·n and all T tokens (xp_t = xp + t·n). */
typedef void (*mm_fn)(const float *w, int nr, size_t n, const float *xp, int T, float *y, int rows, int r);

typedef struct {
    int lanes;
    row_fn row[9]; /* by bits */
    deq_fn deq[9];
    mm_fn mm;
} isa_ops;

/* -- scalar (plain C, natural order) -- */

static float row_scalar_gen(const uint32_t *q, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                            const float *sx, const float *x, int bits) {
    const int cpw = 32 / bits, wpg = group / cpw;
    const uint32_t m = (1u << bits) - 1u;
    float y = 0.0f;
    for (int g = 0; g < ng; g++) {
        const uint32_t *qg = q + (size_t)g * wpg;
        const float *xg = x + (size_t)g * group;
        float acc[4] = {0}, xs[4] = {0};
        for (int w = 0; w < wpg; w++) {
            const uint32_t v = qg[w];
            for (int k = 0; k < cpw; k++) {
                acc[k & 3] += (float)((v >> (k * bits)) & m) * xg[w * cpw + k];
                xs[k & 3] += xg[w * cpw + k];
            }
        }
        const float sq = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        const float sxg = sx ? sx[g] : (xs[0] + xs[1]) + (xs[2] + xs[3]);
        y += fm_bf16_to_f32(s16[g]) * sq + fm_bf16_to_f32(b16[g]) * sxg;
    }
    return y;
}

#define SCALAR_ROW(B)                                                                                              \
    static float row_scalar_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,      \
                                int group, const float *sx, const float *xp, float *sf) {                          \
        (void)wpr;                                                                                                 \
        (void)sf;                                                                                                  \
        return row_scalar_gen(q, s16, b16, ng, group, sx, xp, B);                                                  \
    }
SCALAR_ROW(2)
SCALAR_ROW(4)
SCALAR_ROW(8)

static void deq_scalar_gen(const uint32_t *q, const uint16_t *s16, const uint16_t *b16, int ng, int group, float *out,
                           int bits) {
    const int cpw = 32 / bits, wpg = group / cpw;
    const uint32_t m = (1u << bits) - 1u;
    for (int g = 0; g < ng; g++) {
        const float s = fm_bf16_to_f32(s16[g]), b = fm_bf16_to_f32(b16[g]);
        const uint32_t *qg = q + (size_t)g * wpg;
        float *o = out + (size_t)g * group;
        for (int w = 0; w < wpg; w++)
            for (int k = 0; k < cpw; k++) o[w * cpw + k] = s * (float)((qg[w] >> (k * bits)) & m) + b;
    }
}

#define SCALAR_DEQ(B)                                                                                              \
    static void deq_scalar_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,       \
                               int group, float *sf, float *bf, float *out) {                                      \
        (void)wpr;                                                                                                 \
        (void)sf;                                                                                                  \
        (void)bf;                                                                                                  \
        deq_scalar_gen(q, s16, b16, ng, group, out, B);                                                            \
    }
SCALAR_DEQ(2)
SCALAR_DEQ(4)
SCALAR_DEQ(8)

static float dot_scalar(const float *a, const float *b, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void mm_scalar(const float *w, int nr, size_t n, const float *xp, int T, float *y, int rows, int r) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < nr; j++) y[(size_t)t * rows + r + j] = dot_scalar(w + (size_t)j * n, xp + (size_t)t * n, n);
}

static const isa_ops ops_scalar = {
    .lanes = 1,
    .row = {[2] = row_scalar_2, [4] = row_scalar_4, [8] = row_scalar_8},
    .deq = {[2] = deq_scalar_2, [4] = deq_scalar_4, [8] = deq_scalar_8},
    .mm = mm_scalar,
};

#if QK_X86

/* -- AVX-512 (16 lanes) -- */

/* bf16 → f32 of 16 values (n < 16: the first n, rest 0). */
T512 static AINL __m512 bf16x16(const uint16_t *p, int n) {
    const __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Scales (and biases when bf != NULL) of a row to f32, padded with 16 zeros;
 * returns Σ_g bias_g·sx_g when sx != NULL. */
T512 static AINL float sb512(const uint16_t *s16, const uint16_t *b16, const float *sx, int ng, float *sf, float *bf) {
    __m512 acc = _mm512_setzero_ps();
    for (int g = 0; g < ng; g += 16) {
        const int n = ng - g < 16 ? ng - g : 16;
        _mm512_storeu_ps(sf + g, bf16x16(s16 + g, n));
        const __m512 b = bf16x16(b16 + g, n);
        if (bf) _mm512_storeu_ps(bf + g, b);
        if (sx) acc = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps((__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), sx + g), acc);
    }
    _mm512_storeu_ps(sf + ng, _mm512_setzero_ps());
    if (bf) _mm512_storeu_ps(bf + ng, _mm512_setzero_ps());
    return sx ? _mm512_reduce_add_ps(acc) : 0.0f;
}

/* Group of each lane relative to the chunk's first group. */
T512 static AINL __m512i lane_groups512(int cpw, int group) {
    int idx[16];
    for (int l = 0; l < 16; l++) idx[l] = l * cpw / group;
    return _mm512_loadu_si512(idx);
}

T512 static AINL __m512i words512(const uint32_t *q, int left) {
    return left >= 16 ? _mm512_loadu_si512(q) : _mm512_maskz_loadu_epi32((__mmask16)((1u << left) - 1u), q);
}

T512 static AINL float row512(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                              const float *sx, const float *xp, float *sf, const int bits) {
    const int cpw = 32 / bits;
    const float bias = sb512(s16, b16, sx, ng, sf, NULL);
    const __m512i idx = lane_groups512(cpw, group), m = _mm512_set1_epi32((1 << bits) - 1);
    __m512 acc = _mm512_setzero_ps();
    for (int w = 0; w < wpr; w += 16, xp += 16 * cpw) {
        const __m512i v = words512(q + w, wpr - w);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int k = 0; k < cpw; k += 2) {
            const __m512 q0 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, k * bits), m));
            const __m512 q1 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, (k + 1) * bits), m));
            a0 = _mm512_fmadd_ps(q0, _mm512_loadu_ps(xp + k * 16), a0);
            a1 = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xp + (k + 1) * 16), a1);
        }
        const __m512 sv = _mm512_permutexvar_ps(idx, _mm512_loadu_ps(sf + w * cpw / group));
        acc = _mm512_fmadd_ps(sv, _mm512_add_ps(a0, a1), acc);
    }
    return _mm512_reduce_add_ps(acc) + bias;
}

T512 static AINL void deq512(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                             float *sf, float *bf, float *out, const int bits) {
    const int cpw = 32 / bits;
    sb512(s16, b16, NULL, ng, sf, bf);
    const __m512i idx = lane_groups512(cpw, group), m = _mm512_set1_epi32((1 << bits) - 1);
    for (int w = 0; w < wpr; w += 16, out += 16 * cpw) {
        const __m512i v = words512(q + w, wpr - w);
        const int g = w * cpw / group;
        const __m512 sv = _mm512_permutexvar_ps(idx, _mm512_loadu_ps(sf + g));
        const __m512 bv = _mm512_permutexvar_ps(idx, _mm512_loadu_ps(bf + g));
        for (int k = 0; k < cpw; k++) {
            const __m512 qk = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, k * bits), m));
            _mm512_storeu_ps(out + k * 16, _mm512_fmadd_ps(qk, sv, bv));
        }
    }
}

#define AVX512_FNS(B)                                                                                              \
    T512 static float row512_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,     \
                                 int group, const float *sx, const float *xp, float *sf) {                         \
        return row512(q, wpr, s16, b16, ng, group, sx, xp, sf, B);                                                 \
    }                                                                                                              \
    T512 static void deq512_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,      \
                                int group, float *sf, float *bf, float *out) {                                     \
        deq512(q, wpr, s16, b16, ng, group, sf, bf, out, B);                                                       \
    }
AVX512_FNS(2)
AVX512_FNS(4)
AVX512_FNS(8)

/* 4 rows × 2 tokens per pass: 6 loads for 8 FMAs. Missing rows/tokens alias
 * the first and are not stored. */
T512 static void mm512(const float *w, int nr, size_t n, const float *xp, int T, float *y, int rows, int r) {
    const float *w0 = w, *w1 = nr > 1 ? w + n : w, *w2 = nr > 2 ? w + 2 * n : w, *w3 = nr > 3 ? w + 3 * n : w;
    for (int t = 0; t < T; t += 2) {
        const float *x0 = xp + (size_t)t * n, *x1 = t + 1 < T ? x0 + n : x0;
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (size_t i = 0; i < n; i += 16) {
            const __m512 u = _mm512_loadu_ps(x0 + i), v = _mm512_loadu_ps(x1 + i);
            __m512 c = _mm512_loadu_ps(w0 + i);
            a00 = _mm512_fmadd_ps(c, u, a00);
            a01 = _mm512_fmadd_ps(c, v, a01);
            c = _mm512_loadu_ps(w1 + i);
            a10 = _mm512_fmadd_ps(c, u, a10);
            a11 = _mm512_fmadd_ps(c, v, a11);
            c = _mm512_loadu_ps(w2 + i);
            a20 = _mm512_fmadd_ps(c, u, a20);
            a21 = _mm512_fmadd_ps(c, v, a21);
            c = _mm512_loadu_ps(w3 + i);
            a30 = _mm512_fmadd_ps(c, u, a30);
            a31 = _mm512_fmadd_ps(c, v, a31);
        }
        const float s0[4] = {_mm512_reduce_add_ps(a00), _mm512_reduce_add_ps(a10), _mm512_reduce_add_ps(a20),
                             _mm512_reduce_add_ps(a30)};
        const float s1[4] = {_mm512_reduce_add_ps(a01), _mm512_reduce_add_ps(a11), _mm512_reduce_add_ps(a21),
                             _mm512_reduce_add_ps(a31)};
        for (int j = 0; j < nr; j++) {
            y[(size_t)t * rows + r + j] = s0[j];
            if (t + 1 < T) y[(size_t)(t + 1) * rows + r + j] = s1[j];
        }
    }
}

static const isa_ops ops_avx512 = {
    .lanes = 16,
    .row = {[2] = row512_2, [4] = row512_4, [8] = row512_8},
    .deq = {[2] = deq512_2, [4] = deq512_4, [8] = deq512_8},
    .mm = mm512,
};

/* -- AVX2 + FMA (8 lanes) -- */

T256 static AINL float hsum256(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

T256 static AINL __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* As sb512, 8 at a time plus a scalar tail; padded with 8 zeros. */
T256 static AINL float sb256(const uint16_t *s16, const uint16_t *b16, const float *sx, int ng, float *sf, float *bf) {
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= ng; g += 8) {
        _mm256_storeu_ps(sf + g, bf16x8(s16 + g));
        const __m256 b = bf16x8(b16 + g);
        if (bf) _mm256_storeu_ps(bf + g, b);
        if (sx) acc = _mm256_fmadd_ps(b, _mm256_loadu_ps(sx + g), acc);
    }
    float tail = 0.0f;
    for (; g < ng; g++) {
        sf[g] = fm_bf16_to_f32(s16[g]);
        const float b = fm_bf16_to_f32(b16[g]);
        if (bf) bf[g] = b;
        if (sx) tail += b * sx[g];
    }
    _mm256_storeu_ps(sf + ng, _mm256_setzero_ps());
    if (bf) _mm256_storeu_ps(bf + ng, _mm256_setzero_ps());
    return sx ? hsum256(acc) + tail : 0.0f;
}

T256 static AINL __m256i lane_groups256(int cpw, int group) {
    int idx[8];
    for (int l = 0; l < 8; l++) idx[l] = l * cpw / group;
    return _mm256_loadu_si256((const __m256i *)idx);
}

T256 static AINL __m256i words256(const uint32_t *q, int left) {
    if (left >= 8) return _mm256_loadu_si256((const __m256i *)q);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_epi32((const int *)q, mask);
}

T256 static AINL float row256(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                              const float *sx, const float *xp, float *sf, const int bits) {
    const int cpw = 32 / bits;
    const float bias = sb256(s16, b16, sx, ng, sf, NULL);
    const __m256i idx = lane_groups256(cpw, group), m = _mm256_set1_epi32((1 << bits) - 1);
    __m256 acc = _mm256_setzero_ps();
    for (int w = 0; w < wpr; w += 8, xp += 8 * cpw) {
        const __m256i v = words256(q + w, wpr - w);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int k = 0; k < cpw; k += 2) {
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, k * bits), m));
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, (k + 1) * bits), m));
            a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(xp + k * 8), a0);
            a1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xp + (k + 1) * 8), a1);
        }
        const __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + w * cpw / group), idx);
        acc = _mm256_fmadd_ps(sv, _mm256_add_ps(a0, a1), acc);
    }
    return hsum256(acc) + bias;
}

T256 static AINL void deq256(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng, int group,
                             float *sf, float *bf, float *out, const int bits) {
    const int cpw = 32 / bits;
    sb256(s16, b16, NULL, ng, sf, bf);
    const __m256i idx = lane_groups256(cpw, group), m = _mm256_set1_epi32((1 << bits) - 1);
    for (int w = 0; w < wpr; w += 8, out += 8 * cpw) {
        const __m256i v = words256(q + w, wpr - w);
        const int g = w * cpw / group;
        const __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + g), idx);
        const __m256 bv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(bf + g), idx);
        for (int k = 0; k < cpw; k++) {
            const __m256 qk = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, k * bits), m));
            _mm256_storeu_ps(out + k * 8, _mm256_fmadd_ps(qk, sv, bv));
        }
    }
}

#define AVX2_FNS(B)                                                                                                \
    T256 static float row256_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,     \
                                 int group, const float *sx, const float *xp, float *sf) {                         \
        return row256(q, wpr, s16, b16, ng, group, sx, xp, sf, B);                                                 \
    }                                                                                                              \
    T256 static void deq256_##B(const uint32_t *q, int wpr, const uint16_t *s16, const uint16_t *b16, int ng,      \
                                int group, float *sf, float *bf, float *out) {                                     \
        deq256(q, wpr, s16, b16, ng, group, sf, bf, out, B);                                                       \
    }
AVX2_FNS(2)
AVX2_FNS(4)
AVX2_FNS(8)

T256 static void mm256(const float *w, int nr, size_t n, const float *xp, int T, float *y, int rows, int r) {
    const float *w0 = w, *w1 = nr > 1 ? w + n : w, *w2 = nr > 2 ? w + 2 * n : w, *w3 = nr > 3 ? w + 3 * n : w;
    for (int t = 0; t < T; t += 2) {
        const float *x0 = xp + (size_t)t * n, *x1 = t + 1 < T ? x0 + n : x0;
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (size_t i = 0; i < n; i += 8) {
            const __m256 u = _mm256_loadu_ps(x0 + i), v = _mm256_loadu_ps(x1 + i);
            __m256 c = _mm256_loadu_ps(w0 + i);
            a00 = _mm256_fmadd_ps(c, u, a00);
            a01 = _mm256_fmadd_ps(c, v, a01);
            c = _mm256_loadu_ps(w1 + i);
            a10 = _mm256_fmadd_ps(c, u, a10);
            a11 = _mm256_fmadd_ps(c, v, a11);
            c = _mm256_loadu_ps(w2 + i);
            a20 = _mm256_fmadd_ps(c, u, a20);
            a21 = _mm256_fmadd_ps(c, v, a21);
            c = _mm256_loadu_ps(w3 + i);
            a30 = _mm256_fmadd_ps(c, u, a30);
            a31 = _mm256_fmadd_ps(c, v, a31);
        }
        const float s0[4] = {hsum256(a00), hsum256(a10), hsum256(a20), hsum256(a30)};
        const float s1[4] = {hsum256(a01), hsum256(a11), hsum256(a21), hsum256(a31)};
        for (int j = 0; j < nr; j++) {
            y[(size_t)t * rows + r + j] = s0[j];
            if (t + 1 < T) y[(size_t)(t + 1) * rows + r + j] = s1[j];
        }
    }
}

static const isa_ops ops_avx2 = {
    .lanes = 8,
    .row = {[2] = row256_2, [4] = row256_4, [8] = row256_8},
    .deq = {[2] = deq256_2, [4] = deq256_4, [8] = deq256_8},
    .mm = mm256,
};

#endif /* QK_X86 */

/* ---- drivers ------------------------------------------------------------ */

static const isa_ops *current_ops(void) {
    pthread_once(&isa_once, isa_init);
#if QK_X86
    if (isa_cur == ISA_AVX512 || isa_cur == ISA_VNNI) return &ops_avx512; /* VNNI: fallback only */
    if (isa_cur == ISA_AVX2 || isa_cur == ISA_AVXVNNI || isa_cur == ISA_AVX2INT) return &ops_avx2; /* int: fallback */
#endif
    return &ops_scalar;
}

/* x[cols] into lane order for an L-lane kernel, zero-padded to nch chunks. */
static void permute_x(float *xp, const float *x, int cols, int bits, int L, int nch) {
    const int cpw = 32 / bits, ch = L * cpw;
    for (int c = 0; c < nch; c++) {
        float *o = xp + (size_t)c * ch;
        const int c0 = c * ch;
        for (int l = 0; l < L; l++)
            for (int k = 0; k < cpw; k++) {
                const int code = c0 + l * cpw + k;
                o[k * L + l] = code < cols ? x[code] : 0.0f;
            }
    }
}

typedef struct {
    const uint32_t *q;
    const uint16_t *s, *b;
    int rows, cols, bits, group, ng, wpr;
} qview;

static qview view_of(const fm_mat *W) {
    qview v = {.q = W->data, .s = W->scales, .b = W->biases, .rows = W->rows, .cols = W->cols,
               .bits = W->bits, .group = W->group};
    v.ng = W->cols / W->group;
    v.wpr = (int)((size_t)W->cols * (size_t)W->bits / 32);
    return v;
}

/* Without scratch memory: the plain-C path, one row and one token at a time. */
typedef struct {
    const qview *v;
    float *y;
    const float *x;
    int T;
} fallback_job;

static void item_fallback(void *arg, int r, int thread) {
    (void)thread;
    const fallback_job *j = arg;
    const qview *v = j->v;
    for (int t = 0; t < j->T; t++)
        j->y[(size_t)t * v->rows + r] = row_scalar_gen(v->q + (size_t)r * v->wpr, v->s + (size_t)r * v->ng,
                                                       v->b + (size_t)r * v->ng, v->ng, v->group, NULL,
                                                       j->x + (size_t)t * v->cols, v->bits);
}

static void qmatmul_fallback(float *y, const float *x, int T, const qview *v) {
    fallback_job j = {.v = v, .y = y, .x = x, .T = T};
    pool_run(v->rows, item_fallback, &j);
}

/* The integer path in use, or -1 for a float path. */
static int int_kind(void) {
    pthread_once(&isa_once, isa_init);
    return isa_cur == ISA_VNNI      ? FM_QINT_VNNI
           : isa_cur == ISA_AVXVNNI ? FM_QINT_AVXVNNI
           : isa_cur == ISA_AVX2INT ? FM_QINT_AVX2
                                    : -1;
}

/* ---- prepared activations (cpu_qact_*) ----------------------------------- */

#define SF_STACK 4112 /* row kernels' scale scratch on the stack: up to 4096 groups a row */
#define ACT_HEAD 64   /* header: the path the activations were prepared for */

typedef struct {
    int kind; /* integer path, or -1: float path */
    int T;
} act_head;

/* Float paths (T = 1): sx [ng] then x in lane order [n]. */
static size_t float_act_n(const isa_ops *ops, int cols, int bits) {
    const int L = ops->lanes, cpw = 32 / bits, wpr = (int)((size_t)cols * bits / 32);
    return (size_t)((wpr + L - 1) / L) * L * cpw;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t cpu_qact_bytes(int T, int cols, int bits, int group) {
    const int ik = int_kind();
    if (ik >= 0) {
        const size_t n = fm_qint_act_bytes(ik, T, cols, bits, group);
        return n ? ACT_HEAD + n : 0;
    }
    if (T != 1 || group <= 0 || cols / group + 16 > SF_STACK) return 0;
    return ACT_HEAD + align64((size_t)(cols / group) * sizeof(float)) +
           float_act_n(current_ops(), cols, bits) * sizeof(float);
}

void cpu_qact_prepare(void *act, const float *x, int T, int cols, int bits, int group) {
    act_head *h = act;
    *h = (act_head){.kind = int_kind(), .T = T};
    char *body = (char *)act + ACT_HEAD;
    if (h->kind >= 0) {
        fm_qint_act_prepare(h->kind, body, x, T, cols, bits, group);
        return;
    }
    const isa_ops *ops = current_ops();
    const int ng = cols / group, L = ops->lanes;
    float *sx = (float *)body, *xp = (float *)(body + align64((size_t)ng * sizeof(float)));
    for (int g = 0; g < ng; g++) {
        const float *xg = x + (size_t)g * group;
        float a[4] = {0};
        for (int i = 0; i < group; i++) a[i & 3] += xg[i];
        sx[g] = (a[0] + a[1]) + (a[2] + a[3]);
    }
    const int wpr = (int)((size_t)cols * bits / 32);
    permute_x(xp, x, cols, bits, L, (wpr + L - 1) / L);
}

void cpu_qact_rows(float *y, const fm_mat *W, int r0, int r1, const void *act) {
    const act_head *h = act;
    const char *body = (const char *)act + ACT_HEAD;
    const qview v = view_of(W);
    if (h->kind >= 0) {
        fm_qint_act_rows(h->kind, body, h->T, y, r0, r1, v.q, v.s, v.b, v.rows, v.cols, v.bits, v.group);
        return;
    }
    const row_fn row = current_ops()->row[v.bits];
    const float *sx = (const float *)body, *xp = (const float *)(body + align64((size_t)v.ng * sizeof(float)));
    float sf[SF_STACK];
    for (int r = r0; r < r1; r++)
        y[r] = row(v.q + (size_t)r * v.wpr, v.wpr, v.s + (size_t)r * v.ng, v.b + (size_t)r * v.ng, v.ng, v.group, sx,
                   xp, sf);
}

/* ---- whole products -------------------------------------------------------- */

typedef struct {
    const fm_mat *W;
    const void *act;
    float *y;
    int rows_per_item;
} rows_job;

static void item_act_rows(void *arg, int i, int thread) {
    (void)thread;
    const rows_job *j = arg;
    const int r0 = i * j->rows_per_item, r1 = r0 + j->rows_per_item < j->W->rows ? r0 + j->rows_per_item : j->W->rows;
    cpu_qact_rows(j->y, j->W, r0, r1, j->act);
}

typedef struct {
    const isa_ops *ops;
    const qview *v;
    const float *xq;
    float *y, *scratch;
    int T;
    size_t n, per, sbn;
} prefill_job;

/* Prefill, float paths: a block of 4 rows dequantized once, then all T tokens. */
static void item_prefill(void *arg, int blk, int thread) {
    const prefill_job *j = arg;
    const qview *v = j->v;
    float *wbuf = j->scratch + (size_t)thread * j->per, *sf = wbuf + 4 * j->n, *bf = sf + j->sbn;
    const int r = blk * 4, nr = v->rows - r < 4 ? v->rows - r : 4;
    for (int k = 0; k < nr; k++)
        j->ops->deq[v->bits](v->q + (size_t)(r + k) * v->wpr, v->wpr, v->s + (size_t)(r + k) * v->ng,
                             v->b + (size_t)(r + k) * v->ng, v->ng, v->group, sf, bf, wbuf + (size_t)k * j->n);
    j->ops->mm(wbuf, nr, j->n, j->xq, j->T, j->y, v->rows, r);
}

void cpu_qmatmul(float *y, const float *x, int T, const fm_mat *W) {
    const qview v = view_of(W);
    const int ik = int_kind();
    /* The integer paths; without scratch memory, the exact float path of the same width. */
    if (ik >= 0 && !fm_qint_matmul(ik, y, x, T, v.q, v.s, v.b, v.rows, v.cols, v.bits, v.group)) return;
    if (T == 1 && ik < 0) {
        const size_t bytes = cpu_qact_bytes(1, v.cols, v.bits, v.group);
        void *act = bytes ? aligned_alloc(64, align64(bytes)) : NULL;
        if (!act) {
            qmatmul_fallback(y, x, T, &v);
            return;
        }
        cpu_qact_prepare(act, x, 1, v.cols, v.bits, v.group);
        rows_job j = {.W = W, .act = act, .y = y, .rows_per_item = pool_rows_per_item((size_t)v.wpr * 4 + (size_t)v.ng * 4)};
        pool_run((v.rows + j.rows_per_item - 1) / j.rows_per_item, item_act_rows, &j);
        free(act);
        return;
    }
    const isa_ops *ops = current_ops();
    const int L = ops->lanes, cpw = 32 / v.bits;
    const int nch = (v.wpr + L - 1) / L;
    prefill_job j = {.ops = ops, .v = &v, .y = y, .T = T};
    j.n = (size_t)nch * L * cpw; /* padded row length in lane order (= cols when L = 1) */
    j.sbn = (size_t)v.ng + 16;   /* scale / bias scratch per thread */
    j.per = 4 * j.n + 2 * j.sbn;
    float *xp = NULL;
    if (L > 1) {
        xp = malloc((size_t)T * j.n * sizeof *xp);
        if (!xp) {
            qmatmul_fallback(y, x, T, &v);
            return;
        }
        for (int t = 0; t < T; t++) permute_x(xp + (size_t)t * j.n, x + (size_t)t * v.cols, v.cols, v.bits, L, nch);
    }
    j.xq = xp ? xp : x;
    j.scratch = malloc((size_t)pool_threads() * j.per * sizeof *j.scratch);
    if (!j.scratch) {
        free(xp);
        qmatmul_fallback(y, x, T, &v);
        return;
    }
    pool_run((v.rows + 3) / 4, item_prefill, &j);
    free(j.scratch);
    free(xp);
}

float cpu_qdot_row(const fm_mat *W, int row, const float *x) {
    const qview v = view_of(W);
    return row_scalar_gen(v.q + (size_t)row * v.wpr, v.s + (size_t)row * v.ng, v.b + (size_t)row * v.ng, v.ng, v.group,
                          NULL, x, v.bits);
}

void cpu_qrow_f32(const fm_mat *W, int row, float *out) {
    const qview v = view_of(W);
    deq_scalar_gen(v.q + (size_t)row * v.wpr, v.s + (size_t)row * v.ng, v.b + (size_t)row * v.ng, v.ng, v.group, out,
                   v.bits);
}

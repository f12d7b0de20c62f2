/* 256-bit kernels of the integer quantized matrix products (see
 * qkernels_vnni.h): "avxvnni" (AVX2 + AVX-VNNI: 256-bit vpdpbusd) and
 * "avx2int" (AVX2 only). Same scheme, activation quantization, layouts and
 * driver as the AVX-512 "vnni" path (qkernels_vnni.c), with chunks of cw = 8
 * words (32 bytes per sub-vector) and token vectors of 8 tokens.
 *
 * The kernels are written once, below the #else, and compiled twice by
 * including this file into itself: once with the AVX-VNNI dot product and
 * target("avx2,fma,avxvnni"), once with the AVX2 one and target("avx2,fma")
 * (so that nothing in the AVX2 kernels can use an AVX-VNNI instruction).
 *
 * The AVX2 dot product. vpmaddubsw multiplies unsigned bytes (the codes) by
 * signed bytes (xq, |xq| ≤ 127) and adds adjacent pairs into int16 with
 * saturation; vpmaddwd by ones then adds pairs of those into int32, which
 * gives the 4-byte sums of vpdpbusd. Exact as long as no int16 sum exceeds
 * 32767:
 *   - 4- and 2-bit codes (≤ 15): a pair is at most 2·15·127 = 3810, so the
 *     decode kernel also adds the nk ≤ 4 sub-vectors of a chunk in int16
 *     (≤ 4·2·3·127 = 3048 for 2-bit, 2·3810 = 7620 for 4-bit) before one
 *     vpmaddwd;
 *   - 8-bit codes (≤ 255): a pair can reach 2·255·127 = 64770, so each code
 *     is split into its nibbles q = 16·h + l (h, l ≤ 15: pairs ≤ 3810) and
 *     Σ q·xq = 16·Σ h·xq + Σ l·xq, the factor 16 applied by vpmaddwd (into
 *     int32). Decode splits the stored bytes on the fly; prefill unpacks each
 *     row into a plane of low and a plane of high nibbles.
 * All integer sums are therefore the exact ones of the vnni path. */
#ifndef QK_INT256_BODY

#include "backend/cpu/qkernels_vnni.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)

#include "core/dtype.h"

#include <immintrin.h>
#include <string.h>

#define AINL __attribute__((always_inline)) inline
#ifndef QV_PREFETCH
#define QV_PREFETCH 1024
#endif
#define QK_CAT_(a, b) a##_##b
#define QK_CAT(a, b) QK_CAT_(a, b)
#define NM(name) QK_CAT(name, QK_P)

typedef fm_qint_shape shape;
typedef fm_qint_tokvecs tokvecs;

static AINL int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define QK_INT256_BODY
#define QK_P avxvnni
#define QK_VNNI 1
#define TGT __attribute__((target("avx2,fma,avxvnni")))
#include "backend/cpu/qkernels_int256.c"
#undef QK_P
#undef QK_VNNI
#undef TGT

#define QK_P avx2
#define QK_VNNI 0
#define TGT __attribute__((target("avx2,fma")))
#include "backend/cpu/qkernels_int256.c"
#undef QK_P
#undef QK_VNNI
#undef TGT

static const fm_qint_kernels kernels_avxvnni = {
    .cw = 8,
    .ub_planes = {[2] = 1, [4] = 1, [8] = 0},
    .row = {[2] = row_2_avxvnni, [4] = row_4_avxvnni, [8] = row_8_avxvnni},
    .unpack = {[2] = unpack_2_avxvnni, [4] = unpack_4_avxvnni, [8] = unpack_8_avxvnni}, /* [8]: unused */
    .tile = {[2] = tile_2_avxvnni, [4] = tile_4_avxvnni, [8] = tile_8_avxvnni},
};

static const fm_qint_kernels kernels_avx2 = {
    .cw = 8,
    .ub_planes = {[2] = 1, [4] = 1, [8] = 2}, /* 8-bit: low and high nibbles */
    .row = {[2] = row_2_avx2, [4] = row_4_avx2, [8] = row_8_avx2},
    .unpack = {[2] = unpack_2_avx2, [4] = unpack_4_avx2, [8] = unpack_8_avx2},
    .tile = {[2] = tile_2_avx2, [4] = tile_4_avx2, [8] = tile_8_avx2},
};

const fm_qint_kernels *fm_qint_kernels_avxvnni(void) { return &kernels_avxvnni; }
const fm_qint_kernels *fm_qint_kernels_avx2(void) { return &kernels_avx2; }

#else /* no x86 GNU C */

const fm_qint_kernels *fm_qint_kernels_avxvnni(void) { return NULL; }
const fm_qint_kernels *fm_qint_kernels_avx2(void) { return NULL; }

#endif

#else /* QK_INT256_BODY: the kernels of one variant (QK_P, QK_VNNI, TGT) */

TGT static AINL __m256 NM(bf16x8)(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

TGT static AINL float NM(hsum)(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

TGT static AINL __m256i NM(words8)(const uint32_t *q, int left) {
    if (left >= 8) return _mm256_loadu_si256((const __m256i *)q);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_epi32((const int *)q, mask);
}

/* acc + 4-byte sums of u·s, codes u ≤ 15 (int16 pairs cannot saturate). */
TGT static AINL __m256i NM(dot_small)(__m256i acc, __m256i u, __m256i s) {
#if QK_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* acc + 4-byte sums of u·s for any bytes u (8-bit codes). */
TGT static AINL __m256i NM(dot_byte)(__m256i acc, __m256i u, __m256i s) {
#if QK_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    const __m256i nib = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(u, nib), hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), nib);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, s), _mm256_set1_epi16(16)));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, s), _mm256_set1_epi16(1)));
#endif
}

/* The 8 lane sums Σ q·xq of one chunk v of codes and its activations xc (P order). */
TGT static AINL __m256i NM(chunk)(__m256i v, const int8_t *xc, __m256i cm, const int bits) {
    const int nk = 8 / bits;
    if (bits == 8) return NM(dot_byte)(_mm256_setzero_si256(), v, _mm256_loadu_si256((const __m256i *)xc));
#if QK_VNNI
    __m256i ia = _mm256_setzero_si256();
    for (int k = 0; k < nk; k++) {
        const __m256i c = _mm256_and_si256(k ? _mm256_srli_epi32(v, k * bits) : v, cm);
        ia = _mm256_dpbusd_avx_epi32(ia, c, _mm256_loadu_si256((const __m256i *)(xc + 32 * k)));
    }
    return ia;
#else
    /* nk int16 pair sums of codes ≤ 15 add up to at most 7620: one vpmaddwd per chunk. */
    __m256i p = _mm256_setzero_si256();
    for (int k = 0; k < nk; k++) {
        const __m256i c = _mm256_and_si256(k ? _mm256_srli_epi32(v, k * bits) : v, cm);
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(xc + 32 * k))));
    }
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
}

/* ---- decode: one row, one token ----------------------------------------- */

TGT static AINL float NM(row)(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,
                              const int8_t *xp, const float *dx, const float *cs, const float *sx, float *sf,
                              const int bits) {
    const int nk = 8 / bits, cpw = 32 / bits, ng = sh->ng, G = sh->group, wpr = sh->wpr;
    __m256 fb = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= ng; g += 8) {
        const __m256 s = NM(bf16x8)(s16 + g), b = NM(bf16x8)(b16 + g);
        _mm256_storeu_ps(sf + g, _mm256_mul_ps(s, _mm256_loadu_ps(dx + g)));
        fb = _mm256_fmadd_ps(s, _mm256_loadu_ps(cs + g), fb);
        fb = _mm256_fmadd_ps(b, _mm256_loadu_ps(sx + g), fb);
    }
    float tail = 0.0f;
    for (; g < ng; g++) {
        const float s = fm_bf16_to_f32(s16[g]), b = fm_bf16_to_f32(b16[g]);
        sf[g] = s * dx[g];
        tail += s * cs[g];
        tail += b * sx[g];
    }
    _mm256_storeu_ps(sf + ng, _mm256_setzero_ps());
    int idx[8];
    for (int l = 0; l < 8; l++) idx[l] = l * cpw / G;
    const __m256i lg = _mm256_loadu_si256((const __m256i *)idx);
    const __m256i cm = _mm256_set1_epi8((char)((1 << bits) - 1));
    __m256 f0 = _mm256_setzero_ps(), f1 = _mm256_setzero_ps();
    int w = 0;
    /* Two chunks (one cache line of codes) per step, then a last partial one. */
    for (; w + 16 <= wpr; w += 16) {
        _mm_prefetch((const char *)(q + w) + QV_PREFETCH, _MM_HINT_T0);
        const int8_t *xc = xp + (size_t)(w / 8) * 32 * nk;
        const __m256i ia = NM(chunk)(_mm256_loadu_si256((const __m256i *)(q + w)), xc, cm, bits);
        const __m256i ib = NM(chunk)(_mm256_loadu_si256((const __m256i *)(q + w + 8)), xc + 32 * nk, cm, bits);
        f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + w * cpw / G), lg), f0);
        f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib),
                             _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + (w + 8) * cpw / G), lg), f1);
    }
    for (; w < wpr; w += 8) {
        const __m256i ia = NM(chunk)(NM(words8)(q + w, wpr - w), xp + (size_t)(w / 8) * 32 * nk, cm, bits);
        f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + w * cpw / G), lg), f0);
    }
    return NM(hsum)(_mm256_add_ps(f0, f1)) + (NM(hsum)(fb) + tail);
}

/* ---- prefill: 4 rows × all tokens --------------------------------------- */

/* A row in P order (codes ≤ 15), or for 8-bit (AVX2 only) its low nibbles
 * followed, np bytes later, by its high nibbles. */
TGT static AINL void NM(unpack)(const shape *sh, const uint32_t *q, uint8_t *ub, const int bits) {
    const int nk = 8 / bits;
    const __m256i cm = _mm256_set1_epi8((char)(bits == 8 ? 0x0f : (1 << bits) - 1));
    for (int w = 0, ch = 0; w < sh->wpr; w += 8, ch++) {
        const __m256i v = NM(words8)(q + w, sh->wpr - w);
        if (bits == 8) {
            _mm256_storeu_si256((__m256i *)(ub + (size_t)ch * 32), _mm256_and_si256(v, cm));
            _mm256_storeu_si256((__m256i *)(ub + sh->np + (size_t)ch * 32),
                                _mm256_and_si256(_mm256_srli_epi16(v, 4), cm));
            continue;
        }
        for (int k = 0; k < nk; k++)
            _mm256_storeu_si256((__m256i *)(ub + (size_t)ch * 32 * nk + 32 * k),
                                _mm256_and_si256(k ? _mm256_srli_epi32(v, k * bits) : v, cm));
    }
}

/* acc + the quad at offset o of row u (all tokens of x). */
TGT static AINL __m256i NM(quad)(__m256i acc, const uint8_t *u, size_t o, __m256i x, size_t np, const int bits) {
#if QK_VNNI
    (void)np, (void)bits;
    return _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32(ld32(u + o)), x);
#else
    if (bits == 8) {
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(ld32(u + np + o)), x),
                                                      _mm256_set1_epi16(16)));
        return _mm256_add_epi32(
            acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(ld32(u + o)), x), _mm256_set1_epi16(1)));
    }
    return NM(dot_small)(acc, _mm256_set1_epi32(ld32(u + o)), x);
#endif
}

/* y[t, r + j] for j < nr rows and the tokens of token vector v (and v + 1 when two). */
TGT static AINL void NM(tile_pass)(const shape *sh, const uint8_t *const ub[4], int nr, const float *sf,
                                   const float *bf, const tokvecs *tv, int T, float *y, int r, int v, const int two,
                                   const int bits) {
    const int ng = sh->ng, G = sh->group, nk = sh->nk, wpg = sh->wpg, rows = sh->rows;
    const size_t np = sh->np;
    const uint8_t *u0 = ub[0], *u1 = ub[nr > 1 ? 1 : 0], *u2 = ub[nr > 2 ? 2 : 0], *u3 = ub[nr > 3 ? 3 : 0];
    const float *s0 = sf, *s1 = sf + (nr > 1 ? ng : 0), *s2 = sf + (nr > 2 ? 2 * ng : 0), *s3 = sf + (nr > 3 ? 3 * ng : 0);
    const float *b0 = bf, *b1 = bf + (nr > 1 ? ng : 0), *b2 = bf + (nr > 2 ? 2 * ng : 0), *b3 = bf + (nr > 3 ? 3 * ng : 0);
    const size_t vstride = (size_t)sh->cols * 8; /* bytes of xT per token vector */
    const int v1 = two ? v + 1 : v;
    const int8_t *xa = tv->xT + (size_t)v * vstride, *xb = tv->xT + (size_t)v1 * vstride;
    __m256 f[4][2];
    for (int j = 0; j < 4; j++) f[j][0] = f[j][1] = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m256i i00 = _mm256_setzero_si256(), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00,
                i31 = i00;
        const int w0 = g * wpg;
        size_t n = (size_t)g * (G / 4) * 32;
        for (int k = 0; k < nk; k++) {
            for (int li = 0; li < wpg; li++, n += 32) {
                /* (a 4-bit group of 128 spans two chunks) */
                const size_t o = fm_qint_quad_off(w0 + li, k, nk, 8);
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xa + n));
                const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)(xb + n)) : x0;
                i00 = NM(quad)(i00, u0, o, x0, np, bits);
                if (two) i01 = NM(quad)(i01, u0, o, x1, np, bits);
                i10 = NM(quad)(i10, u1, o, x0, np, bits);
                if (two) i11 = NM(quad)(i11, u1, o, x1, np, bits);
                i20 = NM(quad)(i20, u2, o, x0, np, bits);
                if (two) i21 = NM(quad)(i21, u2, o, x1, np, bits);
                i30 = NM(quad)(i30, u3, o, x0, np, bits);
                if (two) i31 = NM(quad)(i31, u3, o, x1, np, bits);
            }
        }
        const __m256i ia[4][2] = {{i00, i01}, {i10, i11}, {i20, i21}, {i30, i31}};
        const float sg[4] = {s0[g], s1[g], s2[g], s3[g]}, bg[4] = {b0[g], b1[g], b2[g], b3[g]};
        for (int h = 0; h < 1 + two; h++) {
            const size_t a = ((size_t)(v + h) * ng + g) * 8;
            const __m256 d = _mm256_loadu_ps(tv->dxT + a), c = _mm256_loadu_ps(tv->csT + a),
                         sxv = _mm256_loadu_ps(tv->sxT + a);
            for (int j = 0; j < 4; j++) {
                f[j][h] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[j][h]), d, c), _mm256_set1_ps(sg[j]),
                                          f[j][h]);
                f[j][h] = _mm256_fmadd_ps(sxv, _mm256_set1_ps(bg[j]), f[j][h]);
            }
        }
    }
    float out[4][2][8];
    for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(out[j][h], f[j][h]);
    for (int h = 0; h < (v1 > v ? 2 : 1); h++)
        for (int l = 0; l < 8; l++) {
            const int t = (v + h) * 8 + l;
            if (t >= T) break;
            for (int j = 0; j < nr; j++) y[(size_t)t * rows + r + j] = out[j][h][l];
        }
}

#define QK_FNS(B)                                                                                                   \
    TGT static float NM(row_##B)(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,      \
                                 const int8_t *xp, const float *dx, const float *cs, const float *sx, float *sf) {  \
        return NM(row)(sh, q, s16, b16, xp, dx, cs, sx, sf, B);                                                     \
    }                                                                                                               \
    TGT static void NM(unpack_##B)(const shape *sh, const uint32_t *q, uint8_t *ub) { NM(unpack)(sh, q, ub, B); }   \
    TGT static void NM(tile_##B)(const shape *sh, const uint8_t *const ub[4], int nr, const float *sf,              \
                                 const float *bf, const tokvecs *tv, int T, float *y, int r) {                      \
        int v = 0;                                                                                                  \
        for (; v + 1 < tv->ntv; v += 2) NM(tile_pass)(sh, ub, nr, sf, bf, tv, T, y, r, v, 1, B);                    \
        if (v < tv->ntv) NM(tile_pass)(sh, ub, nr, sf, bf, tv, T, y, r, v, 0, B);                                   \
    }
QK_FNS(2)
QK_FNS(4)
QK_FNS(8)
#undef QK_FNS

#endif /* QK_INT256_BODY */

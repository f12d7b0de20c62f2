/* Integer quantized matrix products with AVX-512 VNNI (see qkernels_vnni.h).
 *
 * Scheme. Each input vector (each token) is quantized to int8 in the weight's
 * groups of G consecutive columns: amax_g = max |x| over the group, dx_g =
 * amax_g/127, xq = rint(x · (127/amax_g)) in [-127, 127] (all zero when
 * amax_g < FM_QVNNI_TINY); Σx_g is kept in float32 from the unquantized x and
 * Σxq_g as an integer. The codes q (0 .. 2^bits − 1) are vpdpbusd's unsigned
 * byte operand and xq its signed one, so isum_g = Σ q·xq is exact in int32.
 * With m = 2^(bits−1), per row and group
 *     y += s_g · (dx_g · isum_g + cs_g) + b_g · Σx_g,   cs_g = m · (Σx_g − dx_g · Σxq_g),
 * which is s·dx·Σ(q − m)·xq + (b + s·m)·Σx: the integer product is centred on
 * the middle of the group's range, so the rounding error of xq (|x − dx·xq| ≤
 * dx/2) is weighted by |w − b − s·m| = |s|·|q − m| ≤ |s|·m rather than by
 * |w − b| (up to twice as large), while the exact Σx carries the rest. Only
 * float rounding separates the result from the same formula in exact
 * arithmetic: the integer sums are exact, the float order of the per-group
 * scaling is the kernels' own (tests/test_quant.c checks both bounds).
 * Non-finite x give non-finite y (through Σx).
 *
 * This file holds the scheme's shared parts (activation quantization, layouts,
 * the multi-threaded driver) and the AVX-512 kernels; qkernels_int256.c the
 * 256-bit ones (cw = 8 below: chunks of 8 words, token vectors of 8 tokens).
 *
 * Layout ("P order"). A chunk is cw = 16 uint32 words (64 bytes) of a row, L =
 * cw·(32/bits) codes; nk = 8/bits. Shifting the chunk right by k·bits and
 * masking every byte with 2^bits − 1 gives sub-vector k (k < nk), whose byte j
 * is code j·nk + k of the chunk. Byte j of sub-vector k is byte 4·cw·k + j of
 * the chunk in P order; activations are permuted once per call into P order. Lane l
 * (4 bytes) of every sub-vector covers the codes of word l, so it lies in one
 * group; decode converts the 16 int32 lane sums of a chunk to float once per
 * chunk (a chunk is one group or more for 4- and 2-bit, half of one for 8-bit
 * group 128) and scales them by s·dx of each lane's group.
 *
 * Prefill (T ≥ 8) swaps the roles of the lanes: cw tokens per vector. Every
 * quad (4 bytes of one lane of one sub-vector: 4 codes of one group) of a
 * row is broadcast to all lanes and multiplied with the same quad of 16
 * tokens, so one vpdpbusd adds 4 codes × 16 tokens, and int32 sums are
 * converted once per group, row and 16 tokens. The activations are laid out
 * per 16 tokens in the order the kernel walks the quads (group, sub-vector,
 * word), so they are read sequentially; a block of 4 rows is unpacked once
 * into P-ordered bytes (8-bit rows are used as they are) and reused for all
 * tokens, 4 rows × 32 tokens per register tile (× 16 for a last odd token
 * vector). Below 8 tokens, decode's row kernel runs each row for every token
 * while the row is in L1.
 *
 * Decode prefetches the codes QV_PREFETCH bytes ahead: without it the row
 * kernel reached about 0.75 of the memory bandwidth, with it about 0.95. */
#include "backend/cpu/qkernels_vnni.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)

#include "core/dtype.h"
#include "core/pool.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define AINL __attribute__((always_inline)) inline
#ifndef QV_PREFETCH
#define QV_PREFETCH 1024
#endif

typedef fm_qint_shape shape;
typedef fm_qint_tokvecs tokvecs;

/* ---- activations (all integer paths) ------------------------------------ */

#define T256 __attribute__((target("avx2,fma")))

T256 static AINL float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

T256 static AINL float hmax8(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

T256 static AINL int hsum8i(__m256i v) {
    __m128i a = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    a = _mm_add_epi32(a, _mm_shuffle_epi32(a, 0x4e));
    a = _mm_add_epi32(a, _mm_shuffle_epi32(a, 0xb1));
    return _mm_cvtsi128_si32(a);
}

/* Quantizes x[cols] into xn (natural order, cols bytes) and dx, cs, sx per
 * group (AVX2: the same for every integer path; groups are multiples of 32). */
T256 static void quant_token(const shape *sh, const float *x, int8_t *xn, float *dx, float *cs, float *sx) {
    const int G = sh->group;
    const float m = (float)(1 << (sh->bits - 1));
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int g = 0; g < sh->ng; g++) {
        const float *xg = x + (size_t)g * G;
        __m256 a = _mm256_setzero_ps(), s = _mm256_setzero_ps();
        for (int i = 0; i < G; i += 8) {
            const __m256 v = _mm256_loadu_ps(xg + i);
            a = _mm256_max_ps(a, _mm256_and_ps(v, absm));
            s = _mm256_add_ps(s, v);
        }
        const float amax = hmax8(a), d = amax / 127.0f;
        const __m256 id = _mm256_set1_ps(amax >= FM_QVNNI_TINY ? 127.0f / amax : 0.0f);
        __m256i qs = _mm256_setzero_si256();
        for (int i = 0; i < G; i += 32) {
            __m256i qi[4];
            for (int j = 0; j < 4; j++) {
                /* Non-finite x convert to INT_MIN; clamp (finite x give [-127, 127] already). */
                qi[j] = _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i + 8 * j), id)), lo);
                qs = _mm256_add_epi32(qs, qi[j]);
            }
            const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
            _mm256_storeu_si256((__m256i *)(xn + (size_t)g * G + i), _mm256_permutevar8x32_epi32(b, fix));
        }
        const float sxg = hsum8(s);
        dx[g] = d;
        sx[g] = sxg;
        cs[g] = m * (sxg - d * (float)hsum8i(qs));
    }
}

/* xn (natural order, zero-padded to np) → xp (P order for chunks of cw words). */
static void permute_token(const shape *sh, const int8_t *xn, int8_t *xp) {
    if (sh->bits == 8) {
        memcpy(xp, xn, sh->np);
        return;
    }
    const int nk = sh->nk, sv = 4 * sh->cw; /* bytes per sub-vector */
    for (size_t c0 = 0; c0 < sh->np; c0 += (size_t)sv * nk)
        for (int k = 0; k < nk; k++)
            for (int j = 0; j < sv; j++) xp[c0 + (size_t)sv * k + j] = xn[c0 + (size_t)j * nk + k];
}

/* ---- decode: one row, one token ----------------------------------------- */

TV static AINL __m512 bf16x16(const uint16_t *p, int n) {
    const __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)p)
                              : _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

TV static AINL __m512i words16(const uint32_t *q, int left) {
    return left >= 16 ? _mm512_loadu_si512(q) : _mm512_maskz_loadu_epi32((__mmask16)((1u << left) - 1u), q);
}

/* Σ_c W[c]·x[c] for one row and one quantized token (xp, dx, cs, sx);
 * sf: scratch of ng + 16 floats. */
TV static AINL float row_vnni(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,
                              const int8_t *xp, const float *dx, const float *cs, const float *sx, float *sf,
                              const int bits) {
    const int nk = 8 / bits, cpw = 32 / bits, ng = sh->ng, G = sh->group, wpr = sh->wpr;
    __m512 fb = _mm512_setzero_ps();
    for (int g = 0; g < ng; g += 16) {
        const int n = ng - g < 16 ? ng - g : 16;
        const __mmask16 mk = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
        const __m512 s = bf16x16(s16 + g, n), b = bf16x16(b16 + g, n);
        _mm512_storeu_ps(sf + g, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(mk, dx + g)));
        fb = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(mk, cs + g), fb);
        fb = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps(mk, sx + g), fb);
    }
    _mm512_storeu_ps(sf + ng, _mm512_setzero_ps());
    int idx[16];
    for (int l = 0; l < 16; l++) idx[l] = l * cpw / G;
    const __m512i lg = _mm512_loadu_si512(idx);
    const __m512i cm = _mm512_set1_epi8((char)((1 << bits) - 1));
    __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
    for (int w = 0, ch = 0; w < wpr; w += 16, ch++) {
        _mm_prefetch((const char *)(q + w) + QV_PREFETCH, _MM_HINT_T0);
        const __m512i v = words16(q + w, wpr - w);
        const int8_t *xc = xp + (size_t)ch * 64 * nk;
        __m512i ia = _mm512_setzero_si512();
        if (bits == 8) {
            ia = _mm512_dpbusd_epi32(ia, v, _mm512_loadu_si512(xc));
        } else {
            for (int k = 0; k < nk; k++) {
                const __m512i c = _mm512_and_si512(k ? _mm512_srli_epi32(v, k * bits) : v, cm);
                ia = _mm512_dpbusd_epi32(ia, c, _mm512_loadu_si512(xc + 64 * k));
            }
        }
        const __m512 sc = _mm512_permutexvar_ps(lg, _mm512_loadu_ps(sf + w * cpw / G));
        if (ch & 1) f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), sc, f1);
        else f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), sc, f0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(f0, f1)) + _mm512_reduce_add_ps(fb);
}

/* As row_vnni for nt ≤ 4 tokens at once: each chunk of codes is loaded and
 * unpacked once for all of them. Every token goes through row_vnni's
 * operations in row_vnni's order, so each result is bit-identical to it.
 * sf: scratch of 4·(ng + 16) floats. */
TV static AINL void rows4_vnni(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,
                               const int8_t *const xp[4], const float *const dx[4], const float *const cs[4],
                               const float *const sx[4], float *sf, float y[4], const int nt, const int bits) {
    const int nk = 8 / bits, cpw = 32 / bits, ng = sh->ng, G = sh->group, wpr = sh->wpr;
    const size_t sfn = (size_t)ng + 16;
    __m512 fb[4];
    for (int j = 0; j < nt; j++) fb[j] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g += 16) {
        const int n = ng - g < 16 ? ng - g : 16;
        const __mmask16 mk = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
        const __m512 s = bf16x16(s16 + g, n), b = bf16x16(b16 + g, n);
        for (int j = 0; j < nt; j++) {
            _mm512_storeu_ps(sf + j * sfn + g, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(mk, dx[j] + g)));
            fb[j] = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(mk, cs[j] + g), fb[j]);
            fb[j] = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps(mk, sx[j] + g), fb[j]);
        }
    }
    for (int j = 0; j < nt; j++) _mm512_storeu_ps(sf + j * sfn + ng, _mm512_setzero_ps());
    int idx[16];
    for (int l = 0; l < 16; l++) idx[l] = l * cpw / G;
    const __m512i lg = _mm512_loadu_si512(idx);
    const __m512i cm = _mm512_set1_epi8((char)((1 << bits) - 1));
    __m512 f0[4], f1[4];
    for (int j = 0; j < nt; j++) f0[j] = f1[j] = _mm512_setzero_ps();
    for (int w = 0, ch = 0; w < wpr; w += 16, ch++) {
        _mm_prefetch((const char *)(q + w) + QV_PREFETCH, _MM_HINT_T0);
        const __m512i v = words16(q + w, wpr - w);
        __m512i c[4];
        for (int k = 0; k < nk; k++) c[k] = bits == 8 ? v : _mm512_and_si512(k ? _mm512_srli_epi32(v, k * bits) : v, cm);
        const size_t xo = (size_t)ch * 64 * nk, so = (size_t)(w * cpw / G);
        for (int j = 0; j < nt; j++) {
            __m512i ia = _mm512_setzero_si512();
            for (int k = 0; k < nk; k++) ia = _mm512_dpbusd_epi32(ia, c[k], _mm512_loadu_si512(xp[j] + xo + 64 * k));
            const __m512 sc = _mm512_permutexvar_ps(lg, _mm512_loadu_ps(sf + j * sfn + so));
            if (ch & 1) f1[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), sc, f1[j]);
            else f0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), sc, f0[j]);
        }
    }
    for (int j = 0; j < nt; j++) y[j] = _mm512_reduce_add_ps(_mm512_add_ps(f0[j], f1[j])) + _mm512_reduce_add_ps(fb[j]);
}

/* ---- prefill: 4 rows × all tokens --------------------------------------- */

/* Row r of the block unpacked into P order (8-bit rows are already). */
TV static AINL void unpack_row(const shape *sh, const uint32_t *q, uint8_t *ub, const int bits) {
    const int nk = 8 / bits;
    const __m512i cm = _mm512_set1_epi8((char)((1 << bits) - 1));
    for (int w = 0, ch = 0; w < sh->wpr; w += 16, ch++) {
        const __m512i v = words16(q + w, sh->wpr - w);
        for (int k = 0; k < nk; k++)
            _mm512_storeu_si512(ub + (size_t)ch * 64 * nk + 64 * k,
                                _mm512_and_si512(k ? _mm512_srli_epi32(v, k * bits) : v, cm));
    }
}

static AINL int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define DP2(i0, i1, w)                                                                                              \
    do {                                                                                                            \
        const __m512i wb_ = _mm512_set1_epi32(w);                                                                   \
        i0 = _mm512_dpbusd_epi32(i0, wb_, x0);                                                                      \
        if (two) i1 = _mm512_dpbusd_epi32(i1, wb_, x1);                                                             \
    } while (0)

#define FIN(f, ia, d, c, sxv, s, b)                                                                                 \
    do {                                                                                                            \
        f = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), d, c), _mm512_set1_ps(s), f);                   \
        f = _mm512_fmadd_ps(sxv, _mm512_set1_ps(b), f);                                                             \
    } while (0)

/* y[t, r + j] for j < nr rows (P-ordered bytes ub[j], f32 scales sf[j·ng ..]
 * and biases bf[j·ng ..]) and the tokens of token vector v (and v + 1 when
 * two). */
TV static AINL void tile_pass(const shape *sh, const uint8_t *const ub[4], int nr, const float *sf, const float *bf,
                              const tokvecs *tv, int T, float *y, int r, int v, const int two) {
    const int ng = sh->ng, G = sh->group, nk = sh->nk, wpg = sh->wpg, rows = sh->rows;
    const uint8_t *u0 = ub[0], *u1 = ub[nr > 1 ? 1 : 0], *u2 = ub[nr > 2 ? 2 : 0], *u3 = ub[nr > 3 ? 3 : 0];
    const float *s0 = sf, *s1 = sf + (nr > 1 ? ng : 0), *s2 = sf + (nr > 2 ? 2 * ng : 0), *s3 = sf + (nr > 3 ? 3 * ng : 0);
    const float *b0 = bf, *b1 = bf + (nr > 1 ? ng : 0), *b2 = bf + (nr > 2 ? 2 * ng : 0), *b3 = bf + (nr > 3 ? 3 * ng : 0);
    const size_t vstride = (size_t)sh->cols * 16; /* bytes of xT per token vector */
    {
        const int v1 = two ? v + 1 : v;
        const int8_t *xa = tv->xT + (size_t)v * vstride, *xb = tv->xT + (size_t)v1 * vstride;
        __m512 f00 = _mm512_setzero_ps(), f01 = f00, f10 = f00, f11 = f00, f20 = f00, f21 = f00, f30 = f00, f31 = f00;
        for (int g = 0; g < ng; g++) {
            __m512i i00 = _mm512_setzero_si512(), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00,
                    i31 = i00;
            const int w0 = g * wpg;
            size_t n = (size_t)g * (G / 4) * 64;
            for (int k = 0; k < nk; k++) {
                const size_t base = fm_qint_quad_off(w0, k, nk, 16);
                for (int li = 0; li < wpg; li++, n += 64) {
                    const size_t o = base + 4 * (size_t)li;
                    const __m512i x0 = _mm512_loadu_si512(xa + n), x1 = two ? _mm512_loadu_si512(xb + n) : x0;
                    DP2(i00, i01, ld32(u0 + o));
                    DP2(i10, i11, ld32(u1 + o));
                    DP2(i20, i21, ld32(u2 + o));
                    DP2(i30, i31, ld32(u3 + o));
                }
            }
            const size_t ga = ((size_t)v * ng + g) * 16, gb = ((size_t)v1 * ng + g) * 16;
            const __m512 da = _mm512_loadu_ps(tv->dxT + ga), ca = _mm512_loadu_ps(tv->csT + ga),
                         sa = _mm512_loadu_ps(tv->sxT + ga);
            const __m512 db = _mm512_loadu_ps(tv->dxT + gb), cb = _mm512_loadu_ps(tv->csT + gb),
                         sb = _mm512_loadu_ps(tv->sxT + gb);
            FIN(f00, i00, da, ca, sa, s0[g], b0[g]);
            if (two) FIN(f01, i01, db, cb, sb, s0[g], b0[g]);
            FIN(f10, i10, da, ca, sa, s1[g], b1[g]);
            if (two) FIN(f11, i11, db, cb, sb, s1[g], b1[g]);
            FIN(f20, i20, da, ca, sa, s2[g], b2[g]);
            if (two) FIN(f21, i21, db, cb, sb, s2[g], b2[g]);
            FIN(f30, i30, da, ca, sa, s3[g], b3[g]);
            if (two) FIN(f31, i31, db, cb, sb, s3[g], b3[g]);
        }
        float out[4][2][16];
        _mm512_storeu_ps(out[0][0], f00);
        _mm512_storeu_ps(out[0][1], f01);
        _mm512_storeu_ps(out[1][0], f10);
        _mm512_storeu_ps(out[1][1], f11);
        _mm512_storeu_ps(out[2][0], f20);
        _mm512_storeu_ps(out[2][1], f21);
        _mm512_storeu_ps(out[3][0], f30);
        _mm512_storeu_ps(out[3][1], f31);
        for (int h = 0; h < (v1 > v ? 2 : 1); h++)
            for (int l = 0; l < 16; l++) {
                const int t = (v + h) * 16 + l;
                if (t >= T) break;
                for (int j = 0; j < nr; j++) y[(size_t)t * rows + r + j] = out[j][h][l];
            }
    }
}

/* All tokens: pairs of token vectors, then a single one. */
TV static void tile_vnni(const shape *sh, const uint8_t *const ub[4], int nr, const float *sf, const float *bf,
                         const tokvecs *tv, int T, float *y, int r) {
    int v = 0;
    for (; v + 1 < tv->ntv; v += 2) tile_pass(sh, ub, nr, sf, bf, tv, T, y, r, v, 1);
    if (v < tv->ntv) tile_pass(sh, ub, nr, sf, bf, tv, T, y, r, v, 0);
}

/* ---- drivers ------------------------------------------------------------ */

#define ROW_FN(B)                                                                                                   \
    TV static float row_vnni_##B(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,      \
                                 const int8_t *xp, const float *dx, const float *cs, const float *sx, float *sf) {  \
        return row_vnni(sh, q, s16, b16, xp, dx, cs, sx, sf, B);                                                    \
    }                                                                                                               \
    TV static void unpack_row_##B(const shape *sh, const uint32_t *q, uint8_t *ub) { unpack_row(sh, q, ub, B); }
ROW_FN(2)
ROW_FN(4)
ROW_FN(8)

/* rows4_vnni for 2, 3 and 4 tokens (constants, so its token loops unroll). */
#define ROWS4_FN(B)                                                                                                 \
    TV static void rows4_vnni_##B(const shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,     \
                                  const int8_t *const xp[4], const float *const dx[4], const float *const cs[4],    \
                                  const float *const sx[4], int nt, float *sf, float y[4]) {                        \
        if (nt == 2) rows4_vnni(sh, q, s16, b16, xp, dx, cs, sx, sf, y, 2, B);                                      \
        else if (nt == 3) rows4_vnni(sh, q, s16, b16, xp, dx, cs, sx, sf, y, 3, B);                                 \
        else rows4_vnni(sh, q, s16, b16, xp, dx, cs, sx, sf, y, 4, B);                                              \
    }
ROWS4_FN(2)
ROWS4_FN(4)
ROWS4_FN(8)

static const fm_qint_kernels kernels_vnni = {
    .cw = 16,
    .rows4 = {[2] = rows4_vnni_2, [4] = rows4_vnni_4, [8] = rows4_vnni_8},
    .ub_planes = {[2] = 1, [4] = 1, [8] = 0},
    .row = {[2] = row_vnni_2, [4] = row_vnni_4, [8] = row_vnni_8},
    .unpack = {[2] = unpack_row_2, [4] = unpack_row_4, [8] = unpack_row_8}, /* [8]: unused */
    .tile = {[2] = tile_vnni, [4] = tile_vnni, [8] = tile_vnni},
};

static const fm_qint_kernels *kernels_of(int kind) {
    switch (kind) {
    case FM_QINT_VNNI: return &kernels_vnni;
    case FM_QINT_AVXVNNI: return fm_qint_kernels_avxvnni();
    case FM_QINT_AVX2: return fm_qint_kernels_avx2();
    default: return NULL;
    }
}

/* AVX-VNNI (VEX-encoded vpdpbusd): CPUID leaf 7, sub-leaf 1, EAX bit 4. Read
 * directly: older compilers' __builtin_cpu_supports does not know the name. */
static int has_avx_vnni(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u);
}

int fm_qint_supported(int kind) {
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!kernels_of(kind) || !avx2) return 0;
    switch (kind) {
    case FM_QINT_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case FM_QINT_AVXVNNI: return has_avx_vnni();
    case FM_QINT_AVX2: return 1;
    default: return 0;
    }
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Per-token activations in P order: xp [T][np], dx, cs, sx [T][ng]. */
typedef struct {
    int8_t *xp;
    float *dx, *cs, *sx;
} tokens;

/* Builds the layout of token vector v (cw tokens) of the prefill from the per-token one. */
static void build_tokvecs(const shape *sh, const tokens *tk, int T, int v, int8_t *xT, float *dxT, float *csT,
                          float *sxT) {
    const int ng = sh->ng, nk = sh->nk, wpg = sh->wpg, cw = sh->cw;
    int8_t *o = xT + (size_t)v * sh->cols * cw;
    const int nt = T - v * cw < cw ? T - v * cw : cw;
    for (int g = 0; g < ng; g++)
        for (int k = 0; k < nk; k++)
            for (int li = 0; li < wpg; li++, o += 4 * cw) {
                const size_t off = fm_qint_quad_off(g * wpg + li, k, nk, cw);
                memset(o, 0, (size_t)4 * cw);
                for (int l = 0; l < nt; l++) memcpy(o + 4 * l, tk->xp + (size_t)(v * cw + l) * sh->np + off, 4);
            }
    for (int g = 0; g < ng; g++) {
        const size_t a = ((size_t)v * ng + g) * cw;
        for (int l = 0; l < cw; l++) {
            const size_t t = (size_t)(v * cw + l) * ng + g;
            dxT[a + l] = l < nt ? tk->dx[t] : 0.0f;
            csT[a + l] = l < nt ? tk->cs[t] : 0.0f;
            sxT[a + l] = l < nt ? tk->sx[t] : 0.0f;
        }
    }
}

static shape make_shape(int cw, int rows, int cols, int bits, int group) {
    shape sh = {.rows = rows, .cols = cols, .bits = bits, .group = group, .cw = cw};
    sh.cpw = 32 / bits;
    sh.nk = 8 / bits;
    sh.ng = cols / group;
    sh.wpr = (int)((size_t)cols * bits / 32);
    sh.nch = (sh.wpr + cw - 1) / cw;
    sh.wpg = group / sh.cpw;
    sh.np = (size_t)sh.nch * 4 * cw * sh.nk;
    return sh;
}

/* The per-token activations (tokens, above) in one buffer: xp, then dx, cs, sx. */
static size_t tokens_bytes(const shape *sh, int T) {
    return align64((size_t)T * sh->np) + 3 * align64((size_t)T * sh->ng * sizeof(float));
}

static tokens tokens_at(const shape *sh, void *mem, int T) {
    char *p = mem;
    const size_t tf = align64((size_t)T * sh->ng * sizeof(float));
    tokens tk;
    tk.xp = (int8_t *)p, p += align64((size_t)T * sh->np);
    tk.dx = (float *)p, p += tf;
    tk.cs = (float *)p, p += tf;
    tk.sx = (float *)p;
    return tk;
}

/* Quantizes token t (x_t) into tk; xn: np bytes of scratch, zero past cols. */
static void prepare_token(const shape *sh, const tokens *tk, const float *x_t, int t, int8_t *xn) {
    const size_t ng = (size_t)sh->ng;
    quant_token(sh, x_t, xn, tk->dx + t * ng, tk->cs + t * ng, tk->sx + t * ng);
    permute_token(sh, xn, tk->xp + (size_t)t * sh->np);
}

/* y[t, r] for rows [r0, r1) and all T tokens with the row kernel (up to 4
 * tokens per pass over a row where the kernels have rows4); sf: SF_FLOATS(ng). */
static void rows_tokens(const fm_qint_kernels *K, const shape *sh, const tokens *tk, int T, float *y, int r0, int r1,
                        const uint32_t *q, const uint16_t *scales, const uint16_t *biases, float *sf) {
    const fm_qint_row_fn row = K->row[sh->bits];
    const fm_qint_rows4_fn rows4 = K->rows4[sh->bits];
    const size_t wpr = (size_t)sh->wpr, ng = (size_t)sh->ng;
    for (int r = r0; r < r1; r++) {
        const uint32_t *qr = q + (size_t)r * wpr;
        const uint16_t *sr = scales + (size_t)r * ng, *br = biases + (size_t)r * ng;
        for (int t = 0; t < T;) {
            const int nt = rows4 && T - t > 1 ? (T - t < 4 ? T - t : 4) : 1;
            if (nt == 1) {
                y[(size_t)t * sh->rows + r] = row(sh, qr, sr, br, tk->xp + (size_t)t * sh->np, tk->dx + (size_t)t * ng,
                                                  tk->cs + (size_t)t * ng, tk->sx + (size_t)t * ng, sf);
            } else {
                const int8_t *xp[4];
                const float *dx[4], *cs[4], *sx[4];
                float out[4];
                for (int j = 0; j < nt; j++) {
                    xp[j] = tk->xp + (size_t)(t + j) * sh->np;
                    dx[j] = tk->dx + (size_t)(t + j) * ng;
                    cs[j] = tk->cs + (size_t)(t + j) * ng;
                    sx[j] = tk->sx + (size_t)(t + j) * ng;
                }
                rows4(sh, qr, sr, br, xp, dx, cs, sx, nt, sf, out);
                for (int j = 0; j < nt; j++) y[(size_t)(t + j) * sh->rows + r] = out[j];
            }
            t += nt;
        }
    }
}

#define SF_MAX_GROUPS 4096 /* groups a row for the row kernels (their scale scratch lives on the stack) */
#define SF_FLOATS(ng) (4 * ((size_t)(ng) + 16))

static int usable(int kind, int T, int cols, int bits, int group) {
    return fm_qint_supported(kind) && (bits == 2 || bits == 4 || bits == 8) && T >= 1 && group > 0 &&
           cols / group <= SF_MAX_GROUPS;
}

size_t fm_qint_act_bytes(int kind, int T, int cols, int bits, int group) {
    if (!usable(kind, T, cols, bits, group) || T >= FM_QINT_TILE_MIN) return 0;
    const shape sh = make_shape(kernels_of(kind)->cw, 1, cols, bits, group);
    return tokens_bytes(&sh, T) + align64(sh.np);
}

void fm_qint_act_prepare(int kind, void *act, const float *x, int T, int cols, int bits, int group) {
    const shape sh = make_shape(kernels_of(kind)->cw, 1, cols, bits, group);
    const tokens tk = tokens_at(&sh, act, T);
    int8_t *xn = (int8_t *)act + tokens_bytes(&sh, T);
    memset(xn + cols, 0, sh.np - (size_t)cols);
    for (int t = 0; t < T; t++) prepare_token(&sh, &tk, x + (size_t)t * cols, t, xn);
}

void fm_qint_act_rows(int kind, const void *act, int T, float *y, int r0, int r1, const uint32_t *q,
                      const uint16_t *scales, const uint16_t *biases, int rows, int cols, int bits, int group) {
    const fm_qint_kernels *K = kernels_of(kind);
    const shape sh = make_shape(K->cw, rows, cols, bits, group);
    const tokens tk = tokens_at(&sh, (void *)act, T);
    float sf[SF_FLOATS(SF_MAX_GROUPS)];
    rows_tokens(K, &sh, &tk, T, y, r0, r1, q, scales, biases, sf);
}

/* ---- whole products on the pool ------------------------------------------ */

typedef struct {
    const fm_qint_kernels *K;
    shape sh;
    tokens tk;
    const float *x;
    float *y;
    int T, rows_per_item;
    const uint32_t *q;
    const uint16_t *scales, *biases;
    char *thr; /* per-thread scratch: xn, sf, bf, ub */
    size_t sz_xn, sz_sf, per_thread;
    fm_qint_tokvecs tv;
} product;

static void item_quantize(void *arg, int t, int thread) {
    product *p = arg;
    prepare_token(&p->sh, &p->tk, p->x + (size_t)t * p->sh.cols, t, (int8_t *)(p->thr + (size_t)thread * p->per_thread));
}

static void item_rows(void *arg, int i, int thread) {
    product *p = arg;
    const int r0 = i * p->rows_per_item, r1 = r0 + p->rows_per_item < p->sh.rows ? r0 + p->rows_per_item : p->sh.rows;
    float *sf = (float *)(p->thr + (size_t)thread * p->per_thread + p->sz_xn);
    rows_tokens(p->K, &p->sh, &p->tk, p->T, p->y, r0, r1, p->q, p->scales, p->biases, sf);
}

static void item_tokvecs(void *arg, int v, int thread) {
    (void)thread;
    product *p = arg;
    build_tokvecs(&p->sh, &p->tk, p->T, v, (int8_t *)p->tv.xT, (float *)p->tv.dxT, (float *)p->tv.csT,
                  (float *)p->tv.sxT);
}

/* Prefill: a block of 4 rows unpacked once, then all tokens. */
static void item_tile(void *arg, int blk, int thread) {
    product *p = arg;
    const shape *sh = &p->sh;
    const int ng = sh->ng, r = blk * 4, nr = sh->rows - r < 4 ? sh->rows - r : 4;
    const int planes = p->K->ub_planes[sh->bits];
    char *mine = p->thr + (size_t)thread * p->per_thread;
    float *sf = (float *)(mine + p->sz_xn), *bf = (float *)(mine + p->sz_xn + p->sz_sf);
    uint8_t *ub = (uint8_t *)(mine + p->sz_xn + 2 * p->sz_sf);
    const uint8_t *ubs[4] = {NULL, NULL, NULL, NULL};
    for (int j = 0; j < nr; j++) {
        const uint32_t *qr = p->q + (size_t)(r + j) * sh->wpr;
        if (!planes) {
            ubs[j] = (const uint8_t *)qr;
        } else {
            uint8_t *u = ub + (size_t)j * planes * sh->np;
            p->K->unpack[sh->bits](sh, qr, u);
            ubs[j] = u;
        }
        for (int g = 0; g < ng; g++) {
            sf[(size_t)j * ng + g] = fm_bf16_to_f32(p->scales[(size_t)(r + j) * ng + g]);
            bf[(size_t)j * ng + g] = fm_bf16_to_f32(p->biases[(size_t)(r + j) * ng + g]);
        }
    }
    p->K->tile[sh->bits](sh, ubs, nr, sf, bf, &p->tv, p->T, p->y, r);
}

int fm_qint_matmul(int kind, float *y, const float *x, int T, const uint32_t *q, const uint16_t *scales,
                   const uint16_t *biases, int rows, int cols, int bits, int group) {
    if (!usable(kind, T, cols, bits, group)) return -1;
    const fm_qint_kernels *K = kernels_of(kind);
    product p = {.K = K, .sh = make_shape(K->cw, rows, cols, bits, group), .x = x, .y = y, .T = T, .q = q,
                 .scales = scales, .biases = biases};
    const shape *sh = &p.sh;
    const int ng = sh->ng, cw = K->cw;
    const int prefill = T >= FM_QINT_TILE_MIN;
    const int threads = pool_threads();
    const int ntv = (T + cw - 1) / cw;
    const int planes = K->ub_planes[bits];

    /* One allocation: tokens, per-thread scratch, prefill layout. */
    p.sz_xn = align64(sh->np);
    p.sz_sf = align64(SF_FLOATS(ng) * sizeof(float));
    const size_t sz_ub = prefill ? align64((size_t)4 * planes * sh->np) : 0;
    p.per_thread = p.sz_xn + 2 * p.sz_sf + sz_ub;
    const size_t sz_tk = tokens_bytes(sh, T);
    const size_t sz_xT = prefill ? align64((size_t)ntv * cols * cw) : 0;
    const size_t sz_vf = prefill ? align64((size_t)ntv * ng * cw * sizeof(float)) : 0;
    char *mem = aligned_alloc(64, sz_tk + (size_t)threads * p.per_thread + sz_xT + 3 * sz_vf);
    if (!mem) return -1;
    p.tk = tokens_at(sh, mem, T);
    p.thr = mem + sz_tk;
    for (int i = 0; i < threads; i++) memset(p.thr + (size_t)i * p.per_thread + cols, 0, sh->np - (size_t)cols);
    pool_run(T, item_quantize, &p);
    if (!prefill) {
        p.rows_per_item = pool_rows_per_item((size_t)sh->wpr * 4 + (size_t)sh->ng * 4); /* codes, scales, biases */
        pool_run((rows + p.rows_per_item - 1) / p.rows_per_item, item_rows, &p);
    } else {
        char *v = p.thr + (size_t)threads * p.per_thread;
        p.tv = (fm_qint_tokvecs){.xT = (int8_t *)v, .dxT = (float *)(v + sz_xT), .csT = (float *)(v + sz_xT + sz_vf),
                                 .sxT = (float *)(v + sz_xT + 2 * sz_vf), .ntv = ntv};
        pool_run(ntv, item_tokvecs, &p);
        pool_run((rows + 3) / 4, item_tile, &p);
    }
    free(mem);
    return 0;
}

#else /* no x86 GNU C: no integer paths */

int fm_qint_supported(int kind) {
    (void)kind;
    return 0;
}

int fm_qint_matmul(int kind, float *y, const float *x, int T, const uint32_t *q, const uint16_t *scales,
                   const uint16_t *biases, int rows, int cols, int bits, int group) {
    (void)kind, (void)y, (void)x, (void)T, (void)q, (void)scales, (void)biases, (void)rows, (void)cols, (void)bits,
        (void)group;
    return -1;
}

size_t fm_qint_act_bytes(int kind, int T, int cols, int bits, int group) {
    (void)kind, (void)T, (void)cols, (void)bits, (void)group;
    return 0;
}

void fm_qint_act_prepare(int kind, void *act, const float *x, int T, int cols, int bits, int group) {
    (void)kind, (void)act, (void)x, (void)T, (void)cols, (void)bits, (void)group;
}

void fm_qint_act_rows(int kind, const void *act, int T, float *y, int r0, int r1, const uint32_t *q,
                      const uint16_t *scales, const uint16_t *biases, int rows, int cols, int bits, int group) {
    (void)kind, (void)act, (void)T, (void)y, (void)r0, (void)r1, (void)q, (void)scales, (void)biases, (void)rows,
        (void)cols, (void)bits, (void)group;
}

#endif

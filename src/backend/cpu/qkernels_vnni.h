/* Internal to backend/cpu: the integer quantized matrix products behind
 * cpu_qmatmul's integer code paths. One scheme, one activation quantization,
 * one driver (qkernels_vnni.c) and three sets of kernels:
 *   FM_QINT_VNNI    "vnni":    AVX-512 VNNI, 512-bit vpdpbusd (qkernels_vnni.c)
 *   FM_QINT_AVXVNNI "avxvnni": AVX2 + AVX-VNNI, 256-bit vpdpbusd (qkernels_int256.c)
 *   FM_QINT_AVX2    "avx2int": AVX2 only, vpmaddubsw + vpmaddwd (qkernels_int256.c)
 * The scheme, its numerics and its data layouts are described at the top of
 * qkernels_vnni.c; all three compute the same integer sums exactly and differ
 * only in the float order of the per-group scaling. */
#ifndef FM_BACKEND_CPU_QKERNELS_VNNI_H
#define FM_BACKEND_CPU_QKERNELS_VNNI_H

#include <stddef.h>
#include <stdint.h>

/* Activation groups whose largest |x| is below this are quantized to zero
 * (dx = amax/127 could not be inverted in float32); their contribution is
 * then carried by the exact Σx terms alone. */
#define FM_QVNNI_TINY 1e-30f

enum { FM_QINT_VNNI, FM_QINT_AVXVNNI, FM_QINT_AVX2, FM_QINT_KINDS };

/* From this many tokens on, fm_qint_matmul uses the prefill (tile) kernels;
 * below, the row kernels (as fm_qint_act_rows). */
#define FM_QINT_TILE_MIN 8

/* 1 if this build has integer path `kind` and the CPU can run it. */
int fm_qint_supported(int kind);

/* y[T, rows] = x[T, cols] · Wᵀ for the packed affine W (quant/affine.h) with
 * integer path `kind`. Returns 0, or -1 (y untouched) when scratch memory
 * cannot be allocated or the path is unavailable; the caller then uses
 * another path. */
int fm_qint_matmul(int kind, float *y, const float *x, int T, const uint32_t *q, const uint16_t *scales,
                   const uint16_t *biases, int rows, int cols, int bits, int group);

/* Activations of T tokens quantized once for several products with matrices
 * of one format (cols, bits, group) on path `kind`, then rows of each:
 * fm_qint_act_bytes is the size of the buffer (0: not possible here, use
 * fm_qint_matmul; always for T ≥ FM_QINT_TILE_MIN), fm_qint_act_prepare fills it (64-byte aligned), and
 * fm_qint_act_rows computes y[t, r] for r in [r0, r1) and every token, exactly
 * as fm_qint_matmul does below FM_QINT_TILE_MIN tokens. */
size_t fm_qint_act_bytes(int kind, int T, int cols, int bits, int group);
void fm_qint_act_prepare(int kind, void *act, const float *x, int T, int cols, int bits, int group);
void fm_qint_act_rows(int kind, const void *act, int T, float *y, int r0, int r1, const uint32_t *q,
                      const uint16_t *scales, const uint16_t *biases, int rows, int cols, int bits, int group);

/* ---- between the driver and the kernels --------------------------------- */

/* Shape of one product. A chunk is cw uint32 words of a row (cw = 16 for
 * 512-bit kernels, 8 for 256-bit ones); a token vector is cw tokens. */
typedef struct {
    int rows, cols, bits, group;
    int cw;                         /* words per chunk = tokens per token vector */
    int cpw, nk, ng, wpr, nch, wpg; /* codes/word, sub-vectors/chunk, groups, words/row, chunks/row, words/group */
    size_t np;                      /* codes of a row padded to whole chunks (= bytes in P order) */
} fm_qint_shape;

/* Activations of the prefill: per token vector, xT holds cols/4 quads × cw
 * tokens × 4 bytes in walking order, and dxT, csT, sxT ng × cw floats
 * (token lanes; padding tokens are zero). */
typedef struct {
    const int8_t *xT;
    const float *dxT, *csT, *sxT;
    int ntv;
} fm_qint_tokvecs;

/* Decode: Σ_c W[c]·x[c] for one row and one quantized token (xp in P order,
 * dx, cs, sx per group); sf: scratch of ng + 16 floats. */
typedef float (*fm_qint_row_fn)(const fm_qint_shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,
                                const int8_t *xp, const float *dx, const float *cs, const float *sx, float *sf);
/* Decode, several tokens: row_fn's result for nt (2..4) tokens at once,
 * bit-identical to nt calls of it; sf: scratch of 4·(ng + 16) floats. */
typedef void (*fm_qint_rows4_fn)(const fm_qint_shape *sh, const uint32_t *q, const uint16_t *s16, const uint16_t *b16,
                                 const int8_t *const xp[4], const float *const dx[4], const float *const cs[4],
                                 const float *const sx[4], int nt, float *sf, float y[4]);
/* Prefill: one row into ub (ub_rows · np bytes, kernel-specific planes). */
typedef void (*fm_qint_unpack_fn)(const fm_qint_shape *sh, const uint32_t *q, uint8_t *ub);
/* Prefill: y[t, r + j] for j < nr ≤ 4 rows (unpacked ub[j], f32 scales sf[j·ng ..],
 * biases bf[j·ng ..]) and all T tokens. */
typedef void (*fm_qint_tile_fn)(const fm_qint_shape *sh, const uint8_t *const ub[4], int nr, const float *sf,
                                const float *bf, const fm_qint_tokvecs *tv, int T, float *y, int r);

typedef struct {
    int cw;
    int ub_planes[9];                /* by bits: np-byte planes per unpacked row; 0: rows used as stored */
    fm_qint_row_fn row[9];           /* by bits */
    fm_qint_rows4_fn rows4[9];       /* by bits; NULL: row for each token */
    fm_qint_unpack_fn unpack[9];     /* by bits (NULL where ub_planes is 0) */
    fm_qint_tile_fn tile[9];         /* by bits */
} fm_qint_kernels;

/* Byte offset in P order of the quad of word w, sub-vector k. */
static inline size_t fm_qint_quad_off(int w, int k, int nk, int cw) {
    return (size_t)(w / cw) * 4 * cw * nk + (size_t)k * 4 * cw + (size_t)(w % cw) * 4;
}

/* The 256-bit kernel tables (qkernels_int256.c); NULL without them. */
const fm_qint_kernels *fm_qint_kernels_avxvnni(void);
const fm_qint_kernels *fm_qint_kernels_avx2(void);

#endif

/* CPU kernels in float32. Weights may be BF16, F16 or F32 (widened on the
 * fly) or quantized (W->bits != 0: MLX affine, see qkernels.h, which
 * cpu_matmul and cpu_dot_row dispatch to); activations are float32. Matrix products run on the compute pool
 * (core/pool.h), in blocks of rows.
 * Dot products keep 16 independent partial sums so that the compiler can
 * vectorise them and results do not depend on the ISA. */
#ifndef FM_BACKEND_CPU_KERNELS_H
#define FM_BACKEND_CPU_KERNELS_H

#include "model/model.h"

#include <math.h>

/* y[T, W.rows] = x[T, W.cols] · Wᵀ (cpu_matmul_many of one product: a
 * product of few tokens reuses the scratch of earlier ones, no allocation). */
void cpu_matmul(float *y, const float *x, int T, const fm_mat *W);
/* The same product on its own path, which cpu_matmul_many takes for what it
 * does not split into shared row blocks (many tokens, or no scratch). */
void cpu_matmul_whole(float *y, const float *x, int T, const fm_mat *W);
/* Several products in one parallel pass: y = x · Wᵀ for each (x [T, W.cols],
 * y [T, W.rows]). Products of one token (and, on the integer paths, of fewer
 * than 8) are split into blocks of rows that all threads take from one list,
 * and inputs shared by several products (the same x, T and quantized format)
 * are prepared (quantized, reordered) once; no memory is allocated once the
 * scratch has grown to the largest call. Others run one after the other
 * (cpu_matmul_whole). Results equal cpu_matmul_whole's bit for bit. */
typedef struct {
    float *y;
    const float *x;
    const fm_mat *W;
    int T;
} cpu_product;
void cpu_matmul_many(const cpu_product *p, int n);
/* Rows of W per work item of a parallel product (about 128 KB of weights). */
int cpu_rows_per_item(const fm_mat *W);
/* y[i] = sum_j x[j] * W[i, j] for one row i, any weight dtype. */
float cpu_dot_row(const fm_mat *W, int row, const float *x);
/* out[W.cols] = row `row` of W in float32 (widened or dequantized), e.g. an embedding lookup. */
void cpu_mat_row_f32(const fm_mat *W, int row, float *out);
float cpu_dot(const float *a, const float *b, int n);
/* y = x / sqrt(mean(x²) + eps) * w (w NULL: no weight). In place allowed. */
void cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
void cpu_softmax(float *x, int n);
/* Rotate-half RoPE on the first 2*half dims: pairs (i, i + half). */
void cpu_rope(float *x, int half, const float *cos_t, const float *sin_t);

static inline float cpu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float cpu_silu(float x) { return x / (1.0f + expf(-x)); }
/* PyTorch softplus (beta 1, threshold 20). */
static inline float cpu_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#endif

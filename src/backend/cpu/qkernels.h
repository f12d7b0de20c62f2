/* Matrix products over quantized weights (MLX affine layout, quant/affine.h:
 * bits 2, 4 or 8, group 32, 64 or 128) with float32 activations. Results
 * match "dequantize each row to float32, then a float32 dot product" to about
 * 1e-6 relative; activations are never quantized.
 *
 * Decode (T = 1): per group, y += scale·Σ(q·x) + bias·Σx, with Σx per group
 * computed once per call and shared by all rows. Prefill (T > 1): each row is
 * dequantized once into a per-thread buffer and used for all T inputs, so the
 * weights are read from memory once per call.
 *
 * Three code paths, chosen at run time: AVX-512 (F+BW+VL), AVX2+FMA, and
 * plain C ("scalar"; the only one on non-x86). The best one the CPU supports
 * is used unless the environment variable FM_ISA (scalar, avx2, avx512) or
 * cpu_set_isa() asks for another. Matrix products use all OpenMP threads,
 * rows split across threads. */
#ifndef FM_BACKEND_CPU_QKERNELS_H
#define FM_BACKEND_CPU_QKERNELS_H

#include "model/model.h"

/* Selects the code path: "scalar", "avx2", "avx512", or NULL / "" / "auto"
 * for the best one supported. Returns 0, or -1 (and changes nothing) for an
 * unknown name or a path this CPU cannot run. Not thread-safe against
 * concurrent kernels: call it between products (tests, benchmarks). */
int cpu_set_isa(const char *name);
/* The code path in use: "scalar", "avx2" or "avx512". */
const char *cpu_isa_name(void);

/* y[T, W.rows] = x[T, W.cols] · Wᵀ for a quantized W (W->bits != 0). */
void cpu_qmatmul(float *y, const float *x, int T, const fm_mat *W);
/* Σ_j x[j] · W[row, j] for a quantized W. */
float cpu_qdot_row(const fm_mat *W, int row, const float *x);
/* out[cols] = row `row` of a quantized W, dequantized. */
void cpu_qrow_f32(const fm_mat *W, int row, float *out);

#endif

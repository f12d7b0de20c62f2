/* Matrix products over quantized weights (MLX affine layout, quant/affine.h:
 * bits 2, 4 or 8, group 32, 64 or 128) with float32 activations.
 *
 * Float paths ("scalar", "avx2", "avx512"): results match "dequantize each
 * row to float32, then a float32 dot product" to about 1e-6 relative;
 * activations are never quantized. Decode (T = 1): per group, y += scale·Σ(q·x)
 * + bias·Σx, with Σx per group computed once per call and shared by all rows.
 * Prefill (T > 1): each row is dequantized once into a per-thread buffer and
 * used for all T inputs, so the weights are read from memory once per call.
 *
 * Integer path ("vnni", AVX-512 VNNI): each token's activations are quantized
 * to int8 per weight group (dx = max|x|/127) and the codes multiplied with
 * them exactly in int32 (vpdpbusd); Σx stays exact in float. Not exact against
 * dequantize-then-float32: the error is bounded by Σ_j |s|·|q_j − 2^(bits−1)|·
 * dx/2 per output (plus float rounding), about 4e-3 relative (L2) on uniform
 * random data; see qkernels_vnni.c and tests/test_quant.c. Weights are read
 * once per call for any T.
 *
 * Integer paths of 256 bits, same scheme and numerics (the same integer sums,
 * exactly): "avxvnni" (AVX2 + AVX-VNNI, e.g. Intel 12th-14th gen) and
 * "avx2int" (AVX2 only, e.g. AMD Zen 2/3; vpmaddubsw + vpmaddwd, 8-bit codes
 * split into nibbles so no int16 sum saturates); see qkernels_int256.c.
 *
 * Paths are chosen at run time: the best one the CPU supports (vnni, then
 * avxvnni, avx512 (F+BW+VL), avx2int, plain C "scalar", the only one on
 * non-x86) is used unless the environment variable FM_ISA (scalar, avx2,
 * avx512, vnni, avxvnni, avx2int) or cpu_set_isa() asks for another;
 * FM_ISA=avx512 / avx2 give the exact float paths. Matrix products run on the
 * compute pool (core/pool.h), in blocks of rows. */
#ifndef FM_BACKEND_CPU_QKERNELS_H
#define FM_BACKEND_CPU_QKERNELS_H

#include "model/model.h"

/* Selects the code path: "scalar", "avx2", "avx512", "vnni", "avxvnni",
 * "avx2int", or NULL / "" / "auto"
 * for the best one supported. Returns 0, or -1 (and changes nothing) for an
 * unknown name or a path this CPU cannot run. Not thread-safe against
 * concurrent kernels: call it between products (tests, benchmarks). */
int cpu_set_isa(const char *name);
/* The code path in use: one of the names above. */
const char *cpu_isa_name(void);

/* y[T, W.rows] = x[T, W.cols] · Wᵀ for a quantized W (W->bits != 0). */
void cpu_qmatmul(float *y, const float *x, int T, const fm_mat *W);
/* Activations prepared once for several products with quantized matrices of
 * one format (cols, bits, group) on the current path, then any rows of each,
 * with exactly the results of cpu_qmatmul (T = 1 on the float paths, T < 8 on
 * the integer ones). cpu_qact_bytes: the buffer's size (64-byte aligned), 0
 * where this path cannot (use cpu_qmatmul). cpu_qact_rows: y[t·W.rows + r]
 * for r in [r0, r1) and every prepared token. */
size_t cpu_qact_bytes(int T, int cols, int bits, int group);
void cpu_qact_prepare(void *act, const float *x, int T, int cols, int bits, int group);
void cpu_qact_rows(float *y, const fm_mat *W, int r0, int r1, const void *act);

/* Σ_j x[j] · W[row, j] for a quantized W (plain C float path, any ISA). */
float cpu_qdot_row(const fm_mat *W, int row, const float *x);
/* out[cols] = row `row` of a quantized W, dequantized. */
void cpu_qrow_f32(const fm_mat *W, int row, float *out);

#endif

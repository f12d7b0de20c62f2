/* Affine group quantization, bit-compatible with MLX (mx.quantize, mode
 * "affine"): a row of `cols` weights is cut into groups of `group` consecutive
 * values; each group has a bf16 scale s and bias b and stores unsigned codes q
 * in [0, 2^bits - 1], with w ≈ s·q + b. Codes are packed into little-endian
 * uint32 words LSB first: code c of a row sits in word c·bits/32 at bit
 * (c·bits) % 32. Supported: bits 2, 4, 8; group 32, 64, 128; cols a multiple
 * of the group.
 *
 * Layout of a quantized [rows, cols] matrix, as MLX stores it:
 *   weight uint32 [rows, cols·bits/32], scales bf16 [rows, cols/group],
 *   biases bf16 [rows, cols/group]. */
#ifndef FM_QUANT_AFFINE_H
#define FM_QUANT_AFFINE_H

#include <stddef.h>
#include <stdint.h>

/* 1 if (bits, group, cols) is a supported combination. */
int fm_quant_supported(int bits, int group, int cols);
/* Bytes of the packed codes / of the scales (= of the biases) of a matrix. */
size_t fm_quant_weight_bytes(int rows, int cols, int bits);
size_t fm_quant_scales_bytes(int rows, int cols, int group);

/* Quantizes one row. Per group, as MLX: the range [min, max] is mapped onto
 * 2^bits - 1 steps with the larger-magnitude edge represented exactly; scale
 * and bias are rounded to bf16 first and the codes computed against the
 * rounded values (so dequantization error stays within half a step). */
void fm_quantize_row(const float *w, int cols, int bits, int group, uint32_t *q, uint16_t *scales, uint16_t *biases);
/* The same format, with the range of each group chosen to minimise the
 * squared error: MLX's range and 63 ranges clipped at either end (steps of 4%
 * of the span) are tried. Slower; pays off at 2 and 4 bits, where min/max
 * ranges waste codes on outliers. */
void fm_quantize_row_search(const float *w, int cols, int bits, int group, uint32_t *q, uint16_t *scales,
                            uint16_t *biases);
/* out[c] = scale[c / group] * q[c] + bias[c / group], in float32. */
void fm_dequantize_row(const uint32_t *q, const uint16_t *scales, const uint16_t *biases, int cols, int bits, int group,
                       float *out);
/* Code c of a packed row. */
static inline uint32_t fm_quant_code(const uint32_t *q, int c, int bits) {
    return (q[((unsigned)c * (unsigned)bits) >> 5] >> (((unsigned)c * (unsigned)bits) & 31)) & ((1u << bits) - 1u);
}

#endif

/* Reference affine quantization (see affine.h). Scalar and exact: the kernels
 * are tested against fm_dequantize_row. */
#include "quant/affine.h"

#include "core/dtype.h"

#include <math.h>
#include <string.h>

int fm_quant_supported(int bits, int group, int cols) {
    if (bits != 2 && bits != 4 && bits != 8) return 0;
    if (group != 32 && group != 64 && group != 128) return 0;
    return cols > 0 && cols % group == 0;
}

size_t fm_quant_weight_bytes(int rows, int cols, int bits) { return (size_t)rows * ((size_t)cols * bits / 32) * 4; }

size_t fm_quant_scales_bytes(int rows, int cols, int group) { return (size_t)rows * (size_t)(cols / group) * 2; }

void fm_quantize_row(const float *w, int cols, int bits, int group, uint32_t *q, uint16_t *scales, uint16_t *biases) {
    const float n_bins = (float)((1 << bits) - 1);
    memset(q, 0, (size_t)cols * bits / 32 * sizeof *q);
    for (int g = 0; g < cols / group; g++) {
        const float *x = w + (size_t)g * group;
        float lo = x[0], hi = x[0];
        for (int i = 1; i < group; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        /* The edge of larger magnitude is the bias; the step runs from it
         * towards the other edge (negative step when the edge is the max). */
        int min_is_edge = fabsf(lo) > fabsf(hi);
        float edge = min_is_edge ? lo : hi;
        float step = (hi - lo) / n_bins;
        if (step < 1e-7f) step = 1e-7f;
        if (!min_is_edge) step = -step;
        /* As MLX: adjust the step so that zero lands exactly on a code (the
         * edge is code 0 and zero is code -q0); an edge of ~0 is the bias 0. */
        float q0 = rintf(edge / step);
        float s = q0 != 0.0f ? edge / q0 : step;
        float b = q0 != 0.0f ? edge : 0.0f;
        uint16_t s16 = fm_f32_to_bf16(s), b16 = fm_f32_to_bf16(b);
        float sr = fm_bf16_to_f32(s16), br = fm_bf16_to_f32(b16);
        if (sr == 0.0f) sr = 1.0f; /* a scale that rounded to zero: every code decodes to the bias */
        scales[g] = s16;
        biases[g] = b16;
        for (int i = 0; i < group; i++) {
            float v = rintf((x[i] - br) / sr);
            v = v < 0.0f ? 0.0f : v > n_bins ? n_bins : v;
            if (v != v) v = 0.0f; /* NaN weights */
            int c = g * group + i;
            q[((unsigned)c * (unsigned)bits) >> 5] |= (uint32_t)v << (((unsigned)c * (unsigned)bits) & 31);
        }
    }
}

void fm_dequantize_row(const uint32_t *q, const uint16_t *scales, const uint16_t *biases, int cols, int bits, int group,
                       float *out) {
    for (int c = 0; c < cols; c++)
        out[c] = fm_bf16_to_f32(scales[c / group]) * (float)fm_quant_code(q, c, bits) + fm_bf16_to_f32(biases[c / group]);
}

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

static void group_range(const float *x, int n, float *lo, float *hi) {
    *lo = *hi = x[0];
    for (int i = 1; i < n; i++) {
        *lo = x[i] < *lo ? x[i] : *lo;
        *hi = x[i] > *hi ? x[i] : *hi;
    }
}

/* Sets code c of a packed row (the slot must be zero). */
static void put_code(uint32_t *q, int c, int bits, float v) {
    q[((unsigned)c * (unsigned)bits) >> 5] |= (uint32_t)v << (((unsigned)c * (unsigned)bits) & 31);
}

void fm_quantize_row(const float *w, int cols, int bits, int group, uint32_t *q, uint16_t *scales, uint16_t *biases) {
    const float n_bins = (float)((1 << bits) - 1);
    memset(q, 0, (size_t)cols * bits / 32 * sizeof *q);
    for (int g = 0; g < cols / group; g++) {
        const float *x = w + (size_t)g * group;
        float lo, hi;
        group_range(x, group, &lo, &hi);
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
            put_code(q, g * group + i, bits, v);
        }
    }
}

void fm_dequantize_row(const uint32_t *q, const uint16_t *scales, const uint16_t *biases, int cols, int bits, int group,
                       float *out) {
    for (int c = 0; c < cols; c++)
        out[c] = fm_bf16_to_f32(scales[c / group]) * (float)fm_quant_code(q, c, bits) + fm_bf16_to_f32(biases[c / group]);
}

/* Squared error of one group coded with scale s and bias b (both already bf16). */
static float group_error(const float *x, int n, float s, float b, float n_bins) {
    float err = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = rintf((x[i] - b) / s);
        v = v < 0.0f ? 0.0f : v > n_bins ? n_bins : v;
        float d = s * v + b - x[i];
        err += d * d;
    }
    return err;
}

void fm_quantize_row_search(const float *w, int cols, int bits, int group, uint32_t *q, uint16_t *scales,
                            uint16_t *biases) {
    /* Start from MLX's choice, then try ranges clipped at either end and keep
     * the one with the least squared error. */
    fm_quantize_row(w, cols, bits, group, q, scales, biases);
    const float n_bins = (float)((1 << bits) - 1);
    enum { STEPS = 8 };
    for (int g = 0; g < cols / group; g++) {
        const float *x = w + (size_t)g * group;
        float lo, hi;
        group_range(x, group, &lo, &hi);
        float best_s = fm_bf16_to_f32(scales[g]), best_b = fm_bf16_to_f32(biases[g]);
        if (best_s == 0.0f) continue;
        float best = group_error(x, group, best_s, best_b, n_bins);
        const float span = hi - lo;
        for (int a = 0; a < STEPS; a++)
            for (int c = 0; c < STEPS; c++) {
                float l = lo + span * 0.04f * (float)a, h = hi - span * 0.04f * (float)c;
                float s = fm_bf16_to_f32(fm_f32_to_bf16((h - l) / n_bins)), b = fm_bf16_to_f32(fm_f32_to_bf16(l));
                if (!(s > 0.0f)) continue;
                float e = group_error(x, group, s, b, n_bins);
                if (e < best) {
                    best = e;
                    best_s = s;
                    best_b = b;
                }
            }
        scales[g] = fm_f32_to_bf16(best_s);
        biases[g] = fm_f32_to_bf16(best_b);
        for (int i = 0; i < group; i++) {
            int c = g * group + i;
            q[((unsigned)c * (unsigned)bits) >> 5] &= ~(((1u << bits) - 1u) << (((unsigned)c * (unsigned)bits) & 31));
            float v = rintf((x[i] - best_b) / best_s);
            put_code(q, c, bits, v < 0.0f ? 0.0f : v > n_bins ? n_bins : v);
        }
    }
}

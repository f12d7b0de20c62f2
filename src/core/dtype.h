/* Element types found in safetensors files and their conversion to float32.
 * Compute is float32; bf16 and f16 weights are widened on the fly. */
#ifndef FM_CORE_DTYPE_H
#define FM_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    FM_DTYPE_F32, FM_DTYPE_F16, FM_DTYPE_BF16, FM_DTYPE_F64,
    FM_DTYPE_I64, FM_DTYPE_I32, FM_DTYPE_I16, FM_DTYPE_I8, FM_DTYPE_U8, FM_DTYPE_BOOL, FM_DTYPE_U32,
    FM_DTYPE_COUNT
} fm_dtype;

/* Parses a safetensors dtype string ("BF16", ...); returns -1 if unknown. */
int fm_dtype_from_name(const char *name);
const char *fm_dtype_name(fm_dtype dtype);
size_t fm_dtype_size(fm_dtype dtype);
/* True for the dtypes weights may have (F32, F16, BF16). */
int fm_dtype_is_weight(fm_dtype dtype);

static inline float fm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;  /* exact: bf16 is the top half of f32 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* float32 → bf16, round to nearest even (NaN stays NaN). */
static inline uint16_t fm_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static inline float fm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: renormalise */
        int e = -1;
        do { mant <<= 1; e++; } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* dst[i] = (float)src[i] for a weight dtype (F32, F16, BF16). */
void fm_dtype_to_f32(float *dst, const void *src, fm_dtype dtype, size_t n);

#endif

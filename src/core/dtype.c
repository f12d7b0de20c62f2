/* dtype names, sizes and bulk conversion to float32. */
#include "core/dtype.h"

static const struct { const char *name; size_t size; } dtype_table[FM_DTYPE_COUNT] = {
    [FM_DTYPE_F32] = {"F32", 4}, [FM_DTYPE_F16] = {"F16", 2}, [FM_DTYPE_BF16] = {"BF16", 2},
    [FM_DTYPE_F64] = {"F64", 8}, [FM_DTYPE_I64] = {"I64", 8}, [FM_DTYPE_I32] = {"I32", 4},
    [FM_DTYPE_I16] = {"I16", 2}, [FM_DTYPE_I8] = {"I8", 1},   [FM_DTYPE_U8] = {"U8", 1},
    [FM_DTYPE_BOOL] = {"BOOL", 1}, [FM_DTYPE_U32] = {"U32", 4},
};

int fm_dtype_from_name(const char *name) {
    for (int i = 0; i < FM_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0) return i;
    return -1;
}

const char *fm_dtype_name(fm_dtype dtype) { return dtype_table[dtype].name; }
size_t fm_dtype_size(fm_dtype dtype) { return dtype_table[dtype].size; }

int fm_dtype_is_weight(fm_dtype dtype) {
    return dtype == FM_DTYPE_F32 || dtype == FM_DTYPE_F16 || dtype == FM_DTYPE_BF16;
}

void fm_dtype_to_f32(float *dst, const void *src, fm_dtype dtype, size_t n) {
    switch (dtype) {
    case FM_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case FM_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = fm_bf16_to_f32(s[i]);
        break;
    }
    case FM_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = fm_f16_to_f32(s[i]);
        break;
    }
    default: break; /* callers check fm_dtype_is_weight first */
    }
}

/* flashmoe CUDA-on-CPU emulator: a minimal cuda_bf16.h. __nv_bfloat16 and
 * __nv_bfloat162 with exact conversions (float → bf16 rounds to nearest even,
 * NaN stays NaN). C and C++; C++ adds constructors, conversion operators and
 * arithmetic operators (computed in float, rounded once). */
#ifndef CUDA_EMU_BF16_H
#define CUDA_EMU_BF16_H
#define __CUDA_BF16_H__

#include <stdint.h>
#include <string.h>

#include "cuda_emu_defs.h"
#include "cuda_fp16.h"

#ifdef __cplusplus
struct __nv_bfloat16_raw { unsigned short x; };
struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
    __nv_bfloat16(float f);
    __nv_bfloat16(double f) : __nv_bfloat16((float)f) {}
    __nv_bfloat16(int i) : __nv_bfloat16((float)i) {}
    operator float() const;
    operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
#else
typedef struct __nv_bfloat16_raw { unsigned short x; } __nv_bfloat16_raw;
typedef struct __nv_bfloat16 { unsigned short __x; } __nv_bfloat16;
typedef struct __nv_bfloat162 { __nv_bfloat16 x, y; } __nv_bfloat162;
#endif
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

CUEMU_HD float cuemu_bf16_bits_to_float(unsigned short h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
CUEMU_HD unsigned short cuemu_float_to_bf16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

CUEMU_HD float __bfloat162float(__nv_bfloat16 h) { return cuemu_bf16_bits_to_float(h.__x); }
CUEMU_HD __nv_bfloat16 __float2bfloat16(float f) { __nv_bfloat16 h; h.__x = cuemu_float_to_bf16_bits(f); return h; }
CUEMU_HD __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
CUEMU_HD __nv_bfloat16 __float2bfloat16_rz(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    __nv_bfloat16 h;
    h.__x = (unsigned short)(x >> 16);
    return h;
}
CUEMU_HD __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 h; h.__x = u; return h; }
CUEMU_HD unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
CUEMU_HD __nv_bfloat16 __short_as_bfloat16(short s) { __nv_bfloat16 h; h.__x = (unsigned short)s; return h; }
CUEMU_HD short __bfloat16_as_short(__nv_bfloat16 h) { return (short)h.__x; }
CUEMU_HD __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { __nv_bfloat162 r; r.x = a; r.y = b; return r; }
CUEMU_HD __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __halves2bfloat162(__float2bfloat16(a), __float2bfloat16(b));
}
CUEMU_HD __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
CUEMU_HD float2 __bfloat1622float2(__nv_bfloat162 h) {
    float2 r;
    r.x = __bfloat162float(h.x);
    r.y = __bfloat162float(h.y);
    return r;
}

#ifdef __cplusplus
inline __nv_bfloat16::__nv_bfloat16(float f) : __x(cuemu_float_to_bf16_bits(f)) {}
inline __nv_bfloat16::operator float() const { return cuemu_bf16_bits_to_float(__x); }
inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }
inline __nv_bfloat16 operator+(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a + (float)b); }
inline __nv_bfloat16 operator-(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a - (float)b); }
inline __nv_bfloat16 operator*(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a * (float)b); }
inline __nv_bfloat16 operator/(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a / (float)b); }
inline __nv_bfloat16 operator-(__nv_bfloat16 a) { return __ushort_as_bfloat16((unsigned short)(a.__x ^ 0x8000u)); }
inline bool operator==(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a == (float)b; }
inline bool operator!=(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a != (float)b; }
inline bool operator<(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a < (float)b; }
inline bool operator>(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a > (float)b; }
#endif

#endif

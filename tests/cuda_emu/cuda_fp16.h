/* flashmoe CUDA-on-CPU emulator: a minimal cuda_fp16.h. __half and __half2
 * with exact conversions (float → half rounds to nearest even, as __float2half
 * does on the GPU). C and C++; C++ adds the constructors, conversion operators
 * and arithmetic operators (computed in float, rounded once, as sm_53+ does). */
#ifndef CUDA_EMU_FP16_H
#define CUDA_EMU_FP16_H
#define __CUDA_FP16_H__

#include <stdint.h>
#include <string.h>

#include "cuda_emu_defs.h"
#include "vector_types.h"

#ifdef __cplusplus
struct __half_raw { unsigned short x; };
struct __half {
    unsigned short __x;
    __half() = default;
    constexpr __half(__half_raw r) : __x(r.x) {}
    __half(float f);
    __half(double f) : __half((float)f) {}
    __half(int i) : __half((float)i) {}
    operator float() const;
    operator __half_raw() const { return __half_raw{__x}; }
};
struct __half2 {
    __half x, y;
};
#else
typedef struct __half_raw { unsigned short x; } __half_raw;
typedef struct __half { unsigned short __x; } __half;
typedef struct __half2 { __half x, y; } __half2;
#endif

CUEMU_HD float cuemu_half_bits_to_float(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, overflow to inf, subnormals exact. */
CUEMU_HD unsigned short cuemu_float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (unsigned short)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); /* ≥ 65520: rounds to inf */
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half (or zero) */
        if (ax < 0x33000000u) return (unsigned short)sign; /* < 2^-25: rounds to 0 (2^-25 ties to even = 0) */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (unsigned short)(sign | q);
    }
    uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffffu;
    uint32_t q = (e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
    return (unsigned short)(sign | q);
}

CUEMU_HD float __half2float(__half h) { return cuemu_half_bits_to_float(h.__x); }
CUEMU_HD __half __float2half(float f) { __half h; h.__x = cuemu_float_to_half_bits(f); return h; }
CUEMU_HD __half __float2half_rn(float f) { return __float2half(f); }
CUEMU_HD __half __double2half(double d) { return __float2half((float)d); }
CUEMU_HD __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
CUEMU_HD unsigned short __half_as_ushort(__half h) { return h.__x; }
CUEMU_HD __half __short_as_half(short s) { __half h; h.__x = (unsigned short)s; return h; }
CUEMU_HD short __half_as_short(__half h) { return (short)h.__x; }
CUEMU_HD __half __int2half_rn(int i) { return __float2half((float)i); }
CUEMU_HD __half __uint2half_rn(unsigned i) { return __float2half((float)i); }
CUEMU_HD int __half2int_rz(__half h) { return (int)__half2float(h); }
CUEMU_HD __half2 __halves2half2(__half a, __half b) { __half2 r; r.x = a; r.y = b; return r; }
CUEMU_HD __half2 __floats2half2_rn(float a, float b) { return __halves2half2(__float2half(a), __float2half(b)); }
CUEMU_HD __half2 __float2half2_rn(float a) { return __floats2half2_rn(a, a); }
CUEMU_HD __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
CUEMU_HD float2 __half22float2(__half2 h) { float2 r; r.x = __half2float(h.x); r.y = __half2float(h.y); return r; }
CUEMU_HD __half __low2half(__half2 h) { return h.x; }
CUEMU_HD __half __high2half(__half2 h) { return h.y; }
CUEMU_HD int __hisnan(__half h) { return (h.__x & 0x7c00u) == 0x7c00u && (h.__x & 0x3ffu); }
CUEMU_HD int __hisinf(__half h) { return (h.__x & 0x7fffu) == 0x7c00u ? ((h.__x & 0x8000u) ? -1 : 1) : 0; }

#ifdef __cplusplus
inline __half::__half(float f) : __x(cuemu_float_to_half_bits(f)) {}
inline __half::operator float() const { return cuemu_half_bits_to_float(__x); }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half __hadd(__half a, __half b) { return __float2half(__half2float(a) + __half2float(b)); }
inline __half __hsub(__half a, __half b) { return __float2half(__half2float(a) - __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half(__half2float(a) * __half2float(b)); }
inline __half __hdiv(__half a, __half b) { return __float2half(__half2float(a) / __half2float(b)); }
inline __half __hneg(__half a) { return __ushort_as_half((unsigned short)(a.__x ^ 0x8000u)); }
inline __half __habs(__half a) { return __ushort_as_half((unsigned short)(a.__x & 0x7fffu)); }
inline __half __hfma(__half a, __half b, __half c) {
    return __float2half((float)((double)__half2float(a) * __half2float(b) + __half2float(c)));
}
inline __half operator+(__half a, __half b) { return __hadd(a, b); }
inline __half operator-(__half a, __half b) { return __hsub(a, b); }
inline __half operator*(__half a, __half b) { return __hmul(a, b); }
inline __half operator/(__half a, __half b) { return __hdiv(a, b); }
inline __half operator-(__half a) { return __hneg(a); }
inline __half &operator+=(__half &a, __half b) { return a = a + b; }
inline __half &operator-=(__half &a, __half b) { return a = a - b; }
inline __half &operator*=(__half &a, __half b) { return a = a * b; }
inline __half &operator/=(__half &a, __half b) { return a = a / b; }
inline bool operator==(__half a, __half b) { return __half2float(a) == __half2float(b); }
inline bool operator!=(__half a, __half b) { return __half2float(a) != __half2float(b); }
inline bool operator<(__half a, __half b) { return __half2float(a) < __half2float(b); }
inline bool operator>(__half a, __half b) { return __half2float(a) > __half2float(b); }
inline bool operator<=(__half a, __half b) { return __half2float(a) <= __half2float(b); }
inline bool operator>=(__half a, __half b) { return __half2float(a) >= __half2float(b); }
inline __half2 __hadd2(__half2 a, __half2 b) { return __halves2half2(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
inline __half2 __hmul2(__half2 a, __half2 b) { return __halves2half2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
#endif

#endif

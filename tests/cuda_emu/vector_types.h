/* flashmoe CUDA-on-CPU emulator: CUDA's vector types (float4, int2, uint3, dim3, ...)
 * with CUDA's alignments, and their make_* functions. C and C++. Generated once
 * by hand from a small table; edit freely. */
#ifndef CUDA_EMU_VECTOR_TYPES_H
#define CUDA_EMU_VECTOR_TYPES_H
#define __VECTOR_TYPES_H__

#ifdef __cplusplus
#define CUEMU_VINLINE inline
#else
#define CUEMU_VINLINE static inline
#endif

typedef struct __attribute__((aligned(1))) char1 { char x; } char1;
CUEMU_VINLINE char1 make_char1(char x) { char1 r = {x}; return r; }
typedef struct __attribute__((aligned(2))) char2 { char x; char y; } char2;
CUEMU_VINLINE char2 make_char2(char x, char y) { char2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(1))) char3 { char x; char y; char z; } char3;
CUEMU_VINLINE char3 make_char3(char x, char y, char z) { char3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(4))) char4 { char x; char y; char z; char w; } char4;
CUEMU_VINLINE char4 make_char4(char x, char y, char z, char w) { char4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(1))) uchar1 { unsigned char x; } uchar1;
CUEMU_VINLINE uchar1 make_uchar1(unsigned char x) { uchar1 r = {x}; return r; }
typedef struct __attribute__((aligned(2))) uchar2 { unsigned char x; unsigned char y; } uchar2;
CUEMU_VINLINE uchar2 make_uchar2(unsigned char x, unsigned char y) { uchar2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(1))) uchar3 { unsigned char x; unsigned char y; unsigned char z; } uchar3;
CUEMU_VINLINE uchar3 make_uchar3(unsigned char x, unsigned char y, unsigned char z) { uchar3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(4))) uchar4 { unsigned char x; unsigned char y; unsigned char z; unsigned char w; } uchar4;
CUEMU_VINLINE uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) { uchar4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(2))) short1 { short x; } short1;
CUEMU_VINLINE short1 make_short1(short x) { short1 r = {x}; return r; }
typedef struct __attribute__((aligned(4))) short2 { short x; short y; } short2;
CUEMU_VINLINE short2 make_short2(short x, short y) { short2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(2))) short3 { short x; short y; short z; } short3;
CUEMU_VINLINE short3 make_short3(short x, short y, short z) { short3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(8))) short4 { short x; short y; short z; short w; } short4;
CUEMU_VINLINE short4 make_short4(short x, short y, short z, short w) { short4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(2))) ushort1 { unsigned short x; } ushort1;
CUEMU_VINLINE ushort1 make_ushort1(unsigned short x) { ushort1 r = {x}; return r; }
typedef struct __attribute__((aligned(4))) ushort2 { unsigned short x; unsigned short y; } ushort2;
CUEMU_VINLINE ushort2 make_ushort2(unsigned short x, unsigned short y) { ushort2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(2))) ushort3 { unsigned short x; unsigned short y; unsigned short z; } ushort3;
CUEMU_VINLINE ushort3 make_ushort3(unsigned short x, unsigned short y, unsigned short z) { ushort3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(8))) ushort4 { unsigned short x; unsigned short y; unsigned short z; unsigned short w; } ushort4;
CUEMU_VINLINE ushort4 make_ushort4(unsigned short x, unsigned short y, unsigned short z, unsigned short w) { ushort4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(4))) int1 { int x; } int1;
CUEMU_VINLINE int1 make_int1(int x) { int1 r = {x}; return r; }
typedef struct __attribute__((aligned(8))) int2 { int x; int y; } int2;
CUEMU_VINLINE int2 make_int2(int x, int y) { int2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(4))) int3 { int x; int y; int z; } int3;
CUEMU_VINLINE int3 make_int3(int x, int y, int z) { int3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) int4 { int x; int y; int z; int w; } int4;
CUEMU_VINLINE int4 make_int4(int x, int y, int z, int w) { int4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(4))) uint1 { unsigned int x; } uint1;
CUEMU_VINLINE uint1 make_uint1(unsigned int x) { uint1 r = {x}; return r; }
typedef struct __attribute__((aligned(8))) uint2 { unsigned int x; unsigned int y; } uint2;
CUEMU_VINLINE uint2 make_uint2(unsigned int x, unsigned int y) { uint2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(4))) uint3 { unsigned int x; unsigned int y; unsigned int z; } uint3;
CUEMU_VINLINE uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { uint3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) uint4 { unsigned int x; unsigned int y; unsigned int z; unsigned int w; } uint4;
CUEMU_VINLINE uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { uint4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(8))) long1 { long x; } long1;
CUEMU_VINLINE long1 make_long1(long x) { long1 r = {x}; return r; }
typedef struct __attribute__((aligned(16))) long2 { long x; long y; } long2;
CUEMU_VINLINE long2 make_long2(long x, long y) { long2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(8))) long3 { long x; long y; long z; } long3;
CUEMU_VINLINE long3 make_long3(long x, long y, long z) { long3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) long4 { long x; long y; long z; long w; } long4;
CUEMU_VINLINE long4 make_long4(long x, long y, long z, long w) { long4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(8))) ulong1 { unsigned long x; } ulong1;
CUEMU_VINLINE ulong1 make_ulong1(unsigned long x) { ulong1 r = {x}; return r; }
typedef struct __attribute__((aligned(16))) ulong2 { unsigned long x; unsigned long y; } ulong2;
CUEMU_VINLINE ulong2 make_ulong2(unsigned long x, unsigned long y) { ulong2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(8))) ulong3 { unsigned long x; unsigned long y; unsigned long z; } ulong3;
CUEMU_VINLINE ulong3 make_ulong3(unsigned long x, unsigned long y, unsigned long z) { ulong3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) ulong4 { unsigned long x; unsigned long y; unsigned long z; unsigned long w; } ulong4;
CUEMU_VINLINE ulong4 make_ulong4(unsigned long x, unsigned long y, unsigned long z, unsigned long w) { ulong4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(8))) longlong1 { long long x; } longlong1;
CUEMU_VINLINE longlong1 make_longlong1(long long x) { longlong1 r = {x}; return r; }
typedef struct __attribute__((aligned(16))) longlong2 { long long x; long long y; } longlong2;
CUEMU_VINLINE longlong2 make_longlong2(long long x, long long y) { longlong2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(8))) longlong3 { long long x; long long y; long long z; } longlong3;
CUEMU_VINLINE longlong3 make_longlong3(long long x, long long y, long long z) { longlong3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) longlong4 { long long x; long long y; long long z; long long w; } longlong4;
CUEMU_VINLINE longlong4 make_longlong4(long long x, long long y, long long z, long long w) { longlong4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(8))) ulonglong1 { unsigned long long x; } ulonglong1;
CUEMU_VINLINE ulonglong1 make_ulonglong1(unsigned long long x) { ulonglong1 r = {x}; return r; }
typedef struct __attribute__((aligned(16))) ulonglong2 { unsigned long long x; unsigned long long y; } ulonglong2;
CUEMU_VINLINE ulonglong2 make_ulonglong2(unsigned long long x, unsigned long long y) { ulonglong2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(8))) ulonglong3 { unsigned long long x; unsigned long long y; unsigned long long z; } ulonglong3;
CUEMU_VINLINE ulonglong3 make_ulonglong3(unsigned long long x, unsigned long long y, unsigned long long z) { ulonglong3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) ulonglong4 { unsigned long long x; unsigned long long y; unsigned long long z; unsigned long long w; } ulonglong4;
CUEMU_VINLINE ulonglong4 make_ulonglong4(unsigned long long x, unsigned long long y, unsigned long long z, unsigned long long w) { ulonglong4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(4))) float1 { float x; } float1;
CUEMU_VINLINE float1 make_float1(float x) { float1 r = {x}; return r; }
typedef struct __attribute__((aligned(8))) float2 { float x; float y; } float2;
CUEMU_VINLINE float2 make_float2(float x, float y) { float2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(4))) float3 { float x; float y; float z; } float3;
CUEMU_VINLINE float3 make_float3(float x, float y, float z) { float3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) float4 { float x; float y; float z; float w; } float4;
CUEMU_VINLINE float4 make_float4(float x, float y, float z, float w) { float4 r = {x, y, z, w}; return r; }
typedef struct __attribute__((aligned(8))) double1 { double x; } double1;
CUEMU_VINLINE double1 make_double1(double x) { double1 r = {x}; return r; }
typedef struct __attribute__((aligned(16))) double2 { double x; double y; } double2;
CUEMU_VINLINE double2 make_double2(double x, double y) { double2 r = {x, y}; return r; }
typedef struct __attribute__((aligned(8))) double3 { double x; double y; double z; } double3;
CUEMU_VINLINE double3 make_double3(double x, double y, double z) { double3 r = {x, y, z}; return r; }
typedef struct __attribute__((aligned(16))) double4 { double x; double y; double z; double w; } double4;
CUEMU_VINLINE double4 make_double4(double x, double y, double z, double w) { double4 r = {x, y, z, w}; return r; }

#ifdef __cplusplus
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
#else
typedef struct dim3 { unsigned int x, y, z; } dim3;
#endif

#endif

/* flashmoe CUDA-on-CPU emulator: device code as C++17 (force-included into
 * every rewritten .cu file; cuda_runtime.h includes it too from C++).
 *
 *  - __global__, __device__, ... are empty: kernels are ordinary functions;
 *  - threadIdx / blockIdx / blockDim / gridDim are per-fiber thread-locals set
 *    by the scheduler (each CUDA thread of a block is a cooperative fiber on
 *    one OS thread; blocks run one after another);
 *  - __syncthreads and the warp intrinsics are barriers of the scheduler
 *    (cuda_emu.cpp), with value exchange and CUDA's mask / width rules;
 *  - __shared__ declarations are rewritten by cuemu_rewrite.py into references
 *    into a per-block arena (poisoned at each block start), `extern __shared__`
 *    into a pointer to the launch's dynamic shared memory, which ends at a
 *    guard page;
 *  - kernel<<<grid, block, smem, stream>>>(args) is rewritten into
 *    cuemu::launch(...), which checks the configuration and the pointer
 *    arguments like the runtime would, and queues the kernel on the stream.
 * See README.md. */
#ifndef CUDA_EMU_KERNEL_H
#define CUDA_EMU_KERNEL_H

#ifndef __cplusplus
#error "cuda_emu_kernel.h is for the C++ side (the rewritten .cu files)"
#endif

#ifndef __CUDACC__
#define __CUDACC__ 1
#endif
#ifndef CUEMU_NO_CUDA_ARCH
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#endif

#include "cuda_emu_defs.h"
#include "cuda_runtime_api.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- thread coordinates ------------------------------------------------------ */

namespace cuemu {
extern __thread uint3 t_threadIdx, t_blockIdx, t_blockDim, t_gridDim;
extern __thread unsigned long long t_block_gen; /* unique per block run */
extern __thread char *t_smem_static;            /* the block's static __shared__ arena */
extern __thread char *t_smem_dyn;               /* the block's dynamic shared memory */
} // namespace cuemu

#define threadIdx (static_cast<const uint3 &>(::cuemu::t_threadIdx))
#define blockIdx (static_cast<const uint3 &>(::cuemu::t_blockIdx))
#define blockDim (static_cast<const uint3 &>(::cuemu::t_blockDim))
#define gridDim (static_cast<const uint3 &>(::cuemu::t_gridDim))
static constexpr int warpSize = 32;

/* ---- scheduler entry points (cuda_emu.cpp) ----------------------------------- */

namespace cuemu {
enum WarpOpKind {
    W_SYNC,
    W_SHFL_IDX,
    W_SHFL_UP,
    W_SHFL_DOWN,
    W_SHFL_XOR,
    W_BALLOT,
    W_ANY,
    W_ALL,
    W_RED_ADD,
    W_RED_MIN,
    W_RED_MAX,
    W_RED_AND,
    W_RED_OR,
    W_RED_XOR,
    W_MATCH_ANY,
    W_MATCH_ALL,
    W_KIND_COUNT
};
enum BarKind { B_SYNC, B_COUNT, B_AND, B_OR };
/* A warp-wide exchange: blocks the calling lane until every non-exited lane
 * named in mask has arrived with the same mask; writes this lane's result to res.
 * is_signed: for the reductions (__reduce_*_sync on int vs unsigned). */
void warp_op(int op, unsigned mask, int arg, int width, const void *val, int size, void *res, int is_signed,
             const char *file, int line);
/* The same for a value of at most 8 bytes (zero-extended), returning this lane's result. */
uint64_t warp_xchg(int op, unsigned mask, int arg, int width, uint64_t val, int size, int is_signed, const char *file,
                   int line);
/* __syncthreads and its _count/_and/_or forms: a barrier over the block's non-exited threads. */
int block_barrier(int kind, int pred, const char *file, int line);
unsigned active_mask();
/* Called first in every kernel body (inserted by cuemu_rewrite.py): checks
 * __launch_bounds__ against the launch and names the instantiation. */
void kernel_entry(int max_threads, const char *pretty);
[[noreturn]] void trap(const char *what, const char *file, int line);
unsigned long long error_count(); /* errors the emulator reported so far */

struct SmemSlot {
    unsigned long long gen;
    size_t off;
};
void *smem_static_alloc(SmemSlot &slot, size_t size, size_t align, const char *name, const char *file, int line);
template <class T>
inline T &shared_var(SmemSlot &slot, const char *name, const char *file, int line) {
    if (__builtin_expect(slot.gen == t_block_gen, 1)) return *reinterpret_cast<T *>(t_smem_static + slot.off);
    return *reinterpret_cast<T *>(smem_static_alloc(slot, sizeof(T), alignof(T), name, file, line));
}
template <class T> inline T *dyn_smem() { return reinterpret_cast<T *>(t_smem_dyn); }
} // namespace cuemu

/* Fallback for a __shared__ the rewriter did not see (e.g. inside a macro): block-shared storage. */
#ifndef __shared__
#define __shared__ static
#endif

/* ---- barriers and warp intrinsics ------------------------------------------------ */

#define CUEMU_SITE const char *cuemu_file_ = __builtin_FILE(), int cuemu_line_ = __builtin_LINE()

inline void __syncthreads(CUEMU_SITE) { ::cuemu::block_barrier(::cuemu::B_SYNC, 0, cuemu_file_, cuemu_line_); }
inline int __syncthreads_count(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_COUNT, pred != 0, cuemu_file_, cuemu_line_);
}
inline int __syncthreads_and(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_AND, pred != 0, cuemu_file_, cuemu_line_);
}
inline int __syncthreads_or(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_OR, pred != 0, cuemu_file_, cuemu_line_);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, CUEMU_SITE) {
    ::cuemu::warp_op(::cuemu::W_SYNC, mask, 0, 32, nullptr, 0, nullptr, 0, cuemu_file_, cuemu_line_);
}
inline unsigned __activemask() { return ::cuemu::active_mask(); }

namespace cuemu {
template <class T> inline T shfl(int op, unsigned mask, T var, int arg, int width, const char *f, int l) {
    static_assert(std::is_trivially_copyable<T>::value, "__shfl_*_sync: a trivially copyable type");
    T r;
    if constexpr (sizeof(T) <= 8) {
        uint64_t v = 0;
        std::memcpy(&v, &var, sizeof(T));
        const uint64_t o = warp_xchg(op, mask, arg, width, v, (int)sizeof(T), 0, f, l);
        std::memcpy(&r, &o, sizeof(T));
    } else { /* in 8-byte pieces, as CUDA's generic shuffles split in words */
        unsigned char in[sizeof(T)], out[sizeof(T)];
        std::memcpy(in, &var, sizeof(T));
        for (size_t k = 0; k < sizeof(T); k += 8) {
            const size_t n = sizeof(T) - k < 8 ? sizeof(T) - k : 8;
            uint64_t v = 0;
            std::memcpy(&v, in + k, n);
            const uint64_t o = warp_xchg(op, mask, arg, width, v, (int)n, 0, f, l);
            std::memcpy(out + k, &o, n);
        }
        std::memcpy(&r, out, sizeof(T));
    }
    return r;
}
} // namespace cuemu
template <class T> inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, CUEMU_SITE) {
    return ::cuemu::shfl(::cuemu::W_SHFL_IDX, mask, var, srcLane, width, cuemu_file_, cuemu_line_);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32, CUEMU_SITE) {
    return ::cuemu::shfl(::cuemu::W_SHFL_UP, mask, var, (int)delta, width, cuemu_file_, cuemu_line_);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32, CUEMU_SITE) {
    return ::cuemu::shfl(::cuemu::W_SHFL_DOWN, mask, var, (int)delta, width, cuemu_file_, cuemu_line_);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32, CUEMU_SITE) {
    return ::cuemu::shfl(::cuemu::W_SHFL_XOR, mask, var, laneMask, width, cuemu_file_, cuemu_line_);
}
inline unsigned __ballot_sync(unsigned mask, int pred, CUEMU_SITE) {
    int p = pred != 0;
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_BALLOT, mask, 0, 32, &p, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
inline int __any_sync(unsigned mask, int pred, CUEMU_SITE) {
    int p = pred != 0, r;
    ::cuemu::warp_op(::cuemu::W_ANY, mask, 0, 32, &p, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
inline int __all_sync(unsigned mask, int pred, CUEMU_SITE) {
    int p = pred != 0, r;
    ::cuemu::warp_op(::cuemu::W_ALL, mask, 0, 32, &p, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
#define CUEMU_REDUCE(name, op)                                                                                         \
    inline unsigned name(unsigned mask, unsigned v, CUEMU_SITE) {                                                      \
        unsigned r;                                                                                                    \
        ::cuemu::warp_op(op, mask, 0, 32, &v, 4, &r, 0, cuemu_file_, cuemu_line_);                                     \
        return r;                                                                                                      \
    }                                                                                                                  \
    inline int name(unsigned mask, int v, CUEMU_SITE) {                                                                \
        int r;                                                                                                         \
        ::cuemu::warp_op(op, mask, 0, 32, &v, 4, &r, 1, cuemu_file_, cuemu_line_);                                     \
        return r;                                                                                                      \
    }
CUEMU_REDUCE(__reduce_add_sync, ::cuemu::W_RED_ADD)
CUEMU_REDUCE(__reduce_min_sync, ::cuemu::W_RED_MIN)
CUEMU_REDUCE(__reduce_max_sync, ::cuemu::W_RED_MAX)
#undef CUEMU_REDUCE
inline unsigned __reduce_and_sync(unsigned mask, unsigned v, CUEMU_SITE) {
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_RED_AND, mask, 0, 32, &v, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v, CUEMU_SITE) {
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_RED_OR, mask, 0, 32, &v, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, CUEMU_SITE) {
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_RED_XOR, mask, 0, 32, &v, 4, &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
template <class T> inline unsigned __match_any_sync(unsigned mask, T v, CUEMU_SITE) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_any_sync: 32 or 64-bit values");
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_MATCH_ANY, mask, 0, 32, &v, (int)sizeof(T), &r, 0, cuemu_file_, cuemu_line_);
    return r;
}
template <class T> inline unsigned __match_all_sync(unsigned mask, T v, int *pred, CUEMU_SITE) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_all_sync: 32 or 64-bit values");
    unsigned r;
    ::cuemu::warp_op(::cuemu::W_MATCH_ALL, mask, 0, 32, &v, (int)sizeof(T), &r, 0, cuemu_file_, cuemu_line_);
    *pred = r != 0;
    return r;
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap(CUEMU_SITE) { ::cuemu::trap("__trap()", cuemu_file_, cuemu_line_); }
inline void __brkpt(CUEMU_SITE) { ::cuemu::trap("__brkpt()", cuemu_file_, cuemu_line_); }
inline void __nanosleep(unsigned) {}
#if defined(__x86_64__)
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }
#else
inline long long clock64() { return (long long)__builtin_readcyclecounter(); }
#endif
inline unsigned __lane_id_emulated() { return (threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y) & 31u; }

/* ---- atomics (real atomics: blocks may one day run on several OS threads) --------- */

namespace cuemu {
template <class T, class F> inline T atomic_rmw(T *p, F f) {
    static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "atomic of 2, 4 or 8 bytes");
    using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
    U *q = reinterpret_cast<U *>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED), nu;
    T o, n;
    do {
        std::memcpy(&o, &old, sizeof(T));
        n = f(o);
        std::memcpy(&nu, &n, sizeof(T));
    } while (!__atomic_compare_exchange_n(q, &old, nu, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return o;
}
} // namespace cuemu

#define CUEMU_ATOMIC_INT(T)                                                                                            \
    inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }                              \
    inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }                              \
    inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }                            \
    inline T atomicMin(T *p, T v) {                                                                                    \
        return ::cuemu::atomic_rmw(p, [v](T o) { return o < v ? o : v; });                                             \
    }                                                                                                                  \
    inline T atomicMax(T *p, T v) {                                                                                    \
        return ::cuemu::atomic_rmw(p, [v](T o) { return o > v ? o : v; });                                             \
    }                                                                                                                  \
    inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }                              \
    inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                                \
    inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }                              \
    inline T atomicCAS(T *p, T cmp, T v) {                                                                             \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                             \
        return cmp;                                                                                                    \
    }
CUEMU_ATOMIC_INT(int)
CUEMU_ATOMIC_INT(unsigned int)
CUEMU_ATOMIC_INT(unsigned long long)
CUEMU_ATOMIC_INT(long long)
#undef CUEMU_ATOMIC_INT
inline unsigned short atomicCAS(unsigned short *p, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
inline float atomicAdd(float *p, float v) { return ::cuemu::atomic_rmw(p, [v](float o) { return o + v; }); }
inline double atomicAdd(double *p, double v) { return ::cuemu::atomic_rmw(p, [v](double o) { return o + v; }); }
inline float atomicExch(float *p, float v) { return ::cuemu::atomic_rmw(p, [v](float) { return v; }); }
inline unsigned atomicInc(unsigned *p, unsigned v) {
    return ::cuemu::atomic_rmw(p, [v](unsigned o) { return o >= v ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned *p, unsigned v) {
    return ::cuemu::atomic_rmw(p, [v](unsigned o) { return (o == 0 || o > v) ? v : o - 1; });
}
#define CUEMU_ATOMIC_SCOPED(name)                                                                                      \
    template <class T, class... A> inline auto name##_block(T *p, A... a) { return name(p, a...); }                    \
    template <class T, class... A> inline auto name##_system(T *p, A... a) { return name(p, a...); }
CUEMU_ATOMIC_SCOPED(atomicAdd)
CUEMU_ATOMIC_SCOPED(atomicSub)
CUEMU_ATOMIC_SCOPED(atomicExch)
CUEMU_ATOMIC_SCOPED(atomicMin)
CUEMU_ATOMIC_SCOPED(atomicMax)
CUEMU_ATOMIC_SCOPED(atomicCAS)
CUEMU_ATOMIC_SCOPED(atomicAnd)
CUEMU_ATOMIC_SCOPED(atomicOr)
CUEMU_ATOMIC_SCOPED(atomicXor)
#undef CUEMU_ATOMIC_SCOPED

/* ---- math ------------------------------------------------------------------------ */
/* The fast-math intrinsics are computed exactly here (the GPU's are approximate:
 * __expf ~2 ulp, __fdividef wrong for huge divisors, rsqrtf ~2 ulp). */

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline void __sincosf(float x, float *s, float *c) {
    *s = sinf(x);
    *c = cosf(x);
}
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline float exp10f_(float x) { return powf(10.0f, x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
inline unsigned __float2uint_rz(float x) { return (unsigned)x; }
inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
inline long long __float2ll_rz(float x) { return (long long)x; }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }
inline float __ll2float_rn(long long x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
inline float __double2float_rn(double x) { return (float)x; }
inline int __double2int_rn(double x) { return (int)nearbyint(x); }

inline float __int_as_float(int x) {
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
inline int __float_as_int(float x) {
    int i;
    std::memcpy(&i, &x, 4);
    return i;
}
inline float __uint_as_float(unsigned x) {
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
inline unsigned __float_as_uint(float x) {
    unsigned i;
    std::memcpy(&i, &x, 4);
    return i;
}
inline double __longlong_as_double(long long x) {
    double d;
    std::memcpy(&d, &x, 8);
    return d;
}
inline long long __double_as_longlong(double x) {
    long long i;
    std::memcpy(&i, &x, 8);
    return i;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
    return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return (int)((long long)((a << 8) >> 8) * ((b << 8) >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (((s >> (4 * i)) & 7) * 8)) & 0xff) << (8 * i);
    return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)((v << (s & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)(v >> (s & 31));
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)((v << (s > 32 ? 32 : s)) >> 32);
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)(v >> (s > 32 ? 32 : s));
}
inline unsigned __sad(int a, int b, unsigned c) { return (unsigned)(a > b ? a - b : b - a) + c; }
inline unsigned __usad(unsigned a, unsigned b, unsigned c) { return (a > b ? a - b : b - a) + c; }

/* min / max as CUDA's math_functions.hpp declares them (same overload set,
 * so an ambiguous call here is ambiguous under nvcc too). */
#define CUEMU_MINMAX(R, A, B)                                                                                          \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }                                                       \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
CUEMU_MINMAX(int, int, int)
CUEMU_MINMAX(unsigned int, unsigned int, unsigned int)
CUEMU_MINMAX(unsigned int, int, unsigned int)
CUEMU_MINMAX(unsigned int, unsigned int, int)
CUEMU_MINMAX(long, long, long)
CUEMU_MINMAX(unsigned long, unsigned long, unsigned long)
CUEMU_MINMAX(unsigned long, long, unsigned long)
CUEMU_MINMAX(unsigned long, unsigned long, long)
CUEMU_MINMAX(long long, long long, long long)
CUEMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
CUEMU_MINMAX(unsigned long long, long long, unsigned long long)
CUEMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef CUEMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline int umin_(int a, int b) { return a < b ? a : b; }

/* ---- cache-hinted loads and stores: plain accesses ----------------------------- */
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldca(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline T __ldlu(const T *p) { return *p; }
template <class T> inline T __ldcv(const T *p) { return *p; }
template <class T> inline void __stcg(T *p, T v) { *p = v; }
template <class T> inline void __stcs(T *p, T v) { *p = v; }
template <class T> inline void __stwb(T *p, T v) { *p = v; }
template <class T> inline void __stwt(T *p, T v) { *p = v; }

/* ---- the launch ---------------------------------------------------------------- */

namespace cuemu {
struct LaunchCfg {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
inline LaunchCfg cfg(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = 0) {
    return LaunchCfg{grid, block, smem, stream};
}

/* What the launch knows about the argument pointers, checked by the runtime. */
struct ArgPtr {
    int arg;          /* argument index */
    const char *what; /* "" for the argument itself, else the member name */
    const void *ptr;
};
struct ArgList {
    ArgPtr ptrs[64];
    int n = 0;
    void add(int arg, const char *what, const void *p) {
        if (p && n < 64) ptrs[n++] = ArgPtr{arg, what, p};
    }
};

template <class T, class = void> struct has_data : std::false_type {};
template <class T> struct has_data<T, std::void_t<decltype(std::declval<T &>().data)>> : std::is_pointer<decltype(T::data)> {};
template <class T, class = void> struct has_scales : std::false_type {};
template <class T>
struct has_scales<T, std::void_t<decltype(std::declval<T &>().scales), decltype(std::declval<T &>().biases)>>
    : std::is_pointer<decltype(T::scales)> {};

/* Pointer arguments, and the pointer members data / scales / biases of struct
 * arguments passed by value (a weight-matrix view), must be device memory. */
template <class T> inline void collect(ArgList &l, int i, const T &v) {
    if constexpr (std::is_pointer<T>::value) {
        if constexpr (!std::is_function<std::remove_pointer_t<T>>::value) l.add(i, "", (const void *)v);
    } else if constexpr (std::is_class<T>::value) {
        if constexpr (has_data<T>::value) l.add(i, ".data", (const void *)v.data);
        if constexpr (has_scales<T>::value) {
            l.add(i, ".scales", (const void *)v.scales);
            l.add(i, ".biases", (const void *)v.biases);
        }
    }
}

struct LaunchInfo {
    const void *func;
    const char *text; /* the kernel expression as written */
    const char *file;
    int line;
    LaunchCfg cfg;
    size_t param_bytes;
    void (*run)(void *);  /* runs the kernel for the current thread */
    void (*destroy)(void *);
    void *call;
};
/* Queues (or runs) the launch; sets the last error on a bad launch. */
void submit_launch(const LaunchInfo &info, const ArgList &args);

template <class... P> struct KernelCall {
    void (*k)(P...);
    std::tuple<std::decay_t<P>...> args;
    static void run(void *self) {
        KernelCall *c = static_cast<KernelCall *>(self);
        std::apply(c->k, c->args);
    }
    static void destroy(void *self) { delete static_cast<KernelCall *>(self); }
};

template <size_t... I, class Tup> inline void collect_all(ArgList &l, const Tup &t, std::index_sequence<I...>) {
    (collect(l, (int)I, std::get<I>(t)), ...);
}

template <class... P, class... A>
inline void launch(void (*k)(P...), const char *text, const char *file, int line, LaunchCfg c, A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launch: wrong number of arguments");
    auto *call = new KernelCall<P...>{k, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
    ArgList l;
    collect_all(l, call->args, std::index_sequence_for<P...>{});
    size_t bytes = 0;
    ((bytes += sizeof(std::decay_t<P>)), ...);
    LaunchInfo info{(const void *)k, text, file, line, c, bytes, &KernelCall<P...>::run, &KernelCall<P...>::destroy, call};
    submit_launch(info, l);
}
} // namespace cuemu

/* C++ forms of the runtime calls that take a kernel. */
template <class T> inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute((const void *)entry, attr, value);
}
template <class T> inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, T *entry) {
    return cudaFuncGetAttributes(attr, (const void *)entry);
}
template <class T> inline cudaError_t cudaFuncSetCacheConfig(T *entry, cudaFuncCache c) {
    return cudaFuncSetCacheConfig((const void *)entry, c);
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, T *entry, int block, size_t smem) {
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, (const void *)entry, block, smem);
}
template <class T> inline cudaError_t cudaMalloc(T **p, size_t size) { return cudaMalloc((void **)p, size); }
template <class T> inline cudaError_t cudaMallocHost(T **p, size_t size) { return cudaMallocHost((void **)p, size); }
template <class T> inline cudaError_t cudaHostAlloc(T **p, size_t size, unsigned flags) {
    return cudaHostAlloc((void **)p, size, flags);
}
template <class T>
inline cudaError_t cudaMemcpyToSymbol(T &symbol, const void *src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    (void)kind;
    std::memcpy(reinterpret_cast<char *>(&symbol) + offset, src, count);
    return cudaSuccess;
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
    (void)kind;
    std::memcpy(dst, reinterpret_cast<const char *>(&symbol) + offset, count);
    return cudaSuccess;
}

#endif

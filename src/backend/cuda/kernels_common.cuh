/* Device helpers shared by the CUDA kernels (private to src/backend/cuda):
 * exact widening of bf16/f16, exact code → float conversion of quantized
 * weights, warp and block reductions, and the block-level weight-row × token
 * tile dot product used by cuk_matmul and cuk_ffn_grouped.
 *
 * Every helper here is plain CUDA (no cub/thrust); the block reductions
 * assume blockDim.x is a multiple of 32 and at most 1024, and must be called
 * by every thread of the block (they contain __syncthreads). */
#ifndef FM_BACKEND_CUDA_KERNELS_COMMON_CUH
#define FM_BACKEND_CUDA_KERNELS_COMMON_CUH

#include "backend/cuda/cuda_kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace fmk {

constexpr unsigned FULL = 0xffffffffu;

/* ---- scalar conversions ----------------------------------------------- */

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ float f16f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float f16_lo(uint32_t w) { return f16f((uint16_t)(w & 0xffffu)); }
__device__ __forceinline__ float f16_hi(uint32_t w) { return f16f((uint16_t)(w >> 16)); }

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float siluf_(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplusf_(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* ---- reductions ---------------------------------------------------------- */

/* All 32 lanes must be active. */
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL, v, off);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, off));
    return v;
}

/* Block-wide sum / max; `red` is a __shared__ float[32]. Every thread gets the
 * result (all threads add the per-warp partials in the same order). */
__device__ __forceinline__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    v = warp_sum(v);
    __syncthreads(); /* red free: every thread is done with its previous use */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int i = 0; i < nw; i++) s += red[i];
    return s;
}
__device__ __forceinline__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = red[0];
    for (int i = 1; i < nw; i++) m = fmaxf(m, red[i]);
    return m;
}

/* ---- weight formats -------------------------------------------------------- */

enum { FMT_F32, FMT_F16, FMT_BF16, FMT_Q2, FMT_Q4, FMT_Q8, FMT_COUNT };

template <int FMT> struct FmtInfo;
template <> struct FmtInfo<FMT_F32> { static constexpr int bits = 0, esize = 4; };
template <> struct FmtInfo<FMT_F16> { static constexpr int bits = 0, esize = 2; };
template <> struct FmtInfo<FMT_BF16> { static constexpr int bits = 0, esize = 2; };
template <> struct FmtInfo<FMT_Q2> { static constexpr int bits = 2, esize = 0; };
template <> struct FmtInfo<FMT_Q4> { static constexpr int bits = 4, esize = 0; };
template <> struct FmtInfo<FMT_Q8> { static constexpr int bits = 8, esize = 0; };

/* Columns one lane handles per step: one 16-byte vector (VEC) or one element /
 * one uint32 code word. */
template <int FMT, bool VEC> __host__ __device__ constexpr int lane_cols() {
    return FmtInfo<FMT>::bits ? (VEC ? 4 : 1) * (32 / FmtInfo<FMT>::bits) : (VEC ? 16 / FmtInfo<FMT>::esize : 1);
}

__host__ __device__ inline int fmt_of(const fm_mat &m) {
    if (m.bits == 2) return FMT_Q2;
    if (m.bits == 4) return FMT_Q4;
    if (m.bits == 8) return FMT_Q8;
    if (m.dtype == FM_DTYPE_F16) return FMT_F16;
    if (m.dtype == FM_DTYPE_BF16) return FMT_BF16;
    return FMT_F32;
}
__host__ __device__ inline int ilog2_group(int group) { return group == 32 ? 5 : group == 64 ? 6 : 7; }
/* Bytes of one row of W (codes only when quantized). */
__host__ __device__ inline size_t row_bytes(const fm_mat &m) {
    if (m.bits) return (size_t)m.cols * (size_t)m.bits / 32u * 4u;
    return (size_t)m.cols * (m.dtype == FM_DTYPE_F32 ? 4u : 2u);
}
/* 16-byte loads are possible: every row starts 16-byte aligned. */
__host__ __device__ inline bool vec_ok(const fm_mat &m) {
    return row_bytes(m) % 16 == 0 && ((uintptr_t)m.data & 15u) == 0;
}

/* One weight row: its first element / code word and (quantized) its scales and biases. */
struct RowRef {
    const void *w;
    const uint16_t *sc, *bi;
};
__device__ __forceinline__ RowRef row_ref(const fm_mat &m, int r) {
    RowRef rr;
    rr.w = (const char *)m.data + (size_t)r * row_bytes(m);
    if (m.bits) {
        const size_t ng = (size_t)(m.cols / m.group);
        rr.sc = m.scales + (size_t)r * ng;
        rr.bi = m.biases + (size_t)r * ng;
    } else {
        rr.sc = rr.bi = nullptr;
    }
    return rr;
}

/* ---- the block-level dot product ------------------------------------------ */

/* Fast exact decoding of the codes of one word. A byte of the word holds
 * CPB = 8/BITS codes; code k sits in byte k / CPB at sub-position k % CPB.
 * Masking the word keeps one sub-position in every byte, and a byte permute
 * puts byte i under the exponent of 2^23: as a float that is 2^23 + byte, and
 * subtracting 2^23 leaves the byte exactly, i.e. q_k · 2^((k % CPB)·BITS).
 * qraw returns that value; qunit the power of two that undoes the shift
 * (multiplying by it is exact). Three instructions per code (permute, add,
 * multiply-add) instead of shift, mask and a slow integer conversion. */
template <int BITS> __device__ __forceinline__ float qraw(uint32_t v, int k) {
    constexpr int CPB = 8 / BITS;
    constexpr uint32_t LOW = BITS == 2 ? 0x03030303u : BITS == 4 ? 0x0f0f0f0fu : 0xffffffffu;
    const uint32_t m = v & (LOW << ((k % CPB) * BITS));
    return __uint_as_float(__byte_perm(m, 0x4b000000u, 0x7440u | (unsigned)(k / CPB))) - 8388608.0f;
}
template <int BITS> __host__ __device__ constexpr float qunit(int k) {
    return (k % (8 / BITS)) == 0 ? 1.0f : (k % (8 / BITS)) == 1 ? 1.0f / (float)(1 << BITS)
                                      : (k % (8 / BITS)) == 2 ? 1.0f / (float)(1 << (2 * BITS))
                                                              : 1.0f / (float)(1 << (3 * BITS));
}

/* Activations are staged in shared memory, one chunk of `xc` columns (a
 * multiple of 64) per token of the tile: xs[t * xc + swz(f)]. Lanes read the
 * chunk in pieces of NC consecutive floats (lane l, step s: columns
 * (32 s + l)·NC ...); for NC ≥ 8 the float4 index q is XOR-swizzled,
 * q ^ ((q >> S) & 7) with NC/4 = 2^S float4s per piece, so that the 8 lanes
 * of each 128-bit shared-memory phase hit distinct bank groups (checked
 * exhaustively for NC = 8..64). A bijection inside every aligned block of 8
 * float4s, so staging writes stay conflict-free too. */
template <int NC> __device__ __forceinline__ int swz4(int q) {
    if constexpr (NC >= 8) {
        constexpr int S = NC == 8 ? 1 : NC == 16 ? 2 : NC == 32 ? 3 : 4;
        return q ^ ((q >> S) & 7);
    } else {
        return q;
    }
}
template <int NC> __device__ __forceinline__ int swz(int f) { return (swz4<NC>(f >> 2) << 2) | (f & 3); }
/* swz4(q0 + j) for a lane's piece: q0 = (lane + 32 s)·2^S and j < 2^S, so
 * (q >> S) & 7 is lane & 7 (= lx): one XOR. */
template <int NC> __device__ __forceinline__ int xidx(int q0, int j, int lx) {
    if constexpr (NC >= 8)
        return (q0 + j) ^ lx;
    else
        return q0 + j;
}

constexpr int MM_WARPS = 8; /* warps per block of the product kernels */
constexpr int MM_THREADS = MM_WARPS * 32;

/* Chunk of columns staged per pass for a token tile TT (≤ 32 KiB of shared
 * memory), as the launchers and kernels must agree on it. A multiple of 64,
 * and of the group: either a multiple of 128 or the row length rounded up to
 * 64 (the row length is a multiple of the group). */
__host__ __device__ constexpr int xc_max(int TT) { return 8192 / TT; }
inline int chunk_cols(int cols, int TT) {
    const int c = (cols + 63) / 64 * 64;
    return c < xc_max(TT) ? c : xc_max(TT);
}
/* Dynamic shared memory of a product kernel: TT chunks of x, then the group sums. */
inline size_t dot_smem_bytes(int xc, int TT) { return ((size_t)TT * (size_t)xc + (size_t)xc / 32) * sizeof(float); }

/* acc[r][t] += W[row r] · x[token t] for this warp's R rows (rr) and the
 * block's TT tokens (xsrc[t]: the token's activation row, NULL for a padding
 * token). Called by every thread of the block (contains __syncthreads); xsrc
 * may be written before the call without a barrier (the first thing done is
 * one). cols: the row length; gshift: log2(group) (quantized). Quantized rows
 * with TT == 1 use y = Σ_g s_g·Σq·x + b_g·Σx (as the CPU decode path; Σx per
 * group computed once per block, the bias terms added per group after each
 * chunk); otherwise each weight is dequantized (s·q + b) or widened once and
 * used for all TT tokens.
 *
 * Lane pieces never straddle a chunk or the row end: NC divides xc (a
 * multiple of 64) and, when vectorised, the row length (vec_ok). A quantized
 * piece of PIECE = min(NC, 32) codes lies in one group (groups are ≥ 32 and
 * aligned, NC-aligned pieces of ≤ 32 codes never cross a multiple of 32). */
template <int FMT, bool VEC, int R, int TT>
__device__ __forceinline__ void block_dot(const RowRef (&rr)[R], int cols, int gshift, int xc,
                                          const float *const *xsrc, float *xs, float (&acc)[R][TT]) {
    constexpr int BITS = FmtInfo<FMT>::bits;
    constexpr int NC = lane_cols<FMT, VEC>();
    constexpr int NW = VEC ? 4 : 1; /* raw 32-bit words per row and lane step */
    const int lane = threadIdx.x & 31, lx = lane & 7;
    const float4 *xs4 = reinterpret_cast<const float4 *>(xs);
    float *gs = xs + TT * xc; /* [xc / 32] group sums of x (quantized, TT == 1) */

    /* The raw weights of one lane step (columns c .. c+NC of each row): 16
     * bytes, one code word, or one element (zero-extended). */
    auto load = [&](int c, uint32_t (&raw)[R][NW]) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const char *base = static_cast<const char *>(rr[r].w);
            if constexpr (VEC) {
                const size_t off = BITS ? (size_t)c * BITS / 8 : (size_t)c * FmtInfo<FMT>::esize;
                const uint4 u = __ldg(reinterpret_cast<const uint4 *>(base + off));
                raw[r][0] = u.x;
                raw[r][NW > 1 ? 1 : 0] = u.y;
                raw[r][NW > 2 ? 2 : 0] = u.z;
                raw[r][NW > 3 ? 3 : 0] = u.w;
            } else if constexpr (BITS != 0) {
                raw[r][0] = __ldg(reinterpret_cast<const uint32_t *>(base) + c / (32 / BITS));
            } else if constexpr (FMT == FMT_F32) {
                raw[r][0] = __ldg(reinterpret_cast<const uint32_t *>(base) + c);
            } else {
                raw[r][0] = __ldg(reinterpret_cast<const unsigned short *>(base) + c);
            }
        }
    };

    /* acc += this lane step's products. */
    auto compute = [&](int c, int cs, const uint32_t (&wv)[R][NW]) {
        if constexpr (BITS != 0) {
            constexpr int CPW = 32 / BITS;           /* codes per word */
            constexpr int CPB = 8 / BITS;            /* codes per byte */
            constexpr int PIECE = NC < 32 ? NC : 32; /* codes sharing one scale and bias */
            constexpr int NP = NC / PIECE;
            constexpr int WPP = PIECE / CPW; /* words per piece */
            const int q0 = (c - cs) >> 2;    /* logical float4 index of the lane's piece */
#pragma unroll
            for (int p = 0; p < NP; p++) {
                const int g = (c + p * PIECE) >> gshift;
                if constexpr (TT == 1) {
                    /* word by word: x of the word, then Σq·x per row, one
                     * partial sum per sub-position (and byte parity); the
                     * bias term b·Σx is added per group after the chunk */
                    float sq[R][CPB][2];
#pragma unroll
                    for (int r = 0; r < R; r++)
#pragma unroll
                        for (int u = 0; u < CPB; u++) sq[r][u][0] = sq[r][u][1] = 0.0f;
#pragma unroll
                    for (int wi = 0; wi < WPP; wi++) {
                        const int wk = p * WPP + wi; /* word of the lane step */
                        float xv[CPW];
#pragma unroll
                        for (int j = 0; j < CPW / 4; j++) {
                            const float4 f = xs4[xidx<NC>(q0, wk * (CPW / 4) + j, lx)];
                            xv[4 * j] = f.x;
                            xv[4 * j + 1] = f.y;
                            xv[4 * j + 2] = f.z;
                            xv[4 * j + 3] = f.w;
                        }
#pragma unroll
                        for (int r = 0; r < R; r++)
#pragma unroll
                            for (int k = 0; k < CPW; k++)
                                sq[r][k % CPB][(k / CPB) & 1] += qraw<BITS>(wv[r][wk], k) * xv[k];
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        float sqr = 0.0f;
#pragma unroll
                        for (int u = 0; u < CPB; u++) sqr += (sq[r][u][0] + sq[r][u][1]) * qunit<BITS>(u);
                        acc[r][0] += bf16f(__ldg(rr[r].sc + g)) * sqr;
                    }
                } else {
                    /* scale per sub-position: s·2^(-u·BITS), exact */
                    float su[R][CPB], b[R];
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        const float s = bf16f(__ldg(rr[r].sc + g));
#pragma unroll
                        for (int u = 0; u < CPB; u++) su[r][u] = s * qunit<BITS>(u);
                        b[r] = bf16f(__ldg(rr[r].bi + g));
                    }
#pragma unroll
                    for (int j = 0; j < PIECE / 4; j++) {
                        /* dequantize 4 codes of every row, then use them for every token */
                        float w[R][4];
#pragma unroll
                        for (int r = 0; r < R; r++)
#pragma unroll
                            for (int e = 0; e < 4; e++) {
                                const int kk = p * PIECE + 4 * j + e; /* code of the lane step */
                                w[r][e] = su[r][kk % CPB] * qraw<BITS>(wv[r][kk / CPW], kk % CPW) + b[r];
                            }
#pragma unroll
                        for (int t = 0; t < TT; t++) {
                            const float4 xq = xs4[t * (xc >> 2) + xidx<NC>(q0, p * (PIECE / 4) + j, lx)];
#pragma unroll
                            for (int r = 0; r < R; r++) {
                                acc[r][t] += w[r][0] * xq.x;
                                acc[r][t] += w[r][1] * xq.y;
                                acc[r][t] += w[r][2] * xq.z;
                                acc[r][t] += w[r][3] * xq.w;
                            }
                        }
                    }
                }
            }
        } else if constexpr (NC == 1) { /* plain, one element per lane */
            float w[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                if constexpr (FMT == FMT_F32)
                    w[r] = __uint_as_float(wv[r][0]);
                else if constexpr (FMT == FMT_F16)
                    w[r] = f16_lo(wv[r][0]);
                else
                    w[r] = bf16_lo(wv[r][0]);
            }
#pragma unroll
            for (int t = 0; t < TT; t++) {
                const float xv = xs[t * xc + (c - cs)];
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][t] += w[r] * xv;
            }
        } else { /* plain, 16 bytes per lane: 4 floats or 8 halves */
            const int q0 = (c - cs) >> 2;
            float w[R][NC];
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    if constexpr (FMT == FMT_F32) {
                        w[r][i] = __uint_as_float(wv[r][i]);
                    } else if constexpr (FMT == FMT_F16) {
                        w[r][2 * i] = f16_lo(wv[r][i]);
                        w[r][2 * i + 1] = f16_hi(wv[r][i]);
                    } else {
                        w[r][2 * i] = bf16_lo(wv[r][i]);
                        w[r][2 * i + 1] = bf16_hi(wv[r][i]);
                    }
                }
#pragma unroll
            for (int j = 0; j < NC / 4; j++)
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    const float4 xq = xs4[t * (xc >> 2) + xidx<NC>(q0, j, lx)];
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        acc[r][t] += w[r][4 * j] * xq.x;
                        acc[r][t] += w[r][4 * j + 1] * xq.y;
                        acc[r][t] += w[r][4 * j + 2] * xq.z;
                        acc[r][t] += w[r][4 * j + 3] * xq.w;
                    }
                }
        }
    };

    for (int cs = 0; cs < cols; cs += xc) {
        const int ce = cs + xc < cols ? cs + xc : cols;
        int c = cs + lane * NC;
        uint32_t cur[R][NW] = {};
        if (c < ce) load(c, cur); /* in flight while the activations are staged */
        __syncthreads();          /* previous chunk consumed; xsrc visible */
        for (int t = 0; t < TT; t++) {
            const float *src = xsrc[t];
            for (int f = threadIdx.x; f < xc; f += blockDim.x)
                xs[t * xc + swz<NC>(f)] = (src && cs + f < ce) ? __ldg(src + cs + f) : 0.0f;
        }
        if constexpr (BITS != 0 && TT == 1) {
            /* Σx per group of the chunk (xc is a whole number of groups),
             * one warp per group: shared by all rows of the block */
            __syncthreads();
            const int ng = xc >> gshift, gsz = 1 << gshift, warp = threadIdx.x >> 5;
            for (int g = warp; g < ng; g += (int)(blockDim.x >> 5)) {
                float sum = 0.0f;
                for (int f = lane; f < gsz; f += 32) sum += xs[swz<NC>(g * gsz + f)];
                sum = warp_sum(sum);
                if (lane == 0) gs[g] = sum;
            }
        }
        __syncthreads();
        /* software pipelined: the next step's weights load during this step's math */
#pragma unroll 1
        while (c < ce) {
            const int cn = c + 32 * NC;
            uint32_t nxt[R][NW] = {};
            if (cn < ce) load(cn, nxt);
            compute(c, cs, cur);
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int i = 0; i < NW; i++) cur[r][i] = nxt[r][i];
            c = cn;
        }
        if constexpr (BITS != 0 && TT == 1) {
            /* Σ_g b_g·Σx_g over the chunk's groups (ce − cs is a whole
             * number of groups), lanes over groups */
            const int g0 = cs >> gshift, ng = (ce - cs) >> gshift;
#pragma unroll
            for (int r = 0; r < R; r++)
                for (int g = lane; g < ng; g += 32) acc[r][0] += bf16f(__ldg(rr[r].bi + g0 + g)) * gs[g];
        }
    }
}

/* Sums acc over the 32 lanes of the warp (every lane gets the totals). */
template <int R, int TT> __device__ __forceinline__ void warp_reduce_acc(float (&acc)[R][TT]) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = warp_sum(acc[r][t]);
}

} // namespace fmk

#endif

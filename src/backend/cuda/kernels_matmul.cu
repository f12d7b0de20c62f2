/* Matrix products on the GPU: cuk_matmul (y = x·Wᵀ for every weight format),
 * cuk_mat_rows (embedding lookup) and cuk_ffn_grouped (all SwiGLU experts of
 * a layer in two launches).
 *
 * Layout of the work: a block of 8 warps; each warp owns R weight rows
 * (R = 2 for one token, 4 for a token tile) and the block a tile of TT tokens
 * (1, 4 or 8) whose activations are staged in shared memory chunk by chunk.
 * Every lane streams 16 bytes of each of its rows per step when rows are
 * 16-byte aligned (else one word / element), so a row is read from memory
 * once per token tile, and the activations once per R rows. The warp's
 * partial sums are reduced with shuffles at the end. The inner loop is
 * fmk::block_dot (kernels_common.cuh).
 *
 * cuk_ffn_grouped reads the jobs from device memory, so the weight format is
 * only known on the device: its kernels dispatch on it per block (uniform). */
#include "backend/cuda/kernels_common.cuh"

using namespace fmk;

namespace {

/* Register budget (blocks per SM asked of ptxas): decode kernels (one token)
 * want occupancy to keep many weight loads in flight (≤ 80 registers); token
 * tiles keep R·TT accumulators and are compute-bound (≤ 128, or no cap for
 * 2-bit codes, whose 64-code lane steps need more to avoid spills). */
constexpr int mm_min_blocks(int TT, int bits = 0) { return TT == 1 ? 3 : bits == 2 ? 1 : 2; }

/* ---- cuk_matmul ------------------------------------------------------------ */

template <int FMT, bool VEC, int R, int TT>
__global__ void __launch_bounds__(MM_THREADS, mm_min_blocks(TT, FmtInfo<FMT>::bits))
    k_matmul(float *__restrict__ y, const float *__restrict__ x, int T, fm_mat W, int gshift, int xc) {
    extern __shared__ float4 smem4[];
    __shared__ const float *xsrc[TT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t0 = blockIdx.y * TT;
    const int row0 = (blockIdx.x * MM_WARPS + warp) * R;
    if (threadIdx.x < TT) {
        const int t = t0 + (int)threadIdx.x;
        xsrc[threadIdx.x] = t < T ? x + (size_t)t * (size_t)W.cols : nullptr;
    }
    RowRef rr[R];
#pragma unroll
    for (int i = 0; i < R; i++) rr[i] = row_ref(W, row0 + i < W.rows ? row0 + i : W.rows - 1);
    float acc[R][TT] = {};
    block_dot<FMT, VEC, R, TT>(rr, W.cols, gshift, xc, xsrc, reinterpret_cast<float *>(smem4), acc);
    warp_reduce_acc<R, TT>(acc);
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int t = 0; t < TT; t++)
                if (row0 + i < W.rows && t0 + t < T) y[(size_t)(t0 + t) * (size_t)W.rows + row0 + i] = acc[i][t];
    }
}

template <int FMT, bool VEC, int TT> void launch_matmul(cudaStream_t st, float *y, const float *x, int T, const fm_mat *W) {
    constexpr int R = (TT == 1 || FmtInfo<FMT>::bits) ? 2 : 4;
    const int xc = chunk_cols(W->cols, TT);
    const dim3 grid((unsigned)((W->rows + MM_WARPS * R - 1) / (MM_WARPS * R)), (unsigned)((T + TT - 1) / TT));
    const size_t smem = dot_smem_bytes(xc, TT);
    k_matmul<FMT, VEC, R, TT><<<grid, MM_THREADS, smem, st>>>(y, x, T, *W, W->bits ? ilog2_group(W->group) : 0, xc);
}

template <int FMT, bool VEC> void matmul_tt(cudaStream_t st, float *y, const float *x, int T, const fm_mat *W) {
    if (T == 1)
        launch_matmul<FMT, VEC, 1>(st, y, x, T, W);
    else if (T <= 4)
        launch_matmul<FMT, VEC, 4>(st, y, x, T, W);
    else
        launch_matmul<FMT, VEC, 8>(st, y, x, T, W);
}

template <int FMT> void matmul_fmt(cudaStream_t st, float *y, const float *x, int T, const fm_mat *W) {
    if (vec_ok(*W))
        matmul_tt<FMT, true>(st, y, x, T, W);
    else
        matmul_tt<FMT, false>(st, y, x, T, W);
}

/* ---- cuk_mat_rows ------------------------------------------------------------ */

__global__ void __launch_bounds__(256) k_mat_rows(float *__restrict__ out, fm_mat W, const int32_t *__restrict__ ids) {
    const int id = ids[blockIdx.x];
    const RowRef rr = row_ref(W, id);
    float *o = out + (size_t)blockIdx.x * (size_t)W.cols;
    const int fmt = fmt_of(W);
    for (int c = threadIdx.x; c < W.cols; c += blockDim.x) {
        float v;
        if (W.bits) {
            const uint32_t *q = static_cast<const uint32_t *>(rr.w);
            const unsigned bit = (unsigned)c * (unsigned)W.bits;
            const uint32_t code = (q[bit >> 5] >> (bit & 31u)) & ((1u << W.bits) - 1u);
            const int g = c / W.group;
            v = bf16f(rr.sc[g]) * (float)code + bf16f(rr.bi[g]);
        } else if (fmt == FMT_F16) {
            v = f16f(static_cast<const uint16_t *>(rr.w)[c]);
        } else if (fmt == FMT_BF16) {
            v = bf16f(static_cast<const uint16_t *>(rr.w)[c]);
        } else {
            v = static_cast<const float *>(rr.w)[c];
        }
        o[c] = v;
    }
}

/* block_dot for a format known only at run time: the jobs of one grouped
 * launch sit in device memory, so each block switches on its own job's format. */
template <int R, int TT>
__device__ __forceinline__ void block_dot_any(const fm_mat &w, bool vec, const RowRef (&rr)[R], int cols, int gshift,
                                              int xc, const float *const *xsrc, float *xs, float (&acc)[R][TT]) {
    switch (fmt_of(w) * 2 + (vec ? 1 : 0)) {
#define FMT_CASE(FMT)                                                                                                  \
    case FMT * 2: block_dot<FMT, false, R, TT>(rr, cols, gshift, xc, xsrc, xs, acc); break;                           \
    case FMT * 2 + 1: block_dot<FMT, true, R, TT>(rr, cols, gshift, xc, xsrc, xs, acc); break;
        FMT_CASE(FMT_F32)
        FMT_CASE(FMT_F16)
        FMT_CASE(FMT_BF16)
        FMT_CASE(FMT_Q2)
        FMT_CASE(FMT_Q4)
        FMT_CASE(FMT_Q8)
#undef FMT_CASE
    default: break;
    }
}

/* ---- cuk_ffn_grouped ----------------------------------------------------------- */

/* h[i, f] = silu(gate_f · x_i) * (up_f · x_i): warp = one f (gate row and up
 * row together, R = 2), block = 8 values of f × a tile of TT entries of one job. */
template <int TT>
__global__ void __launch_bounds__(MM_THREADS, mm_min_blocks(TT))
    k_ffn_gate_up(float *__restrict__ h_buf, const float *__restrict__ x, const int *__restrict__ rows,
                  const cuk_ffn_job *__restrict__ jobs, int F, int xc) {
    extern __shared__ float4 smem4[];
    __shared__ const float *xsrc[TT];
    const cuk_ffn_job *jb = jobs + blockIdx.y;
    const int first = jb->first, count = jb->count;
    const int e0 = blockIdx.z * TT;
    if (e0 >= count) return; /* whole block: before any barrier */
    const fm_mat gate = jb->gate, up = jb->up;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int f0 = blockIdx.x * MM_WARPS + warp;
    const int f = f0 < gate.rows ? f0 : gate.rows - 1;
    if (threadIdx.x < TT) {
        const int e = e0 + (int)threadIdx.x;
        if (e < count) {
            const int i = first + e;
            xsrc[threadIdx.x] = x + (size_t)(rows ? rows[i] : i) * (size_t)gate.cols;
        } else {
            xsrc[threadIdx.x] = nullptr;
        }
    }
    const RowRef rr[2] = {row_ref(gate, f), row_ref(up, f)};
    const int gshift = gate.bits ? ilog2_group(gate.group) : 0;
    const bool vec = vec_ok(gate) && vec_ok(up);
    float *xs = reinterpret_cast<float *>(smem4);
    float acc[2][TT] = {};
    block_dot_any<2, TT>(gate, vec, rr, gate.cols, gshift, xc, xsrc, xs, acc);
    warp_reduce_acc<2, TT>(acc);
    if (lane == 0 && f0 < gate.rows) {
#pragma unroll
        for (int t = 0; t < TT; t++)
            if (e0 + t < count) h_buf[(size_t)(first + e0 + t) * (size_t)F + f0] = siluf_(acc[0][t]) * acc[1][t];
    }
}

/* y[i, r] = down_r · h_i: warp = R rows of down, block = 8R rows × TT entries of one job. */
template <int TT>
__global__ void __launch_bounds__(MM_THREADS, mm_min_blocks(TT))
    k_ffn_down(float *__restrict__ y, const float *__restrict__ h_buf, const cuk_ffn_job *__restrict__ jobs, int F, int H,
               int xc) {
    constexpr int R = 2;
    extern __shared__ float4 smem4[];
    __shared__ const float *xsrc[TT];
    const cuk_ffn_job *jb = jobs + blockIdx.y;
    const int first = jb->first, count = jb->count;
    const int e0 = blockIdx.z * TT;
    if (e0 >= count) return; /* whole block: before any barrier */
    const fm_mat down = jb->down;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * MM_WARPS + warp) * R;
    if (threadIdx.x < TT) {
        const int e = e0 + (int)threadIdx.x;
        xsrc[threadIdx.x] = e < count ? h_buf + (size_t)(first + e) * (size_t)F : nullptr;
    }
    RowRef rr[R];
#pragma unroll
    for (int i = 0; i < R; i++) rr[i] = row_ref(down, row0 + i < down.rows ? row0 + i : down.rows - 1);
    const int gshift = down.bits ? ilog2_group(down.group) : 0;
    const bool vec = vec_ok(down);
    float *xs = reinterpret_cast<float *>(smem4);
    float acc[R][TT] = {};
    block_dot_any<R, TT>(down, vec, rr, down.cols, gshift, xc, xsrc, xs, acc);
    warp_reduce_acc<R, TT>(acc);
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int t = 0; t < TT; t++)
                if (row0 + i < down.rows && e0 + t < count)
                    y[(size_t)(first + e0 + t) * (size_t)H + row0 + i] = acc[i][t];
    }
}

template <int TT>
void launch_ffn(cudaStream_t st, float *y, float *h_buf, const float *x, const int *rows, const cuk_ffn_job *jobs,
                int n_jobs, int max_count, int F, int H) {
    constexpr int R = 2;
    const unsigned tiles = (unsigned)((max_count + TT - 1) / TT);
    const int xc1 = chunk_cols(H, TT), xc2 = chunk_cols(F, TT);
    const dim3 g1((unsigned)((F + MM_WARPS - 1) / MM_WARPS), (unsigned)n_jobs, tiles);
    k_ffn_gate_up<TT><<<g1, MM_THREADS, dot_smem_bytes(xc1, TT), st>>>(h_buf, x, rows, jobs, F, xc1);
    const dim3 g2((unsigned)((H + MM_WARPS * R - 1) / (MM_WARPS * R)), (unsigned)n_jobs, tiles);
    k_ffn_down<TT><<<g2, MM_THREADS, dot_smem_bytes(xc2, TT), st>>>(y, h_buf, jobs, F, H, xc2);
}

} // namespace

extern "C" void cuk_matmul(cudaStream_t stream, float *y, const float *x, int T, const fm_mat *W) {
    if (T <= 0 || W->rows <= 0 || W->cols <= 0) return;
    switch (fmt_of(*W)) {
    case FMT_F32: matmul_fmt<FMT_F32>(stream, y, x, T, W); break;
    case FMT_F16: matmul_fmt<FMT_F16>(stream, y, x, T, W); break;
    case FMT_BF16: matmul_fmt<FMT_BF16>(stream, y, x, T, W); break;
    case FMT_Q2: matmul_fmt<FMT_Q2>(stream, y, x, T, W); break;
    case FMT_Q4: matmul_fmt<FMT_Q4>(stream, y, x, T, W); break;
    default: matmul_fmt<FMT_Q8>(stream, y, x, T, W); break;
    }
}

extern "C" void cuk_mat_rows(cudaStream_t stream, float *out, const fm_mat *W, const int32_t *ids, int n) {
    if (n <= 0 || W->cols <= 0) return;
    k_mat_rows<<<(unsigned)n, 256, 0, stream>>>(out, *W, ids);
}

extern "C" void cuk_ffn_grouped(cudaStream_t stream, float *y, float *h_buf, const float *x, const int *rows,
                                const cuk_ffn_job *jobs, int n_jobs, int max_count, int F, int H) {
    if (n_jobs <= 0 || max_count <= 0 || F <= 0 || H <= 0) return;
    if (max_count == 1)
        launch_ffn<1>(stream, y, h_buf, x, rows, jobs, n_jobs, max_count, F, H);
    else if (max_count <= 4)
        launch_ffn<4>(stream, y, h_buf, x, rows, jobs, n_jobs, max_count, F, H);
    else
        launch_ffn<8>(stream, y, h_buf, x, rows, jobs, n_jobs, max_count, F, H);
}

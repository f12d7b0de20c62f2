/* Mixture-of-experts kernels (cuk_route, cuk_moe_combine), the GPU form of
 * moe.c's route() and its output sum.
 *
 * cuk_route: one block per token, one thread per expert (E ≤ 1024): block
 * max and sum for the softmax (p = exp(x − max) · (1/Σ), as cpu_softmax),
 * then K rounds of a block argmax over the experts not taken yet, the larger
 * probability winning and ties going to the lower index, as top_k() does.
 * cuk_moe_combine: one thread per (token, column), the K weighted expert rows
 * summed in j order, then the gated shared expert. */
#include "backend/cuda/kernels_common.cuh"

#include <math.h>

using namespace fmk;

namespace {

/* (v, i) beats (ov, oi): larger value, or equal value and lower index. */
__device__ __forceinline__ bool beats(float v, int i, float ov, int oi) { return v > ov || (v == ov && i < oi); }

/* Block-wide argmax of (v, i); every thread gets the winner. rv/ri: __shared__ [32]. */
__device__ __forceinline__ void block_argmax(float &v, int &i, float *rv, int *ri) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(FULL, v, off);
        const int oi = __shfl_xor_sync(FULL, i, off);
        if (beats(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
    __syncthreads(); /* rv/ri free */
    if (lane == 0) {
        rv[warp] = v;
        ri[warp] = i;
    }
    __syncthreads();
    v = rv[0];
    i = ri[0];
    for (int w = 1; w < nw; w++)
        if (beats(rv[w], ri[w], v, i)) {
            v = rv[w];
            i = ri[w];
        }
}

__global__ void __launch_bounds__(1024)
    k_route(int *__restrict__ sel, float *__restrict__ sel_w, float *__restrict__ logits, int E, int K, int renormalize) {
    __shared__ float red[32], rv[32];
    __shared__ int ri[32];
    const int t = blockIdx.x, e = threadIdx.x;
    float *lg = logits + (size_t)t * E;
    const bool valid = e < E;
    const float x = valid ? lg[e] : -INFINITY;
    const float mx = block_max(x, red);
    const float ex = valid ? expf(x - mx) : 0.0f;
    const float sum = block_sum(ex, red);
    const float p = ex * (1.0f / sum);
    if (valid) lg[e] = p;
    bool taken = false;
    int *st = sel + (size_t)t * K;
    float *sw = sel_w + (size_t)t * K;
    for (int j = 0; j < K; j++) {
        float v = valid && !taken ? p : -1.0f; /* probabilities are ≥ 0 */
        int i = e;
        block_argmax(v, i, rv, ri);
        if (e == i) taken = true;
        if (e == 0) {
            st[j] = i;
            sw[j] = v;
        }
    }
    if (renormalize && e == 0) {
        float s = 0.0f;
        for (int j = 0; j < K; j++) s += sw[j];
        for (int j = 0; j < K; j++) sw[j] /= s;
    }
}

__global__ void __launch_bounds__(256)
    k_moe_combine(float *__restrict__ out, const float *__restrict__ y, const int *__restrict__ entry,
                  const float *__restrict__ weight, int K, int H, const float *__restrict__ shared,
                  const float *__restrict__ shared_logit) {
    const int t = blockIdx.y, d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= H) return; /* no barrier in this kernel */
    float acc = 0.0f;
    for (int j = 0; j < K; j++) {
        const int en = entry[(size_t)t * K + j];
        acc += y[(size_t)en * H + d] * weight[en];
    }
    if (shared) {
        const float g = shared_logit ? sigmoidf_(shared_logit[t]) : 1.0f;
        acc += g * shared[(size_t)t * H + d];
    }
    out[(size_t)t * H + d] = acc;
}

} // namespace

extern "C" void cuk_route(cudaStream_t stream, int *sel, float *sel_w, float *logits, int n, int E, int K,
                          int renormalize) {
    if (n <= 0 || E <= 0) return;
    const int threads = (E + 31) / 32 * 32;
    k_route<<<(unsigned)n, (unsigned)threads, 0, stream>>>(sel, sel_w, logits, E, K, renormalize);
}

extern "C" void cuk_moe_combine(cudaStream_t stream, float *out, const float *y, const int *entry, const float *weight,
                                int n, int K, int H, const float *shared, const float *shared_logit) {
    if (n <= 0 || H <= 0) return;
    const dim3 grid((unsigned)((H + 255) / 256), (unsigned)n);
    k_moe_combine<<<grid, 256, 0, stream>>>(out, y, entry, weight, K, H, shared, shared_logit);
}

/* Full-attention kernels (cuk_split_q_gate, cuk_norm_rope, cuk_attention).
 *
 * cuk_norm_rope: one block per (token, head): the head vector is copied to
 * shared memory, optionally RMS-normalised (block reduction), then rotated
 * pairwise (i, i + half) with cosf/sinf of (pos0 + t)·inv_freq[i], like
 * attention.c.
 *
 * cuk_attention: one block of 128 threads per (head, token), online softmax
 * over chunks of 128 keys, so any context length works without a score
 * buffer: each thread scores one key of the chunk (q in shared memory), the
 * block takes the chunk max and sum, rescales the running output by
 * exp(m_old − m_new), and each thread then accumulates its own output
 * dimensions (d = tid + 128u, kept in shared memory: any hd) over the
 * chunk's values. */
#include "backend/cuda/kernels_common.cuh"

#include <math.h>

using namespace fmk;

namespace {

constexpr int ATT_THREADS = 128; /* also the keys per chunk */

__global__ void __launch_bounds__(256)
    k_split_q_gate(float *__restrict__ q, float *__restrict__ gate, const float *__restrict__ qg, int n, int nh, int hd,
                   int gated) {
    const size_t width = (size_t)nh * hd, total = (size_t)n * width, stride = (size_t)gridDim.x * blockDim.x;
    const size_t G = gated ? 2 : 1;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t t = i / width, rem = i - t * width, h = rem / (size_t)hd, d = rem - h * (size_t)hd;
        const float *src = qg + t * width * G + h * (size_t)hd * G + d;
        q[i] = src[0];
        if (gated) gate[i] = src[hd];
    }
}

__global__ void __launch_bounds__(128)
    k_norm_rope(float *x, int row_stride, int hd, const float *__restrict__ norm_w, float eps, int half,
                const float *__restrict__ inv_freq, int pos0) {
    extern __shared__ float4 nr_sm4[];
    float *buf = reinterpret_cast<float *>(nr_sm4); /* [hd] */
    __shared__ float red[32];
    const int h = blockIdx.x, t = blockIdx.y;
    float *xh = x + (size_t)t * (size_t)row_stride + (size_t)h * (size_t)hd;
    float ss = 0.0f;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        const float v = xh[d];
        buf[d] = v;
        ss += v * v;
    }
    if (norm_w) { /* uniform over the block */
        ss = block_sum(ss, red);
        const float scale = 1.0f / sqrtf(ss / (float)hd + eps);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) buf[d] = buf[d] * scale * norm_w[d];
    }
    __syncthreads();
    const float pos = (float)(pos0 + t);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float theta = pos * inv_freq[i];
        const float c = cosf(theta), s = sinf(theta);
        const float a = buf[i], b = buf[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = b * c + a * s;
    }
    for (int d = 2 * half + threadIdx.x; d < hd; d += blockDim.x) xh[d] = buf[d];
}

__global__ void __launch_bounds__(ATT_THREADS)
    k_attention(float *__restrict__ out, const float *__restrict__ q, const float *__restrict__ gate,
                const float *__restrict__ k_cache, const float *__restrict__ v_cache, int pos0, int nh, int nkv, int hd,
                int window, float scale, int vec4) {
    extern __shared__ float4 att_sm4[];
    float *qs = reinterpret_cast<float *>(att_sm4);  /* [hd, padded to 4] */
    float *prob = qs + ((hd + 3) & ~3);              /* [ATT_THREADS] */
    float *os = prob + ATT_THREADS;                  /* [hd] running output; os[d] owned by thread d % 128 */
    __shared__ float red[32];
    const int tid = threadIdx.x;
    const int h = blockIdx.x, t = blockIdx.y, p = pos0 + t;
    const int first = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
    const int kvh = h / (nh / nkv);
    const size_t kvw = (size_t)nkv * (size_t)hd;
    const size_t qoff = ((size_t)t * (size_t)nh + (size_t)h) * (size_t)hd;
    const float *kbase = k_cache + (size_t)kvh * hd, *vbase = v_cache + (size_t)kvh * hd;

    for (int d = tid; d < hd; d += ATT_THREADS) {
        qs[d] = q[qoff + d];
        os[d] = 0.0f;
    }
    __syncthreads();

    float m = -INFINITY, l = 0.0f;

    for (int j0 = first; j0 <= p; j0 += ATT_THREADS) {
        const int j = j0 + tid;
        float s = -INFINITY;
        if (j <= p) {
            const float *kr = kbase + (size_t)j * kvw;
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (vec4) {
                const float4 *k4 = reinterpret_cast<const float4 *>(kr);
                const float4 *q4 = reinterpret_cast<const float4 *>(qs);
#pragma unroll 4
                for (int d4 = 0; d4 < hd / 4; d4++) {
                    const float4 kv = __ldg(k4 + d4), qv = q4[d4];
                    a[0] += qv.x * kv.x;
                    a[1] += qv.y * kv.y;
                    a[2] += qv.z * kv.z;
                    a[3] += qv.w * kv.w;
                }
            } else {
#pragma unroll 4
                for (int d = 0; d < hd; d++) a[d & 3] += qs[d] * __ldg(kr + d);
            }
            s = ((a[0] + a[1]) + (a[2] + a[3])) * scale;
        }
        const float cmax = block_max(s, red); /* finite: key j0 ≤ p is valid */
        const float mn = fmaxf(m, cmax);
        const float e = j <= p ? expf(s - mn) : 0.0f;
        prob[tid] = e; /* read after block_sum's barriers */
        const float csum = block_sum(e, red);
        const float corr = expf(m - mn); /* 0 on the first chunk (m = -inf) */
        l = l * corr + csum;
        const int cnt = p - j0 + 1 < ATT_THREADS ? p - j0 + 1 : ATT_THREADS;
        for (int d = tid; d < hd; d += ATT_THREADS) {
            float acc = os[d] * corr;
            const float *vp = vbase + (size_t)j0 * kvw + d;
#pragma unroll 4
            for (int jj = 0; jj < cnt; jj++) acc += prob[jj] * __ldg(vp + (size_t)jj * kvw);
            os[d] = acc;
        }
        m = mn;
    }

    const float inv = 1.0f / l;
    for (int d = tid; d < hd; d += ATT_THREADS) {
        float r = os[d] * inv;
        if (gate) r *= sigmoidf_(gate[qoff + d]);
        out[qoff + d] = r;
    }
}

} // namespace

extern "C" void cuk_split_q_gate(cudaStream_t stream, float *q, float *gate, const float *qg, int n, int nh, int hd,
                                 int gated) {
    const size_t total = (size_t)n * (size_t)nh * (size_t)hd;
    if (total == 0) return;
    size_t blocks = (total + 255) / 256;
    if (blocks > 65536) blocks = 65536;
    k_split_q_gate<<<(unsigned)blocks, 256, 0, stream>>>(q, gate, qg, n, nh, hd, gated);
}

extern "C" void cuk_norm_rope(cudaStream_t stream, float *x, int n, int n_heads, int row_stride, int hd,
                              const float *norm_w, float eps, int half, const float *inv_freq, int pos0) {
    if (n <= 0 || n_heads <= 0 || hd <= 0) return;
    const dim3 grid((unsigned)n_heads, (unsigned)n);
    k_norm_rope<<<grid, 128, (size_t)hd * sizeof(float), stream>>>(x, row_stride, hd, norm_w, eps, half, inv_freq,
                                                                    pos0);
}

extern "C" void cuk_attention(cudaStream_t stream, float *out, const float *q, const float *gate, const float *k_cache,
                              const float *v_cache, int n, int pos0, int nh, int nkv, int hd, int window, float scale) {
    if (n <= 0 || nh <= 0 || hd <= 0) return;
    const int vec4 = hd % 4 == 0 && ((uintptr_t)k_cache & 15u) == 0;
    const dim3 grid((unsigned)nh, (unsigned)n);
    const size_t smem = ((size_t)((hd + 3) & ~3) + ATT_THREADS + (size_t)hd) * sizeof(float);
    k_attention<<<grid, ATT_THREADS, smem, stream>>>(out, q, gate, k_cache, v_cache, pos0, nh, nkv, hd, window, scale,
                                                     vec4);
}

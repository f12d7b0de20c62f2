/* Gated DeltaNet kernels (cuk_regroup_qkvz, cuk_conv_silu,
 * cuk_deltanet_prep, cuk_deltanet_recurrence, cuk_gated_rmsnorm), the GPU
 * form of deltanet.c.
 *
 * The recurrence: one block per value head, one thread per value column j
 * (dv ≤ 1024). Column j of the head's state S [dk, dv] stays in global memory
 * (row-major, so for a fixed key row i the block's accesses are coalesced);
 * the token's q and k sit in shared memory; tokens run in order inside the
 * kernel. Per token, two passes over the column in the CPU's order: decay and
 * Σ S·k, then S += k·δ and o = Σ S·q. Each pass loads 8 state values before
 * storing them so the loads overlap. A thread only touches its own column. */
#include "backend/cuda/kernels_common.cuh"

using namespace fmk;

namespace {

constexpr int CONV_MAX_K = 16;

__global__ void __launch_bounds__(256)
    k_regroup(float *__restrict__ mixed, float *__restrict__ z, float *__restrict__ b, float *__restrict__ a,
              const float *__restrict__ p, const float *__restrict__ ba, int n, int nk, int nv, int dk, int dv) {
    const int r = nv / nk, rdv = r * dv, group = 2 * dk + 2 * rdv, key_dim = nk * dk;
    const size_t conv_dim = 2 * (size_t)key_dim + (size_t)nv * dv;
    const size_t row1 = (size_t)nk * group, total1 = (size_t)n * row1;
    const size_t row2 = 2 * (size_t)nv, total2 = (size_t)n * row2;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total1 + total2; i += stride) {
        if (i < total1) {
            const size_t t = i / row1, rem = i - t * row1;
            const int g = (int)(rem / (size_t)group), e = (int)(rem - (size_t)g * group);
            const float v = p[i];
            float *mt = mixed + t * conv_dim;
            if (e < dk)
                mt[g * dk + e] = v;
            else if (e < 2 * dk)
                mt[key_dim + g * dk + (e - dk)] = v;
            else if (e < 2 * dk + rdv)
                mt[2 * key_dim + g * rdv + (e - 2 * dk)] = v;
            else
                z[t * (size_t)nv * dv + (size_t)g * rdv + (e - 2 * dk - rdv)] = v;
        } else {
            const size_t i2 = i - total1, t = i2 / row2, rem = i2 - t * row2;
            const int g = (int)(rem / (size_t)(2 * r)), e = (int)(rem - (size_t)g * 2 * r);
            const float v = ba[i2];
            if (e < r)
                b[t * nv + g * r + e] = v;
            else
                a[t * nv + g * r + (e - r)] = v;
        }
    }
}

/* One thread per channel, tokens in order; the K−1 previous inputs in registers. */
__global__ void __launch_bounds__(256)
    k_conv_silu(float *__restrict__ out, const float *__restrict__ in, float *__restrict__ state,
                const float *__restrict__ w, int n, int channels, int K) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= channels) return; /* no barrier in this kernel */
    const float *wc = w + (size_t)ch * K;
    float *st = state + (size_t)ch * (K - 1);
    float hist[CONV_MAX_K - 1], wr[CONV_MAX_K - 1];
#pragma unroll
    for (int j = 0; j < CONV_MAX_K - 1; j++) {
        hist[j] = j < K - 1 ? st[j] : 0.0f;
        wr[j] = j < K - 1 ? wc[j] : 0.0f;
    }
    const float wlast = wc[K - 1];
    for (int t = 0; t < n; t++) {
        const float x = in[(size_t)t * channels + ch];
        float sum = wlast * x;
#pragma unroll
        for (int j = 0; j < CONV_MAX_K - 1; j++)
            if (j < K - 1) sum += wr[j] * hist[j];
        out[(size_t)t * channels + ch] = siluf_(sum);
#pragma unroll
        for (int j = 0; j < CONV_MAX_K - 2; j++)
            if (j < K - 2) hist[j] = hist[j + 1];
#pragma unroll
        for (int j = 0; j < CONV_MAX_K - 1; j++)
            if (j == K - 2) hist[j] = x;
    }
#pragma unroll
    for (int j = 0; j < CONV_MAX_K - 1; j++)
        if (j < K - 1) st[j] = hist[j];
}

/* One block per token: a warp per q or k head vector (L2 norm), then β and g. */
__global__ void __launch_bounds__(256)
    k_deltanet_prep(float *__restrict__ conv, float *__restrict__ b, float *__restrict__ a,
                    const float *__restrict__ neg_exp_a, const float *__restrict__ dt_bias, int nk, int nv, int dk,
                    int conv_dim) {
    const int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (int)(blockDim.x >> 5);
    float *ct = conv + (size_t)t * conv_dim;
    const float q_scale = 1.0f / sqrtf((float)dk);
    for (int hv = warp; hv < 2 * nk; hv += nw) { /* q heads then k heads: contiguous */
        float *v = ct + (size_t)hv * dk;
        float ss = 0.0f;
        for (int i = lane; i < dk; i += 32) ss += v[i] * v[i];
        ss = warp_sum(ss);
        const float inv = 1.0f / sqrtf(ss + 1e-6f);
        if (hv < nk) {
            for (int i = lane; i < dk; i += 32) v[i] = v[i] * inv * q_scale;
        } else {
            for (int i = lane; i < dk; i += 32) v[i] *= inv;
        }
    }
    for (int h = threadIdx.x; h < nv; h += blockDim.x) {
        const size_t i = (size_t)t * nv + h;
        b[i] = sigmoidf_(b[i]);
        a[i] = neg_exp_a[h] * softplusf_(a[i] + dt_bias[h]);
    }
}

__global__ void __launch_bounds__(1024)
    k_deltanet_recurrence(float *__restrict__ core, const float *__restrict__ conv, const float *__restrict__ b,
                          const float *__restrict__ a, float *__restrict__ S, int n, int nk, int nv, int dk, int dv,
                          int conv_dim) {
    extern __shared__ float4 dn_sm4[];
    float *qs = reinterpret_cast<float *>(dn_sm4); /* [dk] */
    float *ks = qs + dk;                           /* [dk] */
    const int h = blockIdx.x, kh = h / (nv / nk), j = threadIdx.x;
    const size_t key_dim = (size_t)nk * dk;
    float *col = S + (size_t)h * dk * dv + j;
    for (int t = 0; t < n; t++) {
        const float *ct = conv + (size_t)t * conv_dim;
        __syncthreads(); /* the previous token's q and k are no longer read */
        for (int i = threadIdx.x; i < dk; i += blockDim.x) {
            qs[i] = ct[(size_t)kh * dk + i];
            ks[i] = ct[key_dim + (size_t)kh * dk + i];
        }
        __syncthreads();
        if (j < dv) {
            const float decay = expf(a[(size_t)t * nv + h]), beta = b[(size_t)t * nv + h];
            float kv = 0.0f;
            for (int i0 = 0; i0 < dk; i0 += 8) {
                float sv[8];
#pragma unroll
                for (int u = 0; u < 8; u++) sv[u] = i0 + u < dk ? col[(size_t)(i0 + u) * dv] : 0.0f;
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (i0 + u < dk) {
                        const float s = sv[u] * decay;
                        col[(size_t)(i0 + u) * dv] = s;
                        kv += s * ks[i0 + u];
                    }
            }
            const float delta = beta * (ct[2 * key_dim + (size_t)h * dv + j] - kv);
            float o = 0.0f;
            for (int i0 = 0; i0 < dk; i0 += 8) {
                float sv[8];
#pragma unroll
                for (int u = 0; u < 8; u++) sv[u] = i0 + u < dk ? col[(size_t)(i0 + u) * dv] : 0.0f;
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (i0 + u < dk) {
                        const float s = sv[u] + ks[i0 + u] * delta;
                        col[(size_t)(i0 + u) * dv] = s;
                        o += s * qs[i0 + u];
                    }
            }
            core[(size_t)t * nv * dv + (size_t)h * dv + j] = o;
        }
    }
}

/* One warp per (token, value head) row of dv values. */
__global__ void __launch_bounds__(256)
    k_gated_rmsnorm(float *__restrict__ core, const float *__restrict__ z, const float *__restrict__ w, int rows,
                    int dv, float eps) {
    const int row = blockIdx.x * (int)(blockDim.x >> 5) + (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return; /* whole warp; no barrier in this kernel */
    float *o = core + (size_t)row * dv;
    const float *zr = z + (size_t)row * dv;
    float ss = 0.0f;
    for (int j = lane; j < dv; j += 32) ss += o[j] * o[j];
    ss = warp_sum(ss);
    const float scale = 1.0f / sqrtf(ss / (float)dv + eps);
    for (int j = lane; j < dv; j += 32) o[j] = o[j] * scale * w[j] * siluf_(zr[j]);
}

unsigned grid_for(size_t total) {
    size_t blocks = (total + 255) / 256;
    return (unsigned)(blocks > 65536 ? 65536 : blocks);
}

} // namespace

extern "C" void cuk_regroup_qkvz(cudaStream_t stream, float *mixed, float *z, float *b, float *a, const float *p,
                                 const float *ba, int n, int nk, int nv, int dk, int dv) {
    if (n <= 0) return;
    const size_t total = (size_t)n * ((size_t)nk * (2 * (size_t)dk + 2 * (size_t)(nv / nk) * dv) + 2 * (size_t)nv);
    k_regroup<<<grid_for(total), 256, 0, stream>>>(mixed, z, b, a, p, ba, n, nk, nv, dk, dv);
}

extern "C" void cuk_conv_silu(cudaStream_t stream, float *out, const float *in, float *state, const float *w, int n,
                              int channels, int K) {
    if (n <= 0 || channels <= 0) return;
    k_conv_silu<<<(unsigned)((channels + 255) / 256), 256, 0, stream>>>(out, in, state, w, n, channels, K);
}

extern "C" void cuk_deltanet_prep(cudaStream_t stream, float *conv, float *b, float *a, const float *neg_exp_a,
                                  const float *dt_bias, int n, int nk, int nv, int dk, int conv_dim) {
    if (n <= 0) return;
    k_deltanet_prep<<<(unsigned)n, 256, 0, stream>>>(conv, b, a, neg_exp_a, dt_bias, nk, nv, dk, conv_dim);
}

extern "C" void cuk_deltanet_recurrence(cudaStream_t stream, float *core, const float *conv, const float *b,
                                        const float *a, float *S, int n, int nk, int nv, int dk, int dv,
                                        int conv_dim) {
    if (n <= 0 || nv <= 0 || dv <= 0) return;
    const int threads = (dv + 31) / 32 * 32;
    k_deltanet_recurrence<<<(unsigned)nv, (unsigned)threads, 2 * (size_t)dk * sizeof(float), stream>>>(
        core, conv, b, a, S, n, nk, nv, dk, dv, conv_dim);
}

extern "C" void cuk_gated_rmsnorm(cudaStream_t stream, float *core, const float *z, const float *w, int n, int nv,
                                  int dv, float eps) {
    const int rows = n * nv;
    if (rows <= 0) return;
    k_gated_rmsnorm<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(core, z, w, rows, dv, eps);
}

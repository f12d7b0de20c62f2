/* RMSNorm and the residual add on the GPU (cuk_rmsnorm, cuk_add).
 *
 * RMSNorm: one block per row; each thread sums the squares of its strided
 * elements in float, a block reduction gives Σx², then every thread scales
 * its own elements: y = x · (1/sqrtf(Σx²/dim + eps)) · w, the CPU's order.
 * In place is safe: a thread only writes the elements it read itself. */
#include "backend/cuda/kernels_common.cuh"

using namespace fmk;

namespace {

constexpr int NORM_THREADS = 256;

__global__ void __launch_bounds__(NORM_THREADS)
    k_rmsnorm(float *y, const float *x, const float *__restrict__ w, int dim, float eps) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * (size_t)dim;
    float *yr = y + (size_t)blockIdx.x * (size_t)dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    if (w) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale;
    }
}

__global__ void __launch_bounds__(256) k_add(float *__restrict__ x, const float *__restrict__ y, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] += y[i];
}

} // namespace

extern "C" void cuk_rmsnorm(cudaStream_t stream, float *y, const float *x, const float *w, int n_rows, int dim,
                            float eps) {
    if (n_rows <= 0 || dim <= 0) return;
    k_rmsnorm<<<(unsigned)n_rows, NORM_THREADS, 0, stream>>>(y, x, w, dim, eps);
}

extern "C" void cuk_add(cudaStream_t stream, float *x, const float *y, size_t n) {
    if (n == 0) return;
    size_t blocks = (n + 255) / 256;
    if (blocks > 65536) blocks = 65536; /* grid-stride loop covers the rest */
    k_add<<<(unsigned)blocks, 256, 0, stream>>>(x, y, n);
}

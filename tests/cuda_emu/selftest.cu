/* flashmoe CUDA-on-CPU emulator: its own tests. Kernels with __syncthreads
 * (block reductions), warp shuffles (xor / down / up / idx with width, partial
 * last warp), ballots and warp reductions, dynamic and static shared memory,
 * atomics, a templated kernel, 2-D blocks; the runtime's checks (bad launches,
 * host pointers passed as device pointers, memcpy direction, events, lazy
 * streams); and, in child processes, the reports of a deadlock, an
 * out-of-bounds access, a divergent barrier, a shuffle from a lane past the
 * block, a missing sync under the lazy schedule, a misaligned vector load
 * and an index past a __shared__ array (the last two by UBSan).
 * Prints ok / not ok lines and "selftest: N passed, M failed"; exit 1 on failure. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace cuemu {
unsigned long long error_count();
}

static int passed, failed;
static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "ok - " : "not ok - ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    ok ? passed++ : failed++;
}
#define CK(call)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                       \
            printf("not ok - %s: %s (line %d)\n", #call, cudaGetErrorString(e_), __LINE__);                           \
            failed++;                                                                                                  \
        }                                                                                                              \
    } while (0)

/* ---- kernels ---------------------------------------------------------------------- */

__device__ __forceinline__ float warp_sum_xor(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* Block sum through shared memory and two barriers (blockDim a multiple of 32). */
__global__ void __launch_bounds__(1024) k_block_sum(const float *x, float *out, int n) {
    __shared__ float red[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float v = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) v += x[i];
    v = warp_sum_xor(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

/* A partial last warp: a correct reduction over the lanes that exist. */
__global__ void k_partial_warp(const int *x, int *out) {
    const int lane = threadIdx.x & 31;
    const int base = threadIdx.x & ~31;
    const int cnt = (int)blockDim.x - base < 32 ? (int)blockDim.x - base : 32;
    const unsigned m = __activemask();
    int v = x[threadIdx.x];
    for (int off = 16; off > 0; off >>= 1) {
        int o = __shfl_down_sync(m, v, off);
        if (lane + off < cnt) v += o;
    }
    if (lane == 0) atomicAdd(out, v);
    unsigned b = __ballot_sync(m, x[threadIdx.x] % 2 == 0);
    if (lane == 0) atomicOr((unsigned *)out + 1 + (threadIdx.x >> 5), b);
}

/* Inclusive scan with __shfl_up_sync, broadcast with __shfl_sync over segments of 8. */
__global__ void k_scan(const int *x, int *scan, int *bcast) {
    const int lane = threadIdx.x & 31;
    int v = x[threadIdx.x];
    for (int off = 1; off < 32; off <<= 1) {
        int o = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= off) v += o;
    }
    scan[threadIdx.x] = v;
    bcast[threadIdx.x] = __shfl_sync(0xffffffffu, x[threadIdx.x], 3, 8); /* lane 3 of each group of 8 */
}

/* Warp collectives. */
__global__ void k_warp_misc(const int *x, int *out) {
    const int lane = threadIdx.x & 31;
    const int v = x[threadIdx.x];
    int s = __reduce_add_sync(0xffffffffu, v);
    int mn = __reduce_min_sync(0xffffffffu, v);
    unsigned mx = __reduce_max_sync(0xffffffffu, (unsigned)v);
    int any = __any_sync(0xffffffffu, v > 30), all = __all_sync(0xffffffffu, v >= 0);
    unsigned match = __match_any_sync(0xffffffffu, v % 4);
    __syncwarp();
    if (lane == 0) {
        out[0] = s;
        out[1] = mn;
        out[2] = (int)mx;
        out[3] = any;
        out[4] = all;
    }
    out[8 + lane] = (int)match;
}

/* Reverses each block's slice through dynamic shared memory. */
__global__ void k_reverse(float *x) {
    extern __shared__ float buf[];
    const int n = blockDim.x;
    float *base = x + (size_t)blockIdx.x * n;
    buf[threadIdx.x] = base[threadIdx.x];
    __syncthreads();
    base[threadIdx.x] = buf[n - 1 - threadIdx.x];
}

/* Histogram and sums with atomics. */
__global__ void k_atomics(const int *x, int n, int *hist, float *fsum, int *imax, unsigned long long *cas_sum) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        atomicAdd(&hist[x[i] & 15], 1);
        atomicAdd(fsum, 0.5f);
        atomicMax(imax, x[i]);
        unsigned long long old = *cas_sum, assumed;
        do {
            assumed = old;
            old = atomicCAS(cas_sum, assumed, assumed + (unsigned long long)x[i]);
        } while (old != assumed);
    }
}

/* A templated kernel (type and constant). */
template <int N, typename T> __global__ void k_scale(T *x, T f, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * f + (T)N;
}

/* 2-D blocks, __syncthreads_count / _and / _or, static shared in a device function. */
__device__ int tile_sum(int v) {
    static __shared__ int tile[16][16];
    tile[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    int s = 0;
    for (int i = 0; i < 16; i++) s += tile[threadIdx.y][i];
    __syncthreads();
    return s;
}
__global__ void k_2d(const int *x, int *rows, int *counts) {
    const int v = x[threadIdx.y * 16 + threadIdx.x];
    const int s = tile_sum(v);
    if (threadIdx.x == 0) rows[threadIdx.y] = s;
    int c = __syncthreads_count(v > 100);
    int a = __syncthreads_and(v >= 0);
    int o = __syncthreads_or(v == 7);
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        counts[0] = c;
        counts[1] = a;
        counts[2] = o;
    }
}

/* Early exit of some threads before a barrier and a warp reduction (exited lanes do not block). */
__global__ void k_early_exit(const float *x, float *out, int n) {
    __shared__ float red[32];
    if ((int)threadIdx.x >= n) return;
    float v = x[threadIdx.x];
    unsigned m = __activemask();
    for (int off = 16; off > 0; off >>= 1) {
        float o = __shfl_xor_sync(m, v, off);
        if (((threadIdx.x ^ off) & 31) < 32 && (int)((threadIdx.x & ~31) | ((threadIdx.x ^ off) & 31)) < n) v += o;
    }
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0;
        for (int w = 0; w < (n + 31) / 32; w++) s += red[w];
        *out = s;
    }
}

__global__ void k_conversions(const float *x, unsigned short *h, unsigned short *bf, float *back, int n) {
    int i = threadIdx.x;
    if (i >= n) return;
    __half hv = __float2half(x[i]);
    __nv_bfloat16 bv = __float2bfloat16(x[i]);
    h[i] = __half_as_ushort(hv);
    bf[i] = __bfloat16_as_ushort(bv);
    back[i] = __half2float(hv) + __bfloat162float(bv);
}

__global__ void __launch_bounds__(128) k_bounded(int *x) { x[threadIdx.x] = 1; }
__global__ void k_bigsmem(float *x) {
    extern __shared__ float big[];
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    x[threadIdx.x] = big[0];
}

/* ---- child cases: each must be reported ----------------------------------------------------- */

__global__ void k_deadlock(int *x) {
    if (threadIdx.x < 32 || threadIdx.x >= 48)
        __syncthreads(); /* waits for threads 32-47 ... */
    else
        __syncwarp(0xffffffffu); /* ... which wait for lanes 48-63 of their warp, at the barrier */
    x[threadIdx.x] = 1;
}
__global__ void k_oob(float *x, int n) { x[n + 1000 + threadIdx.x] = 1.0f; }
__global__ void k_divergent(int *x) {
    if (threadIdx.x & 1)
        __syncthreads();
    else
        __syncthreads();
    x[threadIdx.x] = 1;
}
__global__ void k_shfl_partial(float *x) {
    float v = x[threadIdx.x];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off); /* lanes past blockDim */
    x[threadIdx.x] = v;
}

__global__ void k_misaligned(const float *x, float *y) {
    const float4 v = __ldg(reinterpret_cast<const float4 *>(x + 1)); /* 4-byte aligned only */
    y[threadIdx.x] = v.x;
}
__global__ void k_smem_oob(float *y) {
    __shared__ float red[32];
    red[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = red[threadIdx.x + 1]; /* lane 31 reads red[32] */
}

static int child(const char *what) {
    int *d;
    CK(cudaMalloc((void **)&d, 4096));
    CK(cudaMemset(d, 0, 4096));
    if (!strcmp(what, "deadlock")) k_deadlock<<<1, 64>>>(d);
    if (!strcmp(what, "oob")) k_oob<<<1, 32>>>((float *)d, 1024);
    if (!strcmp(what, "divergent")) k_divergent<<<1, 64>>>(d);
    if (!strcmp(what, "shfl_partial")) k_shfl_partial<<<1, 40>>>((float *)d);
    if (!strcmp(what, "misaligned")) k_misaligned<<<1, 32>>>((float *)d, (float *)d + 256);
    if (!strcmp(what, "smem_oob")) k_smem_oob<<<1, 32>>>((float *)d);
    if (!strcmp(what, "lazy")) {
        /* lazy schedule: a D2H copy into pinned memory has not happened before the sync */
        int *h;
        CK(cudaMallocHost((void **)&h, 64));
        cudaStream_t s;
        CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        h[0] = 0;
        k_scale<0, int><<<1, 1, 0, s>>>(d, 0, 1);
        int one = 5;
        CK(cudaMemcpyAsync(d, &one, 4, cudaMemcpyHostToDevice, s)); /* pageable: staged now */
        one = 6;
        CK(cudaMemcpyAsync(h, d, 4, cudaMemcpyDeviceToHost, s));
        int before = h[0];
        cudaEvent_t e;
        CK(cudaEventCreate(&e));
        CK(cudaEventRecord(e, s));
        cudaError_t q = cudaEventQuery(e);
        CK(cudaStreamSynchronize(s));
        int after = h[0];
        printf("lazy: before %d after %d query %d\n", before, after, (int)q);
        return !(before == 0 && after == 5 && q == cudaErrorNotReady);
    }
    CK(cudaDeviceSynchronize());
    return 0;
}

/* Runs this program with `what`; its stderr must contain `expect`. */
static void expect_child(const char *what, const char *env, const char *expect, bool must_crash) {
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) {
        check(false, "child %s: no /proc/self/exe", what);
        return;
    }
    path[n] = 0;
    char tmpl[] = "/tmp/cuemu_selftest_XXXXXX";
    int fd = mkstemp(tmpl);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        dup2(fd, 1);
        if (env) putenv((char *)env);
        execl(path, path, what, (char *)nullptr);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    std::string out;
    char buf[4096];
    lseek(fd, 0, SEEK_SET);
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) out.append(buf, (size_t)r);
    close(fd);
    unlink(tmpl);
    bool crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
    bool ok = out.find(expect) != std::string::npos && (!must_crash || crashed);
    check(ok, "reported: %s (%s)", what, expect);
    if (!ok) printf("# child output:\n%s\n", out.c_str());
}

int main(int argc, char **argv) {
    if (argc == 2) return child(argv[1]);
    int ndev = 0;
    CK(cudaGetDeviceCount(&ndev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    check(ndev == 1 && prop.major == 9 && !strcmp(prop.name, "flashmoe CPU emulator"), "one device: %s %d.%d", prop.name,
          prop.major, prop.minor);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    /* block reduction */
    {
        const int n = 100000, blocks = 7, threads = 256;
        std::vector<float> x(n);
        double want = 0;
        for (int i = 0; i < n; i++) want += x[i] = (float)((i * 37) % 101) - 50.0f;
        float *dx, *dout;
        CK(cudaMalloc((void **)&dx, n * sizeof(float)));
        CK(cudaMalloc((void **)&dout, blocks * sizeof(float)));
        CK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        k_block_sum<<<blocks, threads, 0, st>>>(dx, dout, n);
        CK(cudaGetLastError());
        float out[blocks];
        CK(cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        double got = 0;
        for (int b = 0; b < blocks; b++) got += out[b];
        check(got == want, "block reduction with __syncthreads and shuffles: %.1f (want %.1f)", got, want);
        k_block_sum<<<1, 1024, 0, st>>>(dx, dout, n);
        CK(cudaMemcpyAsync(out, dout, 4, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        check(out[0] == want, "1024-thread block: %.1f", out[0]);
        CK(cudaFree(dx));
        CK(cudaFree(dout));
    }
    /* partial last warp */
    {
        const int threads = 77;
        int x[threads], *dx, *dout, out[4];
        int want = 0;
        unsigned wb[3] = {0, 0, 0};
        for (int i = 0; i < threads; i++) {
            want += x[i] = i * 3 + 1;
            if (x[i] % 2 == 0) wb[i >> 5] |= 1u << (i & 31);
        }
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&dout, sizeof out));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        CK(cudaMemset(dout, 0, sizeof out));
        k_partial_warp<<<1, threads>>>(dx, dout);
        CK(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
        check(out[0] == want && (unsigned)out[1] == wb[0] && (unsigned)out[2] == wb[1] && (unsigned)out[3] == wb[2],
              "partial last warp (77 threads): sum %d (want %d), ballots %x %x %x", out[0], want, out[1], out[2], out[3]);
        CK(cudaFree(dx));
        CK(cudaFree(dout));
    }
    /* scan and segmented broadcast */
    {
        int x[64], *dx, *ds, *db, s[64], bc[64];
        for (int i = 0; i < 64; i++) x[i] = i % 7 + 1;
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&ds, sizeof s));
        CK(cudaMalloc((void **)&db, sizeof bc));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        k_scan<<<1, 64>>>(dx, ds, db);
        CK(cudaMemcpy(s, ds, sizeof s, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(bc, db, sizeof bc, cudaMemcpyDeviceToHost));
        bool ok = true;
        for (int w = 0; w < 2; w++) {
            int acc = 0;
            for (int l = 0; l < 32; l++) {
                acc += x[w * 32 + l];
                ok &= s[w * 32 + l] == acc;
                ok &= bc[w * 32 + l] == x[w * 32 + (l & ~7) + 3];
            }
        }
        check(ok, "__shfl_up_sync scan and __shfl_sync with width 8");
        CK(cudaFree(dx));
        CK(cudaFree(ds));
        CK(cudaFree(db));
    }
    /* warp collectives */
    {
        int x[32], *dx, *dout, out[40];
        for (int i = 0; i < 32; i++) x[i] = (i * 13) % 32;
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&dout, sizeof out));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        k_warp_misc<<<1, 32>>>(dx, dout);
        CK(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
        int s = 0, mn = 99, mx = 0;
        for (int i = 0; i < 32; i++) s += x[i], mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
        bool ok = out[0] == s && out[1] == mn && out[2] == mx && out[3] == 1 && out[4] == 1;
        for (int l = 0; l < 32; l++) {
            unsigned want = 0;
            for (int j = 0; j < 32; j++)
                if (x[j] % 4 == x[l] % 4) want |= 1u << j;
            ok &= (unsigned)out[8 + l] == want;
        }
        check(ok, "__reduce_*_sync, __any/__all_sync, __match_any_sync, __syncwarp");
        CK(cudaFree(dx));
        CK(cudaFree(dout));
    }
    /* dynamic shared memory */
    {
        const int blocks = 3, threads = 200;
        std::vector<float> x(blocks * threads), y(blocks * threads);
        for (int i = 0; i < blocks * threads; i++) x[i] = (float)i;
        float *dx;
        CK(cudaMalloc((void **)&dx, x.size() * 4));
        CK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
        k_reverse<<<blocks, threads, threads * sizeof(float), st>>>(dx);
        CK(cudaMemcpyAsync(y.data(), dx, y.size() * 4, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        bool ok = true;
        for (int b = 0; b < blocks; b++)
            for (int t = 0; t < threads; t++) ok &= y[b * threads + t] == x[b * threads + threads - 1 - t];
        check(ok, "dynamic shared memory (extern __shared__)");
        CK(cudaFree(dx));
    }
    /* atomics */
    {
        const int n = 5000;
        std::vector<int> x(n);
        int hist_want[16] = {0}, mx = 0;
        unsigned long long sum = 0;
        for (int i = 0; i < n; i++) {
            x[i] = (i * 7919) % 1000;
            hist_want[x[i] & 15]++;
            mx = x[i] > mx ? x[i] : mx;
            sum += (unsigned long long)x[i];
        }
        int *dx, *dh, *dm;
        float *df;
        unsigned long long *dc;
        CK(cudaMalloc((void **)&dx, n * 4));
        CK(cudaMalloc((void **)&dh, 64));
        CK(cudaMalloc((void **)&dm, 4));
        CK(cudaMalloc((void **)&df, 4));
        CK(cudaMalloc((void **)&dc, 8));
        CK(cudaMemcpy(dx, x.data(), n * 4, cudaMemcpyHostToDevice));
        CK(cudaMemset(dh, 0, 64));
        CK(cudaMemset(dm, 0, 4));
        CK(cudaMemset(df, 0, 4));
        CK(cudaMemset(dc, 0, 8));
        k_atomics<<<5, 128>>>(dx, n, dh, df, dm, dc);
        int hist[16], m;
        float f;
        unsigned long long c;
        CK(cudaMemcpy(hist, dh, 64, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(&m, dm, 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(&f, df, 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(&c, dc, 8, cudaMemcpyDeviceToHost));
        check(!memcmp(hist, hist_want, sizeof hist) && m == mx && f == n * 0.5f && c == sum,
              "atomics: histogram, float add %.1f, max %d, CAS loop %llu", f, m, c);
        CK(cudaFree(dx));
        CK(cudaFree(dh));
        CK(cudaFree(dm));
        CK(cudaFree(df));
        CK(cudaFree(dc));
    }
    /* templated kernel */
    {
        float xf[10], *df;
        for (int i = 0; i < 10; i++) xf[i] = (float)i;
        CK(cudaMalloc((void **)&df, sizeof xf));
        CK(cudaMemcpy(df, xf, sizeof xf, cudaMemcpyHostToDevice));
        k_scale<3, float><<<dim3(2), dim3(8), 0, st>>>(df, 2.0f, 10);
        CK(cudaMemcpyAsync(xf, df, sizeof xf, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        bool ok = true;
        for (int i = 0; i < 10; i++) ok &= xf[i] == 2.0f * i + 3.0f;
        check(ok, "templated kernel k_scale<3, float>");
        CK(cudaFree(df));
    }
    /* 2-D block, static shared in a device function, __syncthreads_count/and/or */
    {
        int x[256], *dx, *dr, *dc, rows[16], counts[3];
        int want_c = 0, want_o = 0;
        for (int i = 0; i < 256; i++) {
            x[i] = (i * 31) % 200;
            want_c += x[i] > 100;
            want_o |= x[i] == 7;
        }
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&dr, sizeof rows));
        CK(cudaMalloc((void **)&dc, sizeof counts));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        k_2d<<<1, dim3(16, 16)>>>(dx, dr, dc);
        CK(cudaMemcpy(rows, dr, sizeof rows, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(counts, dc, sizeof counts, cudaMemcpyDeviceToHost));
        bool ok = counts[0] == want_c && counts[1] == 1 && counts[2] == want_o;
        for (int r = 0; r < 16; r++) {
            int s = 0;
            for (int c = 0; c < 16; c++) s += x[r * 16 + c];
            ok &= rows[r] == s;
        }
        check(ok, "2-D block, static __shared__ in a __device__ function, __syncthreads_count %d", counts[0]);
        CK(cudaFree(dx));
        CK(cudaFree(dr));
        CK(cudaFree(dc));
    }
    /* threads exiting before a barrier */
    {
        float x[128], *dx, *dout, out;
        float want = 0;
        for (int i = 0; i < 128; i++) x[i] = (float)(i + 1);
        for (int i = 0; i < 70; i++) want += x[i];
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&dout, 4));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        k_early_exit<<<1, 128>>>(dx, dout, 70);
        CK(cudaMemcpy(&out, dout, 4, cudaMemcpyDeviceToHost));
        check(out == want, "exited threads do not hold a barrier: %.1f (want %.1f)", out, want);
        CK(cudaFree(dx));
        CK(cudaFree(dout));
    }
    /* half / bfloat16 conversions (round to nearest even) */
    {
        float x[8] = {1.0f, 1.00048828125f, 1.0009765625f, 65519.0f, 65520.0f, 5.9604645e-08f, 3.0e-08f, -2.5f};
        unsigned short h_want[8] = {0x3c00, 0x3c00, 0x3c01, 0x7bff, 0x7c00, 0x0001, 0x0001, 0xc100};
        float *dx, *db;
        unsigned short *dh, *dbf, h[8], bf[8];
        CK(cudaMalloc((void **)&dx, sizeof x));
        CK(cudaMalloc((void **)&db, sizeof x));
        CK(cudaMalloc((void **)&dh, sizeof h));
        CK(cudaMalloc((void **)&dbf, sizeof bf));
        CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        k_conversions<<<1, 32>>>(dx, dh, dbf, db, 8);
        CK(cudaMemcpy(h, dh, sizeof h, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(bf, dbf, sizeof bf, cudaMemcpyDeviceToHost));
        check(!memcmp(h, h_want, sizeof h) && bf[0] == 0x3f80 && bf[7] == 0xc020, "half / bf16 rounding");
        /* exhaustive: every half round-trips */
        bool ok = true;
        for (unsigned u = 0; u < 65536; u++) {
            __half hv = __ushort_as_half((unsigned short)u);
            float f = __half2float(hv);
            if ((u & 0x7c00) == 0x7c00 && (u & 0x3ff)) continue; /* NaN */
            ok &= __half_as_ushort(__float2half(f)) == u;
#if defined(__FLT16_MAX__)
            _Float16 ref;
            memcpy(&ref, &u, 2);
            ok &= (float)ref == f;
#endif
        }
#if defined(__FLT16_MAX__)
        for (unsigned k = 0; k < 2000000 && ok; k++) {
            unsigned bits = k * 2147u + (k >> 3) * 7u;
            float f;
            memcpy(&f, &bits, 4);
            if (f != f) continue;
            _Float16 ref = (_Float16)f;
            unsigned short rb;
            memcpy(&rb, &ref, 2);
            ok &= __half_as_ushort(__float2half(f)) == rb;
        }
#endif
        check(ok, "half conversions exact (all halves; floats against _Float16)");
        CK(cudaFree(dx));
        CK(cudaFree(db));
        CK(cudaFree(dh));
        CK(cudaFree(dbf));
    }
    /* runtime checks the GPU would fail too */
    {
        unsigned long long e0 = cuemu::error_count();
        int *d;
        CK(cudaMalloc((void **)&d, 4096));
        cudaGetLastError();
        k_bounded<<<1, 2048>>>(d);
        check(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block: invalid configuration");
        k_bounded<<<1, 256>>>(d);
        check(cudaGetLastError() == cudaErrorLaunchOutOfResources, "256 threads over __launch_bounds__(128): refused");
        k_bigsmem<<<1, 32, 64 * 1024>>>((float *)d);
        check(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB dynamic shared memory without the attribute: refused");
        CK(cudaFuncSetAttribute(k_bigsmem, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
        k_bigsmem<<<1, 32, 64 * 1024>>>((float *)d);
        check(cudaGetLastError() == cudaSuccess, "64 KiB dynamic shared memory with the attribute: runs");
        int host[32];
        k_bounded<<<1, 32>>>(host);
        check(cudaGetLastError() == cudaErrorIllegalAddress, "a host pointer as a kernel argument: reported");
        check(cudaMemcpy(d, host, 128, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
              "cudaMemcpy with the direction reversed: cudaErrorInvalidValue");
        check(cudaMemcpy(d, host, 8192, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
              "cudaMemcpy past the end of an allocation: cudaErrorInvalidValue");
        check(cudaFree(host) == cudaErrorInvalidValue, "cudaFree of a host pointer: cudaErrorInvalidValue");
        size_t fr, tot;
        CK(cudaMemGetInfo(&fr, &tot));
        void *hog;
        check(cudaMalloc(&hog, tot) == cudaErrorMemoryAllocation && cudaGetLastError() == cudaErrorMemoryAllocation,
              "allocating the whole device fails: out of memory");
        check(cuemu::error_count() - e0 == 7, "the emulator reported each of the 7 misuses (%llu)",
              cuemu::error_count() - e0);
        cudaGetLastError();
        CK(cudaFree(d));
        cudaEvent_t a, b, c;
        CK(cudaEventCreate(&a));
        CK(cudaEventCreate(&b));
        CK(cudaEventCreateWithFlags(&c, cudaEventDisableTiming));
        CK(cudaEventRecord(a, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventRecord(c, st));
        CK(cudaEventSynchronize(b));
        float ms = -1;
        cudaError_t te = cudaEventElapsedTime(&ms, a, b);
        check(te == cudaSuccess && ms >= 0, "event timing %.3f ms", ms);
        check(cudaEventElapsedTime(&ms, a, c) == cudaErrorInvalidResourceHandle, "no timing on a DisableTiming event");
        cudaGetLastError();
        CK(cudaEventDestroy(a));
        CK(cudaEventDestroy(b));
        CK(cudaEventDestroy(c));
    }
    CK(cudaStreamDestroy(st));

    expect_child("deadlock", nullptr, "deadlock: no thread of the block can go on", true);
    expect_child("oob", nullptr, "bytes past the end of a 4096-byte device allocation", true);
    expect_child("divergent", nullptr, "reaches a different barrier", false);
    expect_child("shfl_partial", nullptr, "does not exist (partial warp)", false);
    expect_child("lazy", "CUDA_EMU_SCHEDULE=lazy", "lazy: before 0 after 5 query 600", false);
    /* UBSan in the kernels (KSAN in emu.mk) */
    expect_child("misaligned", nullptr, "misaligned address", false);
    expect_child("smem_oob", nullptr, "index 32 out of bounds for type 'float [32]'", false);

    printf("selftest: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* Throughput of the CUDA matrix kernels (cuk_matmul) against the card's own
 * copy bandwidth, measured in the same run (CUDA builds only).
 *   bench_cuda_kernels [--device N] [--reps N (25)] [--rotation-mib N (1024)]
 *  1. device-to-device copy: cudaMemcpy of a 1 GiB buffer, median of 10 after
 *     2 warm-ups; reported as bytes read per second (size / time; the bound of a
 *     kernel that only reads its weights) and read + write (2 x size / time);
 *  2. matrix-vector products (T = 1) at the real shapes of Qwen3.5-397B: 4-bit
 *     group-64 expert gate/up [1024 x 4096], down [4096 x 1024], attention
 *     [8192 x 4096], the LM head [151936 x 4096] at 8 bits, and 2/4/8-bit and
 *     bf16 [4096 x 4096]. GB/s = weight bytes (codes + scales + biases) / time.
 *     Each shape has distinct copies in rotation (>= --rotation-mib in all, far
 *     past the L2) so every product reads its weights from HBM; one pass is
 *     every copy once, captured in a CUDA graph (so launch overhead from the
 *     host is not counted; the plain stream-launched pass is shown beside it),
 *     timed with events: the median of --reps passes after 3 warm-ups. The
 *     ratio to the copy's read bandwidth has a target of 0.75 at 4 bits;
 *  3. prefill products (T = 64, 256) at 4 bits [4096 x 4096]: GFLOP/s (2·T·rows·cols).
 * Each result is checked against a float64 CPU product of the dequantized
 * weights (quant/affine.h) on sampled rows; an error past 1e-2 of Σ|w·x|
 * fails the run (exit 1). Without a CUDA device: a line saying so, exit 77. */
#include "bench_common.h"

#include "backend/cuda/cuda_kernels.h"
#include "core/dtype.h"
#include "quant/affine.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(call)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "bench_cuda_kernels: %s (line %d): %s\n", #call, __LINE__, cudaGetErrorString(e_));       \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

#define ALIGN(n) (((n) + 255) & ~(size_t)255)
#define MAX_TOL 1e-2

static int reps = 25;
static size_t rotation_bytes = (size_t)1 << 30;
static int failed;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float next_unit(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)); } /* [0, 1) */

/* ---- 1. copy bandwidth ---- */

static double d2d_read_gbps(cudaStream_t st, double *rw_gbps) {
    const size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    CK(cudaMemset(b, 0, n));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[12];
    for (int r = 0; r < 12; r++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t[r] = ms / 1e3;
    }
    double s = median(t + 2, 10);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(a));
    CK(cudaFree(b));
    *rw_gbps = 2.0 * n / s / 1e9;
    return n / s / 1e9;
}

/* ---- 2, 3. matrix products ---- */

typedef struct {
    const char *what;
    int rows, cols, bits, group, T; /* bits 16: bf16 */
} job;

typedef struct {
    double gbps_graph, gbps_stream, us_per_matmul, gflops, err;
    int n_mats;
    size_t bytes; /* weight bytes of one matrix */
} result;

/* Float64 reference of y[t, r] for the sampled rows; returns the largest
 * |y - ref| / Σ|w·x| over them. */
static double check(const job *j, const void *h_data, const uint16_t *h_scales, const uint16_t *h_biases,
                    const float *h_x, const float *h_y) {
    double worst = 0;
    float *w = malloc((size_t)j->cols * sizeof *w);
    const int samples = 64;
    for (int si = 0; si <= samples; si++) {
        int r = (int)((long long)(j->rows - 1) * si / samples);
        if (j->bits == 16) {
            const uint16_t *row = (const uint16_t *)h_data + (size_t)r * j->cols;
            for (int c = 0; c < j->cols; c++) w[c] = fm_bf16_to_f32(row[c]);
        } else {
            const uint32_t *q = (const uint32_t *)h_data + (size_t)r * j->cols * j->bits / 32;
            size_t g = (size_t)r * (j->cols / j->group);
            fm_dequantize_row(q, h_scales + g, h_biases + g, j->cols, j->bits, j->group, w);
        }
        int tokens[2] = {0, j->T - 1};
        for (int k = 0; k < (j->T > 1 ? 2 : 1); k++) {
            const float *x = h_x + (size_t)tokens[k] * j->cols;
            double ref = 0, mag = 0;
            for (int c = 0; c < j->cols; c++) {
                ref += (double)w[c] * x[c];
                mag += fabs((double)w[c] * x[c]);
            }
            double e = fabs(h_y[(size_t)tokens[k] * j->rows + r] - ref) / (mag + 1e-30);
            if (!(e <= worst)) worst = e; /* NaN sticks */
        }
    }
    free(w);
    return worst;
}

static void run_job(cudaStream_t st, const job *j, result *res) {
    const int quant = j->bits != 16;
    size_t wb, sb;
    if (quant) {
        wb = fm_quant_weight_bytes(j->rows, j->cols, j->bits);
        sb = fm_quant_scales_bytes(j->rows, j->cols, j->group);
    } else {
        wb = (size_t)j->rows * j->cols * 2;
        sb = 0;
    }
    const size_t off_s = ALIGN(wb), off_b = off_s + ALIGN(sb), stride = ALIGN(off_b + sb);
    res->bytes = wb + 2 * sb;

    /* Host image of one matrix: random codes, per-group scales and biases as
     * synth_packed writes them (weights ~ uniform in ±sqrt(3/cols)), bf16 values. */
    unsigned char *img = malloc(stride);
    if (!img) {
        fprintf(stderr, "bench_cuda_kernels: out of host memory\n");
        exit(1);
    }
    memset(img, 0, stride);
    const float a = sqrtf(3.0f / j->cols);
    if (quant) {
        uint64_t *w64 = (uint64_t *)img;
        for (size_t i = 0; i < wb / 8; i++) w64[i] = next_u64();
        uint16_t *s = (uint16_t *)(img + off_s), *b = (uint16_t *)(img + off_b);
        const float levels = (float)((1 << j->bits) - 1);
        for (size_t i = 0; i < sb / 2; i++) {
            float span = 2 * a * (0.5f + next_unit());
            s[i] = fm_f32_to_bf16(span / levels);
            b[i] = fm_f32_to_bf16(-span / 2);
        }
    } else {
        uint16_t *h = (uint16_t *)img;
        for (size_t i = 0; i < wb / 2; i++) h[i] = fm_f32_to_bf16(a * (2 * next_unit() - 1));
    }

    /* Copies in rotation. */
    size_t target = j->T > 1 ? rotation_bytes / 8 : rotation_bytes;
    int n = (int)((target + stride - 1) / stride);
    if (n < 2) n = 2;
    size_t free_b, total_b;
    CK(cudaMemGetInfo(&free_b, &total_b));
    while (n > 2 && (double)n * stride > 0.8 * free_b) n--;
    res->n_mats = n;
    unsigned char *dev;
    CK(cudaMalloc((void **)&dev, (size_t)n * stride));
    CK(cudaMemcpy(dev, img, stride, cudaMemcpyHostToDevice));
    for (int i = 1; i < n; i++) CK(cudaMemcpyAsync(dev + (size_t)i * stride, dev, stride, cudaMemcpyDeviceToDevice, st));
    fm_mat *mats = calloc((size_t)n, sizeof *mats);
    for (int i = 0; i < n; i++) {
        unsigned char *base = dev + (size_t)i * stride;
        mats[i].data = base;
        mats[i].rows = j->rows;
        mats[i].cols = j->cols;
        if (quant) {
            mats[i].dtype = FM_DTYPE_U32;
            mats[i].bits = j->bits;
            mats[i].group = j->group;
            mats[i].scales = (const uint16_t *)(base + off_s);
            mats[i].biases = (const uint16_t *)(base + off_b);
        } else {
            mats[i].dtype = FM_DTYPE_BF16;
        }
    }

    const size_t nx = (size_t)j->T * j->cols, ny = (size_t)j->T * j->rows;
    float *h_x = malloc(nx * sizeof *h_x), *h_y = malloc(ny * sizeof *h_y);
    for (size_t i = 0; i < nx; i++) h_x[i] = 2 * next_unit() - 1;
    float *x, *y;
    CK(cudaMalloc((void **)&x, nx * sizeof *x));
    CK(cudaMalloc((void **)&y, ny * sizeof *y));
    CK(cudaMemcpy(x, h_x, nx * sizeof *x, cudaMemcpyHostToDevice));
    CK(cudaStreamSynchronize(st));

    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double *t = malloc((size_t)(reps + 3) * sizeof *t);

    /* The pass as a graph; stream launches if capture fails. */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    if (cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed) == cudaSuccess) {
        for (int i = 0; i < n; i++) cuk_matmul(st, y, x, j->T, &mats[i]);
        if (cudaStreamEndCapture(st, &graph) != cudaSuccess || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
            exec = NULL;
    }
    (void)cudaGetLastError();
    for (int mode = 0; mode < 2; mode++) { /* 0: graph, 1: stream launches */
        if (mode == 0 && !exec) {
            res->gbps_graph = 0;
            continue;
        }
        for (int r = 0; r < reps + 3; r++) {
            CK(cudaEventRecord(e0, st));
            if (mode == 0) CK(cudaGraphLaunch(exec, st));
            else
                for (int i = 0; i < n; i++) cuk_matmul(st, y, x, j->T, &mats[i]);
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            CK(cudaGetLastError());
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            t[r] = ms / 1e3;
        }
        double s = median(t + 3, reps);
        double gbps = (double)n * res->bytes / s / 1e9;
        if (mode == 0 || !exec) {
            res->us_per_matmul = 1e6 * s / n;
            res->gflops = 2.0 * j->T * j->rows * j->cols * n / s / 1e9;
        }
        if (mode == 0) res->gbps_graph = gbps;
        else res->gbps_stream = gbps;
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);

    /* Check the last copy's product. */
    CK(cudaMemsetAsync(y, 0xff, ny * sizeof *y, st));
    cuk_matmul(st, y, x, j->T, &mats[n - 1]);
    CK(cudaGetLastError());
    CK(cudaMemcpyAsync(h_y, y, ny * sizeof *y, cudaMemcpyDeviceToHost, st));
    CK(cudaStreamSynchronize(st));
    res->err = check(j, img, (const uint16_t *)(img + off_s), (const uint16_t *)(img + off_b), h_x, h_y);
    if (!(res->err <= MAX_TOL)) failed = 1;

    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(dev));
    CK(cudaFree(x));
    CK(cudaFree(y));
    free(t);
    free(mats);
    free(h_x);
    free(h_y);
    free(img);
}

static const char *format_name(const job *j, char *buf, size_t n) {
    if (j->bits == 16) snprintf(buf, n, "bf16");
    else snprintf(buf, n, "%d-bit g%d", j->bits, j->group);
    return buf;
}

int main(int argc, char **argv) {
    int device = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--device")) device = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rotation-mib")) rotation_bytes = (size_t)atoll(argv[++i]) << 20;
        else {
            fprintf(stderr, "usage: bench_cuda_kernels [--device N] [--reps N (25)] [--rotation-mib N (1024)]\n");
            return 1;
        }
    }
    if (reps < 1 || rotation_bytes == 0) return 1;

    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count <= device) {
        printf("bench_cuda_kernels: no CUDA device %d (%s): nothing measured\n", device,
               err != cudaSuccess ? cudaGetErrorString(err) : count ? "fewer devices" : "no device");
        return 77;
    }
    CK(cudaSetDevice(device));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, device));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    printf("flashmoe CUDA kernel benchmark\n");
    printf("  %-24s %s: %d SMs, %.0f MB L2, %.1f GiB, compute capability %d.%d; driver %d.%d, runtime %d.%d\n",
           "device", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6, prop.totalGlobalMem / 1073741824.0,
           prop.major, prop.minor, driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    double rw;
    double d2d = d2d_read_gbps(st, &rw);
    printf("  %-24s %.1f GB/s read (size / time), %.1f GB/s read + write (1 GiB, median of 10)\n",
           "device-to-device copy", d2d, rw);
    printf("  %-24s weights in rotation >= %zu MiB per T=1 shape, median of %d passes after 3 warm-ups\n\n",
           "method", rotation_bytes >> 20, reps);

    static const job jobs[] = {
        {"expert gate/up", 1024, 4096, 4, 64, 1},
        {"expert down", 4096, 1024, 4, 64, 1},
        {"attention", 8192, 4096, 4, 64, 1},
        {"LM head", 151936, 4096, 8, 64, 1},
        {"LM head", 151936, 4096, 4, 64, 1},
        {"10 experts g+u", 20480, 4096, 4, 64, 1}, /* what one decode step's grouped FFN reads per layer */
        {"square", 4096, 4096, 4, 64, 1},
        {"square", 4096, 4096, 2, 64, 1},
        {"square", 4096, 4096, 8, 64, 1},
        {"square", 4096, 4096, 16, 0, 1},
        {"prefill", 4096, 4096, 4, 64, 64},
        {"prefill", 4096, 4096, 4, 64, 256},
    };
    const int n_jobs = (int)(sizeof jobs / sizeof *jobs);
    result res[sizeof jobs / sizeof *jobs];

    printf("  %-15s %-15s %-10s %4s %5s %8s %9s %11s %11s %7s %10s %9s\n", "product", "shape", "format", "T", "mats",
           "MB each", "us/matmul", "GB/s graph", "GB/s stream", "vs D2D", "GFLOP/s", "max err");
    for (int i = 0; i < n_jobs; i++) {
        const job *j = &jobs[i];
        run_job(st, j, &res[i]);
        const result *r = &res[i];
        char shape[32], fmt[16];
        snprintf(shape, sizeof shape, "%d x %d", j->rows, j->cols);
        double best = r->gbps_graph > 0 ? r->gbps_graph : r->gbps_stream;
        printf("  %-15s %-15s %-10s %4d %5d %8.2f %9.2f %11.1f %11.1f %7.2f %10.0f %9.1e%s\n", j->what, shape,
               format_name(j, fmt, sizeof fmt), j->T, r->n_mats, r->bytes / 1e6, r->us_per_matmul, r->gbps_graph,
               r->gbps_stream, best / d2d, r->gflops, r->err, r->err <= MAX_TOL ? "" : "  WRONG");
        fflush(stdout);
    }
    printf("\n  GB/s: weight bytes (codes + scales + biases) / time; vs D2D: against the copy's read bandwidth "
           "%.1f GB/s (target >= 0.75 at 4 bits, T = 1)\n", d2d);

    /* One line for scripts. */
    double worst4 = 1e9;
    for (int i = 0; i < n_jobs; i++)
        if (jobs[i].bits == 4 && jobs[i].T == 1) {
            double best = res[i].gbps_graph > 0 ? res[i].gbps_graph : res[i].gbps_stream;
            if (best / d2d < worst4) worst4 = best / d2d;
        }
#define G(i) (res[i].gbps_graph > 0 ? res[i].gbps_graph : res[i].gbps_stream)
    printf("summary: %s: d2d read %.0f GB/s; T=1 GB/s (x d2d): 4-bit gate/up %.0f (%.2f), down %.0f (%.2f), "
           "attention %.0f (%.2f), LM head 8-bit %.0f (%.2f) 4-bit %.0f (%.2f), 10 experts g+u 4-bit %.0f (%.2f), "
           "4096^2 2/4/8-bit/bf16 %.0f/%.0f/%.0f/%.0f; 4-bit target 0.75: %s (worst %.2f); "
           "prefill 4-bit 4096^2 T=64 %.0f GFLOP/s, T=256 %.0f GFLOP/s; %s\n",
           prop.name, d2d, G(0), G(0) / d2d, G(1), G(1) / d2d, G(2), G(2) / d2d, G(3), G(3) / d2d, G(4), G(4) / d2d,
           G(5), G(5) / d2d, G(7), G(6), G(8), G(9), worst4 >= 0.75 ? "met" : "NOT met", worst4, res[10].gflops,
           res[11].gflops, failed ? "RESULTS WRONG" : "results checked");
#undef G
    CK(cudaStreamDestroy(st));
    return failed ? 1 : 0;
}

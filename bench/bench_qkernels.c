/* Quantized kernel benchmark: decode matrix-vector products over 8/4/2-bit
 * (group 64) and bf16 weights, as weight bandwidth (bytes of codes + scales +
 * biases, or of bf16 values, read per second) against this machine's memory
 * read bandwidth measured in the same run (all threads summing a 1 GiB buffer,
 * best of 5); plus T=64 (prefill) throughput in GFLOP/s. One line per code
 * path the CPU supports (cpu_set_isa: scalar, avx2, avx512 float paths and the
 * vnni, avxvnni, avx2int integer paths); bf16 uses the plain kernel.
 *   bench_qkernels [-s MIB] [-r PASSES] [-t THREADS] [-n DIM]
 * Decode cycles through a set of DIM×DIM matrices (default 4096) totalling at
 * least MIB (default 2048) per format, far beyond the caches, so every pass
 * reads all weights from memory; best of PASSES (default 3) passes. */
#include "bench_common.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/qkernels.h"
#include "quant/affine.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes, in parallel (first touch also spreads the pages). */
static void fill_bytes(void *p, size_t n, uint64_t seed) {
    uint64_t *w = p;
    const size_t nw = n / 8;
#pragma omp parallel
    {
        uint64_t s = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(omp_get_thread_num() + 1);
#pragma omp for schedule(static)
        for (size_t i = 0; i < nw; i++) w[i] = xorshift(&s);
    }
    for (size_t i = nw * 8; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)i;
}

/* bf16 values in [lo, hi). */
static void fill_bf16(uint16_t *h, size_t n, float lo, float hi, uint64_t seed) {
#pragma omp parallel
    {
        uint64_t s = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(omp_get_thread_num() + 1);
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++)
            h[i] = fm_f32_to_bf16(lo + (hi - lo) * (float)((xorshift(&s) >> 40) * (1.0 / 16777216.0)));
    }
}

typedef struct {
    const char *name;
    int bits; /* 0: bf16 */
    int count;
    fm_mat *mats;
    void *mem;
    size_t bytes_each;
} format_set;

static int make_set(format_set *f, int dim, size_t min_bytes) {
    const int group = 64;
    f->bytes_each = f->bits ? fm_quant_weight_bytes(dim, dim, f->bits) + 2 * fm_quant_scales_bytes(dim, dim, group)
                            : (size_t)dim * dim * 2;
    f->count = (int)((min_bytes + f->bytes_each - 1) / f->bytes_each);
    if (f->count < 2) f->count = 2;
    f->mem = malloc(f->bytes_each * (size_t)f->count);
    f->mats = calloc((size_t)f->count, sizeof *f->mats);
    if (!f->mem || !f->mats) return -1;
    for (int i = 0; i < f->count; i++) {
        char *base = (char *)f->mem + f->bytes_each * (size_t)i;
        fm_mat *m = &f->mats[i];
        m->rows = m->cols = dim;
        if (!f->bits) {
            m->dtype = FM_DTYPE_BF16;
            m->data = base;
            fill_bf16((uint16_t *)base, (size_t)dim * dim, -0.05f, 0.05f, 11 + (uint64_t)i);
            continue;
        }
        const size_t qb = fm_quant_weight_bytes(dim, dim, f->bits), sb = fm_quant_scales_bytes(dim, dim, group);
        m->dtype = FM_DTYPE_U32;
        m->bits = f->bits;
        m->group = group;
        m->data = base;
        m->scales = (const uint16_t *)(base + qb);
        m->biases = (const uint16_t *)(base + qb + sb);
        fill_bytes(base, qb, 7 + (uint64_t)i);
        fill_bf16((uint16_t *)(base + qb), sb / 2, 0.001f, 0.01f, 13 + (uint64_t)i);
        fill_bf16((uint16_t *)(base + qb + sb), sb / 2, -0.05f, -0.01f, 17 + (uint64_t)i);
    }
    return 0;
}

static void free_set(format_set *f) {
    free(f->mem);
    free(f->mats);
}

/* Best time of `passes` passes of one matvec per matrix of the set (after one untimed pass). */
static double decode_seconds(const format_set *f, const float *x, float *y, int passes) {
    double best = 1e30;
    for (int p = 0; p <= passes; p++) {
        double t0 = fm_seconds();
        for (int i = 0; i < f->count; i++) cpu_matmul(y, x, 1, &f->mats[i]);
        double dt = fm_seconds() - t0;
        if (p > 0 && dt < best) best = dt;
    }
    return best;
}

/* Best time of a T-token product on the first matrices of the set. */
static double prefill_seconds(const format_set *f, const float *x, float *y, int T, int n_mats, int passes) {
    double best = 1e30;
    for (int p = 0; p <= passes; p++) {
        double t0 = fm_seconds();
        for (int i = 0; i < n_mats; i++) cpu_matmul(y, x, T, &f->mats[i]);
        double dt = fm_seconds() - t0;
        if (p > 0 && dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    int mib = 2048, passes = 3, threads = 0, dim = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-s")) mib = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) passes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) dim = atoi(argv[i + 1]);
    }
    if (mib < 1 || passes < 1 || dim < 64 || dim % 64) {
        fprintf(stderr, "usage: bench_qkernels [-s MIB] [-r PASSES] [-t THREADS] [-n DIM (multiple of 64)]\n");
        return 1;
    }
    if (threads > 0) omp_set_num_threads(threads);
    const int T = 64, prefill_mats = 2;
    printf("flashmoe quantized kernel benchmark\n");
    printf("threads        %d\n", omp_get_max_threads());
    const double bw = bench_memory_read_gbps();
    printf("memory read    %.1f GB/s (1 GiB buffer, all threads, best of 5)\n", bw);
    printf("decode         %dx%d matrices cycled, >= %d MiB per format, best of %d passes\n", dim, dim, mib, passes);
    printf("prefill        T=%d on %d matrices, best of %d\n\n", T, prefill_mats, passes);

    float *x = malloc((size_t)T * dim * sizeof *x), *y = malloc((size_t)T * dim * sizeof *y);
    if (!x || !y) return 1;
    uint64_t s = 42;
    for (size_t i = 0; i < (size_t)T * dim; i++) x[i] = (float)((xorshift(&s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;

    static const char *isas[] = {"scalar", "avx2", "avx512", "vnni", "avxvnni", "avx2int"};
    format_set sets[] = {{.name = "q8 g64", .bits = 8}, {.name = "q4 g64", .bits = 4}, {.name = "q2 g64", .bits = 2},
                         {.name = "bf16", .bits = 0}};
    printf("%-8s %-8s %8s %12s %8s %14s\n", "isa", "format", "MiB", "decode GB/s", "x bw", "T=64 GFLOP/s");
    for (size_t fi = 0; fi < sizeof sets / sizeof *sets; fi++) {
        format_set *f = &sets[fi];
        if (make_set(f, dim, (size_t)mib << 20)) {
            fprintf(stderr, "bench_qkernels: out of memory for %s\n", f->name);
            return 1;
        }
        const double mb = (double)f->bytes_each * f->count;
        const double flops = 2.0 * dim * dim * T * prefill_mats;
        for (int ii = 0; ii < (int)(sizeof isas / sizeof *isas); ii++) {
            if (f->bits == 0 && ii > 0) break; /* bf16: the plain kernel, not per path */
            if (f->bits && cpu_set_isa(isas[ii])) continue;
            const double td = decode_seconds(f, x, y, passes);
            const double tp = prefill_seconds(f, x, y, T, prefill_mats, passes);
            const double gbps = mb / td / 1e9;
            printf("%-8s %-8s %8.0f %12.1f %8.2f %14.1f\n", f->bits ? isas[ii] : "plain", f->name, mb / 1048576.0, gbps,
                   gbps / bw, flops / tp / 1e9);
            fflush(stdout);
        }
        free_set(f);
    }
    cpu_set_isa(NULL);
    free(x);
    free(y);
    return 0;
}

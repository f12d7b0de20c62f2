/* Shared by the benchmarks (bench_common.h). */
#include "bench_common.h"

#include <stdlib.h>

double bench_memory_read_gbps(void) {
    const size_t n = (size_t)1 << 28; /* 2^28 floats = 1 GiB */
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = fm_seconds();
        float total = 0;
        /* 16 independent partial sums per thread so the loop vectorises and is bound by memory. */
#pragma omp parallel reduction(+ : total)
        {
            float acc[16] = {0};
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 16)
                for (int j = 0; j < 16; j++) acc[j] += buf[i + j];
            for (int j = 0; j < 16; j++) total += acc[j];
        }
        double dt = fm_seconds() - t0;
        sink += total;
        double gbps = (double)n * sizeof *buf / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    (void)sink;
    free(buf);
    return best;
}

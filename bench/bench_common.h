/* What the benchmarks share: a clock and the memory read bandwidth they
 * report their ratios against. */
#ifndef FM_BENCH_COMMON_H
#define FM_BENCH_COMMON_H

#include "core/clock.h"

/* Read bandwidth in GB/s: every thread sums its share of a 1 GiB buffer
 * (far larger than the caches), best of 5. 0 if the buffer cannot be had. */
double bench_memory_read_gbps(void);

#endif

/* Monotonic wall clock in seconds, for timings. */
#ifndef FM_CORE_CLOCK_H
#define FM_CORE_CLOCK_H

#include <time.h>

static inline double fm_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif

/* The compute thread pool: one per process, used by every parallel CPU kernel.
 *
 * pool_run(n, fn, ctx) calls fn(ctx, item, thread) once for every item in
 * [0, n) on the pool's threads and the calling thread, and returns when all
 * are done. Items are claimed one at a time from a shared counter, so a thread
 * that the OS deschedules (another process wants the core) delays only the
 * item it holds: the others take the rest of its share. `thread` is in
 * [0, pool_threads()) and unique among the threads running items of one call
 * (index per-thread scratch with it).
 *
 * Waiting is bounded: a thread with nothing to do spins for a short while
 * (FM_POOL_SPIN_US, default 50 µs) and then sleeps on a futex, so a
 * competing process gets the core instead of a busy wait; the caller waiting
 * for the last items does the same.
 *
 * When other processes keep CPUs busy, fewer threads take the items of small
 * jobs (as many as there are CPUs left, at least one; sampled every 10 ms from
 * /proc/loadavg): a thread descheduled in the middle of an item would hold up
 * the job for longer than its help is worth. Large jobs use every thread.
 * FM_POOL_ADAPT=0 keeps all threads working on every job.
 *
 * One pool_run at a time (calls from several threads are serialised by a
 * lock); fn must not call pool_run (a nested call runs its items inline). */
#ifndef FM_CORE_POOL_H
#define FM_CORE_POOL_H

#include <stddef.h>

typedef void (*pool_fn)(void *ctx, int item, int thread);

void pool_run(int n_items, pool_fn fn, void *ctx);

/* Threads that run items (the caller included): pool_set_threads' value, else
 * the CPUs this process may run on. */
int pool_threads(void);
/* Sets the thread count (n < 1: the default). Takes effect at the next
 * pool_run; the workers are started or stopped then. */
void pool_set_threads(int n);

/* Threads taking the items of small jobs now (≤ pool_threads(); fewer while the CPUs are shared). */
int pool_active_threads(void);

/* Rows of a matrix per work item of a parallel product, for rows of
 * `row_bytes` bytes of weights: about 128 KB of weights an item (enough work
 * to amortise claiming it, small enough to balance threads). */
static inline int pool_rows_per_item(size_t row_bytes) {
    const size_t n = ((size_t)128 << 10) / (row_bytes ? row_bytes : 1);
    return n < 1 ? 1 : n > (size_t)1 << 30 ? 1 << 30 : (int)n;
}

/* The default: the CPUs in this process's affinity mask (at least 1). */
int pool_default_threads(void);

#endif

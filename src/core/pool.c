/* The compute thread pool (pool.h).
 *
 * A job is published through one 64-bit word, claim = generation << 32 |
 * next item. A thread claims item i of generation g by a compare-and-swap of
 * (g, i) to (g, i + 1), after checking i < n; so a thread that woke up late,
 * for a job that is over, can never take an item of the next one: the caller
 * closes a finished job by setting its next item to CLOSED before it writes
 * the next job's fields, and every claim is checked against the word's
 * latest value. `done` counts finished items of the running job; the caller
 * returns when it reaches n. All atomics are sequentially consistent: the
 * protocol relies on one order of the close, the field writes and the claims,
 * and the sleep/wake handshakes (sleepers / caller_waiting against gen32 /
 * done) are Dekker-style. */
#include "core/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define CLOSED 0xffffffffu
#define LARGE_JOB 64
#define MAX_THREADS 1024

static struct {
    pthread_mutex_t lock; /* one pool_run (and resize) at a time */
    _Atomic uint64_t claim;
    _Atomic uint32_t gen32; /* generation of the last job; idle workers sleep on it */
    _Atomic uint32_t done;  /* items finished in the running job; the caller sleeps on it */
    _Atomic int sleepers, caller_waiting, stop;
    _Atomic(pool_fn) fn;
    _Atomic(void *) ctx;
    _Atomic uint32_t n;
    int workers;         /* running worker threads (thread indices 1..workers) */
    uint32_t start_gen;  /* gen32 when the workers were started: they wait for the next */
    pthread_t *tids;
    _Atomic int want;    /* threads asked for (0: default) */
    long spin_ns;
    /* Sharing the CPUs (see adapt): */
    _Atomic int active;  /* threads that take items of small jobs now (1..workers+1) */
    _Atomic int job_threads; /* threads that take items of the running job */
    int adapt, cpus, loadavg_fd;
    long next_sample_ns;
    double others;       /* runnable threads of other processes, smoothed */
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .spin_ns = -1, .loadavg_fd = -1};

static _Thread_local int in_pool; /* nested calls run inline */

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Spins until *addr != value or the spin time is over; returns the last value read. */
static uint32_t spin_while(_Atomic uint32_t *addr, uint32_t value) {
    const long until = now_ns() + P.spin_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            uint32_t v = atomic_load(addr);
            if (v != value) return v;
            CPU_RELAX();
        }
        if (now_ns() >= until) return atomic_load(addr);
    }
}

/* Claims and runs items of generation g until none is left. */
static void run_items(uint32_t g, int thread) {
    if (thread >= atomic_load(&P.job_threads)) return; /* stood down: the CPUs are shared (adapt) */
    const pool_fn fn = atomic_load(&P.fn);
    void *const ctx = atomic_load(&P.ctx);
    const uint32_t n = atomic_load(&P.n);
    uint32_t mine = 0;
    uint64_t v = atomic_load(&P.claim);
    for (;;) {
        if ((uint32_t)(v >> 32) != g || (uint32_t)v >= n) break;
        if (!atomic_compare_exchange_weak(&P.claim, &v, v + 1)) continue;
        fn(ctx, (int)(uint32_t)v, thread);
        mine++;
        v = atomic_load(&P.claim);
    }
    if (mine && atomic_fetch_add(&P.done, mine) + mine == n && atomic_load(&P.caller_waiting)) futex_wake(&P.done);
}

static void *worker_main(void *arg) {
    const int thread = (int)(intptr_t)arg;
    in_pool = 1;
    uint32_t seen = P.start_gen; /* written before the thread was created */
    for (;;) {
        if (atomic_load(&P.stop)) return NULL;
        /* A stood-down thread sleeps at once: its core belongs to another process now. */
        uint32_t g = thread < atomic_load(&P.active) ? spin_while(&P.gen32, seen) : atomic_load(&P.gen32);
        if (g == seen) {
            atomic_fetch_add(&P.sleepers, 1);
            if (atomic_load(&P.gen32) == seen && !atomic_load(&P.stop)) futex_wait(&P.gen32, seen);
            atomic_fetch_sub(&P.sleepers, 1);
            continue;
        }
        if (atomic_load(&P.stop)) return NULL;
        seen = g;
        run_items(g, thread);
    }
}

static void stop_workers(void) {
    if (!P.workers) return;
    atomic_store(&P.stop, 1);
    atomic_fetch_add(&P.gen32, 1);
    futex_wake(&P.gen32);
    for (int i = 0; i < P.workers; i++) pthread_join(P.tids[i], NULL);
    free(P.tids);
    P.tids = NULL;
    P.workers = 0;
    atomic_store(&P.stop, 0);
}

/* Starts the workers for `threads` threads in all (fewer if the OS refuses threads). */
static void start_workers(int threads) {
    P.start_gen = atomic_load(&P.gen32);
    P.tids = malloc((size_t)(threads - 1) * sizeof *P.tids);
    if (!P.tids) return;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&P.tids[P.workers], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        P.workers++;
    }
}

int pool_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int pool_threads(void) {
    int want = atomic_load(&P.want);
    int n = want > 0 ? want : pool_default_threads();
    return n < MAX_THREADS ? n : MAX_THREADS;
}

void pool_set_threads(int n) { atomic_store(&P.want, n > 0 ? n : 0); }

/* Threads of other processes that are runnable now: /proc/loadavg's running
 * count (every CPU's runnable threads) less this caller and the workers that
 * are not asleep. -1 where it cannot be read. */
static int others_running(void) {
    if (P.loadavg_fd < 0) return -1;
    char buf[128];
    const ssize_t len = pread(P.loadavg_fd, buf, sizeof buf - 1, 0);
    if (len <= 0) return -1;
    buf[len] = 0;
    const char *slash = strchr(buf, '/');
    if (!slash) return -1;
    const char *p = slash;
    while (p > buf && p[-1] != ' ') p--;
    const int running = atoi(p);
    const int ours = 1 + P.workers - atomic_load(&P.sleepers);
    return running > ours ? running - ours : 0;
}

/* Sharing the CPUs. When other processes keep some of the CPUs busy, a thread
 * of ours that the OS deschedules in the middle of an item holds up the whole
 * job until it runs again. For a small job that costs more than the thread's
 * help, so every 10 ms the count of other runnable threads is sampled
 * (smoothed over ~40 ms), and small jobs are run by only as many threads as
 * there are CPUs left for us (at least one). Large jobs (LARGE_JOB items or
 * more: a big matrix product) still use every thread: claiming items one at
 * a time, the threads that run take the descheduled one's share, and waiting
 * for its last item costs little against the job (measured: decode of a
 * 4-layer Qwen3.5-397B-shaped model beside `yes`, 2 CPUs: both threads 14.3-15.6
 * tok/s, one thread 12.4-14.5). FM_POOL_ADAPT=0 turns this off. */
static void adapt(int threads) {
    const long now = now_ns();
    if (now < P.next_sample_ns) return;
    P.next_sample_ns = now + 10000000L;
    const int others = others_running();
    if (others < 0) return;
    P.others = 0.75 * P.others + 0.25 * others;
    int free_cpus = P.cpus - (int)(P.others + 0.5);
    int active = threads < free_cpus ? threads : free_cpus;
    if (active < 1) active = 1;
    atomic_store(&P.active, active);
}

int pool_active_threads(void) {
    pthread_mutex_lock(&P.lock);
    int n = P.workers ? atomic_load(&P.active) : 1;
    pthread_mutex_unlock(&P.lock);
    return n;
}

void pool_run(int n_items, pool_fn fn, void *ctx) {
    if (n_items <= 0) return;
    if (in_pool) {
        for (int i = 0; i < n_items; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&P.lock);
    if (P.spin_ns < 0) {
        const char *e = getenv("FM_POOL_SPIN_US");
        P.spin_ns = e && *e ? atol(e) * 1000L : 50000L;
        if (P.spin_ns < 0) P.spin_ns = 0;
        const char *a = getenv("FM_POOL_ADAPT");
        P.adapt = !(a && !strcmp(a, "0"));
        const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        P.cpus = cpus > 0 ? (int)cpus : 1;
        if (P.adapt) P.loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    }
    const int threads = pool_threads();
    if (P.workers != threads - 1) {
        stop_workers();
        if (threads > 1) start_workers(threads);
        atomic_store(&P.active, P.workers + 1);
        P.others = 0.0;
    }
    if (P.adapt && P.workers) adapt(P.workers + 1);
    in_pool = 1;
    const int job_threads = n_items >= LARGE_JOB ? P.workers + 1 : atomic_load(&P.active);
    atomic_store(&P.job_threads, job_threads);
    if (P.workers == 0 || n_items == 1 || job_threads == 1) {
        for (int i = 0; i < n_items; i++) fn(ctx, i, 0);
    } else {
        const uint32_t g = atomic_load(&P.gen32) + 1; /* only callers (under the lock) change it */
        atomic_store(&P.fn, fn);
        atomic_store(&P.ctx, ctx);
        atomic_store(&P.n, (uint32_t)n_items);
        atomic_store(&P.done, 0);
        atomic_store(&P.claim, (uint64_t)g << 32);
        atomic_store(&P.gen32, g);
        if (atomic_load(&P.sleepers)) futex_wake(&P.gen32);
        run_items(g, 0);
        uint32_t d = atomic_load(&P.done);
        while (d != (uint32_t)n_items) {
            d = spin_while(&P.done, d);
            if (d == (uint32_t)n_items) break;
            atomic_store(&P.caller_waiting, 1);
            d = atomic_load(&P.done);
            if (d != (uint32_t)n_items) futex_wait(&P.done, d);
            atomic_store(&P.caller_waiting, 0);
            d = atomic_load(&P.done);
        }
        atomic_store(&P.claim, (uint64_t)g << 32 | CLOSED);
    }
    in_pool = 0;
    pthread_mutex_unlock(&P.lock);
}

/* The compute pool (core/pool.h) and cpu_matmul_many (backend/cpu/kernels.h):
 *   - pool_run runs every item exactly once, for item counts from 0 to 100,000
 *     and 1 to 8 threads (more threads than CPUs too), thread indices in range
 *     and never shared by two running items; a nested call runs inline
 *   - 20,000 short jobs back to back (the generation / claim protocol under
 *     workers that wake late), and two threads calling at once
 *   - sharing the CPUs: while another process spins, fewer threads than CPUs
 *     take items; once it stops, all of them again
 *   - cpu_matmul_many (and cpu_matmul, one product of it) equals each product on
 *     its own path (cpu_matmul_whole) bit for bit on random data for every
 *     weight format (f32, bf16, f16, 2/4/8-bit in groups of 32/64/128), shared
 *     and separate inputs, T = 1, 3 and 12, on every code path the CPU has;
 *     on the integer paths, a token among 3 gets exactly its result alone */
#include "test_util.h"

#include "backend/cpu/kernels.h"
#include "backend/cpu/qkernels.h"
#include "core/clock.h"
#include "core/dtype.h"
#include "core/pool.h"
#include "quant/affine.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- pool_run ------------------------------------------------------------- */

typedef struct {
    _Atomic int *count;   /* [n] times each item ran */
    _Atomic int busy[64]; /* per thread index: items running now */
    _Atomic int bad_thread, overlap;
    int threads;
} cover_job;

static void item_cover(void *arg, int item, int thread) {
    cover_job *j = arg;
    if (thread < 0 || thread >= j->threads || thread >= 64) {
        atomic_store(&j->bad_thread, 1);
        return;
    }
    if (atomic_fetch_add(&j->busy[thread], 1) != 0) atomic_store(&j->overlap, 1);
    atomic_fetch_add(&j->count[item], 1);
    for (volatile int spin = 0; spin < (item % 7) * 50; spin++) {
    }
    atomic_fetch_sub(&j->busy[thread], 1);
}

static void check_cover(int n, int threads) {
    cover_job j = {.threads = threads};
    j.count = test_keep(calloc((size_t)(n ? n : 1), sizeof *j.count));
    pool_run(n, item_cover, &j);
    assert_int_equal(atomic_load(&j.bad_thread), 0);
    assert_int_equal(atomic_load(&j.overlap), 0);
    for (int i = 0; i < n; i++)
        if (atomic_load(&j.count[i]) != 1) fail_msg("n=%d threads=%d: item %d ran %d times", n, threads, i, j.count[i]);
}

static void test_every_item_once(void **state) {
    (void)state;
    const int counts[] = {0, 1, 2, 3, 17, 1000, 100000};
    for (int threads = 1; threads <= 8; threads++) {
        pool_set_threads(threads);
        assert_int_equal(pool_threads(), threads);
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) check_cover(counts[k], threads);
    }
    pool_set_threads(0);
    assert_int_equal(pool_threads(), pool_default_threads());
}

static void item_nested(void *arg, int item, int thread) {
    (void)thread;
    _Atomic int *sum = arg;
    cover_job j = {.threads = pool_threads()};
    _Atomic int count[5] = {0};
    j.count = count;
    pool_run(5, item_cover, &j); /* runs inline */
    for (int i = 0; i < 5; i++) atomic_fetch_add(sum, atomic_load(&count[i]) * (item + 1));
}

static void test_nested_runs_inline(void **state) {
    (void)state;
    pool_set_threads(4);
    _Atomic int sum = 0;
    pool_run(10, item_nested, &sum);
    assert_int_equal(atomic_load(&sum), 5 * 55);
    pool_set_threads(0);
}

typedef struct {
    _Atomic long total;
} sum_job;

static void item_add(void *arg, int item, int thread) {
    (void)thread;
    sum_job *j = arg;
    atomic_fetch_add(&j->total, item + 1);
}

static void test_many_short_jobs(void **state) {
    (void)state;
    pool_set_threads(3);
    const int jobs = SANITIZED ? 5000 : 20000;
    for (int r = 0; r < jobs; r++) {
        const int n = 1 + r % 9;
        sum_job j = {0};
        pool_run(n, item_add, &j);
        if (atomic_load(&j.total) != (long)n * (n + 1) / 2) fail_msg("job %d: sum %ld", r, (long)j.total);
    }
    pool_set_threads(0);
}

static void *caller_main(void *arg) {
    _Atomic int *failures = arg;
    for (int r = 0; r < 2000; r++) {
        const int n = 50 + r % 13;
        sum_job j = {0};
        pool_run(n, item_add, &j);
        if (atomic_load(&j.total) != (long)n * (n + 1) / 2) atomic_fetch_add(failures, 1);
    }
    return NULL;
}

static void test_two_callers(void **state) {
    (void)state;
    pool_set_threads(2);
    _Atomic int failures = 0;
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, caller_main, &failures), 0);
    assert_int_equal(pthread_create(&b, NULL, caller_main, &failures), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_int_equal(atomic_load(&failures), 0);
    pool_set_threads(0);
}

/* Runs small jobs for `seconds` so the pool samples the load. */
static void keep_running(double seconds) {
    const double until = fm_seconds() + seconds;
    while (fm_seconds() < until) {
        sum_job j = {0};
        pool_run(64, item_add, &j);
        usleep(1000);
    }
}

static void test_adapts_to_a_busy_cpu(void **state) {
    (void)state;
    if (access("/proc/loadavg", R_OK) != 0 || getenv("FM_POOL_ADAPT")) {
        skip();
        return;
    }
    const int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2 || pool_default_threads() != cpus) {
        skip(); /* the sampled count is of every CPU: only meaningful when all are ours */
        return;
    }
    pool_set_threads(cpus);
    keep_running(0.2);
    if (pool_active_threads() < cpus) { /* something else keeps a CPU busy already */
        pool_set_threads(0);
        skip();
        return;
    }
    pid_t spinner = fork();
    assert_true(spinner >= 0);
    if (spinner == 0) {
        for (;;) {
        }
    }
    keep_running(0.5);
    const int busy_active = pool_active_threads();
    kill(spinner, SIGKILL);
    waitpid(spinner, NULL, 0);
    if (busy_active >= cpus) fail_msg("%d threads took work beside a spinning process on %d CPUs", busy_active, cpus);
    int active = 0;
    for (int i = 0; i < 50 && (active = pool_active_threads()) < cpus; i++) keep_running(0.1);
    assert_int_equal(active, cpus);
    pool_set_threads(0);
}

/* ---- cpu_matmul_many ------------------------------------------------------ */

/* bits 0: float weights of dtype (F32, BF16 or F16); else quantized in groups of `group`. */
static fm_mat random_mat(int rows, int cols, int bits, fm_dtype dtype, int group, uint64_t *seed) {
    fm_mat m = {.rows = rows, .cols = cols};
    const size_t n = (size_t)rows * cols;
    float *w = test_keep(malloc(n * sizeof *w));
    fill_random(w, n, seed);
    if (!bits && dtype == FM_DTYPE_F32) {
        m.dtype = FM_DTYPE_F32;
        m.data = w;
    } else if (!bits) {
        uint16_t *h = test_keep(malloc(n * sizeof *h));
        for (size_t i = 0; i < n; i++) {
            const uint16_t b = fm_f32_to_bf16(w[i]); /* f16: the sign of w, magnitude 0.5..1 with random bits */
            h[i] = dtype == FM_DTYPE_BF16 ? b : (uint16_t)((b & 0x8000u) | 0x3800u | ((uint32_t)(i * 2654435761u) >> 7 & 0x3ffu));
        }
        m.dtype = dtype;
        m.data = h;
    } else {
        m.dtype = FM_DTYPE_U32;
        m.bits = bits;
        m.group = group;
        uint32_t *q = test_keep(malloc(fm_quant_weight_bytes(rows, cols, bits)));
        uint16_t *s = test_keep(malloc(fm_quant_scales_bytes(rows, cols, group)));
        uint16_t *b = test_keep(malloc(fm_quant_scales_bytes(rows, cols, group)));
        const size_t wpr = (size_t)cols * bits / 32, ng = (size_t)cols / group;
        for (int r = 0; r < rows; r++)
            fm_quantize_row(w + (size_t)r * cols, cols, bits, group, q + r * wpr, s + r * ng, b + r * ng);
        m.data = q;
        m.scales = s;
        m.biases = b;
    }
    return m;
}

static void test_matmul_many_equals_matmul(void **state) {
    (void)state;
    static const char *const isas[] = {"scalar", "avx2", "avx512", "vnni", "avxvnni", "avx2int"};
    uint64_t seed = 0x5eed;
    const int cols = 256;
    const fm_dtype floats[3] = {FM_DTYPE_F32, FM_DTYPE_BF16, FM_DTYPE_F16};
    const int Ts[] = {1, 3, 12};
    pool_set_threads(3);
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const int T = Ts[ti];
        float *x0 = test_keep(malloc((size_t)T * cols * sizeof *x0)), *x1 = test_keep(malloc((size_t)T * cols * 4));
        fill_random(x0, (size_t)T * cols, &seed);
        fill_random(x1, (size_t)T * cols, &seed);
        /* 12 products: each format, group 32/64/128 for the quantized ones, on x0 or x1, rows 1..300 */
        enum { NP = 12 };
        fm_mat W[NP];
        cpu_product p[NP];
        float *want[NP];
        for (int i = 0; i < NP; i++) {
            const int bits = i < 3 ? 0 : (i % 3 == 0 ? 2 : i % 3 == 1 ? 4 : 8);
            const int group = i < 3 ? 0 : (i / 3 == 1 ? 32 : i / 3 == 2 ? 64 : 128);
            const int rows = 1 + (int)((unsigned)(i * 97 + T * 13) % 300);
            W[i] = random_mat(rows, cols, bits, i < 3 ? floats[i] : FM_DTYPE_U32, group, &seed);
            float *y = test_keep(malloc((size_t)T * rows * sizeof *y));
            want[i] = test_keep(malloc((size_t)T * rows * sizeof *y));
            p[i] = (cpu_product){y, i % 2 ? x1 : x0, &W[i], T};
        }
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (cpu_set_isa(isas[k]) != 0) continue;
            for (int i = 0; i < NP; i++) {
                cpu_matmul_whole(want[i], p[i].x, T, p[i].W);
                memset(p[i].y, 0xff, (size_t)T * W[i].rows * sizeof(float)); /* NaN: must be overwritten */
            }
            cpu_matmul_many(p, NP);
            for (int i = 0; i < NP; i++)
                if (memcmp(p[i].y, want[i], (size_t)T * W[i].rows * sizeof(float)) != 0)
                    fail_msg("%s T=%d product %d (%d bits, group %d, %d rows): differs from cpu_matmul_whole", isas[k],
                             T, i, W[i].bits, W[i].group, W[i].rows);
            /* The integer paths' row kernels give each token the result it gets alone
             * (several tokens share a pass over the row: rows4). */
            const int integer = k >= 3;
            for (int i = 3; i < NP && integer && T > 1 && T < 8; i++)
                for (int t = 0; t < T; t++) {
                    float one[300];
                    cpu_matmul(one, p[i].x + (size_t)t * cols, 1, p[i].W);
                    if (memcmp(one, p[i].y + (size_t)t * W[i].rows, (size_t)W[i].rows * sizeof(float)) != 0)
                        fail_msg("%s T=%d product %d token %d: differs from the token alone", isas[k], T, i, t);
                }
            /* one product (cpu_matmul), and none */
            cpu_matmul(p[5].y, p[5].x, T, p[5].W);
            assert_memory_equal(p[5].y, want[5], (size_t)T * W[5].rows * sizeof(float));
            cpu_matmul_many(p, 0);
        }
        cpu_set_isa(NULL);
    }
    pool_set_threads(0);
}

static int teardown(void **state) {
    (void)state;
    test_free_kept();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_every_item_once, teardown),
        cmocka_unit_test_teardown(test_nested_runs_inline, teardown),
        cmocka_unit_test_teardown(test_many_short_jobs, teardown),
        cmocka_unit_test_teardown(test_two_callers, teardown),
        cmocka_unit_test_teardown(test_adapts_to_a_busy_cpu, teardown),
        cmocka_unit_test_teardown(test_matmul_many_equals_matmul, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

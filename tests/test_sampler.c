/* The sampler (fm_sampler_*): every statistical check compares counts of
 * N draws (fixed seeds, so the outcome is deterministic) with the
 * distribution computed here in double precision from the definition, by a
 * chi-square test at p = 0.001 (critical values for 1..7 degrees of
 * freedom below); tokens the definition excludes must never be drawn.
 *   - defaults: greedy; greedy and top_k = 1 take the argmax, ties → lowest id
 *   - seeds: same seed → same sequence, different seeds → different ones;
 *     reset keeps the random stream and forgets the history
 *   - temperature 1, 0.5, 2: softmax(logits / T), N = 200k, 8 tokens
 *   - top-k: only the k largest (ties → lowest ids); renormalised softmax
 *   - top-p: p = 0.5/0.3/0.15/0.05 with top_p 0.8 keeps exactly {0, 1}, with
 *     0.81 {0, 1, 2}; both through the sorted (top-k) and the histogram path (no top-k)
 *   - min-p: p < min_p·p_max never drawn; the rest renormalised; with top-p
 *     the intersection
 *   - penalties: sampler_apply_penalties against values computed by hand
 *     (repetition on positive/negative/zero logits, once per distinct token;
 *     presence; frequency × count; penalty_last_n window; reset; out-of-range
 *     ids ignored), and their effect on greedy picks
 *   - non-finite logits: NaN and -inf never drawn, all -inf → 0, +inf tokens
 *     uniform
 *   - kept sets: sampler_candidates (the tokens and renormalised
 *     probabilities a draw is made from) equals a double-precision reference
 *     with a full sort, exactly as sets and to 1e-5 in probability, on exact
 *     top-p boundaries, ties (kept by lowest id) and 84 random cases
 *     (vocab 1 to 30000, plain / quantised / non-finite logits, random
 *     temperature, top_k, top_p, min_p); every draw is in the kept set
 *   - invalid parameters: FM_ERR_ARGUMENT and a message naming each one
 *   - vocabulary 250k: 10k draws with top_k 40 / top_p 0.95 stay within the
 *     top 40 and take < 500 us each; top-p without top-k (histogram path)
 *     stays within the top-p set; greedy. Under AddressSanitizer (each load
 *     checked, ~20x slower) 1k draws and no time bound. */
#include "test_util.h"

#include "core/error.h"
#include "generate/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------ */

/* chi-square critical values at p = 0.001, by degrees of freedom. */
static const double chi2_crit[] = {0, 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322};

#define NDRAW 200000

static fm_sampler *new_sampler(const fm_sampler_params *p, int vocab) {
    fm_sampler *s = NULL;
    fm_status st = fm_sampler_new(p, vocab, &s);
    if (st != FM_OK) fail_msg("fm_sampler_new: %s", fm_last_error());
    return s;
}

/* Draws n tokens from fixed logits (copied each time: sample modifies them). */
static void draw_counts(fm_sampler *s, const float *logits, int vocab, int n, long *counts) {
    float *buf = malloc((size_t)vocab * sizeof *buf);
    assert_non_null(buf);
    memset(counts, 0, (size_t)vocab * sizeof *counts);
    for (int i = 0; i < n; i++) {
        memcpy(buf, logits, (size_t)vocab * sizeof *buf);
        int32_t t = fm_sampler_sample(s, buf);
        if (t < 0 || t >= vocab) fail_msg("token %d out of range", t);
        counts[t]++;
    }
    free(buf);
}

/* softmax(logits / T) over the tokens with keep[i] (NULL: all), in double. */
static void expected_softmax(const float *logits, int vocab, double T, const int *keep, double *p) {
    double m = -INFINITY, z = 0;
    for (int i = 0; i < vocab; i++)
        if ((!keep || keep[i]) && logits[i] > m) m = logits[i];
    for (int i = 0; i < vocab; i++) {
        p[i] = (!keep || keep[i]) ? exp(((double)logits[i] - m) / T) : 0.0;
        z += p[i];
    }
    for (int i = 0; i < vocab; i++) p[i] /= z;
}

/* Fails if a token of probability 0 was drawn or if the chi-square statistic
 * over the others exceeds the p = 0.001 critical value. */
static void check_distribution(const char *label, const long *counts, const double *p, int vocab, long n) {
    double chi2 = 0;
    int cats = 0;
    for (int i = 0; i < vocab; i++) {
        if (p[i] == 0) {
            if (counts[i]) fail_msg("%s: token %d (probability 0) drawn %ld times", label, i, counts[i]);
            continue;
        }
        double e = p[i] * n, d = counts[i] - e;
        chi2 += d * d / e;
        cats++;
    }
    int dof = cats - 1;
    if (dof < 1) return; /* a single token: nothing to test beyond the zeros */
    assert_true(dof < (int)(sizeof chi2_crit / sizeof *chi2_crit));
    printf("  %-40s chi2 %7.3f (dof %d, critical %.3f)\n", label, chi2, dof, chi2_crit[dof]);
    if (chi2 > chi2_crit[dof]) {
        for (int i = 0; i < vocab; i++)
            printf("    token %d: observed %ld expected %.1f\n", i, counts[i], p[i] * n);
        fail_msg("%s: chi-square %.3f > %.3f (dof %d)", label, chi2, chi2_crit[dof], dof);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Eight tokens with distinct, unordered logits. */
static const float logits8[8] = {0.3f, -1.2f, 2.1f, 0.9f, -0.4f, 1.6f, -2.5f, 0.0f};

/* ---- tests -------------------------------------------------------------- */

static void test_defaults_greedy(void **state) {
    (void)state;
    fm_sampler_params p = fm_sampler_default_params();
    assert_true(p.temperature == 0.0f);
    assert_int_equal(p.top_k, 0);
    assert_true(p.top_p == 1.0f);
    assert_true(p.min_p == 0.0f);
    assert_true(p.repetition_penalty == 1.0f);
    assert_true(p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f);
    assert_int_equal(p.penalty_last_n, 0);
    assert_true(p.seed == 0);

    fm_sampler *s = new_sampler(&p, 8);
    float l[8];
    for (int i = 0; i < 5; i++) {
        memcpy(l, logits8, sizeof l);
        assert_int_equal(fm_sampler_sample(s, l), 2);
    }
    fm_sampler_free(s);
    /* Ties → lowest id (also across the 64-logit blocks of the scan). */
    s = new_sampler(&p, 6);
    float tie[6] = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f, 0.5f};
    assert_int_equal(fm_sampler_sample(s, tie), 1);
    float all_equal[6] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
    assert_int_equal(fm_sampler_sample(s, all_equal), 0);
    float last[6] = {-1.0f, -1.0f, -1.0f, -1.0f, -1.0f, 7.0f};
    assert_int_equal(fm_sampler_sample(s, last), 5);
    fm_sampler_free(s);
    enum { BIG = 1000 };
    static float big[BIG];
    s = new_sampler(&p, BIG);
    for (int at = 0; at < BIG; at += 37) {
        for (int i = 0; i < BIG; i++) big[i] = (float)(i % 50) * 0.01f;
        big[at] = 5.0f;
        if (at + 64 < BIG) big[at + 64] = 5.0f; /* a later tie, one block on */
        if (at + 1 < BIG) big[at + 1] = 5.0f;   /* and in the same block */
        assert_int_equal(fm_sampler_sample(s, big), at);
    }
    fm_sampler_free(s);
    /* NULL params: the defaults. */
    s = new_sampler(NULL, 6);
    float tie2[6] = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f, 0.5f};
    assert_int_equal(fm_sampler_sample(s, tie2), 1);
    fm_sampler_free(s);

    /* top_k = 1 at temperature 1 is greedy too, ties → lowest id. */
    p.temperature = 1.0f;
    p.top_k = 1;
    s = new_sampler(&p, 6);
    for (int i = 0; i < 100; i++) {
        float t3[6] = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f, 0.5f};
        assert_int_equal(fm_sampler_sample(s, t3), 1);
    }
    fm_sampler_free(s);
}

static void sequence(uint64_t seed, int n, int32_t *out) {
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.seed = seed;
    fm_sampler *s = new_sampler(&p, 8);
    float l[8];
    for (int i = 0; i < n; i++) {
        memcpy(l, logits8, sizeof l);
        out[i] = fm_sampler_sample(s, l);
    }
    fm_sampler_free(s);
}

static void test_seeds(void **state) {
    (void)state;
    enum { N = 200 };
    int32_t a[N], b[N], c[N], d[N];
    sequence(0, N, a);
    sequence(0, N, b);
    assert_memory_equal(a, b, sizeof a);
    sequence(1, N, c);
    sequence(0xdeadbeefcafef00dull, N, d);
    int diff_ac = 0, diff_ad = 0, diff_cd = 0, distinct = 0, seen[8] = {0};
    for (int i = 0; i < N; i++) {
        diff_ac += a[i] != c[i];
        diff_ad += a[i] != d[i];
        diff_cd += c[i] != d[i];
        if (!seen[a[i]]++) distinct++;
    }
    printf("  positions differing: seed 0/1 %d, 0/big %d, 1/big %d of %d\n", diff_ac, diff_ad, diff_cd, N);
    /* Independent streams differ in about 70% of positions here. */
    assert_true(diff_ac > N / 3 && diff_ad > N / 3 && diff_cd > N / 3);
    assert_true(distinct >= 6); /* seed 0 is a working seed */

    /* The stream is a fixed function of the seed (xoshiro256** from
     * splitmix64): the first numbers of seed 0, against an independent
     * computation of the same generators. */
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    fm_sampler *s = new_sampler(&p, 8);
    uint64_t x = 0, st[4];
    for (int i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        st[i] = z ^ (z >> 31);
    }
    for (int i = 0; i < 3; i++) {
        uint64_t r = st[1] * 5;
        r = ((r << 7) | (r >> 57)) * 9;
        uint64_t t = st[1] << 17;
        st[2] ^= st[0], st[3] ^= st[1], st[1] ^= st[2], st[0] ^= st[3], st[2] ^= t;
        st[3] = (st[3] << 45) | (st[3] >> 19);
        assert_true(sampler_uniform(s) == (double)(r >> 11) * 0x1.0p-53);
    }
    fm_sampler_free(s);
}

static void test_reset_keeps_stream(void **state) {
    (void)state;
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 42;
    p.presence_penalty = 5.0f; /* a strong penalty, so history matters */
    fm_sampler *s1 = new_sampler(&p, 8), *s2 = new_sampler(&p, 8);
    float l[8];
    /* s1: 10 draws with history, reset, 10 more. s2: 10 draws with no
     * history (its own, not accepted), then 10 more after a reset of a
     * sampler that never accepted. After the reset both have no history and
     * have used 10 numbers: the next 10 tokens agree. */
    for (int i = 0; i < 10; i++) {
        memcpy(l, logits8, sizeof l);
        fm_sampler_accept(s1, fm_sampler_sample(s1, l));
        memcpy(l, logits8, sizeof l);
        (void)fm_sampler_sample(s2, l);
    }
    assert_true(sampler_history_count(s1, 2) + sampler_history_count(s1, 5) > 0);
    fm_sampler_reset(s1);
    fm_sampler_reset(s2);
    for (int t = 0; t < 8; t++) assert_int_equal(sampler_history_count(s1, t), 0);
    for (int i = 0; i < 10; i++) {
        memcpy(l, logits8, sizeof l);
        int32_t a = fm_sampler_sample(s1, l);
        memcpy(l, logits8, sizeof l);
        int32_t b = fm_sampler_sample(s2, l);
        assert_int_equal(a, b);
    }
    fm_sampler_free(s1);
    fm_sampler_free(s2);
}

static void check_temperature(float T, uint64_t seed) {
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = T;
    p.seed = seed;
    fm_sampler *s = new_sampler(&p, 8);
    long counts[8];
    double want[8];
    draw_counts(s, logits8, 8, NDRAW, counts);
    expected_softmax(logits8, 8, T, NULL, want);
    char label[64];
    snprintf(label, sizeof label, "temperature %.1f", T);
    check_distribution(label, counts, want, 8, NDRAW);
    fm_sampler_free(s);
}

static void test_temperature_distribution(void **state) {
    (void)state;
    check_temperature(1.0f, 1);
    check_temperature(0.5f, 2);
    check_temperature(2.0f, 3);

    /* The test has power: draws at T = 1 fail against T = 1.1. */
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 4;
    fm_sampler *s = new_sampler(&p, 8);
    long counts[8];
    double want[8], chi2 = 0;
    draw_counts(s, logits8, 8, NDRAW, counts);
    expected_softmax(logits8, 8, 1.1, NULL, want);
    for (int i = 0; i < 8; i++) chi2 += (counts[i] - want[i] * NDRAW) * (counts[i] - want[i] * NDRAW) / (want[i] * NDRAW);
    printf("  T=1 draws against T=1.1: chi2 %.1f (must exceed %.3f)\n", chi2, chi2_crit[7]);
    assert_true(chi2 > chi2_crit[7]);
    fm_sampler_free(s);
}

static void test_top_k(void **state) {
    (void)state;
    /* top 3 of logits8: ids 2 (2.1), 5 (1.6), 3 (0.9). */
    const float T[2] = {1.0f, 0.7f};
    for (int r = 0; r < 2; r++) {
        fm_sampler_params p = fm_sampler_default_params();
        p.temperature = T[r];
        p.top_k = 3;
        p.seed = 10 + r;
        fm_sampler *s = new_sampler(&p, 8);
        long counts[8];
        double want[8];
        int keep[8] = {0, 0, 1, 1, 0, 1, 0, 0};
        draw_counts(s, logits8, 8, NDRAW, counts);
        expected_softmax(logits8, 8, T[r], keep, want);
        char label[64];
        snprintf(label, sizeof label, "top_k 3, temperature %.1f", T[r]);
        check_distribution(label, counts, want, 8, NDRAW);
        fm_sampler_free(s);
    }
    /* Ties at the k-th logit: exactly k kept, the lowest ids. */
    {
        const float tl[6] = {0.0f, 1.0f, 1.0f, 2.0f, 1.0f, 1.0f};
        fm_sampler_params p = fm_sampler_default_params();
        p.temperature = 1.0f;
        p.top_k = 3;
        p.seed = 12;
        fm_sampler *s = new_sampler(&p, 6);
        long counts[6];
        double want[6];
        int keep[6] = {0, 1, 1, 1, 0, 0};
        draw_counts(s, tl, 6, NDRAW, counts);
        expected_softmax(tl, 6, 1.0, keep, want);
        check_distribution("top_k 3 with ties", counts, want, 6, NDRAW);
        fm_sampler_free(s);
    }
    /* top_k >= vocab is off. */
    {
        fm_sampler_params p = fm_sampler_default_params();
        p.temperature = 1.0f;
        p.top_k = 1000;
        p.seed = 13;
        fm_sampler *s = new_sampler(&p, 8);
        long counts[8];
        double want[8];
        draw_counts(s, logits8, 8, NDRAW, counts);
        expected_softmax(logits8, 8, 1.0, NULL, want);
        check_distribution("top_k 1000 of 8 (off)", counts, want, 8, NDRAW);
        fm_sampler_free(s);
    }
}

/* probabilities 0.5, 0.3, 0.15, 0.05 at ids perm[0..3]; other ids -inf. */
static void check_top_p(float top_p, int top_k, const int *perm, int vocab, int n_keep, uint64_t seed) {
    const double prob[4] = {0.5, 0.3, 0.15, 0.05};
    float l[8];
    for (int i = 0; i < vocab; i++) l[i] = -INFINITY;
    for (int j = 0; j < 4; j++) l[perm[j]] = (float)log(prob[j]);
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.top_p = top_p;
    p.top_k = top_k;
    p.seed = seed;
    fm_sampler *s = new_sampler(&p, vocab);
    long counts[8];
    double want[8] = {0}, z = 0;
    for (int j = 0; j < n_keep; j++) z += prob[j];
    for (int j = 0; j < n_keep; j++) want[perm[j]] = prob[j] / z;
    draw_counts(s, l, vocab, NDRAW, counts);
    char label[64];
    snprintf(label, sizeof label, "top_p %.2f (top_k %d) keeps %d", top_p, top_k, n_keep);
    check_distribution(label, counts, want, vocab, NDRAW);
    for (int j = 0; j < n_keep; j++) assert_true(counts[perm[j]] > 0);
    fm_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    const int in_order[4] = {0, 1, 2, 3};
    const int shuffled[4] = {5, 0, 7, 2}; /* 8 tokens, 4 of them -inf */
    /* Histogram path (no top-k), in order and shuffled. */
    check_top_p(0.8f, 0, in_order, 4, 2, 20);
    check_top_p(0.81f, 0, in_order, 4, 3, 21);
    check_top_p(0.8f, 0, shuffled, 8, 2, 22);
    check_top_p(0.81f, 0, shuffled, 8, 3, 23);
    check_top_p(0.95f, 0, shuffled, 8, 3, 24);
    check_top_p(0.96f, 0, shuffled, 8, 4, 25);
    check_top_p(0.5f, 0, shuffled, 8, 1, 26);
    check_top_p(0.01f, 0, shuffled, 8, 1, 27);
    check_top_p(1.0f, 0, shuffled, 8, 4, 28);
    /* Sorted path (top-k active, not limiting). */
    check_top_p(0.8f, 6, shuffled, 8, 2, 30);
    check_top_p(0.81f, 6, shuffled, 8, 3, 31);
    check_top_p(0.5f, 6, shuffled, 8, 1, 32);
    /* top-k before top-p: of the top 2 (0.5, 0.3 → 0.625, 0.375), top_p 0.6
     * keeps only the first... */
    check_top_p(0.6f, 2, shuffled, 8, 1, 33);
    /* ... and top_p 0.7 both (0.625 < 0.7). */
    check_top_p(0.7f, 2, shuffled, 8, 2, 34);

    /* Temperature first: at T = 2 the probabilities 0.5, 0.3, 0.15, 0.05
     * become ∝ their square roots: 0.379, 0.294, 0.208, 0.120 (cumulative
     * 0.379, 0.673, 0.880); top_p 0.6 keeps 2, top_p 0.7 keeps 3 (at T = 1
     * both would keep 2). */
    const double prob[4] = {0.5, 0.3, 0.15, 0.05};
    float l[4];
    double q[4], zq = 0;
    for (int j = 0; j < 4; j++) {
        l[j] = (float)log(prob[j]);
        q[j] = sqrt(prob[j]);
        zq += q[j];
    }
    for (int r = 0; r < 2; r++) {
        fm_sampler_params p = fm_sampler_default_params();
        p.temperature = 2.0f;
        p.top_p = r ? 0.7f : 0.6f;
        p.seed = 35 + r;
        fm_sampler *s = new_sampler(&p, 4);
        long counts[4];
        double want[4] = {0}, z = 0;
        int nk = r ? 3 : 2;
        for (int j = 0; j < nk; j++) z += q[j] / zq;
        for (int j = 0; j < nk; j++) want[j] = q[j] / zq / z;
        draw_counts(s, l, 4, NDRAW, counts);
        check_distribution(r ? "T 2, top_p 0.7 keeps 3" : "T 2, top_p 0.6 keeps 2", counts, want, 4, NDRAW);
        fm_sampler_free(s);
    }
}

static void test_min_p(void **state) {
    (void)state;
    /* logits8 at T = 1: p / p_max = exp(l - 2.1): 0.165, 0.037, 1, 0.301,
     * 0.082, 0.607, 0.011, 0.122. min_p 0.1 keeps {0, 2, 3, 5, 7};
     * min_p 0.25 keeps {2, 3, 5}. */
    const float mp[2] = {0.1f, 0.25f};
    const int keeps[2][8] = {{1, 0, 1, 1, 0, 1, 0, 1}, {0, 0, 1, 1, 0, 1, 0, 0}};
    for (int r = 0; r < 2; r++) {
        for (int k = 0; k < 2; k++) { /* without and with a non-limiting top-k (sorted path) */
            fm_sampler_params p = fm_sampler_default_params();
            p.temperature = 1.0f;
            p.min_p = mp[r];
            p.top_k = k ? 7 : 0;
            p.seed = 40 + 2 * r + k;
            fm_sampler *s = new_sampler(&p, 8);
            long counts[8];
            double want[8];
            draw_counts(s, logits8, 8, NDRAW, counts);
            expected_softmax(logits8, 8, 1.0, keeps[r], want);
            char label[64];
            snprintf(label, sizeof label, "min_p %.2f (top_k %d)", mp[r], p.top_k);
            check_distribution(label, counts, want, 8, NDRAW);
            fm_sampler_free(s);
        }
    }
    /* After temperature: at T = 0.5, p / p_max = exp(2 (l - 2.1)): 0.368 for
     * id 5, 0.091 for id 3, so min_p 0.1 keeps {2, 5} (at T = 1: {0,2,3,5,7}). */
    {
        fm_sampler_params p = fm_sampler_default_params();
        p.temperature = 0.5f;
        p.min_p = 0.1f;
        p.seed = 45;
        fm_sampler *s = new_sampler(&p, 8);
        long counts[8];
        double want[8];
        const int keep[8] = {0, 0, 1, 0, 0, 1, 0, 0};
        draw_counts(s, logits8, 8, NDRAW, counts);
        expected_softmax(logits8, 8, 0.5, keep, want);
        check_distribution("T 0.5, min_p 0.1", counts, want, 8, NDRAW);
        fm_sampler_free(s);
    }
    /* With top-p: the intersection. Full softmax of logits8 at T = 1, by
     * rank (cumulative): id 2 0.4302, 5 0.6911, 3 0.8207, 0 0.8918, 7 0.9445.
     * top_p 0.9 keeps {2, 5, 3, 0, 7}, min_p 0.25 {2, 5, 3}: the result is
     * min-p's {2, 5, 3}; top_p 0.8 keeps {2, 5, 3}, min_p 0.1 {0, 2, 3, 5, 7}:
     * the result is top-p's {2, 5, 3}. */
    {
        const float tp[2] = {0.9f, 0.8f}, mq[2] = {0.25f, 0.1f};
        for (int r = 0; r < 2; r++) {
            fm_sampler_params p = fm_sampler_default_params();
            p.temperature = 1.0f;
            p.top_p = tp[r];
            p.min_p = mq[r];
            p.seed = 46 + r;
            fm_sampler *s = new_sampler(&p, 8);
            long counts[8];
            double want[8];
            const int keep[8] = {0, 0, 1, 1, 0, 1, 0, 0};
            draw_counts(s, logits8, 8, NDRAW, counts);
            expected_softmax(logits8, 8, 1.0, keep, want);
            check_distribution(r ? "top_p 0.8 + min_p 0.1" : "top_p 0.9 + min_p 0.25", counts, want, 8, NDRAW);
            fm_sampler_free(s);
        }
    }
}

static void assert_float_close(float got, double want) {
    if (fabs(got - want) > 1e-6 * fmax(1.0, fabs(want))) fail_msg("got %.9g, want %.9g", got, want);
}

static void test_penalties(void **state) {
    (void)state;
    const float base[6] = {2.0f, -1.5f, 0.0f, 3.0f, -0.25f, 1.0f};
    float l[6];

    /* Repetition: positive divided, negative multiplied, zero unchanged;
     * once per distinct token however often it was seen. */
    fm_sampler_params p = fm_sampler_default_params();
    p.repetition_penalty = 1.5f;
    fm_sampler *s = new_sampler(&p, 6);
    const int32_t hist[] = {0, 1, 2, 0, 0, 1, -1, 6, 1000000};
    for (size_t i = 0; i < sizeof hist / sizeof *hist; i++) fm_sampler_accept(s, hist[i]);
    assert_int_equal(sampler_history_count(s, 0), 3);
    assert_int_equal(sampler_history_count(s, 1), 2);
    assert_int_equal(sampler_history_count(s, 2), 1);
    assert_int_equal(sampler_history_count(s, 3), 0);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    assert_float_close(l[0], 2.0 / 1.5);
    assert_float_close(l[1], -1.5 * 1.5);
    assert_float_close(l[2], 0.0);
    assert_float_close(l[3], 3.0);
    assert_float_close(l[4], -0.25);
    assert_float_close(l[5], 1.0);
    fm_sampler_free(s);

    /* A penalty below 1 raises seen tokens. */
    p.repetition_penalty = 0.5f;
    s = new_sampler(&p, 6);
    fm_sampler_accept(s, 0);
    fm_sampler_accept(s, 4);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    assert_float_close(l[0], 4.0);
    assert_float_close(l[4], -0.125);
    fm_sampler_free(s);

    /* Presence once per token, frequency per occurrence, after repetition. */
    p = fm_sampler_default_params();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.repetition_penalty = 2.0f;
    s = new_sampler(&p, 6);
    const int32_t h2[] = {3, 3, 3, 1, 5, 3};
    for (size_t i = 0; i < sizeof h2 / sizeof *h2; i++) fm_sampler_accept(s, h2[i]);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    assert_float_close(l[0], 2.0);
    assert_float_close(l[1], -1.5 * 2 - 0.5 - 0.25);
    assert_float_close(l[2], 0.0);
    assert_float_close(l[3], 3.0 / 2 - 0.5 - 4 * 0.25);
    assert_float_close(l[4], -0.25);
    assert_float_close(l[5], 1.0 / 2 - 0.5 - 0.25);
    /* Reset forgets the history. */
    fm_sampler_reset(s);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    assert_memory_equal(l, base, sizeof l);
    fm_sampler_free(s);

    /* Negative presence / frequency penalties raise seen tokens. */
    p = fm_sampler_default_params();
    p.presence_penalty = -1.0f;
    p.frequency_penalty = -0.5f;
    s = new_sampler(&p, 6);
    fm_sampler_accept(s, 2);
    fm_sampler_accept(s, 2);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    assert_float_close(l[2], 0.0 + 1.0 + 1.0);
    fm_sampler_free(s);

    /* Window: only the last 3 accepted tokens count. Accept 0 1 1 2 3 3 4
     * one at a time and compare the counts with the last 3 each time. */
    p = fm_sampler_default_params();
    p.frequency_penalty = 1.0f;
    p.penalty_last_n = 3;
    s = new_sampler(&p, 6);
    const int32_t h3[] = {0, 1, 1, 2, 3, 3, 4, 4, 4, 0, 5, 5};
    const int n3 = (int)(sizeof h3 / sizeof *h3);
    for (int i = 0; i < n3; i++) {
        fm_sampler_accept(s, h3[i]);
        for (int t = 0; t < 6; t++) {
            int want = 0;
            for (int j = i; j >= 0 && j > i - 3; j--) want += h3[j] == t;
            if (sampler_history_count(s, t) != want)
                fail_msg("after %d accepts: token %d count %d, want %d", i + 1, t, sampler_history_count(s, t), want);
        }
        memcpy(l, base, sizeof l);
        sampler_apply_penalties(s, l);
        for (int t = 0; t < 6; t++) assert_float_close(l[t], base[t] - sampler_history_count(s, t));
    }
    fm_sampler_reset(s);
    for (int t = 0; t < 6; t++) assert_int_equal(sampler_history_count(s, t), 0);
    fm_sampler_accept(s, 5);
    assert_int_equal(sampler_history_count(s, 5), 1);
    fm_sampler_free(s);

    /* A long window that grows its ring: 1000 tokens, window 700. */
    p.penalty_last_n = 700;
    s = new_sampler(&p, 6);
    for (int i = 0; i < 1000; i++) fm_sampler_accept(s, i % 6);
    int total = 0;
    for (int t = 0; t < 6; t++) {
        int want = 0;
        for (int i = 300; i < 1000; i++) want += i % 6 == t;
        assert_int_equal(sampler_history_count(s, t), want);
        total += want;
    }
    assert_int_equal(total, 700);
    fm_sampler_free(s);

    /* penalty_last_n 0: every accepted token counts. */
    p.penalty_last_n = 0;
    s = new_sampler(&p, 6);
    for (int i = 0; i < 1000; i++) fm_sampler_accept(s, i % 6 == 5 ? 5 : 0);
    assert_int_equal(sampler_history_count(s, 5), 166);
    assert_int_equal(sampler_history_count(s, 0), 834);
    fm_sampler_free(s);

    /* Through fm_sampler_sample (greedy): the penalised logits decide and
     * are left in `logits`. */
    p = fm_sampler_default_params();
    p.repetition_penalty = 1.2f;
    s = new_sampler(&p, 3);
    float g[3] = {2.0f, 1.9f, -3.0f};
    assert_int_equal(fm_sampler_sample(s, g), 0);
    fm_sampler_accept(s, 0);
    float g2[3] = {2.0f, 1.9f, -3.0f};
    assert_int_equal(fm_sampler_sample(s, g2), 1); /* 2 / 1.2 = 1.67 < 1.9 */
    assert_float_close(g2[0], 2.0 / 1.2);
    assert_float_close(g2[1], 1.9);
    float g3[3] = {-1.0f, -1.1f, -3.0f}; /* negative: -1.2 < -1.1 */
    assert_int_equal(fm_sampler_sample(s, g3), 1);
    fm_sampler_free(s);

    p = fm_sampler_default_params();
    p.presence_penalty = 0.3f;
    p.frequency_penalty = 0.1f;
    p.penalty_last_n = 2;
    s = new_sampler(&p, 3);
    fm_sampler_accept(s, 0);
    float q1[3] = {1.0f, 0.65f, 0.0f}; /* 1 - 0.4 = 0.6 < 0.65 */
    assert_int_equal(fm_sampler_sample(s, q1), 1);
    float q2[3] = {1.0f, 0.55f, 0.0f}; /* 0.6 > 0.55 */
    assert_int_equal(fm_sampler_sample(s, q2), 0);
    fm_sampler_accept(s, 0); /* count 2: 1 - 0.5 = 0.5 < 0.55 */
    float q3[3] = {1.0f, 0.55f, 0.0f};
    assert_int_equal(fm_sampler_sample(s, q3), 1);
    fm_sampler_accept(s, 2);
    fm_sampler_accept(s, 2); /* window of 2: token 0 has left */
    float q4[3] = {1.0f, 0.55f, 0.9f};
    assert_int_equal(fm_sampler_sample(s, q4), 0);
    fm_sampler_free(s);

    /* Penalties feed the sampled distribution too: chi-square. */
    p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.presence_penalty = 1.0f;
    p.repetition_penalty = 1.3f;
    p.seed = 50;
    s = new_sampler(&p, 8);
    fm_sampler_accept(s, 2);
    fm_sampler_accept(s, 1);
    float pen[8];
    memcpy(pen, logits8, sizeof pen);
    pen[2] = 2.1f / 1.3f - 1.0f;
    pen[1] = -1.2f * 1.3f - 1.0f;
    long counts[8];
    double want[8];
    draw_counts(s, logits8, 8, NDRAW, counts);
    expected_softmax(pen, 8, 1.0, NULL, want);
    check_distribution("repetition + presence, T 1", counts, want, 8, NDRAW);
    fm_sampler_free(s);
}

static void test_nonfinite(void **state) {
    (void)state;
    const float nan = NAN;
    for (int greedy = 1; greedy >= 0; greedy--) {
        for (int k = 0; k < 2; k++) {
            fm_sampler_params p = fm_sampler_default_params();
            p.temperature = greedy ? 0.0f : 1.0f;
            p.top_k = k ? 3 : 0;
            p.top_p = k ? 0.99f : 1.0f;
            p.seed = 60;
            fm_sampler *s = new_sampler(&p, 5);
            for (int i = 0; i < 2000; i++) {
                float a[5] = {nan, -INFINITY, 0.5f, nan, 0.0f};
                int32_t t = fm_sampler_sample(s, a);
                assert_true(t == 2 || t == 4);
                if (greedy) assert_int_equal(t, 2);
                float b[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
                assert_int_equal(fm_sampler_sample(s, b), 0);
                float c[5] = {nan, nan, nan, nan, nan};
                assert_int_equal(fm_sampler_sample(s, c), 0);
                float d[5] = {nan, -INFINITY, nan, -INFINITY, nan};
                assert_int_equal(fm_sampler_sample(s, d), 0);
                float e[5] = {1.0f, INFINITY, 3e38f, nan, INFINITY};
                t = fm_sampler_sample(s, e);
                assert_true(t == 1 || t == 4);
                if (greedy) assert_int_equal(t, 1);
                float f[5] = {-3e38f, 3e38f, -INFINITY, nan, -3e38f}; /* differences overflow */
                assert_int_equal(fm_sampler_sample(s, f), 1);
            }
            fm_sampler_free(s);
        }
    }
    /* Two +inf tokens: uniform between them. */
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 61;
    fm_sampler *s = new_sampler(&p, 4);
    const float e[4] = {INFINITY, 1.0f, NAN, INFINITY};
    long counts[4];
    const double want[4] = {0.5, 0, 0, 0.5};
    draw_counts(s, e, 4, NDRAW, counts);
    check_distribution("two +inf logits", counts, want, 4, NDRAW);
    fm_sampler_free(s);
    /* A tiny temperature is greedy in effect, without overflow. */
    p.temperature = 1e-30f;
    s = new_sampler(&p, 8);
    for (int i = 0; i < 100; i++) {
        float l[8];
        memcpy(l, logits8, sizeof l);
        assert_int_equal(fm_sampler_sample(s, l), 2);
    }
    fm_sampler_free(s);
    /* A huge temperature is uniform. */
    p.temperature = 1e30f;
    p.seed = 62;
    s = new_sampler(&p, 8);
    long c8[8];
    double u8[8];
    for (int i = 0; i < 8; i++) u8[i] = 1.0 / 8;
    draw_counts(s, logits8, 8, NDRAW, c8);
    check_distribution("temperature 1e30: uniform", c8, u8, 8, NDRAW);
    fm_sampler_free(s);
}

/* ---- kept sets against a reference ------------------------------------- */

/* The documented semantics, in double precision with a full sort: the kept
 * tokens (marked in keep[]) and their renormalised probabilities (probs[]). */
static const float *ref_l;
static int by_logit_desc(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    const float lx = ref_l[x] > -INFINITY ? ref_l[x] : -INFINITY, ly = ref_l[y] > -INFINITY ? ref_l[y] : -INFINITY;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x - y;
}

static int reference_kept(const float *l, int V, const fm_sampler_params *p, char *keep, double *probs) {
    int *order = malloc((size_t)V * sizeof *order);
    double *w = malloc((size_t)V * sizeof *w);
    assert_true(order && w);
    for (int i = 0; i < V; i++) order[i] = i, keep[i] = 0, probs[i] = 0;
    ref_l = l;
    qsort(order, (size_t)V, sizeof *order, by_logit_desc);
    int n = V;
    if (p->temperature == 0 || p->top_k == 1) n = 1;
    else if (p->top_k > 0 && p->top_k < V) n = p->top_k;
    const double max = l[order[0]];
    int kept = 0;
    if (!(max > -INFINITY)) {
        if (p->temperature == 0 || p->top_k == 1) keep[0] = 1, probs[0] = 1, kept = 1;
        goto out;
    }
    double z = 0;
    for (int j = 0; j < n; j++) {
        const double li = l[order[j]];
        double d = max == INFINITY ? (li == INFINITY ? 0 : INFINITY) : (max - li) / p->temperature;
        if (!(li > -INFINITY)) d = INFINITY;
        w[j] = d < 87.0 ? exp(-d) : 0;
        z += w[j];
    }
    if (p->temperature == 0 || p->top_k == 1) w[0] = 1, z = 1;
    double cum = 0;
    for (int j = 0; j < n && w[j] > 0; j++) {
        if (w[j] < p->min_p) break; /* w[0] = 1 */
        keep[order[j]] = 1;
        kept++;
        cum += w[j];
        if (p->top_p < 1 && cum >= ((double)p->top_p - 1e-6) * z) break;
    }
    for (int i = 0; i < V; i++)
        if (keep[i]) probs[i] = exp(-((max == INFINITY ? (l[i] == INFINITY ? 0 : INFINITY) : (max - l[i]) / p->temperature)));
    if (p->temperature == 0 || p->top_k == 1) probs[order[0]] = 1;
    {
        double m = 0;
        for (int i = 0; i < V; i++) m += probs[i];
        for (int i = 0; i < V; i++) probs[i] /= m;
    }
out:
    free(order);
    free(w);
    return kept;
}

/* Compares sampler_candidates with reference_kept on one logits vector. */
static void check_kept(const char *label, const float *l, int V, const fm_sampler_params *p) {
    fm_sampler *s = new_sampler(p, V);
    float *buf = malloc((size_t)V * sizeof *buf);
    int32_t *ids = malloc((size_t)V * sizeof *ids);
    double *probs = malloc((size_t)V * sizeof *probs), *want = malloc((size_t)V * sizeof *want);
    char *keep = malloc((size_t)V);
    assert_true(buf && ids && probs && want && keep);
    memcpy(buf, l, (size_t)V * sizeof *buf);
    const int got = sampler_candidates(s, buf, ids, probs);
    const int n_want = reference_kept(l, V, p, keep, want);
    if (got != n_want)
        fail_msg("%s (V %d, T %g, top_k %d, top_p %.9g, min_p %g): %d kept, want %d", label, V, p->temperature,
                 p->top_k, p->top_p, p->min_p, got, n_want);
    for (int i = 0; i < got; i++) {
        if (ids[i] < 0 || ids[i] >= V || !keep[ids[i]])
            fail_msg("%s (V %d, T %g, top_k %d, top_p %.9g, min_p %g): token %d kept, not in the reference set", label,
                     V, p->temperature, p->top_k, p->top_p, p->min_p, ids[i]);
        keep[ids[i]] = 0; /* each once */
        if (fabs(probs[i] - want[ids[i]]) > 1e-5 * want[ids[i]] + 1e-12)
            fail_msg("%s: token %d probability %.9g, want %.9g", label, ids[i], probs[i], want[ids[i]]);
    }
    /* Sampling: each draw is a kept token. */
    const int32_t any = got ? ids[0] : 0;
    for (int r = 0; r < 20; r++) {
        memcpy(buf, l, (size_t)V * sizeof *buf);
        const int32_t t = fm_sampler_sample(s, buf);
        int found = got == 0 && t == 0;
        for (int i = 0; i < got && !found; i++) found = ids[i] == t;
        if (!found) fail_msg("%s: drew %d, not kept (first kept %d)", label, t, any);
    }
    fm_sampler_free(s);
    free(buf);
    free(ids);
    free(probs);
    free(want);
    free(keep);
}

static void test_kept_sets(void **state) {
    (void)state;
    /* Exact top-p boundaries and ties, both paths. */
    const float ties[8] = {-INFINITY, 1.0f, -INFINITY, 1.0f, -INFINITY, 1.0f, 0.0f, 1.0f};
    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 1.0f;
    for (int k = 0; k < 2; k++) {
        p.top_k = k ? 7 : 0;
        p.top_p = 0.4f; /* 4 tied at 0.2355 each: 2 tokens, the lowest ids */
        check_kept("ties, top_p 0.4", ties, 8, &p);
        p.top_p = 0.5f;
        check_kept("ties, top_p 0.5", ties, 8, &p);
        p.top_p = 0.75f;
        check_kept("ties, top_p 0.75", ties, 8, &p);
        p.top_k = 3; /* ties at the k-th logit */
        p.top_p = 1.0f;
        check_kept("ties, top_k 3", ties, 8, &p);
    }
    /* The kept pair are ids 1 and 3, through the public draw too. */
    p.top_k = 0;
    p.top_p = 0.4f;
    p.seed = 98;
    fm_sampler *s = new_sampler(&p, 8);
    long counts[8];
    const double want[8] = {0, 0.5, 0, 0.5, 0, 0, 0, 0};
    draw_counts(s, ties, 8, NDRAW / 4, counts);
    check_distribution("ties, top_p 0.4: ids 1 and 3", counts, want, 8, NDRAW / 4);
    fm_sampler_free(s);
    const float four[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    p.top_p = 0.8f;
    check_kept("0.5/0.3/0.15/0.05, top_p 0.8", four, 4, &p);
    p.top_p = 0.81f;
    check_kept("0.5/0.3/0.15/0.05, top_p 0.81", four, 4, &p);

    /* Random logits, random settings; some quantised (many ties, and many
     * tokens in one histogram bucket), some with NaN and infinities. */
    uint64_t seed = 99;
    const int sizes[] = {1, 2, 7, 64, 65, 1000, 30000};
    float *l = malloc(30000 * sizeof *l);
    assert_non_null(l);
    int cases = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int V = sizes[si];
        for (int r = 0; r < 12; r++) {
            const int style = r % 4;
            for (int i = 0; i < V; i++) {
                float x = 6.0f * rand_uniform(&seed);
                if (style == 1) x = roundf(x * 4.0f) / 4.0f;
                if (style == 2) x = roundf(x * 64.0f) / 64.0f;
                if (style == 3) {
                    const float u = rand_uniform(&seed);
                    if (u > 0.9f) x = -INFINITY;
                    else if (u > 0.85f) x = NAN;
                    else if (u < -0.999f) x = INFINITY;
                }
                l[i] = x;
            }
            fm_sampler_params q = fm_sampler_default_params();
            const float temps[] = {0.0f, 0.1f, 0.5f, 1.0f, 2.0f};
            q.temperature = temps[(int)((rand_uniform(&seed) + 1) * 2.5f) % 5];
            const int ks[] = {0, 0, 1, 5, 50, V + 3};
            q.top_k = ks[(int)((rand_uniform(&seed) + 1) * 3) % 6];
            q.top_p = rand_uniform(&seed) < 0 ? 1.0f : 0.05f + 0.475f * (rand_uniform(&seed) + 1);
            if (q.top_p > 1.0f) q.top_p = 1.0f;
            q.min_p = rand_uniform(&seed) < 0 ? 0.0f : 0.25f * (rand_uniform(&seed) + 1);
            q.seed = (uint64_t)r;
            char label[64];
            snprintf(label, sizeof label, "random case %d (style %d)", cases, style);
            check_kept(label, l, V, &q);
            cases++;
        }
    }
    printf("  %d random cases match the reference\n", cases);
    free(l);
}

static void expect_invalid(fm_sampler_params p, int vocab, const char *name) {
    fm_sampler *s = (fm_sampler *)&p; /* anything non-NULL */
    fm_error(FM_OK, "%s", "");
    fm_status st = fm_sampler_new(&p, vocab, &s);
    if (st != FM_ERR_ARGUMENT) fail_msg("%s: status %d, want FM_ERR_ARGUMENT", name, st);
    assert_null(s);
    if (!strstr(fm_last_error(), name)) fail_msg("message \"%s\" does not name %s", fm_last_error(), name);
}

static void test_invalid_params(void **state) {
    (void)state;
    const fm_sampler_params d = fm_sampler_default_params();
    fm_sampler_params p;
    expect_invalid(d, 0, "vocab_size");
    expect_invalid(d, -5, "vocab_size");
    const float bad_t[] = {-0.1f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_t / sizeof *bad_t; i++) {
        p = d;
        p.temperature = bad_t[i];
        expect_invalid(p, 8, "temperature");
    }
    p = d;
    p.top_k = -1;
    expect_invalid(p, 8, "top_k");
    const float bad_top_p[] = {0.0f, -0.5f, 1.0001f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_top_p / sizeof *bad_top_p; i++) {
        p = d;
        p.top_p = bad_top_p[i];
        expect_invalid(p, 8, "top_p");
    }
    const float bad_min_p[] = {-0.01f, 1.01f, NAN};
    for (size_t i = 0; i < sizeof bad_min_p / sizeof *bad_min_p; i++) {
        p = d;
        p.min_p = bad_min_p[i];
        expect_invalid(p, 8, "min_p");
    }
    const float bad_rep[] = {0.0f, -1.0f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_rep / sizeof *bad_rep; i++) {
        p = d;
        p.repetition_penalty = bad_rep[i];
        expect_invalid(p, 8, "repetition_penalty");
    }
    p = d;
    p.presence_penalty = NAN;
    expect_invalid(p, 8, "presence_penalty");
    p = d;
    p.frequency_penalty = INFINITY;
    expect_invalid(p, 8, "frequency_penalty");
    p = d;
    p.penalty_last_n = -1;
    expect_invalid(p, 8, "penalty_last_n");

    /* Edges that are valid. */
    p = d;
    p.top_p = 1.0f;
    p.min_p = 1.0f;
    p.temperature = 1.0f;
    p.top_k = 1 << 30;
    p.penalty_last_n = 1 << 30; /* the ring grows on demand */
    p.repetition_penalty = 1e-3f;
    fm_sampler *s = new_sampler(&p, 1);
    float one = 0.0f;
    assert_int_equal(fm_sampler_sample(s, &one), 0);
    fm_sampler_accept(s, 0);
    fm_sampler_free(s);
    fm_sampler_free(NULL);
    assert_int_equal(fm_sampler_new(&d, 8, NULL), FM_ERR_ARGUMENT);
}

static const double *cmp_p;
static int by_p_desc(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    if (cmp_p[x] != cmp_p[y]) return cmp_p[x] > cmp_p[y] ? -1 : 1;
    return x - y;
}

static void test_large_vocab(void **state) {
    (void)state;
    enum { V = 250000, K = 40 };
    /* Under the sanitizers (about 30 times slower): fewer draws, and the time is reported, not bounded. */
    const int N = SANITIZED ? 1000 : 10000, N2 = SANITIZED ? 30 : 100;
    float *l = malloc(V * sizeof *l);
    double *pr = malloc(V * sizeof *pr);
    int *order = malloc(V * sizeof *order);
    char *in_set = calloc(V, 1), *seen = calloc(V, 1);
    assert_true(l && pr && order && in_set && seen);
    uint64_t seed = 77;
    for (int i = 0; i < V; i++) l[i] = 4.0f * rand_uniform(&seed);
    for (int i = 0; i < V; i++) {
        order[i] = i;
        pr[i] = l[i];
    }
    cmp_p = pr;
    qsort(order, V, sizeof *order, by_p_desc);
    for (int k = 0; k < K; k++) in_set[order[k]] = 1;

    fm_sampler_params p = fm_sampler_default_params();
    p.temperature = 0.8f;
    p.top_k = K;
    p.top_p = 0.95f;
    p.seed = 70;
    fm_sampler *s = new_sampler(&p, V);
    long hits = 0;
    int distinct = 0;
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        /* No penalties and no NaN: the logits are left as they are, so the
         * same array serves every draw (checked below). */
        int32_t t = fm_sampler_sample(s, l);
        assert_true(t >= 0 && t < V);
        hits += in_set[t];
        if (!seen[t]++) distinct++;
    }
    double dt = now_s() - t0;
    printf("  vocab %d, top_k %d, top_p 0.95, T 0.8: %d draws in %.3f s (%.1f us each), %d distinct\n", V, K, N,
           dt, dt / N * 1e6, distinct);
    assert_int_equal(hits, N);
    assert_true(distinct > 10);
    /* A full sort of the vocabulary per draw would take several ms. */
    if (!SANITIZED && dt / N > 500e-6) fail_msg("%.1f us per draw", dt / N * 1e6);
    fm_sampler_free(s);
    seed = 77;
    for (int i = 0; i < V; i++) assert_true(l[i] == 4.0f * rand_uniform(&seed));

    /* The histogram path (top-p without top-k): each draw from the top-p set of
     * the tempered softmax, found here by a full sort. */
    const double T = 0.05, top_p = 0.5;
    p.top_k = 0;
    p.top_p = (float)top_p;
    p.temperature = (float)T;
    s = new_sampler(&p, V);
    double z = 0, cum = 0;
    for (int i = 0; i < V; i++) z += pr[i] = exp((l[i] - l[order[0]]) / T);
    qsort(order, V, sizeof *order, by_p_desc);
    memset(in_set, 0, V);
    int kept = 0;
    while (cum < (top_p - 1e-6) * z) {
        cum += pr[order[kept]];
        in_set[order[kept++]] = 1;
    }
    t0 = now_s();
    for (int i = 0; i < N2; i++) {
        int32_t t = fm_sampler_sample(s, l);
        if (!in_set[t]) fail_msg("draw %d: token %d outside the top-p set of %d", i, t, kept);
    }
    dt = now_s() - t0;
    printf("  vocab %d, top_p 0.5, T 0.05 (histogram path, %d kept): %d draws in %.3f s (%.1f us each)\n", V, kept, N2,
           dt, dt / N2 * 1e6);
    if (!SANITIZED && dt / N2 > 20e-3) fail_msg("%.1f us per draw", dt / N2 * 1e6);
    fm_sampler_free(s);

    /* Greedy over the same vocabulary. */
    p = fm_sampler_default_params();
    s = new_sampler(&p, V);
    t0 = now_s();
    const int N3 = SANITIZED ? 200 : N;
    for (int i = 0; i < N3; i++) assert_int_equal(fm_sampler_sample(s, l), order[0]);
    dt = now_s() - t0;
    printf("  vocab %d, greedy: %d draws in %.3f s (%.1f us each)\n", V, N3, dt, dt / N3 * 1e6);
    fm_sampler_free(s);
    free(seen);
    free(in_set);
    free(order);
    free(pr);
    free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_greedy),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_reset_keeps_stream),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_kept_sets),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_large_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Token sampling: fm_sampler_* (flashmoe.h).
 *
 * fm_sampler_sample(s, logits) applies, in this order:
 *
 * 1. Penalties, over the history of accepted tokens (fm_sampler_accept): the
 *    last penalty_last_n of them, or all since the last reset when
 *    penalty_last_n is 0. For each distinct token t of that window, seen
 *    count(t) times:
 *      repetition_penalty r:  logit > 0 ? logit / r : logit * r   (once per
 *                             distinct token, as Hugging Face's
 *                             RepetitionPenaltyLogitsProcessor and llama.cpp)
 *      presence_penalty p:    logit -= p                (once per token)
 *      frequency_penalty f:   logit -= count(t) * f
 *    (the last two as llama.cpp / OpenAI: logit -= count*f + p, after the
 *    repetition penalty). Differences: llama.cpp's penalty_last_n = 0
 *    disables the penalties and -1 means the whole context; here 0 means the
 *    whole history (Hugging Face penalises every token of input_ids). The
 *    penalised logits are written back into `logits`, which they are left
 *    holding on return (with the rest unchanged).
 *
 * 2. temperature == 0 or top_k == 1: greedy, the argmax of the penalised
 *    logits; ties go to the lowest id, NaN counts as -inf, and if no logit is
 *    above -inf the result is 0. No random number is drawn.
 *
 * 3. Otherwise, as Hugging Face's warpers (TemperatureLogitsWarper, TopK,
 *    TopP, MinP, then multinomial):
 *    a. logits / temperature (computed as (logit - max) / temperature inside
 *       the exponential, so that a tiny temperature cannot overflow);
 *    b. top-k (k = 0 or k >= vocab_size: off): keeps exactly the k largest
 *       logits, ties broken towards the lowest id. (Hugging Face keeps every
 *       token tied with the k-th logit; llama.cpp keeps k, ties unspecified.)
 *    c. softmax over the tokens kept;
 *    d. top-p (1: off): keeps the smallest set of most likely tokens whose
 *       cumulative probability reaches top_p, always at least one; tokens
 *       are taken by descending probability, ties towards the lowest id. The
 *       test is cumulative >= top_p - 1e-6, so that a boundary hit exactly in
 *       real arithmetic (p = 0.5, 0.3, ... with top_p = 0.8) is not missed
 *       because of float rounding of top_p and of the probabilities. (This is
 *       llama.cpp's rule; Hugging Face removes the tokens whose ascending
 *       cumulative mass is <= 1 - top_p, the same set up to ties and
 *       rounding.)
 *    e. min-p (0: off): drops tokens with p < min_p * p_max. p_max is the
 *       most likely token's probability; renormalising after top-p does not
 *       change the ratio p / p_max, so this matches Hugging Face's MinP after
 *       TopP and llama.cpp's min-p alike. Top-p and min-p each keep a prefix
 *       of the descending order, so their result is the shorter prefix: the
 *       min-p filter is evaluated first (one pass) and top-p then orders only
 *       the min-p survivors, with the probabilities still normalised over
 *       the top-k set.
 *    f. renormalise and draw: one uniform u in [0, 1) from the sampler's
 *       stream, the token where the cumulative kept mass first exceeds
 *       u * (kept mass).
 *    Non-finite logits: NaN and -inf get probability 0. If some logit is
 *    +inf, the distribution is uniform over the +inf tokens (the limit of
 *    the softmax). If no logit is above -inf, the result is 0 (the random
 *    number is still drawn). Tokens whose probability relative to the most
 *    likely one is below exp(-87) = 1.6e-38 ((max - logit) / temperature
 *    >= 87, where expf would leave the normal range) get probability 0.
 *    Probabilities are computed in float (expf), sums in double.
 *    Difference from llama.cpp's default chain, which applies the
 *    temperature after top-k/top-p/min-p: here, as in Hugging Face and vLLM,
 *    top-p and min-p see the tempered distribution.
 *
 * API notes: fm_sampler_new takes NULL params as the defaults and refuses
 * out-of-range values with FM_ERR_ARGUMENT naming the parameter (presence
 * and frequency penalties must be finite; negative ones raise seen tokens).
 * fm_sampler_accept ignores ids outside [0, vocab_size); the history is kept
 * only when some penalty is active (then 12 bytes per vocabulary entry, and
 * a ring of the window that grows as tokens arrive). A sampler is not
 * thread-safe; use one per generation stream.
 *
 * Random numbers: xoshiro256** seeded through splitmix64 from `seed` (every
 * seed, 0 included, is valid). Each non-greedy fm_sampler_sample call takes
 * exactly one number, so the stream depends only on the seed and on the
 * number of such calls; fm_sampler_reset keeps it. The stream is the same on
 * every platform; the token chosen from it can differ only where expf() of
 * two C libraries differs by an ulp at a boundary of the cumulative sum.
 *
 * Cost per call, vocabulary V (nothing sorts the whole vocabulary):
 *  - greedy: one pass, 64 logits at a time compared branch-free with the
 *    best so far;
 *  - top-k: the same kind of pass feeding a k-entry min-heap (only blocks
 *    holding a logit above the heap's smallest are looked into), then a
 *    heapsort of the k entries; everything after touches k tokens;
 *  - no top-k: one pass of expf over the vocabulary; with top-p, the same
 *    pass builds a histogram of the mass by the float bits of the
 *    probability (exponent and 5 mantissa bits, ~4000 buckets); the bucket
 *    where the cumulative mass reaches top_p is found from the histogram,
 *    the tokens of more likely buckets are kept unsorted, and only the
 *    tokens of that one bucket are sorted (a few hundred at V = 250k).
 * Measured at V = 250,000 (tests/test_sampler.c): ~20 us per draw with
 * top_k 40 / top_p 0.95, ~11 us greedy, 1-3 ms without top-k. */
#include "generate/sampler.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tolerance of the top-p test (see 3d above). */
#define SAMPLER_TOP_P_EPS 1e-6
/* Tokens whose scaled distance d = (max - logit) / temperature reaches this
 * get probability 0: their exp(-d) relative to the most likely token is
 * below 1.7e-38 (and would be subnormal in float). */
#define SAMPLER_D_CUTOFF 87.0f
/* Top-p without top-k: histogram of the probability mass by the float bits
 * of w = exp(-d) in (0, 1]: bucket (bits(1.0f) - bits(w)) >> 18, i.e. the
 * exponent and 5 mantissa bits, about ln(2)/32 = 0.022 of d per bucket,
 * most likely first. */
#define SAMPLER_BUCKET_SHIFT 18
#define SAMPLER_BUCKETS ((0x3F800000u >> SAMPLER_BUCKET_SHIFT) + 1)

typedef struct {
    float v; /* logit while in the top-k heap, then the unnormalised probability */
    int32_t id;
} sampler_cand;

struct fm_sampler {
    fm_sampler_params p;
    int vocab;
    int greedy;    /* temperature 0 or top_k 1 */
    int top_k;     /* in effect: 0 when off or >= vocab */
    int penalties; /* some penalty is active: the history is kept */
    uint64_t rng[4];

    /* History within the penalty window. */
    int32_t *count;    /* [vocab] occurrences */
    int32_t *seen;     /* [vocab] the n_seen distinct tokens with count > 0 */
    int32_t *seen_pos; /* [vocab] index in seen of a token with count > 0 */
    int n_seen;
    int window;        /* penalty_last_n; 0: unbounded (no ring) */
    int32_t *ring;     /* the last ring_len tokens, oldest at ring_head */
    int ring_cap, ring_len, ring_head;

    /* Scratch: candidates, [top_k] with top-k, else [vocab]; the top-p
     * histogram [SAMPLER_BUCKETS] (without top-k). */
    sampler_cand *cand;
    double *hist;
};

/* ---- random numbers ------------------------------------------------------ */

static uint64_t sampler_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t sampler_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t sampler_next(uint64_t s[4]) { /* xoshiro256** */
    const uint64_t result = sampler_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sampler_rotl(s[3], 45);
    return result;
}

double sampler_uniform(fm_sampler *s) { return (double)(sampler_next(s->rng) >> 11) * 0x1.0p-53; }

/* ---- lifecycle ------------------------------------------------------------ */

fm_sampler_params fm_sampler_default_params(void) {
    fm_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.penalty_last_n = 0;
    p.seed = 0;
    return p;
}

static fm_status sampler_check(const fm_sampler_params *p, int vocab_size) {
    if (vocab_size <= 0) return fm_error(FM_ERR_ARGUMENT, "sampler: vocab_size must be > 0 (got %d)", vocab_size);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return fm_error(FM_ERR_ARGUMENT, "sampler: temperature must be finite and >= 0 (got %g)", p->temperature);
    if (p->top_k < 0) return fm_error(FM_ERR_ARGUMENT, "sampler: top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return fm_error(FM_ERR_ARGUMENT, "sampler: top_p must be in (0, 1] (got %g)", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return fm_error(FM_ERR_ARGUMENT, "sampler: min_p must be in [0, 1] (got %g)", p->min_p);
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return fm_error(FM_ERR_ARGUMENT, "sampler: repetition_penalty must be finite and > 0 (got %g)",
                        p->repetition_penalty);
    if (!isfinite(p->presence_penalty))
        return fm_error(FM_ERR_ARGUMENT, "sampler: presence_penalty must be finite (got %g)", p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return fm_error(FM_ERR_ARGUMENT, "sampler: frequency_penalty must be finite (got %g)", p->frequency_penalty);
    if (p->penalty_last_n < 0)
        return fm_error(FM_ERR_ARGUMENT, "sampler: penalty_last_n must be >= 0 (got %d)", p->penalty_last_n);
    return FM_OK;
}

fm_status fm_sampler_new(const fm_sampler_params *params, int vocab_size, fm_sampler **out) {
    if (!out) return fm_error(FM_ERR_ARGUMENT, "sampler: out is NULL");
    *out = NULL;
    fm_sampler_params p = params ? *params : fm_sampler_default_params();
    fm_status st = sampler_check(&p, vocab_size);
    if (st != FM_OK) return st;

    fm_sampler *s = calloc(1, sizeof *s);
    if (!s) return fm_error(FM_ERR_NOMEM, "sampler: out of memory");
    s->p = p;
    s->vocab = vocab_size;
    s->greedy = p.temperature == 0.0f || p.top_k == 1;
    s->top_k = p.top_k < vocab_size ? p.top_k : 0;
    s->penalties = p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = sampler_splitmix64(&x);

    const size_t V = (size_t)vocab_size;
    if (s->penalties) {
        s->count = calloc(V, sizeof *s->count);
        s->seen = malloc(V * sizeof *s->seen);
        s->seen_pos = malloc(V * sizeof *s->seen_pos);
        if (!s->count || !s->seen || !s->seen_pos) goto nomem;
        s->window = p.penalty_last_n;
        if (s->window > 0) { /* grows on demand up to the window */
            s->ring_cap = s->window < 256 ? s->window : 256;
            if (!(s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring))) goto nomem;
        }
    }
    if (!s->greedy) {
        const size_t n = s->top_k ? (size_t)s->top_k : V;
        if (!(s->cand = malloc(n * sizeof *s->cand))) goto nomem;
        if (!s->top_k && p.top_p < 1.0f && !(s->hist = malloc(SAMPLER_BUCKETS * sizeof *s->hist))) goto nomem;
    }
    *out = s;
    return FM_OK;
nomem:
    fm_sampler_free(s);
    return fm_error(FM_ERR_NOMEM, "sampler: out of memory (vocab_size %d)", vocab_size);
}

void fm_sampler_free(fm_sampler *s) {
    if (!s) return;
    free(s->count);
    free(s->seen);
    free(s->seen_pos);
    free(s->ring);
    free(s->cand);
    free(s->hist);
    free(s);
}

/* ---- history and penalties ------------------------------------------------ */

static void sampler_count_add(fm_sampler *s, int32_t t) {
    if (s->count[t]++ == 0) {
        s->seen_pos[t] = s->n_seen;
        s->seen[s->n_seen++] = t;
    }
}

static void sampler_count_remove(fm_sampler *s, int32_t t) {
    if (--s->count[t] == 0) { /* swap-remove from the seen list */
        const int32_t i = s->seen_pos[t], last = s->seen[--s->n_seen];
        s->seen[i] = last;
        s->seen_pos[last] = i;
    }
}

void fm_sampler_accept(fm_sampler *s, int32_t token) {
    if (!s || !s->penalties || token < 0 || token >= s->vocab) return;
    if (s->window > 0) {
        if (s->ring_len == s->ring_cap && s->ring_cap < s->window) {
            /* Not yet full, so the ring is still in order from index 0. */
            int cap = s->ring_cap <= s->window / 2 ? 2 * s->ring_cap : s->window;
            int32_t *r = realloc(s->ring, (size_t)cap * sizeof *r);
            if (r) {
                s->ring = r;
                s->ring_cap = cap;
            } else {
                s->window = s->ring_cap; /* no memory: the window shrinks to what is held */
            }
        }
        if (s->ring_len == s->window) { /* full: the oldest leaves the window */
            sampler_count_remove(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % s->window;
        } else {
            s->ring[s->ring_len++] = token;
        }
    }
    sampler_count_add(s, token);
}

void fm_sampler_reset(fm_sampler *s) {
    if (!s || !s->penalties) return;
    for (int i = 0; i < s->n_seen; i++) s->count[s->seen[i]] = 0;
    s->n_seen = 0;
    s->ring_len = 0;
    s->ring_head = 0;
}

int sampler_history_count(const fm_sampler *s, int32_t token) {
    if (!s->penalties || token < 0 || token >= s->vocab) return 0;
    return s->count[token];
}

void sampler_apply_penalties(const fm_sampler *s, float *logits) {
    if (!s->penalties) return;
    const float r = s->p.repetition_penalty, pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    for (int i = 0; i < s->n_seen; i++) {
        const int32_t t = s->seen[i];
        float l = logits[t];
        if (r != 1.0f) l = l > 0.0f ? l / r : l * r;
        l -= (float)s->count[t] * freq + pres;
        logits[t] = l;
    }
}

/* ---- selection ------------------------------------------------------------- */

/* The scans over the vocabulary test 64 logits at a time against the best
 * so far with a branch-free (vectorisable) loop and look closer only at the
 * blocks that hold something larger. */
#define SAMPLER_BLOCK 64

static int sampler_block_has_above(const float *x, float v) {
    int any = 0;
    for (int j = 0; j < SAMPLER_BLOCK; j++) any |= x[j] > v;
    return any;
}

/* Argmax; ties → lowest id; NaN never wins; 0 when nothing is above -inf. */
static int32_t sampler_argmax(const float *logits, int n) {
    int32_t best = 0;
    float bv = -INFINITY;
    int i = 0;
    for (; i + SAMPLER_BLOCK <= n; i += SAMPLER_BLOCK) {
        if (!sampler_block_has_above(logits + i, bv)) continue;
        for (int j = i; j < i + SAMPLER_BLOCK; j++)
            if (logits[j] > bv) {
                bv = logits[j];
                best = j;
            }
    }
    for (; i < n; i++)
        if (logits[i] > bv) {
            bv = logits[i];
            best = i;
        }
    return best;
}

/* Top-k min-heap of candidates keyed by logit: the root is the worst kept
 * entry (smallest logit, then largest id). */
static int sampler_worse(const sampler_cand *a, const sampler_cand *b) {
    return a->v < b->v || (a->v == b->v && a->id > b->id);
}

static void sampler_sift(sampler_cand *h, int i, int n) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && sampler_worse(&h[c + 1], &h[c])) c++;
        if (!sampler_worse(&h[c], &h[i])) return;
        sampler_cand t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

static void sampler_heap_offer(sampler_cand *h, int k, float v, int32_t id) {
    h[0].v = v;
    h[0].id = id;
    sampler_sift(h, 0, k);
}

/* The k largest logits (0 < k < n) into h[0..k), sorted best first; NaN
 * counts as -inf. */
static void sampler_top_k(const float *logits, int n, int k, sampler_cand *h) {
    for (int i = 0; i < k; i++) {
        h[i].v = logits[i] > -INFINITY ? logits[i] : -INFINITY;
        h[i].id = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sampler_sift(h, i, k);
    /* A later token with an equal logit has a larger id, so it is worse than
     * the root: only strictly larger logits enter (NaN compares false). */
    int i = k;
    for (; i + SAMPLER_BLOCK <= n; i += SAMPLER_BLOCK) {
        if (!sampler_block_has_above(logits + i, h[0].v)) continue;
        for (int j = i; j < i + SAMPLER_BLOCK; j++)
            if (logits[j] > h[0].v) sampler_heap_offer(h, k, logits[j], j);
    }
    for (; i < n; i++)
        if (logits[i] > h[0].v) sampler_heap_offer(h, k, logits[i], i);
    for (int end = k - 1; end > 0; end--) { /* heapsort: worst to the back */
        sampler_cand t = h[0];
        h[0] = h[end];
        h[end] = t;
        sampler_sift(h, 0, end);
    }
}

/* Scaled distance from the largest logit, (max - l) / temperature, >= 0;
 * +inf for tokens of probability 0 (NaN, -inf; all but the +inf ones when
 * max is +inf). The probability is then exp(-d) / Z. */
static inline float sampler_distance(float l, float max, float temperature) {
    if (!(l > -INFINITY)) return INFINITY;
    if (max == INFINITY) return l == INFINITY ? 0.0f : INFINITY;
    return (max - l) / temperature;
}

static inline uint32_t sampler_bucket(float w) { /* w in (0, 1] */
    uint32_t bits;
    memcpy(&bits, &w, sizeof bits);
    return (0x3F800000u - bits) >> SAMPLER_BUCKET_SHIFT;
}

/* Descending probability, ties → lowest id. */
static int sampler_cand_cmp(const void *pa, const void *pb) {
    const sampler_cand *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Steps 3a-e on penalised logits (not greedy): leaves the kept tokens, with
 * their unnormalised probabilities, in s->cand[0..return value); 0 when no
 * logit is above -inf. */
static int sampler_filter(fm_sampler *s, const float *logits) {
    const int V = s->vocab;
    const float T = s->p.temperature, min_p = s->p.min_p;
    const int top_p = s->p.top_p < 1.0f;
    sampler_cand *c = s->cand;
    int n = 0;    /* candidates, c[0..n): probability > 0 and, when min-p is on, w >= min_p */
    double z = 0; /* mass of every token of probability > 0 (after top-k): the softmax normaliser */
    int kept;     /* the draw is from c[0..kept) */
    /* min-p: p < min_p * p_max ⇔ w < min_p, since the most likely token has
     * w = exp(0) = 1; with min_p = 0 every w > 0 passes. */
    if (s->top_k) {
        sampler_top_k(logits, V, s->top_k, c);
        const float max = c[0].v;
        for (int i = 0; i < s->top_k; i++) { /* descending: the zeros are at the end */
            const float d = sampler_distance(c[i].v, max, T);
            if (!(d < SAMPLER_D_CUTOFF)) break;
            const float w = expf(-d);
            z += w;
            if (w >= min_p) c[n++] = (sampler_cand){w, c[i].id};
        }
        kept = n;
        if (top_p && n) { /* already in descending order */
            const double target = ((double)s->p.top_p - SAMPLER_TOP_P_EPS) * z;
            double cum = 0;
            kept = 0;
            while (kept < n) {
                cum += c[kept++].v;
                if (cum >= target) break;
            }
        }
    } else {
        const float max = logits[sampler_argmax(logits, V)]; /* ≤ -inf or NaN: nothing above -inf */
        double *hist = s->hist;
        if (top_p) memset(hist, 0, SAMPLER_BUCKETS * sizeof *hist);
        if (max > -INFINITY)
            for (int i = 0; i < V; i++) {
                const float d = sampler_distance(logits[i], max, T);
                if (!(d < SAMPLER_D_CUTOFF)) continue;
                const float w = expf(-d);
                z += w;
                if (top_p) hist[sampler_bucket(w)] += w;
                c[n] = (sampler_cand){w, i};
                n += w >= min_p;
            }
        kept = n;
        if (top_p && n) {
            /* The bucket where the cumulative mass (most likely first)
             * reaches the target: everything before it is kept, everything
             * after it dropped, and only its own tokens are sorted. */
            const double target = ((double)s->p.top_p - SAMPLER_TOP_P_EPS) * z;
            double cum = 0;
            uint32_t B = 0;
            while (B < SAMPLER_BUCKETS - 1 && cum + hist[B] < target) cum += hist[B++];
            /* Three-way partition: [bucket < B | bucket == B | bucket > B). */
            int lo = 0, mid = 0, hi = n;
            while (mid < hi) {
                const uint32_t b = sampler_bucket(c[mid].v);
                if (b < B) {
                    sampler_cand t = c[lo];
                    c[lo++] = c[mid];
                    c[mid++] = t;
                } else if (b == B) {
                    mid++;
                } else {
                    sampler_cand t = c[mid];
                    c[mid] = c[--hi];
                    c[hi] = t;
                }
            }
            qsort(c + lo, (size_t)(mid - lo), sizeof *c, sampler_cand_cmp);
            kept = lo;
            while (kept < mid) {
                cum += c[kept++].v;
                if (cum >= target) break;
            }
        }
    }
    return kept;
}

int32_t fm_sampler_sample(fm_sampler *s, float *logits) {
    sampler_apply_penalties(s, logits);
    if (s->greedy) return sampler_argmax(logits, s->vocab);
    const double u = sampler_uniform(s);
    const int kept = sampler_filter(s, logits);
    if (kept == 0) return 0; /* nothing above -inf */

    /* Renormalise over the kept tokens and draw. */
    const sampler_cand *c = s->cand;
    double mass = 0;
    for (int i = 0; i < kept; i++) mass += c[i].v;
    const double x = u * mass;
    double cum = 0;
    for (int i = 0; i < kept; i++) {
        cum += c[i].v;
        if (cum > x) return c[i].id;
    }
    return c[kept - 1].id; /* rounding left x at the very end */
}

int sampler_candidates(fm_sampler *s, float *logits, int32_t *ids, double *probs) {
    sampler_apply_penalties(s, logits);
    if (s->greedy) {
        ids[0] = sampler_argmax(logits, s->vocab);
        probs[0] = 1.0;
        return 1;
    }
    const int kept = sampler_filter(s, logits);
    double mass = 0;
    for (int i = 0; i < kept; i++) mass += s->cand[i].v;
    for (int i = 0; i < kept; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = s->cand[i].v / mass;
    }
    return kept;
}

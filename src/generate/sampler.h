/* Token sampler internals. The public API (fm_sampler_*) and the semantics
 * are in flashmoe.h and sampler.c; this header exposes helpers for tests. */
#ifndef FM_GENERATE_SAMPLER_H
#define FM_GENERATE_SAMPLER_H

#include "flashmoe.h"

/* Applies the repetition, presence and frequency penalties of the recorded
 * history (the last penalty_last_n accepted tokens, or all) to logits
 * [vocab_size] in place: step 1 of fm_sampler_sample. */
void sampler_apply_penalties(const fm_sampler *s, float *logits);

/* Occurrences of `token` in the penalty window (0 when out of range or when
 * no penalty is active, since then no history is kept). */
int sampler_history_count(const fm_sampler *s, int32_t token);

/* The next uniform double in [0, 1) of the sampler's stream (53 random bits):
 * the draw fm_sampler_sample makes once per non-greedy call. */
double sampler_uniform(fm_sampler *s);

/* What fm_sampler_sample would draw from, without drawing: applies the
 * penalties to `logits` as sample does, then writes the kept tokens to ids
 * and their renormalised probabilities to probs (room for vocab_size each;
 * any order) and returns how many (0 when no logit is above -inf; greedy:
 * the argmax with probability 1). */
int sampler_candidates(fm_sampler *s, float *logits, int32_t *ids, double *probs);

#endif

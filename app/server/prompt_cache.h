/* The server's prompt cache: snapshots of session state keyed by the tokens
 * they hold, so a request that begins with a cached conversation prefills
 * only what is new. Bounded by a byte budget; least recently used first out.
 * Not thread-safe: the worker thread owns it. */
#ifndef FM_APP_SERVER_PROMPT_CACHE_H
#define FM_APP_SERVER_PROMPT_CACHE_H

#include "flashmoe.h"

#include <stdint.h>

typedef struct prompt_cache prompt_cache;

typedef struct {
    int entries;
    uint64_t bytes, budget;
    uint64_t stored, evicted, restored; /* snapshots taken, dropped for room, brought back */
} prompt_cache_stats;

prompt_cache *prompt_cache_new(uint64_t budget_bytes); /* NULL when out of memory */
void prompt_cache_free(prompt_cache *c);
/* Keeps a snapshot of session s, which holds tokens[0, n). Replaces an entry
 * with the same tokens; evicts the least recently used to fit; a snapshot over
 * the whole budget is not kept. 0, or -1 if it was not kept. */
int prompt_cache_put(prompt_cache *c, const fm_session *s, const int32_t *tokens, int n);
/* The longest prefix of tokens[0, n) an entry can give: an entry whose tokens
 * all match, shorter than n (the last prompt token must be fed for its
 * logits); or, when the session can truncate, the common part of any entry.
 * Returns the entry's index and its usable length in *len, or -1. */
int prompt_cache_find(const prompt_cache *c, const fm_session *s, const int32_t *tokens, int n, int *len);
/* Restores entry `index` into s and cuts it to len tokens. FM_OK or the error. */
fm_status prompt_cache_restore(prompt_cache *c, int index, fm_session *s, int len);
void prompt_cache_get_stats(const prompt_cache *c, prompt_cache_stats *out);

/* Tokens a and b have in common at their start. */
int common_prefix(const int32_t *a, int na, const int32_t *b, int nb);

#endif

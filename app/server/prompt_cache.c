/* The prompt cache (see prompt_cache.h): a small array of entries searched
 * linearly (a handful of conversations; each snapshot is large, so there are
 * never many). */
#include "server/prompt_cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t *tokens;
    int n;
    void *state;
    size_t bytes;
    uint64_t last_used;
} cache_entry_t;

struct prompt_cache {
    cache_entry_t *entries;
    int n, cap;
    uint64_t bytes, budget, clock;
    prompt_cache_stats stats;
};

int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

prompt_cache *prompt_cache_new(uint64_t budget_bytes) {
    prompt_cache *c = calloc(1, sizeof *c);
    if (c) c->budget = budget_bytes;
    return c;
}

static void drop(prompt_cache *c, int i) {
    c->bytes -= c->entries[i].bytes;
    free(c->entries[i].tokens);
    free(c->entries[i].state);
    c->entries[i] = c->entries[--c->n];
}

void prompt_cache_free(prompt_cache *c) {
    if (!c) return;
    while (c->n) drop(c, c->n - 1);
    free(c->entries);
    free(c);
}

int prompt_cache_put(prompt_cache *c, const fm_session *s, const int32_t *tokens, int n) {
    const size_t bytes = fm_session_state_size(s) + (size_t)n * sizeof *tokens;
    if (n <= 0 || bytes > c->budget) return -1;
    for (int i = 0; i < c->n; i++)
        if (c->entries[i].n == n && !memcmp(c->entries[i].tokens, tokens, (size_t)n * sizeof *tokens)) {
            c->entries[i].last_used = ++c->clock; /* same state: keep the one we have */
            return 0;
        }
    while (c->n && c->bytes + bytes > c->budget) {
        int oldest = 0;
        for (int i = 1; i < c->n; i++)
            if (c->entries[i].last_used < c->entries[oldest].last_used) oldest = i;
        drop(c, oldest);
        c->stats.evicted++;
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        cache_entry_t *e = realloc(c->entries, (size_t)cap * sizeof *e);
        if (!e) return -1;
        c->entries = e;
        c->cap = cap;
    }
    cache_entry_t e = {malloc((size_t)n * sizeof *tokens), n, malloc(fm_session_state_size(s)),
                       bytes, ++c->clock};
    if (!e.tokens || !e.state || fm_session_state_save(s, e.state, fm_session_state_size(s)) != FM_OK) {
        free(e.tokens);
        free(e.state);
        return -1;
    }
    memcpy(e.tokens, tokens, (size_t)n * sizeof *tokens);
    c->entries[c->n++] = e;
    c->bytes += bytes;
    c->stats.stored++;
    return 0;
}

int prompt_cache_find(const prompt_cache *c, const fm_session *s, const int32_t *tokens, int n, int *len) {
    const int cut = fm_session_can_truncate(s);
    int best = -1, best_len = 0;
    for (int i = 0; i < c->n; i++) {
        const cache_entry_t *e = &c->entries[i];
        int l = common_prefix(e->tokens, e->n, tokens, n);
        if (l > n - 1) l = n - 1;
        if (l < e->n && !cut) continue; /* the state holds tokens the prompt does not */
        if (l > best_len) best = i, best_len = l;
    }
    *len = best_len;
    return best;
}

fm_status prompt_cache_restore(prompt_cache *c, int index, fm_session *s, int len) {
    cache_entry_t *e = &c->entries[index];
    fm_status st = fm_session_state_load(s, e->state, e->bytes - (size_t)e->n * sizeof *e->tokens);
    if (st == FM_OK && len < e->n) st = fm_session_truncate(s, len);
    if (st == FM_OK) {
        e->last_used = ++c->clock;
        c->stats.restored++;
    }
    return st;
}

void prompt_cache_get_stats(const prompt_cache *c, prompt_cache_stats *out) {
    *out = c->stats;
    out->entries = c->n;
    out->bytes = c->bytes;
    out->budget = c->budget;
}

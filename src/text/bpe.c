/* Byte-pair encoding of one pre-tokenized piece. Start from one symbol per
 * byte, then repeatedly merge the adjacent pair with the lowest merge rank
 * (leftmost first among equal ranks) until no pair has a merge. A min-heap of
 * candidate pairs keeps long pieces (runs of whitespace, long numbers) at
 * O(n log n). Results of short pieces are cached. */
#include "text/tokenizer.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_PIECE 64

int tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 64;
        int32_t *ids = realloc(v->ids, (size_t)cap * sizeof *ids);
        if (!ids) return -1;
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

static int merge_find(const fm_tokenizer *tok, int32_t left, int32_t right, uint32_t *rank, int32_t *merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right, h = key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    for (size_t i = h & tok->merges.mask; tok->merges.keys[i] != UINT64_MAX; i = (i + 1) & tok->merges.mask)
        if (tok->merges.keys[i] == key) {
            *rank = tok->merges.rank[i];
            *merged = (int32_t)tok->merges.merged[i];
            return 1;
        }
    return 0;
}

typedef struct {
    uint32_t rank;
    int pos;                /* left symbol */
    int32_t left, right;    /* ids when queued: a stale entry no longer matches */
} bpe_pair;

static int pair_less(const bpe_pair *a, const bpe_pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_pair *h, int *n, bpe_pair p) {
    int i = (*n)++;
    while (i > 0 && pair_less(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static bpe_pair heap_pop(bpe_pair *h, int *n) {
    bpe_pair top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_less(&h[c + 1], &h[c])) c++;
        if (!pair_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static fm_status bpe_merge(const fm_tokenizer *tok, const unsigned char *s, int n, tok_ids *out) {
    int32_t *id = malloc((size_t)n * sizeof *id);
    int *next = malloc((size_t)n * sizeof *next), *prev = malloc((size_t)n * sizeof *prev);
    bpe_pair *heap = malloc((size_t)(3 * n + 1) * sizeof *heap); /* n-1 initial pairs + 2 per merge */
    fm_status st = FM_OK;
    if (!id || !next || !prev || !heap) {
        st = fm_error(FM_ERR_NOMEM, "out of memory in BPE");
        goto done;
    }
    int heap_n = 0;
    for (int i = 0; i < n; i++) {
        id[i] = tok->byte_id[s[i]];
        next[i] = i + 1 < n ? i + 1 : -1;
        prev[i] = i - 1;
    }
    for (int i = 0; i + 1 < n; i++) {
        uint32_t rank;
        int32_t merged;
        if (merge_find(tok, id[i], id[i + 1], &rank, &merged)) heap_push(heap, &heap_n, (bpe_pair){rank, i, id[i], id[i + 1]});
    }
    while (heap_n) {
        bpe_pair p = heap_pop(heap, &heap_n);
        int r = next[p.pos];
        /* Skip pairs whose symbols changed since they were queued (or were merged away: id -1). */
        if (id[p.pos] != p.left || r < 0 || id[r] != p.right) continue;
        uint32_t rank;
        int32_t merged = -1, unused;
        merge_find(tok, p.left, p.right, &rank, &merged);
        id[p.pos] = merged;
        id[r] = -1;
        next[p.pos] = next[r];
        if (next[r] >= 0) prev[next[r]] = p.pos;
        /* The merged symbol forms new pairs with its neighbours. */
        int l = prev[p.pos], rr = next[p.pos];
        if (l >= 0 && merge_find(tok, id[l], merged, &rank, &unused))
            heap_push(heap, &heap_n, (bpe_pair){rank, l, id[l], merged});
        if (rr >= 0 && merge_find(tok, merged, id[rr], &rank, &unused))
            heap_push(heap, &heap_n, (bpe_pair){rank, p.pos, merged, id[rr]});
    }
    for (int i = 0; i >= 0; i = next[i])
        if (tok_ids_push(out, id[i])) {
            st = fm_error(FM_ERR_NOMEM, "out of memory in BPE");
            break;
        }
done:
    free(id);
    free(next);
    free(prev);
    free(heap);
    return st;
}

static uint64_t hash_piece(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

fm_status tok_cache_init(tok_cache *cache, size_t slots, pthread_mutex_t *lock) {
    cache->slots = calloc(slots, sizeof *cache->slots);
    cache->mask = cache->slots ? slots - 1 : 0;
    cache->lock = lock;
    return cache->slots ? FM_OK : fm_error(FM_ERR_NOMEM, "out of memory");
}

void tok_cache_free(tok_cache *cache) {
    for (size_t i = 0; cache->slots && i <= cache->mask; i++) {
        free(cache->slots[i].key);
        free(cache->slots[i].ids);
    }
    free(cache->slots);
    cache->slots = NULL;
}

static void cache_lock(tok_cache *c) {
    if (c->lock) pthread_mutex_lock(c->lock);
}

static void cache_unlock(tok_cache *c) {
    if (c->lock) pthread_mutex_unlock(c->lock);
}

fm_status bpe_encode_piece(const fm_tokenizer *tok, tok_cache *cache, const char *piece, size_t len, tok_ids *out) {
    if (len == 0) return FM_OK;
    if (len == 1)
        return tok_ids_push(out, tok->byte_id[(unsigned char)piece[0]]) ? fm_error(FM_ERR_NOMEM, "out of memory") : FM_OK;
    if (tok->ignore_merges) {
        int32_t whole = tokenizer_vocab_find(tok, piece, len);
        if (whole >= 0) return tok_ids_push(out, whole) ? fm_error(FM_ERR_NOMEM, "out of memory") : FM_OK;
    }
    tok_cache_slot *slot = NULL;
    if (len <= CACHE_MAX_PIECE && cache && cache->slots) {
        slot = &cache->slots[hash_piece(piece, len) & cache->mask];
        cache_lock(cache);
        if (slot->key && slot->key_len == len && memcmp(slot->key, piece, len) == 0) {
            fm_status st = FM_OK;
            for (int i = 0; i < slot->n_ids && st == FM_OK; i++)
                if (tok_ids_push(out, slot->ids[i])) st = fm_error(FM_ERR_NOMEM, "out of memory");
            cache_unlock(cache);
            return st;
        }
        cache_unlock(cache);
    }
    int start = out->n;
    fm_status st = bpe_merge(tok, (const unsigned char *)piece, (int)len, out);
    if (st != FM_OK || !slot) return st;
    /* A new piece replaces whatever shared its slot. */
    int n = out->n - start;
    char *key = malloc(len);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!key || !ids) {
        free(key);
        free(ids);
        return FM_OK;
    }
    memcpy(key, piece, len);
    memcpy(ids, out->ids + start, (size_t)n * sizeof *ids);
    cache_lock(cache);
    free(slot->key);
    free(slot->ids);
    *slot = (tok_cache_slot){key, (uint32_t)len, ids, n};
    cache_unlock(cache);
    return FM_OK;
}

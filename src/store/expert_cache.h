/* Internal to src/store: the RAM cache of whole experts (expert_cache.c has
 * the eviction policy). Keys are layer·n_experts + expert. An entry is either
 * indexed (its data is a verified copy of that expert) or loading (owned by a
 * read in flight, not findable). Pinned entries are never evicted. The cache
 * is used by one thread (the store's caller); a helper thread of its own
 * only prepares fresh memory (expert_cache.c). */
#ifndef FM_STORE_EXPERT_CACHE_H
#define FM_STORE_EXPERT_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache_entry cache_entry;
struct cache_entry {
    void *data; /* 4096-aligned, entry_bytes long */
    int key;    /* -1 while loading */
    int pins;
    int segment; /* 0 loading, 1 probation, 2 protected */
    cache_entry *prev, *next;
};

typedef struct expert_cache expert_cache;

/* budget: bytes the entries may take, each charged `charge` bytes (the
 * stride) while its allocation is entry_bytes (≤ charge). */
expert_cache *cache_create(int n_keys, size_t entry_bytes, size_t charge, uint64_t budget);
/* The same policy over n_slots slots of slot_bytes each at `slab`, memory the
 * caller owns (e.g. VRAM: the cache never reads or writes entry data). */
expert_cache *cache_create_slab(int n_keys, void *slab, size_t slot_bytes, int n_slots);
void cache_destroy(expert_cache *c); /* accepts NULL */
/* Memory is mapped in chunks of about this many bytes (default 256 MB);
 * before the first acquire only. Tests make it small to cross chunks. */
void cache_set_chunk_bytes(expert_cache *c, size_t bytes);
/* Eager: new entries take fresh memory whenever the budget allows (preload);
 * otherwise growth is paced (expert_cache.c). */
void cache_set_eager(expert_cache *c, int eager);

/* The indexed entry for key, or NULL; no policy change. */
cache_entry *cache_find(expert_cache *c, int key);
/* Records a use of an indexed entry (a hit). */
void cache_touch(expert_cache *c, cache_entry *e);
/* An entry to read a missing expert into: new memory while the budget allows
 * and memory is ready (paced growth), else the memory of the entry the policy
 * evicts. Returned loading and pinned
 * once; NULL when the budget is full of pinned entries (or smaller than one
 * entry) or memory runs out. */
cache_entry *cache_acquire(expert_cache *c);
/* A loading entry whose read succeeded becomes findable under key. */
void cache_insert(expert_cache *c, cache_entry *e, int key);
/* A loading entry whose read failed is freed. */
void cache_discard(expert_cache *c, cache_entry *e);
uint64_t cache_used(const expert_cache *c);
int cache_capacity(const expert_cache *c); /* entries the budget holds */

#endif

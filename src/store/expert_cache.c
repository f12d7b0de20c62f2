/* The RAM cache of whole experts (see expert_cache.h).
 *
 * Eviction policy: segmented LRU (SLRU), which weighs frequency as well as
 * recency. Indexed entries live in one of two LRU lists:
 *   probation  experts used once since they were read;
 *   protected  experts used at least twice (a hit on a probation entry moves
 *              it here), capped at 4/5 of the entries the budget holds; when a
 *              promotion overflows it, its least recently used entry goes back
 *              to the most recent end of probation (a second chance).
 * A new expert enters at the most recent end of probation. The victim for a
 * new read is the least recently used unpinned entry of probation, or, only
 * when probation has none, of protected. So a stream of experts used once
 * (a scan) cycles through probation and cannot push out the experts the router
 * keeps choosing, while a protected expert that stops being used still ages
 * out through recency. Every operation is O(1) except skipping pinned entries
 * (at most one batch) while looking for a victim.
 *
 * Memory: entries are carved from chunks of about 256 MB mapped 2 MB-aligned
 * and marked MADV_HUGEPAGE, so that where transparent huge pages are enabled
 * (even only "madvise") the cache sits in 2 MB pages: a token's experts are
 * spread over gigabytes, and with 4 KB pages the TLB misses and page walks of
 * reading them cost as much as the reading (measured 2.8x inside a VM). An
 * entry's memory is kept for the cache's life and reused (spare list). */
#include "store/expert_cache.h"

#include <stdlib.h>
#include <sys/mman.h>

#define CHUNK_TARGET ((size_t)256 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

typedef struct {
    cache_entry *head, *tail; /* head = most recently used */
    int count;
} lru_list;

struct expert_cache {
    cache_entry **index; /* [n_keys] */
    int n_keys;
    size_t entry_bytes, charge;
    uint64_t budget, used;
    int capacity, protected_cap;
    lru_list lists[3]; /* [1] probation, [2] protected; [0] unused */
    /* Slab mode (cache_create_slab): entries are slots of memory the caller owns. */
    char *slab;
    int slab_next;       /* slots handed out so far */
    cache_entry *spare;  /* discarded entries, reused before new memory */
    /* Otherwise entries come from chunks (see the top). */
    char *chunk;         /* the chunk being carved */
    size_t chunk_left;   /* bytes left in it */
    int allocated;       /* entries given memory so far */
    void **chunks;
    size_t *chunk_bytes;
    int n_chunks, cap_chunks;
};

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Memory for one more entry from the current chunk, or a new one sized for
 * the entries the budget still allows (at most CHUNK_TARGET). NULL when out of memory. */
static void *chunk_take(expert_cache *c) {
    const size_t need = round_up(c->entry_bytes, 4096);
    if (c->chunk_left < need) {
        if (c->n_chunks == c->cap_chunks) {
            const int cap = c->cap_chunks ? 2 * c->cap_chunks : 16;
            void **p = realloc(c->chunks, (size_t)cap * sizeof *p);
            if (!p) return NULL;
            c->chunks = p;
            size_t *b = realloc(c->chunk_bytes, (size_t)cap * sizeof *b);
            if (!b) return NULL;
            c->chunk_bytes = b;
            c->cap_chunks = cap;
        }
        size_t per = CHUNK_TARGET / need, left = (size_t)(c->capacity - c->allocated);
        if (per > left) per = left;
        if (per < 1) per = 1;
        const size_t bytes = round_up(per * need, HUGE_PAGE);
        /* Over-map by a huge page and trim, so the chunk starts 2 MB-aligned. */
        char *raw = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) return NULL;
        char *p = (char *)round_up((size_t)raw, HUGE_PAGE);
        if (p > raw) munmap(raw, (size_t)(p - raw));
        if (p + bytes < raw + bytes + HUGE_PAGE) munmap(p + bytes, (size_t)(raw + bytes + HUGE_PAGE - (p + bytes)));
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without THP the chunk stays in 4 KB pages */
#endif
        c->chunks[c->n_chunks] = p;
        c->chunk_bytes[c->n_chunks++] = bytes;
        c->chunk = p;
        c->chunk_left = bytes;
    }
    void *data = c->chunk;
    c->chunk += need;
    c->chunk_left -= need;
    c->allocated++;
    return data;
}

static void list_remove(lru_list *l, cache_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else l->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else l->tail = e->prev;
    e->prev = e->next = NULL;
    l->count--;
}

static void list_push_front(lru_list *l, cache_entry *e) {
    e->prev = NULL;
    e->next = l->head;
    if (l->head) l->head->prev = e;
    else l->tail = e;
    l->head = e;
    l->count++;
}

static void move_to(expert_cache *c, cache_entry *e, int segment) {
    if (e->segment) list_remove(&c->lists[e->segment], e);
    e->segment = segment;
    list_push_front(&c->lists[segment], e);
}

expert_cache *cache_create(int n_keys, size_t entry_bytes, size_t charge, uint64_t budget) {
    expert_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->index = calloc((size_t)n_keys, sizeof *c->index);
    if (!c->index) {
        free(c);
        return NULL;
    }
    c->n_keys = n_keys;
    c->entry_bytes = entry_bytes;
    c->charge = charge;
    c->budget = budget;
    uint64_t cap = budget / charge;
    c->capacity = cap > (uint64_t)n_keys ? n_keys : (int)cap;
    c->protected_cap = (int)((int64_t)c->capacity * 4 / 5);
    return c;
}

expert_cache *cache_create_slab(int n_keys, void *slab, size_t slot_bytes, int n_slots) {
    expert_cache *c = cache_create(n_keys, slot_bytes, slot_bytes, (uint64_t)slot_bytes * (uint64_t)n_slots);
    if (c) c->slab = slab;
    return c;
}

void cache_destroy(expert_cache *c) {
    if (!c) return;
    for (int s = 1; s <= 2; s++)
        for (cache_entry *e = c->lists[s].head, *next; e; e = next) {
            next = e->next;
            free(e);
        }
    for (cache_entry *e = c->spare, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    for (int i = 0; i < c->n_chunks; i++) munmap(c->chunks[i], c->chunk_bytes[i]);
    free(c->chunks);
    free(c->chunk_bytes);
    free(c->index);
    free(c);
}

cache_entry *cache_find(expert_cache *c, int key) { return c->index[key]; }

void cache_touch(expert_cache *c, cache_entry *e) {
    move_to(c, e, 2);
    if (c->lists[2].count > c->protected_cap) move_to(c, c->lists[2].tail, 1);
}

static cache_entry *victim(expert_cache *c) {
    for (int s = 1; s <= 2; s++)
        for (cache_entry *e = c->lists[s].tail; e; e = e->prev)
            if (e->pins == 0) return e;
    return NULL;
}

cache_entry *cache_acquire(expert_cache *c) {
    cache_entry *e;
    if (c->spare) {
        e = c->spare;
        c->spare = e->next;
        e->next = NULL;
        c->used += c->charge;
    } else if (c->used + c->charge <= c->budget) {
        e = calloc(1, sizeof *e);
        if (!e) return NULL;
        if (c->slab) {
            e->data = c->slab + (size_t)c->slab_next++ * c->entry_bytes;
        } else if (!(e->data = chunk_take(c))) {
            free(e);
            return NULL;
        }
        c->used += c->charge;
    } else {
        e = victim(c);
        if (!e) return NULL;
        list_remove(&c->lists[e->segment], e);
        c->index[e->key] = NULL;
    }
    e->key = -1;
    e->segment = 0;
    e->pins = 1;
    return e;
}

void cache_insert(expert_cache *c, cache_entry *e, int key) {
    e->key = key;
    c->index[key] = e;
    move_to(c, e, 1);
}

void cache_discard(expert_cache *c, cache_entry *e) {
    c->used -= c->charge; /* the memory goes back for the next acquire */
    e->key = -1;
    e->pins = 0;
    e->next = c->spare;
    c->spare = e;
}

uint64_t cache_used(const expert_cache *c) { return c->used; }
int cache_capacity(const expert_cache *c) { return c->capacity; }

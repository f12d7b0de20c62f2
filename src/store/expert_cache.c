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
 * entry's memory is kept for the cache's life and reused (spare list).
 *
 * Growth is paced. Fresh memory is expensive the first time: the kernel
 * zeroes every page, and inside a VM whose host takes back free guest memory
 * the first touch also faults on the host (0.5-2.4 GB/s measured on the dev
 * VM against 15-30 GB/s for memory touched before). An O_DIRECT read into an
 * untouched entry pays that inside the read, on the CPUs the compute needs:
 * a cold 16-token decode ran at 2.1 tok/s with the cache growing freely and
 * 3.9 with a 1 GB cache. So once the first chunk exists, a new entry takes
 * fresh memory only from a chunk a helper thread has already touched, and the
 * helper, after touching a chunk in t seconds, rests GROWTH_REST·t before the
 * next: growth costs at most 1/(1+GROWTH_REST) of one CPU. Until a prepared
 * chunk is there, a miss reuses the policy's victim (as a full cache does).
 * Where first touches are cheap (bare metal, ~10 GB/s) the cache still grows
 * by about a gigabyte a second. Preloading grows eagerly (cache_set_eager), as
 * does everything with FM_CACHE_GROWTH=eager. */
#include "store/expert_cache.h"

#include "core/huge_map.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define CHUNK_TARGET ((size_t)256 << 20)
#define GROWTH_REST 7 /* the helper rests 7x the time it touched memory */

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
    size_t chunk_target; /* bytes per chunk (CHUNK_TARGET; tests make it small) */
    /* Chunk k holds entries [k·per_chunk, min((k+1)·per_chunk, capacity)).
     * Under `lock` (shared with the helper): chunks[0..n_chunks) are claimed
     * (NULL while being mapped), the next to claim is n_chunks; `ready` is a
     * touched chunk not yet carved, or -1. */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the helper: its chunk was taken, or stop */
    pthread_t helper;
    int helper_started, stop, eager;
    int per_chunk, total_chunks;
    int ready;
    void **chunks;
    size_t *chunk_bytes;
    int n_chunks;
};

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static size_t chunk_size(const expert_cache *c, int k) {
    const size_t need = round_up(c->entry_bytes, 4096);
    const int first = k * c->per_chunk, left = c->capacity - first;
    return fm_huge_round((size_t)(left < c->per_chunk ? left : c->per_chunk) * need);
}

/* Under lock: claims the next chunk's index, or -1 when all are mapped. */
static int claim_chunk(expert_cache *c, size_t *bytes) {
    if (c->n_chunks == c->total_chunks) return -1;
    *bytes = chunk_size(c, c->n_chunks);
    c->chunks[c->n_chunks] = NULL; /* mapped by the claimer, recorded below */
    return c->n_chunks++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Under lock: sleeps until `until` (CLOCK_MONOTONIC seconds) or a wake-up. */
static void wait_until(expert_cache *c, double until) {
    struct timespec ts = {.tv_sec = (time_t)until, .tv_nsec = (long)((until - (double)(time_t)until) * 1e9)};
    pthread_cond_timedwait(&c->wake, &c->lock, &ts);
}

/* The helper: touches the next chunk while none is ready, then rests. */
static void *growth_main(void *arg) {
    expert_cache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->stop && (c->ready >= 0 || c->n_chunks == c->total_chunks)) pthread_cond_wait(&c->wake, &c->lock);
        if (c->stop) break;
        size_t bytes;
        const int k = claim_chunk(c, &bytes);
        pthread_mutex_unlock(&c->lock);
        const double t0 = now_s();
        char *p = fm_huge_map(bytes);
        if (p) {
#ifdef MADV_POPULATE_WRITE
            if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0)
#endif
                for (size_t i = 0; i < bytes; i += 4096) p[i] = 0;
        }
        const double touched = now_s() - t0;
        pthread_mutex_lock(&c->lock);
        c->chunks[k] = p;
        c->chunk_bytes[k] = bytes;
        if (!p) break; /* out of memory: the cache stops growing here */
        c->ready = k;
        for (const double until = now_s() + GROWTH_REST * touched; !c->stop && now_s() < until;) wait_until(c, until);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int growth_eager_env(void) {
    const char *v = getenv("FM_CACHE_GROWTH");
    return v && strcmp(v, "eager") == 0;
}

/* Under lock, on the first chunk: plans the chunks and starts the helper. */
static int plan_chunks(expert_cache *c, size_t need) {
    size_t per = c->chunk_target / need;
    c->per_chunk = per < 1 ? 1 : per > (size_t)c->capacity ? c->capacity : (int)per;
    c->total_chunks = (c->capacity + c->per_chunk - 1) / c->per_chunk;
    c->chunks = calloc((size_t)c->total_chunks, sizeof *c->chunks);
    c->chunk_bytes = calloc((size_t)c->total_chunks, sizeof *c->chunk_bytes);
    if (!c->chunks || !c->chunk_bytes) {
        free(c->chunks), free(c->chunk_bytes);
        c->chunks = NULL, c->chunk_bytes = NULL;
        return -1;
    }
    if (c->total_chunks > 1 && !growth_eager_env()) { /* eager: chunk_take maps what it needs */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_destroy(&c->wake);
        pthread_cond_init(&c->wake, &ca);
        pthread_condattr_destroy(&ca);
        c->helper_started = pthread_create(&c->helper, NULL, growth_main, c) == 0;
    }
    return 0;
}

/* Whether a new entry can have memory without touching fresh pages here:
 * the chunk being carved has room, or the helper has one ready. */
static int room_now(expert_cache *c) {
    if (c->chunk_left >= round_up(c->entry_bytes, 4096)) return 1;
    pthread_mutex_lock(&c->lock);
    const int r = c->ready >= 0;
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* Memory for one more entry: from the chunk being carved, else the helper's
 * ready chunk, else the next chunk mapped here (chunks may then be carved out
 * of order, which is harmless: each holds its planned entries). NULL when out
 * of memory. */
static void *chunk_take(expert_cache *c) {
    const size_t need = round_up(c->entry_bytes, 4096);
    if (c->chunk_left < need) {
        pthread_mutex_lock(&c->lock);
        if (!c->chunks && plan_chunks(c, need) != 0) {
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        int k = c->ready;
        if (k >= 0) {
            c->ready = -1;
            pthread_cond_signal(&c->wake);
        } else {
            size_t bytes;
            k = claim_chunk(c, &bytes);
            pthread_mutex_unlock(&c->lock);
            if (k < 0) return NULL;
            char *p = fm_huge_map(bytes);
            pthread_mutex_lock(&c->lock);
            c->chunks[k] = p;
            c->chunk_bytes[k] = bytes;
        }
        c->chunk = c->chunks[k];
        c->chunk_left = c->chunk ? c->chunk_bytes[k] : 0;
        pthread_mutex_unlock(&c->lock);
        if (!c->chunk) return NULL;
    }
    void *data = c->chunk;
    c->chunk += need;
    c->chunk_left -= need;
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
    c->chunk_target = CHUNK_TARGET;
    c->ready = -1;
    c->eager = growth_eager_env();
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    return c;
}

void cache_set_chunk_bytes(expert_cache *c, size_t bytes) { c->chunk_target = bytes; }
void cache_set_eager(expert_cache *c, int eager) { c->eager = eager || growth_eager_env(); }

expert_cache *cache_create_slab(int n_keys, void *slab, size_t slot_bytes, int n_slots) {
    expert_cache *c = cache_create(n_keys, slot_bytes, slot_bytes, (uint64_t)slot_bytes * (uint64_t)n_slots);
    if (c) c->slab = slab;
    return c;
}

void cache_destroy(expert_cache *c) {
    if (!c) return;
    if (c->helper_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = 1;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->helper, NULL);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    for (int s = 1; s <= 2; s++)
        for (cache_entry *e = c->lists[s].head, *next; e; e = next) {
            next = e->next;
            free(e);
        }
    for (cache_entry *e = c->spare, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    for (int i = 0; i < c->n_chunks; i++)
        if (c->chunks[i]) munmap(c->chunks[i], c->chunk_bytes[i]);
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
    cache_entry *e = NULL;
    if (c->spare) {
        e = c->spare;
        c->spare = e->next;
        e->next = NULL;
        c->used += c->charge;
    } else if (c->used + c->charge <= c->budget &&
               (c->slab || c->eager || !c->chunks || room_now(c) || !(e = victim(c)))) {
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
        if (!e && !(e = victim(c))) return NULL;
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

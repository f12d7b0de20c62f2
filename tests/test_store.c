/* The expert store (src/store/) on layer files written here:
 *   - every engine (pread pool, io_uring) × cache (OS buffered, OS O_DIRECT,
 *     RAM with a big budget, RAM with a budget of a few experts, RAM with no
 *     room at all) returns, for random batches (larger than the buffers,
 *     repeated ids across batches, whole layers, batches left unfinished),
 *     each expert's exact bytes, each slot once, 64-byte aligned
 *   - hit counts: a repeated batch with a big budget is all hits; the budget
 *     holds (cache_used ≤ cache_bytes); OS mode never hits
 *   - the eviction policy keeps an expert used often over experts used once
 *   - paced growth: entries spanning many chunks never share memory, the cache
 *     reaches its budget as the helper prepares chunks, grows at once when
 *     every entry is pinned, and eagerly when asked
 *   - preload: everything read once, then all hits; a too-small budget refused
 *   - held batches: all experts of a batch stay valid together; all-hit batches
 *     are recognised; more than the buffers is refused
 *   - errors: truncated layer file, bad layouts, bad batches, checksum
 *     mismatch with verify, injected EIO and short reads under both engines,
 *     each naming the file, and the store working again afterwards
 * Layer files: 3 layers (the middle one without experts), 13 experts of
 * 12388 bytes (not a multiple of 4096) at a stride of 16384; layer 0's file
 * is padded to 13 strides, layer 2's ends right after its last expert. */
#include "test_util.h"

#include "core/error.h"
#include "core/fileio.h"
#include "store/expert_cache.h"
#include "store/expert_store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define N_LAYERS 3
#define N_EXPERTS 13
#define EXPERT_BYTES 12388
#define STRIDE 16384

#define assert_msg_has(s)                                                                                  \
    do {                                                                                                   \
        if (!strstr(fm_last_error(), (s))) fail_msg("message \"%s\" does not mention \"%s\"", fm_last_error(), (s)); \
    } while (0)

static void clear_error(void) { fm_error(FM_OK, "%s", ""); }

/* ---- fixture ---------------------------------------------------------------- */

static char dir[64];
static char path_buf[N_LAYERS][128];
static const char *paths[N_LAYERS];
static unsigned char *image[N_LAYERS]; /* what each file holds */
static size_t image_len[N_LAYERS];
static uint64_t checksums[N_LAYERS * N_EXPERTS];

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup_group(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fm-store-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    for (int l = 0; l < N_LAYERS; l++) {
        if (l == 1) continue; /* a layer without routed experts */
        snprintf(path_buf[l], sizeof path_buf[l], "%s/layer%d.experts", dir, l);
        paths[l] = path_buf[l];
        image_len[l] = l == 0 ? (size_t)N_EXPERTS * STRIDE : (size_t)(N_EXPERTS - 1) * STRIDE + EXPERT_BYTES;
        image[l] = malloc(image_len[l]);
        if (!image[l]) return -1;
        for (size_t i = 0; i < image_len[l]; i++) image[l][i] = (unsigned char)(next_rand() >> 56);
        for (int e = 0; e < N_EXPERTS; e++)
            checksums[l * N_EXPERTS + e] = XXH3_64bits(image[l] + (size_t)e * STRIDE, EXPERT_BYTES);
        if (write_file(paths[l], image[l], image_len[l]) != 0) return -1;
    }
    return 0;
}

static int teardown_group(void **state) {
    (void)state;
    for (int l = 0; l < N_LAYERS; l++) free(image[l]);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static store_layout layout_of(const char *const *p) {
    return (store_layout){.n_layers = N_LAYERS, .paths = p, .n_experts = N_EXPERTS, .expert_bytes = EXPERT_BYTES,
                          .stride = STRIDE, .checksums = checksums};
}

static fm_store *open_store(const store_options *o) {
    store_layout L = layout_of(paths);
    fm_store *s = NULL;
    fm_status st = store_open(&L, o, &s);
    if (st != FM_OK) fail_msg("store_open: %s", fm_last_error());
    assert_non_null(s);
    return s;
}

/* Fetches ids of layer, checks each returned expert against the file image
 * and that every slot comes exactly once; stops after `stop_after` experts
 * (-1: all). Returns the first failing status (the batch is then over). */
static fm_status fetch(fm_store *s, int layer, const int *ids, int n, int stop_after) {
    fm_status st = store_begin(s, layer, ids, n);
    if (st != FM_OK) return st;
    int got[N_EXPERTS] = {0}, count = 0;
    for (;;) {
        if (count == stop_after) return FM_OK;
        int slot = 12345;
        const void *data = (const void *)1;
        st = store_next(s, &slot, &data);
        if (st != FM_OK) return st;
        if (slot < 0) break;
        assert_true(slot < n);
        if (got[slot]++) fail_msg("slot %d returned twice", slot);
        assert_int_equal((uintptr_t)data % 64, 0);
        if (memcmp(data, image[layer] + (size_t)ids[slot] * STRIDE, EXPERT_BYTES) != 0)
            fail_msg("layer %d expert %d: wrong bytes", layer, ids[slot]);
        count++;
    }
    assert_int_equal(count, n);
    /* Once the batch is over store_next keeps saying so. */
    int slot = 0;
    const void *data;
    assert_int_equal(store_next(s, &slot, &data), FM_OK);
    assert_int_equal(slot, -1);
    return FM_OK;
}

static void fetch_ok(fm_store *s, int layer, const int *ids, int n) {
    if (fetch(s, layer, ids, n, -1) != FM_OK) fail_msg("fetch: %s", fm_last_error());
}

/* n distinct random ids. */
static void random_ids(int *ids, int n) {
    int all[N_EXPERTS];
    for (int i = 0; i < N_EXPERTS; i++) all[i] = i;
    for (int i = 0; i < n; i++) {
        int j = i + (int)(next_rand() % (uint64_t)(N_EXPERTS - i));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
        ids[i] = all[i];
    }
}

static const int all_ids[N_EXPERTS] = {12, 0, 5, 3, 7, 1, 9, 11, 2, 4, 6, 8, 10};

/* ---- fetching under every mode ------------------------------------------------ */

typedef struct {
    const char *name;
    fm_cache_policy cache;
    int direct;
    uint64_t budget;
} mode;

static const mode modes[] = {
    {"OS buffered", FM_CACHE_OS, 0, 0},
    {"OS direct", FM_CACHE_OS, 1, 0},
    {"RAM big", FM_CACHE_RAM, 0, (uint64_t)2 * N_LAYERS * N_EXPERTS * STRIDE},
    {"RAM 3 experts", FM_CACHE_RAM, 0, 3 * STRIDE + 100},
    {"RAM none", FM_CACHE_RAM, 0, STRIDE - 1},
};

static void check_mode(fm_io_engine engine, const mode *m) {
    store_options o = {.engine = engine, .direct = m->direct, .cache = m->cache, .cache_bytes = m->budget,
                       .buffers = 4, .io_threads = 3, .verify = 1};
    fm_store *s = open_store(&o);
    uint64_t fetched = 0;
    for (int round = 0; round < 60; round++) {
        int layer = round % 2 ? 2 : 0;
        int ids[N_EXPERTS];
        int n = round % 7 == 0 ? N_EXPERTS : 1 + (int)(next_rand() % N_EXPERTS);
        if (n == N_EXPERTS) memcpy(ids, all_ids, sizeof ids);
        else random_ids(ids, n);
        if (round % 11 == 5) { /* a batch left unfinished, then the next one */
            assert_int_equal(fetch(s, layer, ids, n, n / 2), FM_OK);
        } else {
            fetch_ok(s, layer, ids, n);
        }
        fetched += (uint64_t)n;
        store_stats st = store_get_stats(s);
        if (m->cache == FM_CACHE_RAM) {
            if (st.cache_used > m->budget) fail_msg("%s: cache_used %llu over the budget %llu", m->name,
                                                    (unsigned long long)st.cache_used, (unsigned long long)m->budget);
        } else {
            assert_int_equal(st.hits, 0);
            assert_int_equal(st.cache_used, 0);
        }
    }
    store_stats st = store_get_stats(s);
    assert_int_equal(st.fetches, fetched);
    assert_true(st.reads + st.hits <= st.fetches);
    assert_true(st.reads > 0);
    assert_true(st.bytes_read >= st.reads * EXPERT_BYTES);
    assert_true(st.bytes_read <= st.reads * STRIDE);
    assert_true(st.read_s > 0);
    assert_true(st.io_wait_s >= 0);
    if (m->budget < STRIDE) assert_int_equal(st.cache_used, 0);
    if (m->cache == FM_CACHE_RAM && m->budget >= STRIDE) assert_true(st.hits > 0);

    /* A repeated batch: all hits with a big budget, all reads with none. */
    int ids[6] = {4, 9, 0, 12, 7, 3};
    fetch_ok(s, 2, ids, 6);
    store_reset_stats(s);
    fetch_ok(s, 2, ids, 6);
    st = store_get_stats(s);
    assert_int_equal(st.fetches, 6);
    if (m->cache == FM_CACHE_RAM && m->budget >= (uint64_t)N_LAYERS * N_EXPERTS * STRIDE) {
        assert_int_equal(st.hits, 6);
        assert_int_equal(st.reads, 0);
    } else if (m->cache == FM_CACHE_OS || m->budget < STRIDE) {
        assert_int_equal(st.hits, 0);
        assert_int_equal(st.reads, 6);
    } else {
        assert_int_equal(st.hits + st.reads, 6);
    }
    store_close(s);
}

static void test_fetch_pread(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) check_mode(FM_IO_PREAD, &modes[i]);
}

static void test_fetch_uring(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) check_mode(FM_IO_URING, &modes[i]);
}

/* Default buffers and threads, a batch of one, an empty batch. */
static void test_defaults(void **state) {
    (void)state;
    for (int engine = 0; engine < 2; engine++) {
        store_options o = {.engine = (fm_io_engine)engine};
        fm_store *s = open_store(&o);
        fetch_ok(s, 0, all_ids, N_EXPERTS);
        fetch_ok(s, 2, all_ids + 3, 1);
        fetch_ok(s, 2, NULL, 0);
        store_close(s);
    }
    store_close(NULL);
}

/* ---- the eviction policy -------------------------------------------------------- */

static void check_hit(fm_store *s, int layer, int id, int want_hit) {
    store_stats before = store_get_stats(s);
    fetch_ok(s, layer, &id, 1);
    store_stats after = store_get_stats(s);
    if ((int)(after.hits - before.hits) != want_hit)
        fail_msg("layer %d expert %d: expected a %s", layer, id, want_hit ? "hit" : "miss");
}

/* Budget of 4 experts. Expert 0 is used three times, then six experts once
 * each: a recency-only (LRU) cache would have evicted 0 by then; ours keeps it
 * and evicts the oldest of the once-used ones. */
static void test_policy_keeps_frequent(void **state) {
    (void)state;
    for (int engine = 0; engine < 2; engine++) {
        store_options o = {.engine = (fm_io_engine)engine, .cache = FM_CACHE_RAM, .cache_bytes = 4 * STRIDE,
                           .buffers = 2};
        fm_store *s = open_store(&o);
        check_hit(s, 0, 0, 0);
        check_hit(s, 0, 0, 1);
        check_hit(s, 0, 0, 1);
        for (int e = 1; e <= 6; e++) check_hit(s, 0, e, 0);
        check_hit(s, 0, 0, 1); /* the frequent one stayed */
        check_hit(s, 0, 6, 1); /* the most recent once-used one too */
        check_hit(s, 0, 1, 0); /* the oldest once-used one went */
        assert_true(store_get_stats(s).cache_used <= 4 * STRIDE);
        store_close(s);
    }
}

/* Each live entry holds its key's pattern: no two share memory. */
static void stamp(cache_entry *e, int key) { memset(e->data, key & 0xff, 4096); }
static void check_stamps(expert_cache *c, int n_keys) {
    for (int k = 0; k < n_keys; k++) {
        cache_entry *e = cache_find(c, k);
        if (!e) continue;
        const unsigned char *d = e->data;
        for (int i = 0; i < 4096; i += 511)
            if (d[i] != (k & 0xff)) fail_msg("entry of key %d overwritten (byte %d is %d)", k, i, d[i]);
    }
}

/* 64 entries of 4 KB in chunks of 8: memory across 8 chunks, most of them
 * prepared by the helper while the test keeps missing. */
static void test_paced_growth(void **state) {
    (void)state;
    enum { KEYS = 1000, BUDGET = 64, PINNED = 12 };
    expert_cache *c = cache_create(KEYS, 4096, 4096, BUDGET * 4096);
    assert_non_null(c);
    cache_set_chunk_bytes(c, 8 * 4096);
    cache_entry *e[PINNED];
    for (int i = 0; i < PINNED; i++) { /* all pinned: no victim, so it grows now */
        assert_non_null(e[i] = cache_acquire(c));
        stamp(e[i], i);
    }
    for (int i = 0; i < PINNED; i++) {
        cache_insert(c, e[i], i);
        e[i]->pins--;
    }
    assert_int_equal(cache_used(c), (uint64_t)PINNED * 4096);
    check_stamps(c, KEYS);
    int key = PINNED;
    for (int tries = 0; cache_used(c) < BUDGET * 4096 && tries < 20000; tries++, key = PINNED + (key + 1 - PINNED) % (KEYS - PINNED)) {
        if (cache_find(c, key)) continue;
        cache_entry *n = cache_acquire(c);
        assert_non_null(n);
        stamp(n, key);
        cache_insert(c, n, key);
        n->pins--;
        usleep(500);
    }
    assert_int_equal(cache_used(c), (uint64_t)BUDGET * 4096); /* reached the budget */
    check_stamps(c, KEYS);
    cache_destroy(c);

    /* Eager: the budget fills without evicting anything. */
    c = cache_create(KEYS, 4096, 4096, BUDGET * 4096);
    cache_set_chunk_bytes(c, 8 * 4096);
    cache_set_eager(c, 1);
    for (int k = 0; k < BUDGET; k++) {
        cache_entry *n = cache_acquire(c);
        assert_non_null(n);
        stamp(n, k);
        cache_insert(c, n, k);
        n->pins--;
    }
    for (int k = 0; k < BUDGET; k++) assert_non_null(cache_find(c, k));
    check_stamps(c, KEYS);
    cache_destroy(c);
}

/* ---- preload ------------------------------------------------------------------- */

/* Slab mode (the VRAM tier's bookkeeping): entries are the caller's slots, each
 * handed out once until the budget is full, then recycled by the policy; a
 * discarded slot is reused; pinned slots are never taken. */
static void test_slab_slots(void **state) {
    (void)state;
    enum { SLOTS = 4, SLOT = 256 };
    static char slab[SLOTS * SLOT];
    expert_cache *c = cache_create_slab(100, slab, SLOT, SLOTS);
    assert_non_null(c);
    assert_int_equal(cache_capacity(c), SLOTS);
    int seen[SLOTS] = {0};
    cache_entry *e[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        assert_non_null(e[i] = cache_acquire(c));
        ptrdiff_t at = (char *)e[i]->data - slab;
        assert_true(at >= 0 && at % SLOT == 0 && at / SLOT < SLOTS);
        assert_int_equal(seen[at / SLOT]++, 0);
    }
    assert_null(cache_acquire(c)); /* all pinned */
    void *discarded = e[3]->data;
    cache_discard(c, e[3]);
    cache_entry *again = cache_acquire(c);
    assert_ptr_equal(again->data, discarded);
    e[3] = again;
    for (int i = 0; i < SLOTS; i++) {
        cache_insert(c, e[i], i);
        e[i]->pins--;
    }
    cache_touch(c, e[0]); /* key 0 used twice: protected */
    cache_entry *v = cache_acquire(c);
    assert_non_null(v);
    assert_ptr_not_equal(v->data, e[0]->data);
    assert_ptr_equal(cache_find(c, 0), e[0]);
    assert_int_equal(cache_used(c), (uint64_t)SLOTS * SLOT);
    cache_insert(c, v, 50);
    v->pins--;
    cache_destroy(c);
}

static void test_preload(void **state) {
    (void)state;
    for (int engine = 0; engine < 2; engine++) {
        store_options o = {.engine = (fm_io_engine)engine, .cache = FM_CACHE_RAM,
                           .cache_bytes = (uint64_t)2 * N_EXPERTS * STRIDE, .verify = 1};
        fm_store *s = open_store(&o);
        assert_int_equal(store_preload(s), FM_OK);
        store_stats st = store_get_stats(s);
        assert_int_equal(st.reads, 2 * N_EXPERTS);
        assert_int_equal(st.fetches, 0);
        assert_int_equal(st.cache_used, 2 * N_EXPERTS * STRIDE);
        store_reset_stats(s);
        fetch_ok(s, 0, all_ids, N_EXPERTS);
        fetch_ok(s, 2, all_ids, N_EXPERTS);
        st = store_get_stats(s);
        assert_int_equal(st.hits, 2 * N_EXPERTS);
        assert_int_equal(st.reads, 0);
        store_close(s);

        /* one expert short of everything */
        o.cache_bytes = (uint64_t)(2 * N_EXPERTS - 1) * STRIDE;
        s = open_store(&o);
        clear_error();
        assert_int_equal(store_preload(s), FM_ERR_ARGUMENT);
        assert_msg_has("preload");
        assert_msg_has("budget");
        fetch_ok(s, 0, all_ids, 5); /* still a working store */
        store_close(s);

        o.cache = FM_CACHE_OS;
        s = open_store(&o);
        assert_int_equal(store_preload(s), FM_ERR_ARGUMENT);
        store_close(s);
    }
}

/* Held batches: every expert handed out stays valid (right bytes) until the
 * next batch, while later reads complete into other memory; all-hit batches
 * are told apart; a batch larger than the buffers is refused. */
static void test_held_batches(void **state) {
    (void)state;
    const store_options opts[] = {
        {.cache = FM_CACHE_OS, .buffers = 6},
        {.cache = FM_CACHE_RAM, .cache_bytes = (uint64_t)2 * N_EXPERTS * STRIDE, .buffers = 6},
        {.cache = FM_CACHE_RAM, .cache_bytes = (uint64_t)3 * STRIDE, .buffers = 6}, /* fewer entries than held */
    };
    for (int engine = 0; engine < 2; engine++)
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            store_options o = opts[k];
            o.engine = (fm_io_engine)engine;
            fm_store *s = open_store(&o);
            assert_int_equal(store_hold_max(s), 6);
            for (int round = 0; round < 4; round++) {
                int ids[6];
                for (int i = 0; i < 6; i++) ids[i] = ((round % 2) * 5 + i * 2) % N_EXPERTS;
                const int layer = round % 2 ? 2 : 0;
                assert_int_equal(store_begin_held(s, layer, ids, 6), FM_OK);
                if (round >= 2 && k == 1) assert_true(store_batch_all_hits(s)); /* rounds 2, 3 repeat 0, 1 */
                if (round < 2) assert_false(store_batch_all_hits(s));
                const void *data[6] = {0};
                for (int i = 0; i < 6; i++) {
                    int slot;
                    const void *d;
                    assert_int_equal(store_next(s, &slot, &d), FM_OK);
                    assert_true(slot >= 0 && slot < 6 && !data[slot]);
                    data[slot] = d;
                }
                int slot;
                const void *d;
                assert_int_equal(store_next(s, &slot, &d), FM_OK);
                assert_int_equal(slot, -1);
                for (int i = 0; i < 6; i++)
                    if (memcmp(data[i], image[layer] + (size_t)ids[i] * STRIDE, EXPERT_BYTES) != 0)
                        fail_msg("held expert %d of layer %d (round %d, setup %zu) was overwritten", ids[i], layer,
                                 round, k);
            }
            clear_error();
            int seven[7] = {0, 1, 2, 3, 4, 5, 6};
            assert_int_equal(store_begin_held(s, 0, seven, 7), FM_ERR_ARGUMENT);
            assert_msg_has("held");
            fetch_ok(s, 0, all_ids, N_EXPERTS); /* a plain batch after held ones */
            store_close(s);
        }
}

/* ---- errors ---------------------------------------------------------------- */

static void write_copy(const char *path, int layer, size_t len) {
    assert_int_equal(write_file(path, image[layer], len), 0);
}

static void test_truncated_file(void **state) {
    (void)state;
    char p[160];
    snprintf(p, sizeof p, "%s/short.experts", dir);
    size_t need = (size_t)(N_EXPERTS - 1) * STRIDE + EXPERT_BYTES;
    write_copy(p, 2, need - 1);
    const char *pp[N_LAYERS] = {paths[0], NULL, p};
    store_layout L = layout_of(pp);
    for (int cache = 0; cache < 2; cache++) {
        store_options o = {.cache = (fm_cache_policy)cache, .cache_bytes = 1 << 20};
        fm_store *s = (fm_store *)0x1;
        clear_error();
        assert_int_equal(store_open(&L, &o, &s), FM_ERR_FORMAT);
        assert_null(s);
        assert_msg_has(p);
        assert_msg_has("truncated");
        char num[32];
        snprintf(num, sizeof num, "%zu", need);
        assert_msg_has(num);
        snprintf(num, sizeof num, "%zu", need - 1);
        assert_msg_has(num);
    }
    /* exactly long enough is fine, under O_DIRECT too */
    write_copy(p, 2, need);
    store_options o = {.direct = 1};
    fm_store *s = NULL;
    assert_int_equal(store_open(&L, &o, &s), FM_OK);
    store_close(s);
    unlink(p);

    /* a missing file */
    snprintf(p, sizeof p, "%s/missing.experts", dir);
    clear_error();
    s = (fm_store *)0x1;
    assert_int_equal(store_open(&L, &o, &s), FM_ERR_IO);
    assert_null(s);
    assert_msg_has(p);
}

static void test_bad_layout_and_batches(void **state) {
    (void)state;
    store_options o = {0};
    fm_store *s = NULL;
    store_layout L = layout_of(paths);
    L.stride = STRIDE + 512;
    clear_error();
    assert_int_equal(store_open(&L, &o, &s), FM_ERR_FORMAT);
    assert_msg_has("stride");
    L = layout_of(paths);
    L.expert_bytes = STRIDE + 1;
    assert_int_equal(store_open(&L, &o, &s), FM_ERR_FORMAT);
    L = layout_of(paths);
    L.checksums = NULL;
    o.verify = 1;
    assert_int_equal(store_open(&L, &o, &s), FM_ERR_ARGUMENT);
    assert_null(s);

    o.verify = 0;
    s = open_store(&o);
    int dup[3] = {1, 4, 1}, bad[2] = {2, N_EXPERTS};
    clear_error();
    assert_int_equal(store_begin(s, 0, dup, 3), FM_ERR_ARGUMENT);
    assert_msg_has("twice");
    assert_int_equal(store_begin(s, 0, bad, 2), FM_ERR_ARGUMENT);
    assert_int_equal(store_begin(s, 1, dup, 1), FM_ERR_ARGUMENT); /* no experts in layer 1 */
    assert_int_equal(store_begin(s, 3, dup, 1), FM_ERR_ARGUMENT);
    assert_int_equal(store_begin(s, -1, dup, 1), FM_ERR_ARGUMENT);
    fetch_ok(s, 0, dup, 2);
    store_close(s);
}

/* One byte of layer 2 expert 5 flipped on disk. */
static void test_checksum_mismatch(void **state) {
    (void)state;
    char p[160];
    snprintf(p, sizeof p, "%s/corrupt.experts", dir);
    write_copy(p, 2, image_len[2]);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    unsigned char b = image[2][5 * STRIDE + 777] ^ 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 5 * STRIDE + 777), 1);
    close(fd);
    const char *pp[N_LAYERS] = {paths[0], NULL, p};
    store_layout L = layout_of(pp);
    int ids[6] = {0, 3, 5, 8, 12, 1}, others[4] = {2, 4, 6, 12};
    for (int engine = 0; engine < 2; engine++)
        for (int cache = 0; cache < 2; cache++) {
            store_options o = {.engine = (fm_io_engine)engine, .cache = (fm_cache_policy)cache,
                               .cache_bytes = 1 << 20, .buffers = 2, .verify = 1};
            fm_store *s = NULL;
            assert_int_equal(store_open(&L, &o, &s), FM_OK);
            for (int attempt = 0; attempt < 2; attempt++) { /* not cached after failing */
                clear_error();
                assert_int_equal(fetch(s, 2, ids, 6, -1), FM_ERR_FORMAT);
                assert_msg_has("checksum mismatch in layer 2 expert 5");
                assert_msg_has(p);
                assert_msg_has("corrupt");
            }
            fetch_ok(s, 2, others, 4);
            fetch_ok(s, 0, ids, 6);
            store_close(s);
        }
    /* without verify the flipped byte comes through: the file really differs */
    store_options o = {.verify = 0};
    fm_store *s = NULL;
    assert_int_equal(store_open(&L, &o, &s), FM_OK);
    int five = 5, slot;
    const void *data;
    assert_int_equal(store_begin(s, 2, &five, 1), FM_OK);
    assert_int_equal(store_next(s, &slot, &data), FM_OK);
    assert_int_equal(slot, 0);
    assert_int_equal(((const unsigned char *)data)[777], b);
    store_close(s);
    unlink(p);
}

/* Injected read faults (EIO, a short read) at the 3rd read of a batch, under
 * every engine and cache mode: FM_ERR_IO naming the file, layer and expert;
 * then, disarmed, the store fetches correctly again. */
static void test_injected_faults(void **state) {
    (void)state;
    for (int engine = 0; engine < 2; engine++)
        for (size_t m = 0; m < 4; m++)
            for (int kind = 0; kind < 2; kind++) {
                store_options o = {.engine = (fm_io_engine)engine, .direct = modes[m].direct,
                                   .cache = modes[m].cache, .cache_bytes = modes[m].budget, .buffers = 3,
                                   .io_threads = 2, .verify = 1};
                fm_store *s = open_store(&o);
                for (int layer = 0; layer <= 2; layer += 2) {
                    fm_fault_arm(FM_FAULT_READ, 3, kind == 0 ? EIO : 0);
                    clear_error();
                    fm_status st = fetch(s, layer, all_ids, N_EXPERTS, -1);
                    fm_fault_disarm();
                    if (st != FM_ERR_IO)
                        fail_msg("%s engine %d %s: got %s (%s)", kind ? "short" : "EIO", engine, modes[m].name,
                                 fm_status_name(st), fm_last_error());
                    assert_msg_has(paths[layer]);
                    assert_msg_has("offset");
                    assert_msg_has(layer == 0 ? "layer 0" : "layer 2");
                    assert_msg_has("expert");
                    if (kind == 0) assert_msg_has("Input/output error");
                    fetch_ok(s, layer, all_ids, N_EXPERTS);
                }
                store_close(s);
            }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_pread),
        cmocka_unit_test(test_fetch_uring),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_policy_keeps_frequent),
        cmocka_unit_test(test_slab_slots),
        cmocka_unit_test(test_paced_growth),
        cmocka_unit_test(test_preload),
        cmocka_unit_test(test_held_batches),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_bad_layout_and_batches),
        cmocka_unit_test(test_checksum_mismatch),
        cmocka_unit_test(test_injected_faults),
    };
    return cmocka_run_group_tests_name("store", tests, setup_group, teardown_group);
}

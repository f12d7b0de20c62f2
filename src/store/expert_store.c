/* The expert store (expert_store.h): batches of expert reads over one of the
 * read engines (store_io.h) into either a ring of buffers (FM_CACHE_OS) or the
 * RAM cache (FM_CACHE_RAM, expert_cache.h).
 *
 * A batch: store_begin looks every id up in the cache; hits are pinned and
 * queued to be returned first (they need no I/O), misses are queued for
 * reading. issue() starts reads while fewer than `depth` are outstanding and a
 * target is available: a cache entry (new memory under the budget, or the
 * memory of the policy's victim) or, when the cache cannot give one (budget
 * full of pinned entries, or smaller than one expert), a transient buffer
 * from a pool of at most `depth` (so the budget is exceeded by at most the
 * in-flight buffers). In FM_CACHE_OS mode the targets are the `buffers`
 * buffers of the ring. store_next releases what it handed out last (unpins the
 * entry / frees the buffer), issues what it can, returns a pending hit or
 * waits for the next completion, verifies it, makes a cache entry findable,
 * and issues again so the disk stays busy while the caller computes.
 *
 * Reads are of round_up(expert_bytes, 4096) bytes into 4096-aligned memory on
 * a descriptor opened with O_DIRECT (FM_CACHE_RAM, or FM_CACHE_OS with
 * direct); where that rounded extent would pass the end of a file (the last
 * expert of a file cut right after its bytes), the expert_bytes are read from
 * a second, buffered descriptor. Buffered reads are of expert_bytes. */
#include "flashmoe.h"
#include "store/expert_store.h"

#include "core/error.h"
#include "store/expert_cache.h"
#include "store/store_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define DEFAULT_BUFFERS 16
#define DEFAULT_THREADS 8
#define ALIGN 4096

struct fm_store {
    int n_layers, n_experts;
    size_t expert_bytes, stride, direct_len; /* direct_len = round_up(expert_bytes, 4096) */
    char **paths;                            /* [n_layers], NULL for layers without experts */
    uint64_t *checksums;                     /* [n_layers * n_experts] or NULL */
    int *fd, *fd_tail, *direct;              /* [n_layers]; fd_tail -1 unless needed */
    uint64_t *file_size;
    store_options opt;

    store_io *io;
    int depth; /* reads in flight at most */

    void **pool; /* FM_CACHE_OS: the ring; FM_CACHE_RAM: transient buffers, allocated on demand */
    int pool_cap, pool_alloc, n_free;
    int *free_bufs;
    expert_cache *cache;

    /* the batch */
    int active, layer, n;
    int *ids;                 /* [n_experts] */
    cache_entry **slot_entry; /* [n_experts] target entry (hit or loading) or NULL */
    int *slot_buf;            /* [n_experts] pool buffer or -1 */
    int *todo, n_todo, todo_pos;
    int *hits, n_hits, hits_pos;
    int outstanding;
    int handed; /* slot handed out by the last store_next, or -1 */
    int hold;   /* store_begin_held: handed-out experts stay until the next batch */
    int *held, n_held; /* [n_experts] slots handed out and kept */
    unsigned *seen, seen_gen; /* [n_experts] duplicate check */

    store_stats stats;
    double busy_base;
};

/* ---- targets ---------------------------------------------------------------- */

static void *slot_data(fm_store *s, int slot) {
    return s->slot_entry[slot] ? s->slot_entry[slot]->data : s->pool[s->slot_buf[slot]];
}

static void free_buf(fm_store *s, int slot) {
    s->free_bufs[s->n_free++] = s->slot_buf[slot];
    s->slot_buf[slot] = -1;
}

/* Gives back what slot's finished or handed-out read used: an indexed entry
 * is unpinned, a loading one (a read that failed or was abandoned) freed. */
static void release(fm_store *s, int slot, int loading) {
    cache_entry *e = s->slot_entry[slot];
    if (e) {
        if (loading) cache_discard(s->cache, e);
        else e->pins--;
        s->slot_entry[slot] = NULL;
    } else if (s->slot_buf[slot] >= 0) {
        free_buf(s, slot);
    }
}

static int take_buf(fm_store *s) {
    if (s->n_free == 0 && s->pool_alloc < s->pool_cap) {
        void *p;
        if (posix_memalign(&p, ALIGN, s->direct_len) != 0) return -1;
        s->pool[s->pool_alloc] = p;
        s->free_bufs[s->n_free++] = s->pool_alloc++;
    }
    return s->n_free ? s->free_bufs[--s->n_free] : -1;
}

/* Starts reads of queued misses while targets and depth allow. */
static fm_status issue(fm_store *s) {
    int started = 0;
    while (s->todo_pos < s->n_todo && s->outstanding < s->depth) {
        int slot = s->todo[s->todo_pos];
        void *dst = NULL;
        if (s->cache) {
            cache_entry *e = cache_acquire(s->cache);
            if (e) {
                s->slot_entry[slot] = e;
                dst = e->data;
            }
        }
        if (!dst) {
            int b = take_buf(s);
            if (b < 0) {
                if (s->outstanding > 0) break; /* one comes back with the next completion */
                return fm_error(FM_ERR_NOMEM, "expert store: out of memory for a %zu-byte expert buffer",
                                s->direct_len);
            }
            s->slot_buf[slot] = b;
            dst = s->pool[b];
        }
        int L = s->layer, id = s->ids[slot];
        uint64_t off = (uint64_t)id * s->stride;
        io_request rq = {.fd = s->fd[L], .buf = dst, .len = s->expert_bytes, .offset = off, .path = s->paths[L],
                         .tag = slot};
        if (s->direct[L]) {
            if (off + s->direct_len <= s->file_size[L]) rq.len = s->direct_len;
            else rq.fd = s->fd_tail[L];
        }
        s->io->submit(s->io, &rq);
        s->outstanding++;
        s->todo_pos++;
        started++;
    }
    if (started) s->io->flush(s->io);
    return FM_OK;
}

/* Gives back the experts a held batch handed out. */
static void release_held(fm_store *s) {
    while (s->n_held > 0) release(s, s->held[--s->n_held], 0);
}

/* Ends the batch early: gives back the handed-out expert, the pending hits and
 * every outstanding read (waiting for each, since its memory is the kernel's
 * until it completes). */
static void abandon(fm_store *s) {
    release_held(s);
    if (s->handed >= 0) release(s, s->handed, 0);
    s->handed = -1;
    while (s->hits_pos < s->n_hits) release(s, s->hits[s->hits_pos++], 0);
    while (s->outstanding > 0) {
        io_completion c;
        s->io->wait(s->io, &c);
        s->outstanding--;
        release(s, c.tag, 1);
    }
    s->active = 0;
}

/* ---- open / close ------------------------------------------------------------- */

void store_close(fm_store *s) {
    if (!s) return;
    if (s->active) abandon(s);
    if (s->io) s->io->destroy(s->io);
    cache_destroy(s->cache);
    for (int i = 0; i < s->pool_alloc; i++) free(s->pool[i]);
    for (int l = 0; l < s->n_layers; l++) {
        if (s->fd && s->fd[l] >= 0) close(s->fd[l]);
        if (s->fd_tail && s->fd_tail[l] >= 0) close(s->fd_tail[l]);
        if (s->paths) free(s->paths[l]);
    }
    free(s->paths), free(s->checksums), free(s->fd), free(s->fd_tail), free(s->direct), free(s->file_size);
    free(s->pool), free(s->free_bufs);
    free(s->ids), free(s->slot_entry), free(s->slot_buf), free(s->todo), free(s->hits), free(s->seen);
    free(s->held);
    free(s);
}

static fm_status check_args(const store_layout *L, const store_options *o) {
    if (!L || !o) return fm_error(FM_ERR_ARGUMENT, "expert store: no layout or options given");
    if (L->n_layers <= 0 || L->n_experts <= 0 || !L->paths)
        return fm_error(FM_ERR_ARGUMENT, "expert store: the layout needs layers (%d), experts (%d) and paths",
                        L->n_layers, L->n_experts);
    if (L->stride == 0 || L->stride % ALIGN)
        return fm_error(FM_ERR_FORMAT, "expert store: stride %zu is not a positive multiple of %d", L->stride, ALIGN);
    if (L->expert_bytes == 0 || L->expert_bytes > L->stride)
        return fm_error(FM_ERR_FORMAT, "expert store: expert size %zu must be between 1 and the stride %zu",
                        L->expert_bytes, L->stride);
    if ((uint64_t)L->n_layers * (uint64_t)L->n_experts > (uint64_t)INT32_MAX / 2)
        return fm_error(FM_ERR_ARGUMENT, "expert store: %d layers of %d experts are too many", L->n_layers,
                        L->n_experts);
    if (o->engine != FM_IO_PREAD && o->engine != FM_IO_URING)
        return fm_error(FM_ERR_ARGUMENT, "expert store: unknown I/O engine %d", (int)o->engine);
    if (o->cache != FM_CACHE_OS && o->cache != FM_CACHE_RAM)
        return fm_error(FM_ERR_ARGUMENT, "expert store: unknown cache policy %d", (int)o->cache);
    if (o->buffers < 0 || o->buffers > 4096)
        return fm_error(FM_ERR_ARGUMENT, "expert store: %d buffers (1..4096, 0 = default)", o->buffers);
    if (o->io_threads < 0 || o->io_threads > 1024)
        return fm_error(FM_ERR_ARGUMENT, "expert store: %d I/O threads (1..1024, 0 = default)", o->io_threads);
    if (o->verify && !L->checksums)
        return fm_error(FM_ERR_ARGUMENT, "expert store: verification asked for but the layout has no checksums");
    return FM_OK;
}

/* Opens layer l's file (O_DIRECT when asked, buffered where the file system
 * refuses it) and checks its length. */
static fm_status open_layer(fm_store *s, int l, int want_direct) {
    const char *path = s->paths[l];
    int fd = -1;
    if (want_direct) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (fd >= 0) s->direct[l] = 1;
        else if (errno == EINVAL) s->stats.direct_fallback = 1;
        else return fm_error(FM_ERR_IO, "%s: cannot open the experts of layer %d: %s", path, l, strerror(errno));
    }
    if (fd < 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return fm_error(FM_ERR_IO, "%s: cannot open the experts of layer %d: %s", path, l, strerror(errno));
    }
    s->fd[l] = fd;
    struct stat st;
    if (fstat(fd, &st) != 0) return fm_error(FM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    uint64_t need = (uint64_t)(s->n_experts - 1) * s->stride + s->expert_bytes;
    s->file_size[l] = (uint64_t)st.st_size;
    if ((uint64_t)st.st_size < need)
        return fm_error(FM_ERR_FORMAT,
                        "%s: truncated: layer %d needs %llu bytes (%d experts of %zu bytes, stride %zu) but the file "
                        "has %llu",
                        path, l, (unsigned long long)need, s->n_experts, s->expert_bytes, s->stride,
                        (unsigned long long)st.st_size);
    if (s->direct[l] && (uint64_t)(s->n_experts - 1) * s->stride + s->direct_len > s->file_size[l]) {
        s->fd_tail[l] = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd_tail[l] < 0) return fm_error(FM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    return FM_OK;
}

fm_status store_open(const store_layout *layout, const store_options *options, fm_store **out) {
    if (!out) return fm_error(FM_ERR_ARGUMENT, "expert store: no output pointer");
    *out = NULL;
    fm_status st = check_args(layout, options);
    if (st != FM_OK) return st;
    fm_store *s = calloc(1, sizeof *s);
    if (!s) return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
    int nl = layout->n_layers, ne = layout->n_experts;
    s->n_layers = nl;
    s->n_experts = ne;
    s->expert_bytes = layout->expert_bytes;
    s->stride = layout->stride;
    s->direct_len = (layout->expert_bytes + ALIGN - 1) / ALIGN * ALIGN;
    s->opt = *options;
    s->handed = -1;
    s->paths = calloc((size_t)nl, sizeof *s->paths);
    s->fd = malloc((size_t)nl * sizeof *s->fd);
    s->fd_tail = malloc((size_t)nl * sizeof *s->fd_tail);
    s->direct = calloc((size_t)nl, sizeof *s->direct);
    s->file_size = calloc((size_t)nl, sizeof *s->file_size);
    s->ids = malloc((size_t)ne * sizeof *s->ids);
    s->slot_entry = calloc((size_t)ne, sizeof *s->slot_entry);
    s->slot_buf = malloc((size_t)ne * sizeof *s->slot_buf);
    s->todo = malloc((size_t)ne * sizeof *s->todo);
    s->hits = malloc((size_t)ne * sizeof *s->hits);
    s->seen = calloc((size_t)ne, sizeof *s->seen);
    s->held = malloc((size_t)ne * sizeof *s->held);
    if (!s->held || !s->paths || !s->fd || !s->fd_tail || !s->direct || !s->file_size || !s->ids || !s->slot_entry ||
        !s->slot_buf || !s->todo || !s->hits || !s->seen) {
        store_close(s);
        return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
    }
    for (int l = 0; l < nl; l++) s->fd[l] = s->fd_tail[l] = -1;
    for (int i = 0; i < ne; i++) s->slot_buf[i] = -1;
    if (layout->checksums) {
        size_t n = (size_t)nl * (size_t)ne;
        s->checksums = malloc(n * sizeof *s->checksums);
        if (!s->checksums) {
            store_close(s);
            return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
        }
        memcpy(s->checksums, layout->checksums, n * sizeof *s->checksums);
    }

    int ram = options->cache == FM_CACHE_RAM;
    int want_direct = ram || options->direct;
    for (int l = 0; l < nl; l++) {
        if (!layout->paths[l]) continue;
        s->paths[l] = strdup(layout->paths[l]);
        if (!s->paths[l]) {
            store_close(s);
            return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
        }
        st = open_layer(s, l, want_direct);
        if (st != FM_OK) {
            store_close(s);
            return st;
        }
    }

    s->depth = options->buffers ? options->buffers : DEFAULT_BUFFERS;
    s->pool_cap = s->depth;
    s->pool = calloc((size_t)s->pool_cap, sizeof *s->pool);
    s->free_bufs = malloc((size_t)s->pool_cap * sizeof *s->free_bufs);
    if (!s->pool || !s->free_bufs) {
        store_close(s);
        return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
    }
    if (ram) {
        s->cache = cache_create(nl * ne, s->direct_len, s->stride, options->cache_bytes);
        if (!s->cache) {
            store_close(s);
            return fm_error(FM_ERR_NOMEM, "expert store: out of memory for the cache index");
        }
    } else { /* the ring, allocated now so that a lack of memory shows at open */
        while (s->pool_alloc < s->pool_cap) {
            void *p;
            if (posix_memalign(&p, ALIGN, s->direct_len) != 0) {
                store_close(s);
                return fm_error(FM_ERR_NOMEM, "expert store: out of memory for %d buffers of %zu bytes", s->pool_cap,
                                s->direct_len);
            }
            s->pool[s->pool_alloc] = p;
            s->free_bufs[s->n_free++] = s->pool_alloc++;
        }
    }

    if (options->engine == FM_IO_URING) {
        st = store_io_uring_create(s->depth, &s->io);
    } else {
        int threads = options->io_threads ? options->io_threads : DEFAULT_THREADS;
        st = store_io_pool_create(threads < s->depth ? threads : s->depth, s->depth, &s->io);
    }
    if (st != FM_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return FM_OK;
}

/* ---- batches ---------------------------------------------------------------- */

int store_hold_max(const fm_store *s) { return s->depth; }

fm_status store_begin_held(fm_store *s, int layer, const int *ids, int n) {
    if (!s) return fm_error(FM_ERR_ARGUMENT, "expert store: no store");
    if (n > s->depth)
        return fm_error(FM_ERR_ARGUMENT, "expert store: %d experts cannot be held at once (at most %d)", n, s->depth);
    fm_status st = store_begin(s, layer, ids, n);
    s->hold = st == FM_OK;
    return st;
}

int store_batch_all_hits(const fm_store *s) { return s->n_todo == 0; }

int store_all_cached(const fm_store *s, int layer, const int *ids, int n) {
    if (!s->cache || layer < 0 || layer >= s->n_layers) return 0;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_experts || !cache_find(s->cache, layer * s->n_experts + ids[i])) return 0;
    return 1;
}

fm_status store_begin(fm_store *s, int layer, const int *ids, int n) {
    if (!s) return fm_error(FM_ERR_ARGUMENT, "expert store: no store");
    if (s->active) abandon(s);
    release_held(s);
    s->hold = 0;
    if (layer < 0 || layer >= s->n_layers)
        return fm_error(FM_ERR_ARGUMENT, "expert store: layer %d out of range (0..%d)", layer, s->n_layers - 1);
    if (!s->paths[layer]) return fm_error(FM_ERR_ARGUMENT, "expert store: layer %d has no routed experts", layer);
    if (n < 0 || n > s->n_experts || (n > 0 && !ids))
        return fm_error(FM_ERR_ARGUMENT, "expert store: batch of %d experts in layer %d (at most %d, distinct)", n,
                        layer, s->n_experts);
    if (++s->seen_gen == 0) { /* wrapped: start the stamps again */
        memset(s->seen, 0, (size_t)s->n_experts * sizeof *s->seen);
        s->seen_gen = 1;
    }
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_experts)
            return fm_error(FM_ERR_ARGUMENT, "expert store: expert %d out of range (0..%d) in layer %d", ids[i],
                            s->n_experts - 1, layer);
        if (s->seen[ids[i]] == s->seen_gen)
            return fm_error(FM_ERR_ARGUMENT, "expert store: expert %d appears twice in one batch of layer %d", ids[i],
                            layer);
        s->seen[ids[i]] = s->seen_gen;
    }

    s->layer = layer;
    s->n = n;
    if (n > 0) memcpy(s->ids, ids, (size_t)n * sizeof *ids);
    s->n_todo = s->todo_pos = s->n_hits = s->hits_pos = 0;
    s->handed = -1;
    for (int i = 0; i < n; i++) {
        cache_entry *e = s->cache ? cache_find(s->cache, layer * s->n_experts + ids[i]) : NULL;
        if (e) {
            e->pins++;
            cache_touch(s->cache, e);
            s->slot_entry[i] = e;
            s->hits[s->n_hits++] = i;
        } else {
            s->todo[s->n_todo++] = i;
        }
    }
    s->stats.fetches += (uint64_t)n;
    s->stats.hits += (uint64_t)s->n_hits;
    s->active = 1;
    fm_status st = issue(s);
    if (st != FM_OK) abandon(s);
    return st;
}

fm_status store_next(fm_store *s, int *slot, const void **data) {
    if (!s || !slot || !data) return fm_error(FM_ERR_ARGUMENT, "expert store: store_next needs a store, slot and data");
    *slot = -1;
    *data = NULL;
    if (!s->active) return FM_OK;
    if (s->handed >= 0) {
        if (s->hold) s->held[s->n_held++] = s->handed;
        else release(s, s->handed, 0);
    }
    s->handed = -1;
    fm_status st = issue(s);
    if (st != FM_OK) {
        abandon(s);
        return st;
    }
    int i;
    if (s->hits_pos < s->n_hits) {
        i = s->hits[s->hits_pos++];
    } else if (s->outstanding > 0) {
        io_completion c;
        double t0 = store_now();
        s->io->wait(s->io, &c);
        s->stats.io_wait_s += store_now() - t0;
        s->outstanding--;
        i = c.tag;
        int L = s->layer, id = s->ids[i];
        if (c.status != FM_OK) {
            release(s, i, 1);
            abandon(s);
            return fm_error(c.status, "%s (layer %d, expert %d)", c.msg, L, id);
        }
        s->stats.reads++;
        s->stats.bytes_read += c.bytes;
        if (s->opt.verify) {
            uint64_t want = s->checksums[(size_t)L * (size_t)s->n_experts + (size_t)id];
            if (XXH3_64bits(slot_data(s, i), s->expert_bytes) != want) {
                release(s, i, 1);
                abandon(s);
                return fm_error(FM_ERR_FORMAT,
                                "expert store: checksum mismatch in layer %d expert %d (file %s): the packed model is "
                                "corrupt",
                                L, id, s->paths[L]);
            }
        }
        if (s->slot_entry[i]) cache_insert(s->cache, s->slot_entry[i], L * s->n_experts + id);
        st = issue(s); /* the completion freed a place in flight */
        if (st != FM_OK) {
            release(s, i, 0);
            abandon(s);
            return st;
        }
    } else {
        s->active = 0; /* all n returned */
        return FM_OK;
    }
    s->handed = i;
    *slot = i;
    *data = slot_data(s, i);
    return FM_OK;
}

fm_status store_preload(fm_store *s) {
    if (!s) return fm_error(FM_ERR_ARGUMENT, "expert store: no store");
    if (!s->cache) return fm_error(FM_ERR_ARGUMENT, "expert store: preload needs the RAM cache (FM_CACHE_RAM)");
    uint64_t n = 0;
    for (int l = 0; l < s->n_layers; l++)
        if (s->paths[l]) n += (uint64_t)s->n_experts;
    if (n * s->stride > s->opt.cache_bytes)
        return fm_error(FM_ERR_ARGUMENT,
                        "expert store: cannot preload: %llu experts need %llu bytes of cache but the budget is %llu "
                        "bytes",
                        (unsigned long long)n, (unsigned long long)(n * s->stride),
                        (unsigned long long)s->opt.cache_bytes);
    store_stats keep = s->stats;
    int *all = malloc((size_t)s->n_experts * sizeof *all);
    if (!all) return fm_error(FM_ERR_NOMEM, "expert store: out of memory");
    for (int e = 0; e < s->n_experts; e++) all[e] = e;
    fm_status st = FM_OK;
    cache_set_eager(s->cache, 1); /* everything is wanted: no pacing */
    for (int l = 0; l < s->n_layers && st == FM_OK; l++) {
        if (!s->paths[l]) continue;
        st = store_begin(s, l, all, s->n_experts);
        int slot = 0;
        const void *data;
        while (st == FM_OK && (st = store_next(s, &slot, &data)) == FM_OK && slot >= 0) {
        }
    }
    cache_set_eager(s->cache, 0);
    free(all);
    /* The callers' counters are theirs: preload adds only reads. */
    s->stats.fetches = keep.fetches;
    s->stats.hits = keep.hits;
    s->stats.io_wait_s = keep.io_wait_s;
    return st;
}

store_stats store_get_stats(const fm_store *s) {
    store_stats st = s->stats;
    st.cache_used = s->cache ? cache_used(s->cache) : 0;
    st.read_s = s->io->busy_s(s->io) - s->busy_base;
    return st;
}

void store_reset_stats(fm_store *s) {
    int fallback = s->stats.direct_fallback;
    memset(&s->stats, 0, sizeof s->stats);
    s->stats.direct_fallback = fallback;
    s->busy_base = s->io->busy_s(s->io);
}

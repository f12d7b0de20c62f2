/* The expert store: given the router's choice, fetches the routed experts of
 * one layer from the packed expert files (docs/FORMAT.md) into memory that the
 * kernels read. Experts are never computed from a mapping of the files: every
 * expert is read with an explicit read into a buffer.
 *
 * Layout: one file per MoE layer; expert e of that layer is the extent
 * [e·stride, e·stride + expert_bytes) of the file, stride a multiple of 4096,
 * so one read fetches one expert and O_DIRECT works.
 *
 * I/O engines: a pool of threads issuing pread (default), or io_uring.
 * Cache policies:
 *   FM_CACHE_OS   trust the OS page cache: buffered reads (or O_DIRECT when
 *                 asked) into a small ring of buffers;
 *   FM_CACHE_RAM  an explicit cache of whole experts with a byte budget,
 *                 frequency-aware eviction (recency and frequency), misses
 *                 read with O_DIRECT (falls back to buffered reads, with a
 *                 note in the stats, where the file system refuses O_DIRECT).
 *
 * Usage per layer:
 *   store_begin(s, layer, ids, n);           issue the reads of n experts
 *   while (store_next(s, &slot, &data) == FM_OK && slot >= 0)
 *       compute with expert ids[slot] at data;   (completion order)
 * The data returned by store_next stays valid until the next store_next or
 * store_begin call. n may exceed the number of buffers: the store keeps as
 * many reads in flight as it has buffers and starts the next read when the
 * caller moves on. Each id of one batch must be distinct. */
#ifndef FM_STORE_EXPERT_STORE_H
#define FM_STORE_EXPERT_STORE_H

#include "flashmoe.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fm_store fm_store;

typedef enum { FM_IO_PREAD, FM_IO_URING } fm_io_engine;
typedef enum { FM_CACHE_OS, FM_CACHE_RAM } fm_cache_policy;

typedef struct {
    fm_io_engine engine;
    int direct;             /* O_DIRECT for FM_CACHE_OS too */
    fm_cache_policy cache;
    uint64_t cache_bytes;   /* FM_CACHE_RAM: budget of the cache (whole experts, stride bytes each) */
    int buffers;            /* FM_CACHE_OS: expert buffers = reads in flight; 0 = default (16) */
    int io_threads;         /* FM_IO_PREAD: pool size; 0 = default (8) */
    int verify;             /* check the XXH3-64 of every expert read against the layout's checksums */
} store_options;

typedef struct {
    int n_layers;
    const char *const *paths;  /* [n_layers]; NULL for layers without routed experts */
    int n_experts;
    size_t expert_bytes;       /* bytes of one expert */
    size_t stride;             /* distance between experts in a file; a multiple of 4096 */
    const uint64_t *checksums; /* [n_layers * n_experts] XXH3-64 of each expert's bytes, or NULL */
} store_layout;

typedef struct {
    uint64_t fetches;     /* experts asked for */
    uint64_t hits;        /* served from the RAM cache */
    uint64_t reads;       /* experts read from the files */
    uint64_t bytes_read;  /* bytes read from the files */
    double io_wait_s;     /* time callers spent blocked in store_next */
    double read_s;        /* wall time during which at least one read was in flight */
    uint64_t cache_used;  /* bytes held by the RAM cache */
    int direct_fallback;  /* O_DIRECT was asked for but refused by the file system */
} store_stats;

/* Opens the layer files (checks each is at least n_experts·stride - stride +
 * expert_bytes long; a shorter one is named as truncated). */
fm_status store_open(const store_layout *layout, const store_options *options, fm_store **out);
void store_close(fm_store *s); /* accepts NULL */

/* Starts fetching experts ids[0..n) of `layer`. */
fm_status store_begin(fm_store *s, int layer, const int *ids, int n);
/* As store_begin, but every expert store_next hands out stays valid (and in
 * the RAM cache, pinned) until the next store_begin / store_begin_held, so a
 * caller can compute with all of them at once. n ≤ store_hold_max(s). */
fm_status store_begin_held(fm_store *s, int layer, const int *ids, int n);
int store_hold_max(const fm_store *s);
/* 1 when every expert of the last batch begun was in the RAM cache (no read). */
int store_batch_all_hits(const fm_store *s);
/* 1 when experts ids[0..n) of layer are all in the RAM cache now (no change to it). */
int store_all_cached(const fm_store *s, int layer, const int *ids, int n);

/* The next fetched expert of the batch, in completion order: *slot is its index
 * in ids and *data its expert_bytes bytes (64-byte aligned). *slot is -1 once
 * all n were returned. A failed read returns FM_ERR_IO (or FM_ERR_FORMAT for a
 * checksum mismatch) with a message naming the file, layer and expert; the
 * batch is then abandoned and the store usable for the next store_begin. */
fm_status store_next(fm_store *s, int *slot, const void **data);

/* Reads every expert of every layer into the RAM cache (FM_CACHE_RAM with a
 * budget that holds them all): the all-in-RAM mode. */
fm_status store_preload(fm_store *s);
store_stats store_get_stats(const fm_store *s);
void store_reset_stats(fm_store *s);

#endif

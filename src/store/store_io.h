/* Internal to src/store: the read engines behind the expert store. An engine
 * takes whole-extent read requests and hands back one completion per request,
 * in completion order. It is driven by one caller thread; the caller never has
 * more than `depth` requests outstanding (submitted and not yet returned by
 * wait), so submit never blocks and never fails.
 *   io_pool.c   worker threads doing fm_pread_full (mutex + condition variables)
 *   io_uring.c  liburing in the caller thread: all reads of a batch submitted
 *               at once, short reads resubmitted, fm_fault_check per read */
#ifndef FM_STORE_STORE_IO_H
#define FM_STORE_STORE_IO_H

#include "flashmoe.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;
    void *buf;
    size_t len;       /* bytes to read, all of them */
    uint64_t offset;
    const char *path; /* for messages; outlives the request */
    int tag;          /* the caller's handle, returned with the completion */
} io_request;

typedef struct {
    int tag;
    fm_status status;
    size_t bytes;   /* bytes read (len when status is FM_OK) */
    char msg[600];  /* the error message when status != FM_OK (names the file and offset) */
} io_completion;

typedef struct store_io store_io;
struct store_io {
    /* Queues a read; it may not start before flush. */
    void (*submit)(store_io *io, const io_request *rq);
    /* Starts every queued read. */
    void (*flush)(store_io *io);
    /* Blocks until one outstanding read completes and describes it in *out. */
    void (*wait)(store_io *io, io_completion *out);
    /* Seconds of wall time during which at least one read was outstanding. */
    double (*busy_s)(store_io *io);
    void (*destroy)(store_io *io);
};

fm_status store_io_pool_create(int threads, int depth, store_io **out);
fm_status store_io_uring_create(int depth, store_io **out);

/* CLOCK_MONOTONIC in seconds. */
double store_now(void);

#endif

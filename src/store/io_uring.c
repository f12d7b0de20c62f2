/* The io_uring engine of the expert store (see store_io.h), driven entirely by
 * the caller's thread: submit prepares an SQE per read, flush submits all of
 * them in one io_uring_enter, wait submits anything still queued, sleeps for
 * a completion and reaps every CQE available. A short read is resubmitted for
 * the rest (a read that returns 0 is the end of the file); EAGAIN/EINTR
 * results are resubmitted as they are. Before each read (and each
 * resubmission) fm_fault_check(FM_FAULT_READ, n) is consulted, so injected
 * faults behave as in fm_pread_full: an error fails the read with that errno,
 * a short count reads only that much and then reports the end of the file.
 * Error messages have fm_pread_full's wording (file, bytes, offset). */
#include "store/store_io.h"

#include "core/error.h"
#include "core/fileio.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    io_request rq;
    size_t done;   /* bytes read so far */
    int truncated; /* an injected short read: the next completion ends the read */
    int next_free;
} ur_req;

typedef struct {
    store_io base;
    struct io_uring ring;
    int depth;
    ur_req *reqs; /* [depth] */
    int free_head;
    io_completion *ready; /* ring of `depth` finished reads not yet waited for */
    int ready_head, ready_count;
    int active; /* requests submitted and not finished */
    double busy_since, busy_total;
} io_ur;

static void finish(io_ur *u, ur_req *r, fm_status st, const char *msg) {
    io_completion *c = &u->ready[(u->ready_head + u->ready_count) % u->depth];
    u->ready_count++;
    c->tag = r->rq.tag;
    c->status = st;
    c->bytes = r->done;
    c->msg[0] = 0;
    if (msg) snprintf(c->msg, sizeof c->msg, "%s", msg);
    int idx = (int)(r - u->reqs);
    r->next_free = u->free_head;
    u->free_head = idx;
    if (--u->active == 0) u->busy_total += store_now() - u->busy_since;
}

static void fail_errno(io_ur *u, ur_req *r, int err) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s: read of %zu bytes at offset %llu failed: %s", r->rq.path, r->rq.len - r->done,
             (unsigned long long)(r->rq.offset + r->done), strerror(err));
    finish(u, r, FM_ERR_IO, msg);
}

static void fail_eof(io_ur *u, ur_req *r) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s: file ends early: wanted %zu bytes at offset %llu, got %zu (truncated?)", r->rq.path,
             r->rq.len, (unsigned long long)r->rq.offset, r->done);
    finish(u, r, FM_ERR_IO, msg);
}

/* Prepares the read of what is left of r. */
static void start(io_ur *u, ur_req *r) {
    size_t want = r->rq.len - r->done;
    ssize_t inject = fm_fault_check(FM_FAULT_READ, want);
    if (inject < 0) {
        fail_errno(u, r, (int)-inject);
        return;
    }
    if ((size_t)inject < want) {
        r->truncated = 1;
        want = (size_t)inject;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    while (!sqe) { /* cannot happen with depth ≤ the SQ size, but be safe */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    io_uring_prep_read(sqe, r->rq.fd, (char *)r->rq.buf + r->done, (unsigned)want, r->rq.offset + r->done);
    io_uring_sqe_set_data(sqe, r);
}

static void ur_submit(store_io *io, const io_request *rq) {
    io_ur *u = (io_ur *)io;
    ur_req *r = &u->reqs[u->free_head]; /* the caller keeps at most depth outstanding */
    u->free_head = r->next_free;
    r->rq = *rq;
    r->done = 0;
    r->truncated = 0;
    if (u->active++ == 0) u->busy_since = store_now();
    start(u, r);
}

static void ur_flush(store_io *io) {
    io_ur *u = (io_ur *)io;
    if (io_uring_sq_ready(&u->ring)) io_uring_submit(&u->ring); /* a failure is retried by wait */
}

static void reap(io_ur *u, struct io_uring_cqe *cqe) {
    ur_req *r = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&u->ring, cqe);
    if (res == -EAGAIN || res == -EINTR) {
        start(u, r);
    } else if (res < 0) {
        fail_errno(u, r, -res);
    } else if (res == 0) {
        fail_eof(u, r);
    } else {
        r->done += (size_t)res;
        if (r->done == r->rq.len) finish(u, r, FM_OK, NULL);
        else if (r->truncated) fail_eof(u, r);
        else start(u, r); /* short read: the rest */
    }
}

static void ur_wait(store_io *io, io_completion *out) {
    io_ur *u = (io_ur *)io;
    while (u->ready_count == 0) {
        int ret = io_uring_submit_and_wait(&u->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
            /* The ring itself failed: fail every outstanding read (teardown
             * waits for whatever the kernel still holds). */
            for (int i = 0; i < u->depth; i++) {
                ur_req *r = &u->reqs[i];
                int in_free_list = 0;
                for (int f = u->free_head; f >= 0; f = u->reqs[f].next_free)
                    if (f == i) in_free_list = 1;
                if (!in_free_list) fail_errno(u, r, -ret);
            }
            break;
        }
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) reap(u, cqe);
        ur_flush(io); /* resubmissions */
    }
    *out = u->ready[u->ready_head];
    u->ready_head = (u->ready_head + 1) % u->depth;
    u->ready_count--;
}

static double ur_busy_s(store_io *io) {
    io_ur *u = (io_ur *)io;
    return u->busy_total + (u->active > 0 ? store_now() - u->busy_since : 0);
}

static void ur_destroy(store_io *io) {
    io_ur *u = (io_ur *)io;
    io_uring_queue_exit(&u->ring);
    free(u->reqs);
    free(u->ready);
    free(u);
}

fm_status store_io_uring_create(int depth, store_io **out) {
    *out = NULL;
    io_ur *u = calloc(1, sizeof *u);
    if (!u) return fm_error(FM_ERR_NOMEM, "expert store: out of memory for io_uring");
    u->base = (store_io){ur_submit, ur_flush, ur_wait, ur_busy_s, ur_destroy};
    u->depth = depth;
    u->reqs = calloc((size_t)depth, sizeof *u->reqs);
    u->ready = calloc((size_t)depth, sizeof *u->ready);
    if (!u->reqs || !u->ready) {
        free(u->reqs), free(u->ready), free(u);
        return fm_error(FM_ERR_NOMEM, "expert store: out of memory for io_uring");
    }
    for (int i = 0; i < depth; i++) u->reqs[i].next_free = i + 1 < depth ? i + 1 : -1;
    u->free_head = 0;
    int ret = io_uring_queue_init((unsigned)depth, &u->ring, 0);
    if (ret < 0) {
        free(u->reqs), free(u->ready), free(u);
        return fm_error(FM_ERR_IO, "expert store: cannot set up io_uring (%d entries): %s", depth, strerror(-ret));
    }
    *out = &u->base;
    return FM_OK;
}

/* The pread engine of the expert store (see store_io.h): a fixed pool of
 * worker threads. submit puts a request on a bounded ring under the mutex and
 * signals `work`; a worker takes it, reads it with fm_pread_full (so the fault
 * injector and its messages apply), copies its thread's error message into the
 * completion, puts the completion on the done ring and signals `done`. The
 * caller's wait sleeps on `done` until the ring is non-empty. Every shared
 * field is read and written under the one mutex. */
#include "store/store_io.h"

#include "core/error.h"
#include "core/fileio.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    store_io base;
    pthread_mutex_t lock;
    pthread_cond_t work; /* a request was queued, or stop */
    pthread_cond_t done; /* a completion was queued */
    int depth;
    io_request *rq; /* ring of `depth` queued requests */
    int rq_head, rq_count;
    io_completion *cq; /* ring of `depth` completions not yet waited for */
    int cq_head, cq_count;
    int active;        /* requests queued or being read */
    double busy_since; /* when active last went from 0 to 1 */
    double busy_total;
    int stop;
    int n_threads;
    pthread_t *threads;
} io_pool;

double store_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
    io_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->rq_count == 0) pthread_cond_wait(&p->work, &p->lock);
        if (p->stop) break;
        io_request rq = p->rq[p->rq_head];
        p->rq_head = (p->rq_head + 1) % p->depth;
        p->rq_count--;
        pthread_mutex_unlock(&p->lock);

        io_completion c = {.tag = rq.tag, .status = FM_OK, .bytes = rq.len};
        fm_status st = fm_pread_full(rq.fd, rq.buf, rq.len, rq.offset, rq.path);
        if (st != FM_OK) {
            c.status = st;
            c.bytes = 0;
            snprintf(c.msg, sizeof c.msg, "%s", fm_last_error());
        }

        pthread_mutex_lock(&p->lock);
        p->cq[(p->cq_head + p->cq_count) % p->depth] = c;
        p->cq_count++;
        if (--p->active == 0) p->busy_total += store_now() - p->busy_since;
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void pool_submit(store_io *io, const io_request *rq) {
    io_pool *p = (io_pool *)io;
    pthread_mutex_lock(&p->lock);
    p->rq[(p->rq_head + p->rq_count) % p->depth] = *rq;
    p->rq_count++;
    if (p->active++ == 0) p->busy_since = store_now();
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

static void pool_flush(store_io *io) { (void)io; }

static void pool_wait(store_io *io, io_completion *out) {
    io_pool *p = (io_pool *)io;
    pthread_mutex_lock(&p->lock);
    while (p->cq_count == 0) pthread_cond_wait(&p->done, &p->lock);
    *out = p->cq[p->cq_head];
    p->cq_head = (p->cq_head + 1) % p->depth;
    p->cq_count--;
    pthread_mutex_unlock(&p->lock);
}

static double pool_busy_s(store_io *io) {
    io_pool *p = (io_pool *)io;
    pthread_mutex_lock(&p->lock);
    double t = p->busy_total + (p->active > 0 ? store_now() - p->busy_since : 0);
    pthread_mutex_unlock(&p->lock);
    return t;
}

static void pool_destroy(store_io *io) {
    io_pool *p = (io_pool *)io;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->rq);
    free(p->cq);
    free(p);
}

fm_status store_io_pool_create(int threads, int depth, store_io **out) {
    *out = NULL;
    io_pool *p = calloc(1, sizeof *p);
    if (!p) return fm_error(FM_ERR_NOMEM, "expert store: out of memory for the read pool");
    p->base = (store_io){pool_submit, pool_flush, pool_wait, pool_busy_s, pool_destroy};
    p->depth = depth;
    p->rq = calloc((size_t)depth, sizeof *p->rq);
    p->cq = calloc((size_t)depth, sizeof *p->cq);
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->rq || !p->cq || !p->threads) {
        free(p->rq), free(p->cq), free(p->threads), free(p);
        return fm_error(FM_ERR_NOMEM, "expert store: out of memory for the read pool");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < threads; i++) {
        int err = pthread_create(&p->threads[i], NULL, worker, p);
        if (err) {
            pool_destroy(&p->base); /* joins the n_threads already started */
            return fm_error(FM_ERR_NOMEM, "expert store: cannot start read thread %d of %d: %s", i + 1, threads,
                            strerror(err));
        }
        p->n_threads++;
    }
    *out = &p->base;
    return FM_OK;
}

/* The worker: one thread that owns the model's session and runs queued jobs
 * one at a time (the model's expert store and scratch serve one evaluation at
 * a time), reusing cached prompt prefixes. */
#ifndef FM_APP_SERVER_WORKER_H
#define FM_APP_SERVER_WORKER_H

#include "engine.h"
#include "server/job.h"
#include "server/prompt_cache.h"

typedef struct worker worker;

typedef struct {
    uint64_t cache_bytes; /* prompt cache budget; 0 = no cache (the live session is still reused) */
    int max_queue;        /* jobs waiting at most */
    int verbose;          /* one line per job on stderr */
} worker_options;

typedef struct {
    int queued, running;
    uint64_t jobs_done, jobs_cancelled, jobs_failed;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    prompt_cache_stats cache;
} worker_stats;

worker *worker_start(engine *e, const worker_options *o); /* NULL on failure (message printed) */
/* Cancels the running and queued jobs and joins the thread; later submits fail. */
void worker_stop(worker *w);
void worker_free(worker *w); /* after worker_stop */
/* Queues j (taking a reference). 0, or -1 when the queue is full. */
int worker_submit(worker *w, job *j);
void worker_get_stats(worker *w, worker_stats *out);

#endif

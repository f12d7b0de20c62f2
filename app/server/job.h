/* A generation request on its way through the server: created by an HTTP
 * thread from a parsed request, run by the worker thread, read (streamed or
 * waited for) by the HTTP thread. Shared between the two by reference count;
 * everything after `mu` is guarded by it. */
#ifndef FM_APP_SERVER_JOB_H
#define FM_APP_SERVER_JOB_H

#include "flashmoe.h"
#include "server/strbuf.h"
#include "server/tool_calls.h"

#include <pthread.h>
#include <stdatomic.h>

enum { JOB_MAX_STOP = 16 };

typedef struct job {
    /* The request (set before the job is queued; read-only after). */
    int32_t *ids;          /* the whole prompt */
    int n_ids;
    int n_base;            /* tokens of the conversation before the generation prompt (0: unknown):
                              the next turn of a conversation starts with them */
    fm_sampler_params sampling;
    int max_tokens;
    char *stop[JOB_MAX_STOP];
    int n_stop;
    char *tools_json;      /* tools passed to the template, or NULL: no tool calls are parsed */
    int think_open;        /* the prompt ends inside <think> */
    atomic_int cancel;     /* set by the HTTP side: the client went away */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    /* Output so far: raw text; its parts ready to stream. */
    strbuf raw;
    size_t reasoning_from, reasoning_to; /* raw[from, to): reasoning ready to send (to only grows);
                                            whitespace at either end is held back, as the final
                                            reasoning is trimmed (an empty one is never sent) */
    size_t think_close_at;               /* where </think> starts, once reasoning_done */
    size_t content_from, content_to;     /* raw[from, to): content ready to send; from is (size_t)-1
                                            until the newlines after </think> are past */
    int reasoning_done;                  /* no more reasoning will come */
    int started;           /* the worker took it: n_cached is known */
    int n_cached;          /* prompt tokens reused from the live session or the prompt cache */
    /* When done: */
    int done;
    int status;            /* 0, or the HTTP status of a failure (error set) */
    char error[512];
    const char *finish;    /* "stop", "length", "tool_calls", "stop string", "cancelled" */
    const char *stop_hit;  /* the stop string met, or NULL */
    int n_generated;
    double prefill_s, decode_s;
    assistant_output out;  /* the parsed answer (reasoning, content, tool calls) */
} job;

job *job_new(void); /* one reference, held by the caller */
void job_ref(job *j);
void job_unref(job *j);

/* Worker side: appends generated text and updates the streamable parts. */
void job_add_text(job *j, const char *text, size_t len);
/* Worker side: the job is over (the result fields set under the lock by the caller). */
void job_finish(job *j);

#endif

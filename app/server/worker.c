/* The worker thread (see worker.h).
 *
 * The live session keeps the state of the last job (its prompt and answer).
 * A new job continues from whatever shares the longest prefix with its
 * prompt: the live session as it is, or a snapshot from the prompt cache.
 * Snapshots are taken of every chat prompt before the template's generation
 * prompt (where the next turn of that conversation branches off, even when the
 * template rewrites the answer, as Qwen3's does with old reasoning; other
 * prompts at their end), and of the live session when another conversation is
 * about to replace it. */
#include "server/worker.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
    engine *e;
    worker_options opt;
    prompt_cache *cache;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job **queue; /* ring of max_queue */
    int head, count, stopping, running;
    job *current; /* the job running, cancelled by worker_stop */
    worker_stats stats;
    /* The live session: the tokens it holds, and whether the cache has them. */
    int32_t *live;
    int n_live, live_cap, live_cached;
    uint64_t rng; /* tool call ids */
};

static int live_set(worker *w, const int32_t *a, int na, const int32_t *b, int nb) {
    if (na + nb > w->live_cap) {
        int32_t *l = realloc(w->live, (size_t)(na + nb) * sizeof *l);
        if (!l) return -1;
        w->live = l;
        w->live_cap = na + nb;
    }
    memmove(w->live, a, (size_t)na * sizeof *a);
    memcpy(w->live + na, b, (size_t)nb * sizeof *b);
    w->n_live = na + nb;
    return 0;
}

/* Brings the session to the longest reusable prefix of the job's prompt; returns its length. */
static int reuse_prefix(worker *w, const job *j) {
    fm_session *s = w->e->session;
    const int n = j->n_ids;
    int live_len = common_prefix(w->live, w->n_live, j->ids, n);
    if (live_len > n - 1) live_len = n - 1;
    if (live_len < w->n_live && !fm_session_can_truncate(s)) live_len = 0;
    int cached_len = 0, index = w->cache ? prompt_cache_find(w->cache, s, j->ids, n, &cached_len) : -1;
    if (index >= 0 && cached_len > live_len) {
        if (!w->live_cached && w->n_live > 0) { /* keep the conversation we are leaving */
            prompt_cache_put(w->cache, s, w->live, w->n_live);
            w->live_cached = 1;
            index = prompt_cache_find(w->cache, s, j->ids, n, &cached_len); /* the put may have evicted it */
        }
        if (index >= 0 && prompt_cache_restore(w->cache, index, s, cached_len) == FM_OK) {
            w->n_live = cached_len;
            memcpy(w->live, j->ids, (size_t)cached_len * sizeof *j->ids);
            return cached_len;
        }
        live_len = 0; /* the restore failed: start clean */
    }
    if (live_len > 0 && live_len < w->n_live && fm_session_truncate(s, live_len) != FM_OK) live_len = 0;
    if (live_len == 0) {
        if (w->cache && !w->live_cached && w->n_live > 0) prompt_cache_put(w->cache, s, w->live, w->n_live);
        fm_session_reset(s);
    }
    w->n_live = live_len;
    return live_len;
}

typedef struct {
    worker *w;
    job *j;
} run_ctx;

static void on_text(void *user, const char *text, size_t len) {
    run_ctx *r = user;
    job_add_text(r->j, text, len);
}

static int is_cancelled(void *user) {
    run_ctx *r = user;
    return atomic_load(&r->j->cancel);
}

/* Without a snapshot before the generation prompt (completions, or a template whose pieces do
 * not tokenize apart), one of the whole prompt; with one, this would add only its few tokens. */
static void on_prefilled(void *user) {
    run_ctx *r = user;
    if (r->w->cache && !r->j->n_base) prompt_cache_put(r->w->cache, r->w->e->session, r->j->ids, r->j->n_ids);
}

static void on_checkpoint(void *user) {
    run_ctx *r = user;
    if (r->w->cache) prompt_cache_put(r->w->cache, r->w->e->session, r->j->ids, r->j->n_base);
}

/* Without tools a <tool_call> the model writes is text: the content is the answer as written
 * after its reasoning (what was streamed). */
static void keep_text_as_written(assistant_output *out, const char *text, int think_open) {
    char *reasoning = out->reasoning;
    out->reasoning = NULL;
    assistant_output_free(out);
    out->reasoning = reasoning;
    const char *start = text + strspn(text, " \n");
    if (think_open || !strncmp(start, "<think>", strlen("<think>"))) { /* as job.c splits the stream */
        const char *close = strstr(text, "</think>");
        text = close ? close + strlen("</think>") : text + strlen(text);
        while (*text == '\n') text++;
    }
    out->content = strdup(text);
}

static void run_job(worker *w, job *j) {
    engine *e = w->e;
    int cached = reuse_prefix(w, j);
    pthread_mutex_lock(&j->mu);
    j->n_cached = cached;
    j->started = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    fm_sampler *sampler = NULL;
    engine_result r = {0};
    int rc;
    if (fm_sampler_new(&j->sampling, e->info->vocab_size, &sampler) != FM_OK) {
        snprintf(r.error, sizeof r.error, "sampler: %s", fm_last_error());
        rc = 1;
    } else {
        for (int i = 0; i < cached; i++) fm_sampler_accept(sampler, j->ids[i]);
        run_ctx ctx = {w, j};
        generate_params p = {.session = e->session,
                             .sampler = sampler,
                             .max_tokens = j->max_tokens,
                             .stop = (const char *const *)j->stop,
                             .n_stop = j->n_stop,
                             .on_text = on_text,
                             .cancelled = is_cancelled,
                             .on_prefilled = on_prefilled,
                             .checkpoint = j->n_base - cached,
                             .on_checkpoint = j->n_base > cached ? on_checkpoint : NULL,
                             .user = &ctx};
        rc = engine_generate_with(e, j->ids + cached, j->n_ids - cached, &p, &r);
    }
    fm_sampler_free(sampler);
    /* What the live session holds now: the prompt and the answer, as far as they went. */
    int pos = fm_session_position(e->session);
    if (live_set(w, j->ids, j->n_ids, r.tokens, r.n_tokens) || pos > w->n_live) {
        fm_session_reset(e->session);
        w->n_live = 0;
    } else {
        w->n_live = pos;
    }
    w->live_cached = 0;

    assistant_output out = {0};
    int parsed = rc ? -1 : assistant_parse(r.text ? r.text : "", r.text ? strlen(r.text) : 0, j->tools_json,
                                           j->think_open, &w->rng, &out);
    pthread_mutex_lock(&j->mu);
    j->n_generated = r.n_generated;
    j->prefill_s = r.prefill_s;
    j->decode_s = r.decode_s;
    if (rc) {
        j->status = 500;
        snprintf(j->error, sizeof j->error, "%s", r.error[0] ? r.error : "generation failed");
    } else if (parsed) {
        j->status = 500;
        snprintf(j->error, sizeof j->error, "out of memory parsing the answer");
    } else {
        if (!j->tools_json) keep_text_as_written(&out, r.text ? r.text : "", j->think_open);
        j->out = out;
        j->finish = !strcmp(r.finish, "stop string") ? "stop" : !strcmp(r.finish, "context") ? "length" : r.finish;
        if (out.n_calls && strcmp(j->finish, "cancelled")) j->finish = "tool_calls";
        j->stop_hit = r.stop_hit;
    }
    pthread_mutex_unlock(&j->mu);

    pthread_mutex_lock(&w->mu);
    w->stats.prompt_tokens += (uint64_t)j->n_ids;
    w->stats.cached_tokens += (uint64_t)cached;
    w->stats.generated_tokens += (uint64_t)r.n_generated;
    if (w->cache) prompt_cache_get_stats(w->cache, &w->stats.cache);
    if (rc) w->stats.jobs_failed++;
    else if (r.finish && !strcmp(r.finish, "cancelled")) w->stats.jobs_cancelled++;
    else w->stats.jobs_done++;
    pthread_mutex_unlock(&w->mu);
    if (w->opt.verbose)
        fprintf(stderr, "flashmoe serve: job: prompt %d tokens (%d cached), %d generated, prefill %.3f s, "
                "decode %.3f s, %s%s%s\n", j->n_ids, cached, r.n_generated, r.prefill_s, r.decode_s,
                rc ? "failed: " : "finish ", rc ? j->error : r.finish, out.error ? " (invalid tool call)" : "");
    engine_result_free(&r);
    job_finish(j);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->count && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->count) { /* stopping, nothing left */
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        job *j = w->queue[w->head];
        w->head = (w->head + 1) % w->opt.max_queue;
        w->count--;
        w->running = 1;
        w->current = j;
        int stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stopping) atomic_store(&j->cancel, 1);
        run_job(w, j);
        pthread_mutex_lock(&w->mu);
        w->current = NULL; /* before the last reference can go */
        w->running = 0;
        pthread_mutex_unlock(&w->mu);
        job_unref(j);
    }
}

worker *worker_start(engine *e, const worker_options *o) {
    worker *w = calloc(1, sizeof *w);
    if (!w) return cli_fail("out of memory"), NULL;
    w->e = e;
    w->opt = *o;
    if (w->opt.max_queue < 1) w->opt.max_queue = 1;
    w->queue = calloc((size_t)w->opt.max_queue, sizeof *w->queue);
    w->rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)clock();
    if (!w->queue || (o->cache_bytes && !(w->cache = prompt_cache_new(o->cache_bytes)))) {
        free(w->queue);
        free(w);
        return cli_fail("out of memory"), NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w)) {
        prompt_cache_free(w->cache);
        free(w->queue);
        free(w);
        return cli_fail("cannot start the worker thread"), NULL;
    }
    return w;
}

void worker_stop(worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    for (int i = 0; i < w->count; i++) atomic_store(&w->queue[(w->head + i) % w->opt.max_queue]->cancel, 1);
    if (w->current) atomic_store(&w->current->cancel, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
}

void worker_free(worker *w) {
    if (!w) return;
    prompt_cache_free(w->cache);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->queue);
    free(w->live);
    free(w);
}

int worker_submit(worker *w, job *j) {
    pthread_mutex_lock(&w->mu);
    if (w->count == w->opt.max_queue || w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    job_ref(j);
    w->queue[(w->head + w->count++) % w->opt.max_queue] = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void worker_get_stats(worker *w, worker_stats *out) {
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queued = w->count;
    out->running = w->running;
    pthread_mutex_unlock(&w->mu);
}

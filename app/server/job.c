/* Jobs (see job.h). */
#include "server/job.h"

#include <stdlib.h>
#include <string.h>

job *job_new(void) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, 0);
    j->refs = 1;
    return j;
}

void job_ref(job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void job_unref(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    free(j->ids);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->tools_json);
    sb_free(&j->raw);
    assistant_output_free(&j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static const char think_close[] = "</think>";

/* Splits raw text into reasoning (up to </think>) and content (after it, up to
 * what may begin a tool call or a marker); the bounds only grow. */
static void update_parts(job *j) {
    const char *raw = j->raw.data ? j->raw.data : "";
    const size_t len = j->raw.len;
    if (!j->reasoning_done) {
        if (!j->think_open) { /* reasoning only if the answer opens with <think> */
            size_t ws = 0;
            while (ws < len && (raw[ws] == ' ' || raw[ws] == '\n')) ws++;
            const size_t open_len = strlen("<think>");
            size_t have = len - ws < open_len ? len - ws : open_len;
            if (strncmp(raw + ws, "<think>", have)) {
                j->reasoning_done = 1; /* plain answer */
                j->content_from = j->content_to = 0;
            } else if (have < open_len) {
                return; /* may still be <think> */
            } else {
                j->think_open = 1;
                j->reasoning_from = j->reasoning_to = ws + open_len;
            }
        }
        if (!j->reasoning_done) {
            /* Leading whitespace is never sent: skip it while nothing has been. */
            while (j->reasoning_to == j->reasoning_from && j->reasoning_from < len &&
                   (raw[j->reasoning_from] == ' ' || raw[j->reasoning_from] == '\n'))
                j->reasoning_from++, j->reasoning_to++;
            const char *close = strstr(raw + j->reasoning_from, think_close);
            size_t end;
            if (close) {
                j->think_close_at = (size_t)(close - raw);
                j->reasoning_done = 1;
                end = j->think_close_at;
            } else {
                end = j->reasoning_from + assistant_stream_safe(raw + j->reasoning_from, len - j->reasoning_from);
            }
            while (end > j->reasoning_from && (raw[end - 1] == ' ' || raw[end - 1] == '\n')) end--; /* held back */
            if (end > j->reasoning_to) j->reasoning_to = end;
            if (!close) return;
            size_t c = j->think_close_at + strlen(think_close);
            while (c < len && raw[c] == '\n') c++;
            j->content_from = j->content_to = c;
            if (c == len) j->content_from = j->content_to = (size_t)-1; /* newlines may follow */
        }
    }
    if (j->content_from == (size_t)-1) { /* skip newlines after </think> */
        size_t c = j->think_close_at + strlen(think_close);
        while (c < len && raw[c] == '\n') c++;
        if (c == len) return;
        j->content_from = j->content_to = c;
    }
    size_t safe = j->content_from;
    if (j->tools_json) safe += assistant_stream_safe(raw + j->content_from, len - j->content_from);
    else safe = len;
    if (safe > j->content_to) j->content_to = safe;
}

void job_add_text(job *j, const char *text, size_t len) {
    pthread_mutex_lock(&j->mu);
    sb_append(&j->raw, text, len);
    update_parts(j);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void job_finish(job *j) {
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

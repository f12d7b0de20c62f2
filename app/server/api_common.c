/* What the API parsers share (see api.h): sampling fields, stop strings, the
 * chat template and tokenizer, the context check. */
#include "server/api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int api_fail(api_error *err, int status, const char *fmt, ...) {
    err->status = status;
    if (!err->type)
        err->type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                    : status == 413 ? "request_too_large" : status == 429 ? "rate_limit_error"
                    : status >= 500 ? "api_error" : "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* A number field: absent or null leaves *out; otherwise it must lie in [lo, hi]. */
static int number_field(const cJSON *body, const char *name, double lo, double hi, double *out, api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return api_fail(err, 400, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return api_fail(err, 400, "'%s' is %g; it must be between %g and %g", name, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return 1;
}

int api_parse_model_stream(server *srv, const cJSON *body, api_request *req, api_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    snprintf(req->model, sizeof req->model, "%s", cJSON_IsString(model) ? model->valuestring : srv->cfg.model_id);
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(body, "stream");
    if (stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) return api_fail(err, 400, "'stream' must be a boolean");
    req->stream = cJSON_IsTrue(stream);
    return 0;
}

int api_parse_sampling(server *srv, const cJSON *body, job *j, api_error *err) {
    const fm_model_info *in = srv->e->info;
    fm_sampler_params sp = fm_sampler_default_params();
    /* The model's generation_config.json, else the values chat uses. */
    sp.temperature = in->default_temperature >= 0 ? in->default_temperature : 0.7f;
    sp.top_k = in->default_top_k >= 0 ? in->default_top_k : 20;
    sp.top_p = in->default_top_p > 0 ? in->default_top_p : 0.8f;
    if (in->default_min_p >= 0) sp.min_p = in->default_min_p;
    if (in->default_repetition_penalty > 0) sp.repetition_penalty = in->default_repetition_penalty;
    double v;
    int r;
    if ((r = number_field(body, "temperature", 0, 100, &v, err)) < 0) return -1;
    if (r) sp.temperature = (float)v;
    if ((r = number_field(body, "top_p", 0, 1, &v, err)) < 0) return -1;
    if (r) sp.top_p = v > 0 ? (float)v : 1e-6f;
    if ((r = number_field(body, "top_k", -1, 1e9, &v, err)) < 0) return -1;
    if (r) {
        if (v != floor(v)) return api_fail(err, 400, "'top_k' must be an integer");
        sp.top_k = v < 0 ? 0 : (int)v;
    }
    if ((r = number_field(body, "min_p", 0, 1, &v, err)) < 0) return -1;
    if (r) sp.min_p = (float)v;
    if ((r = number_field(body, "presence_penalty", -2, 2, &v, err)) < 0) return -1;
    if (r) sp.presence_penalty = (float)v;
    if ((r = number_field(body, "frequency_penalty", -2, 2, &v, err)) < 0) return -1;
    if (r) sp.frequency_penalty = (float)v;
    if ((r = number_field(body, "repetition_penalty", 0.01, 100, &v, err)) < 0) return -1;
    if (r) sp.repetition_penalty = (float)v;
    /* -2^63 .. 1.8e19 (< 2^64): both casts below are defined */
    if ((r = number_field(body, "seed", -9223372036854775808.0, 1.8e19, &v, err)) < 0) return -1;
    if (r) {
        if (v != floor(v)) return api_fail(err, 400, "'seed' must be an integer");
        sp.seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sp.seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)j << 16);
    }
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
    if (n && !cJSON_IsNull(n) && !(cJSON_IsNumber(n) && n->valuedouble == 1))
        return api_fail(err, 400, "'n' must be 1: flashmoe generates one choice per request");
    j->sampling = sp;
    return 0;
}

int api_text_content(const cJSON *content, const char *where, strbuf *out, api_error *err) {
    if (!content || cJSON_IsNull(content)) return 0;
    if (cJSON_IsString(content)) return sb_puts(out, content->valuestring), 0;
    if (!cJSON_IsArray(content)) return api_fail(err, 400, "%s must be a string or an array of text parts", where);
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text"))
            return api_fail(err, 400, "%s: only text parts are supported (got '%s')", where,
                            cJSON_IsString(type) ? type->valuestring : "?");
        if (!cJSON_IsString(text)) return api_fail(err, 400, "%s: a text part without text", where);
        sb_puts(out, text->valuestring);
    }
    return 0;
}

int api_add_stop(job *j, const cJSON *stop, const char *field, api_error *err) {
    if (!stop || cJSON_IsNull(stop)) return 0;
    if (cJSON_IsString(stop)) {
        if (!*stop->valuestring) return 0;
        if (!(j->stop[j->n_stop++] = strdup(stop->valuestring))) return api_fail(err, 500, "out of memory");
        return 0;
    }
    if (!cJSON_IsArray(stop)) return api_fail(err, 400, "'%s' must be a string or an array of strings", field);
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return api_fail(err, 400, "'%s' must hold strings", field);
        if (!*s->valuestring) continue;
        if (j->n_stop == JOB_MAX_STOP) return api_fail(err, 400, "'%s': at most %d stop strings", field, JOB_MAX_STOP);
        if (!(j->stop[j->n_stop++] = strdup(s->valuestring))) return api_fail(err, 500, "out of memory");
    }
    return 0;
}

/* The prompt ends inside an open <think> block (the template opened it). */
static int ends_in_think(const char *text) {
    const char *open = NULL;
    for (const char *p = text; (p = strstr(p, "<think>")); p++) open = p;
    return open && !strstr(open, "</think>");
}

int api_tokenize_prompt(server *srv, const char *text, job *j, api_error *err) {
    pthread_mutex_lock(&srv->text_mu);
    fm_status st = fm_tokenizer_encode(srv->e->tok, text, strlen(text), &j->ids, &j->n_ids);
    pthread_mutex_unlock(&srv->text_mu);
    if (st != FM_OK) return api_fail(err, 400, "cannot tokenize the prompt: %s", fm_last_error());
    if (j->n_ids == 0) return api_fail(err, 400, "the prompt is empty");
    return 0;
}

/* Tokens of `text` when they begin ids[0, n) (same tokenization at the boundary), else 0. */
static int prefix_tokens(server *srv, const char *text, const int32_t *ids, int n) {
    int32_t *base = NULL;
    int nb = 0;
    if (fm_tokenizer_encode(srv->e->tok, text, strlen(text), &base, &nb) != FM_OK) return 0;
    int ok = nb > 0 && nb < n && !memcmp(base, ids, (size_t)nb * sizeof *ids);
    free(base);
    return ok ? nb : 0;
}

int api_render_chat(server *srv, cJSON *messages, cJSON *tools, int thinking, const char *prefill, job *j,
                    api_error *err) {
    if (!srv->e->tmpl) return api_fail(err, 400, "this model has no chat template: use /v1/completions");
    char *json = cJSON_PrintUnformatted(messages), *tools_json = tools ? cJSON_PrintUnformatted(tools) : NULL;
    char *text = NULL, *base = NULL;
    int rc = 0;
    if (!json || (tools && !tools_json) || (tools_json && !(j->tools_json = strdup(tools_json))))
        rc = api_fail(err, 500, "out of memory");
    fm_chat_options co = {.add_generation_prompt = 1, .enable_thinking = thinking};
    pthread_mutex_lock(&srv->text_mu);
    if (!rc && fm_chat_template_render(srv->e->tmpl, json, tools_json, &co, &text) != FM_OK)
        rc = api_fail(err, 400, "the chat template rejected the messages: %s", fm_last_error());
    if (!rc && prefill && *prefill) {
        char *joined = malloc(strlen(text) + strlen(prefill) + 1);
        if (!joined) rc = api_fail(err, 500, "out of memory");
        else sprintf(joined, "%s%s", text, prefill);
        free(text);
        text = joined;
    }
    if (!rc && fm_tokenizer_encode(srv->e->tok, text, strlen(text), &j->ids, &j->n_ids) != FM_OK)
        rc = api_fail(err, 400, "cannot tokenize the prompt: %s", fm_last_error());
    if (!rc && !j->n_ids) rc = api_fail(err, 400, "the prompt is empty");
    /* The conversation without the generation prompt: where its next turn branches off, since
     * templates render an answer in the history unlike the model wrote it (e.g. without its
     * reasoning). The worker snapshots the session there. */
    co.add_generation_prompt = 0;
    if (!rc && fm_chat_template_render(srv->e->tmpl, json, tools_json, &co, &base) == FM_OK)
        j->n_base = prefix_tokens(srv, base, j->ids, j->n_ids);
    pthread_mutex_unlock(&srv->text_mu);
    if (!rc) j->think_open = ends_in_think(text);
    free(base);
    free(text);
    cJSON_free(json);
    cJSON_free(tools_json);
    return rc;
}

int api_check_context(server *srv, job *j, int max_tokens_given, api_error *err) {
    int ctx = srv->e->max_context;
    if (j->n_ids >= ctx)
        return api_fail(err, 400, "the prompt has %d tokens; the context holds %d (flashmoe serve --ctx)", j->n_ids, ctx);
    int room = ctx - j->n_ids;
    if (max_tokens_given > 0) j->max_tokens = max_tokens_given;
    else j->max_tokens = srv->cfg.default_max_tokens;
    if (j->max_tokens > room) j->max_tokens = room; /* finish_reason "length" at the context's end */
    return 0;
}

/* What the final parse found beyond what was streamed (when it extends it), else "". */
static const char *unsent(const char *final, const char *raw_sent, size_t sent) {
    if (!final) return "";
    size_t n = strlen(final);
    if (sent <= n && (!sent || !memcmp(final, raw_sent, sent))) return final + sent;
    return "";
}

void api_stream_text(api_request *req, api_emit emit, strbuf *out) {
    const job *j = req->job;
    const char *raw = j->raw.data ? j->raw.data : "";
    if (j->reasoning_to > j->reasoning_from + req->sent_reasoning) {
        emit(req, out, 1, raw + j->reasoning_from + req->sent_reasoning,
             j->reasoning_to - j->reasoning_from - req->sent_reasoning);
        req->sent_reasoning = j->reasoning_to - j->reasoning_from;
    }
    const int content_ready = j->content_from != (size_t)-1 && j->reasoning_done;
    if (content_ready && j->content_to > j->content_from + req->sent_content) {
        emit(req, out, 0, raw + j->content_from + req->sent_content, j->content_to - j->content_from - req->sent_content);
        req->sent_content = j->content_to - j->content_from;
    }
    if (!j->done || j->status) return;
    const char *more = unsent(j->out.reasoning, raw + j->reasoning_from, req->sent_reasoning);
    emit(req, out, 1, more, strlen(more));
    more = unsent(j->out.content, content_ready ? raw + j->content_from : "", req->sent_content);
    emit(req, out, 0, more, strlen(more));
}

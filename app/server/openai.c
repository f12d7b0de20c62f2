/* OpenAI API: POST /v1/chat/completions and /v1/completions (see api.h). */
#include "server/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request's tools for the template: function tools only. */
static int check_tools(const cJSON *tools, api_error *err) {
    if (!cJSON_IsArray(tools)) return api_fail(err, 400, "'tools' must be an array");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsObject(fn) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name")))
            return api_fail(err, 400, "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\": ...}}", i);
        i++;
    }
    return 0;
}

/* tool_choice: "auto" (default), "none" (no tools), "required" (tools as for auto: flashmoe does not
 * constrain decoding), or one named function (only that tool is offered). */
static int apply_tool_choice(const cJSON *choice, cJSON **tools, api_error *err) {
    if (!choice || cJSON_IsNull(choice)) return 0;
    if (cJSON_IsString(choice)) {
        if (!strcmp(choice->valuestring, "none")) {
            cJSON_Delete(*tools);
            *tools = NULL;
            return 0;
        }
        if (!strcmp(choice->valuestring, "auto") || !strcmp(choice->valuestring, "required")) return 0;
        return api_fail(err, 400, "'tool_choice' must be \"none\", \"auto\", \"required\" or a function");
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsString(name)) return api_fail(err, 400, "'tool_choice' must name a function");
    if (!*tools) return api_fail(err, 400, "'tool_choice' names '%s' but no tools were given", name->valuestring);
    cJSON *only = cJSON_CreateArray(), *t;
    cJSON_ArrayForEach(t, *tools) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name->valuestring))
            cJSON_AddItemToArray(only, cJSON_Duplicate(t, 1));
    }
    cJSON_Delete(*tools);
    *tools = only;
    if (!cJSON_GetArraySize(only))
        return api_fail(err, 400, "'tool_choice' names '%s', which is not among the tools", name->valuestring);
    return 0;
}

/* The messages as the template takes them: text content, tool call arguments as objects. */
static cJSON *template_messages(const cJSON *messages, api_error *err) {
    if (!cJSON_IsArray(messages) || !cJSON_GetArraySize(messages))
        return api_fail(err, 400, "'messages' must be a non-empty array"), NULL;
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
        int known = 0;
        for (int k = 0; k < 5 && cJSON_IsString(role); k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known) {
            cJSON_Delete(out);
            return api_fail(err, 400, "messages[%d].role must be system, developer, user, assistant or tool", i), NULL;
        }
        strbuf text = {0};
        char where[48];
        snprintf(where, sizeof where, "messages[%d].content", i);
        if (api_text_content(cJSON_GetObjectItemCaseSensitive(m, "content"), where, &text, err)) {
            sb_free(&text);
            cJSON_Delete(out);
            return NULL;
        }
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "role", !strcmp(role->valuestring, "developer") ? "system" : role->valuestring);
        cJSON_AddStringToObject(t, "content", text.data ? text.data : "");
        sb_free(&text);
        const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(m, "reasoning_content");
        if (cJSON_IsString(reasoning)) cJSON_AddStringToObject(t, "reasoning_content", reasoning->valuestring);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
        if (cJSON_IsString(id)) cJSON_AddStringToObject(t, "tool_call_id", id->valuestring);
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (calls && !cJSON_IsNull(calls)) {
            if (!cJSON_IsArray(calls)) {
                cJSON_Delete(t);
                cJSON_Delete(out);
                return api_fail(err, 400, "messages[%d].tool_calls must be an array", i), NULL;
            }
            cJSON *tc = cJSON_AddArrayToObject(t, "tool_calls"), *c;
            int k = 0;
            cJSON_ArrayForEach(c, calls) {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
                if (!cJSON_IsString(name)) {
                    cJSON_Delete(t);
                    cJSON_Delete(out);
                    return api_fail(err, 400, "messages[%d].tool_calls[%d].function.name is missing", i, k), NULL;
                }
                cJSON *call = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(call, "function");
                const cJSON *cid = cJSON_GetObjectItemCaseSensitive(c, "id");
                if (cJSON_IsString(cid)) cJSON_AddStringToObject(call, "id", cid->valuestring);
                cJSON_AddStringToObject(call, "type", "function");
                cJSON_AddStringToObject(f, "name", name->valuestring);
                /* Templates iterate or print the arguments as a mapping. */
                cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
                if (cJSON_IsObject(parsed)) cJSON_AddItemToObject(f, "arguments", parsed);
                else {
                    cJSON_Delete(parsed);
                    if (cJSON_IsObject(args)) cJSON_AddItemToObject(f, "arguments", cJSON_Duplicate(args, 1));
                    else cJSON_AddItemToObject(f, "arguments", cJSON_CreateObject());
                }
                cJSON_AddItemToArray(tc, call);
                k++;
            }
        }
        cJSON_AddItemToArray(out, t);
        i++;
    }
    return out;
}

static int positive_int_field(const cJSON *body, const char *name, int *out, api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e9 || v->valuedouble != (int)v->valuedouble)
        return api_fail(err, 400, "'%s' must be a positive integer", name);
    *out = (int)v->valuedouble;
    return 0;
}

/* Fields every OpenAI request has: model, stream, stream_options, max tokens, sampling. */
static int common_fields(server *srv, cJSON *body, api_request *req, int *max_tokens, api_error *err) {
    if (api_parse_model_stream(srv, body, req, err)) return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    req->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    *max_tokens = 0;
    if (positive_int_field(body, "max_tokens", max_tokens, err) ||
        positive_int_field(body, "max_completion_tokens", max_tokens, err))
        return -1;
    return api_parse_sampling(srv, body, req->job, err);
}

int openai_chat_parse(server *srv, cJSON *body, api_request *req, api_error *err) {
    job *j = req->job;
    int max_tokens;
    if (common_fields(srv, body, req, &max_tokens, err) ||
        api_add_stop(j, cJSON_GetObjectItemCaseSensitive(body, "stop"), "stop", err))
        return -1;
    cJSON *tools = NULL, *raw_tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (raw_tools && !cJSON_IsNull(raw_tools)) {
        if (check_tools(raw_tools, err)) return -1;
        if (cJSON_GetArraySize(raw_tools)) tools = cJSON_Duplicate(raw_tools, 1);
    }
    if (apply_tool_choice(cJSON_GetObjectItemCaseSensitive(body, "tool_choice"), &tools, err)) {
        cJSON_Delete(tools);
        return -1;
    }
    cJSON *messages = template_messages(cJSON_GetObjectItemCaseSensitive(body, "messages"), err);
    if (!messages) {
        cJSON_Delete(tools);
        return -1;
    }
    /* Thinking: the server's setting unless the request says (chat_template_kwargs, as vLLM takes it). */
    int thinking = srv->cfg.thinking;
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking");
    if (cJSON_IsBool(et)) thinking = cJSON_IsTrue(et);
    int rc = api_render_chat(srv, messages, tools, thinking, NULL, j, err);
    cJSON_Delete(messages);
    cJSON_Delete(tools);
    return rc ? rc : api_check_context(srv, j, max_tokens, err);
}

int openai_completions_parse(server *srv, cJSON *body, api_request *req, api_error *err) {
    job *j = req->job;
    int max_tokens;
    if (common_fields(srv, body, req, &max_tokens, err) ||
        api_add_stop(j, cJSON_GetObjectItemCaseSensitive(body, "stop"), "stop", err))
        return -1;
    if (!max_tokens) max_tokens = 16; /* the API's default for completions */
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1 && cJSON_IsString(prompt->child))
        prompt = prompt->child;
    if (cJSON_IsString(prompt)) {
        if (api_tokenize_prompt(srv, prompt->valuestring, j, err)) return -1;
    } else if (cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) > 0 && cJSON_IsNumber(prompt->child)) {
        int n = cJSON_GetArraySize(prompt), k = 0;
        if (!(j->ids = malloc((size_t)n * sizeof *j->ids))) return api_fail(err, 500, "out of memory");
        const cJSON *t;
        cJSON_ArrayForEach(t, prompt) {
            if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= srv->e->info->vocab_size ||
                t->valuedouble != (int)t->valuedouble)
                return api_fail(err, 400, "prompt[%d] is not a token id in [0, %d)", k, srv->e->info->vocab_size);
            j->ids[k++] = (int32_t)t->valuedouble;
        }
        j->n_ids = n;
    } else {
        return api_fail(err, 400, "'prompt' must be a string, an array of one string, or an array of token ids");
    }
    const cJSON *echo = cJSON_GetObjectItemCaseSensitive(body, "echo");
    if (cJSON_IsTrue(echo)) return api_fail(err, 400, "'echo' is not supported");
    return api_check_context(srv, j, max_tokens, err);
}

static cJSON *usage_json(const job *j) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_ids);
    cJSON_AddNumberToObject(u, "completion_tokens", j->n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_ids + j->n_generated);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", j->n_cached); /* reused from the prompt cache */
    return u;
}

static const char *finish_reason(const job *j) {
    return !strcmp(j->finish, "cancelled") ? "stop" : j->finish; /* never seen by a client that left */
}

static cJSON *tool_calls_json(const job *j, int with_index) {
    cJSON *calls = cJSON_CreateArray();
    for (int i = 0; i < j->out.n_calls; i++) {
        cJSON *c = cJSON_CreateObject();
        if (with_index) cJSON_AddNumberToObject(c, "index", i);
        cJSON_AddStringToObject(c, "id", j->out.calls[i].id);
        cJSON_AddStringToObject(c, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(f, "name", j->out.calls[i].name);
        cJSON_AddStringToObject(f, "arguments", j->out.calls[i].arguments);
        cJSON_AddItemToArray(calls, c);
    }
    return calls;
}

static cJSON *envelope(const api_request *req, const char *object) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", req->id);
    cJSON_AddStringToObject(r, "object", object);
    cJSON_AddNumberToObject(r, "created", (double)req->created);
    cJSON_AddStringToObject(r, "model", req->model);
    return r;
}

char *openai_response(api_request *req) {
    const job *j = req->job;
    const int chat = req->kind == API_CHAT;
    cJSON *r = envelope(req, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        if (j->out.n_calls && !*j->out.content) cJSON_AddNullToObject(m, "content");
        else cJSON_AddStringToObject(m, "content", j->out.content ? j->out.content : "");
        if (j->out.reasoning) cJSON_AddStringToObject(m, "reasoning_content", j->out.reasoning);
        if (j->out.n_calls) cJSON_AddItemToObject(m, "tool_calls", tool_calls_json(j, 0));
        /* The model wrote a tool call that could not be used: its text stays in content. */
        if (j->out.error) cJSON_AddStringToObject(m, "tool_call_error", j->out.error);
    } else {
        cJSON_AddStringToObject(c, "text", j->raw.data ? j->raw.data : "");
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(j));
    cJSON_AddItemToArray(choices, c);
    cJSON_AddItemToObject(r, "usage", usage_json(j));
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static void sse(strbuf *out, cJSON *event) {
    char *s = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (!s) {
        out->failed = 1;
        return;
    }
    sb_printf(out, "data: %s\n\n", s);
    cJSON_free(s);
}

/* One chunk: a chat delta (or completion text) and a finish reason (NULL: null). */
static cJSON *chunk(const api_request *req, cJSON *delta, const char *text, const char *finish) {
    const int chat = req->kind == API_CHAT;
    cJSON *r = envelope(req, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) cJSON_AddItemToObject(c, "delta", delta ? delta : cJSON_CreateObject());
    else cJSON_AddStringToObject(c, "text", text ? text : "");
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    return r;
}

static void delta_text(const api_request *req, strbuf *out, const char *field, const char *text, size_t n) {
    if (!n) return;
    char *t = strndup(text, n);
    if (!t) {
        out->failed = 1;
        return;
    }
    cJSON *d = NULL;
    if (req->kind == API_CHAT) {
        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, field, t);
    }
    sse(out, chunk(req, d, t, NULL));
    free(t);
}

static void chat_delta(api_request *req, strbuf *out, int reasoning, const char *text, size_t n) {
    delta_text(req, out, reasoning ? "reasoning_content" : "content", text, n);
}

void openai_stream(api_request *req, strbuf *out) {
    job *j = req->job;
    const char *raw = j->raw.data ? j->raw.data : "";
    if (req->finished) return;
    if (!req->started && req->kind == API_CHAT) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "role", "assistant");
        cJSON_AddStringToObject(d, "content", "");
        sse(out, chunk(req, d, NULL, NULL));
    }
    req->started = 1;
    if (req->kind == API_COMPLETIONS) { /* raw text, no reasoning or tools */
        delta_text(req, out, NULL, raw + req->sent_content, j->raw.len - req->sent_content);
        req->sent_content = j->raw.len;
    } else {
        api_stream_text(req, chat_delta, out);
    }
    if (!j->done || j->status) return;
    if (req->kind == API_CHAT && j->out.n_calls) { /* the tool calls, parsed at the end */
        cJSON *d = cJSON_CreateObject();
        cJSON_AddItemToObject(d, "tool_calls", tool_calls_json(j, 1));
        sse(out, chunk(req, d, NULL, NULL));
    }
    cJSON *last = chunk(req, NULL, NULL, finish_reason(j));
    if (j->out.error) cJSON_AddStringToObject(last, "tool_call_error", j->out.error);
    sse(out, last);
    if (req->include_usage) {
        cJSON *u = envelope(req, req->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(u, "choices");
        cJSON_AddItemToObject(u, "usage", usage_json(j));
        sse(out, u);
    }
    sb_puts(out, "data: [DONE]\n\n");
    req->finished = 1;
}

char *openai_error_body(const api_error *err) {
    cJSON *r = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(e, "message", err->message);
    cJSON_AddStringToObject(e, "type", err->type ? err->type : "invalid_request_error");
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

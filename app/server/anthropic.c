/* Anthropic API: POST /v1/messages (see api.h). Requests are turned into the
 * OpenAI-shaped messages the chat template takes: tool_use blocks become
 * assistant tool_calls, tool_result blocks tool messages, thinking blocks
 * reasoning_content. */
#include "server/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *text_message(const char *role, const char *text) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", text);
    return m;
}

/* One user message: text, then tool results as tool messages, in order. */
static int user_message(const cJSON *content, int i, cJSON *out, api_error *err) {
    char where[64];
    snprintf(where, sizeof where, "messages[%d].content", i);
    if (cJSON_IsString(content)) return cJSON_AddItemToArray(out, text_message("user", content->valuestring)), 0;
    if (!cJSON_IsArray(content)) return api_fail(err, 400, "%s must be a string or an array of blocks", where);
    strbuf text = {0};
    const cJSON *b;
    cJSON_ArrayForEach(b, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (!strcmp(t, "text") && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "text"))) {
            sb_puts(&text, cJSON_GetObjectItemCaseSensitive(b, "text")->valuestring);
        } else if (!strcmp(t, "tool_result")) {
            if (text.len) cJSON_AddItemToArray(out, text_message("user", text.data)), text.len = 0;
            strbuf result = {0};
            if (api_text_content(cJSON_GetObjectItemCaseSensitive(b, "content"), where, &result, err)) {
                sb_free(&result);
                sb_free(&text);
                return -1;
            }
            cJSON *m = text_message("tool", result.data ? result.data : "");
            sb_free(&result);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "tool_use_id");
            if (cJSON_IsString(id)) cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
            cJSON_AddItemToArray(out, m);
        } else {
            sb_free(&text);
            return api_fail(err, 400, "%s: blocks of type '%s' are not supported in user messages", where, t);
        }
    }
    if (text.len) cJSON_AddItemToArray(out, text_message("user", text.data));
    sb_free(&text);
    return 0;
}

/* One assistant message: text, thinking, tool_use blocks → content, reasoning_content, tool_calls. */
static int assistant_message(const cJSON *content, int i, cJSON *out, api_error *err) {
    if (cJSON_IsString(content)) return cJSON_AddItemToArray(out, text_message("assistant", content->valuestring)), 0;
    if (!cJSON_IsArray(content)) return api_fail(err, 400, "messages[%d].content must be a string or an array", i);
    strbuf text = {0}, thinking = {0};
    cJSON *calls = cJSON_CreateArray();
    const cJSON *b;
    cJSON_ArrayForEach(b, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        const cJSON *v;
        if (!strcmp(t, "text") && cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(b, "text"))) {
            sb_puts(&text, v->valuestring);
        } else if (!strcmp(t, "thinking") && cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(b, "thinking"))) {
            sb_puts(&thinking, v->valuestring);
        } else if (!strcmp(t, "redacted_thinking")) {
            continue;
        } else if (!strcmp(t, "tool_use") && cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(b, "name"))) {
            const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input"), *id = cJSON_GetObjectItemCaseSensitive(b, "id");
            cJSON *call = cJSON_CreateObject(), *f;
            if (cJSON_IsString(id)) cJSON_AddStringToObject(call, "id", id->valuestring);
            cJSON_AddStringToObject(call, "type", "function");
            f = cJSON_AddObjectToObject(call, "function");
            cJSON_AddStringToObject(f, "name", v->valuestring);
            cJSON_AddItemToObject(f, "arguments", cJSON_IsObject(input) ? cJSON_Duplicate(input, 1) : cJSON_CreateObject());
            cJSON_AddItemToArray(calls, call);
        } else {
            sb_free(&text);
            sb_free(&thinking);
            cJSON_Delete(calls);
            return api_fail(err, 400, "messages[%d].content: unsupported or malformed block of type '%s'", i, t);
        }
    }
    cJSON *m = text_message("assistant", text.data ? text.data : "");
    if (thinking.len) cJSON_AddStringToObject(m, "reasoning_content", thinking.data);
    if (cJSON_GetArraySize(calls)) cJSON_AddItemToObject(m, "tool_calls", calls);
    else cJSON_Delete(calls);
    cJSON_AddItemToArray(out, m);
    sb_free(&text);
    sb_free(&thinking);
    return 0;
}

/* Anthropic tools → OpenAI function tools (what the template takes); tool_choice applied. */
static int convert_tools(const cJSON *tools, const cJSON *choice, cJSON **out, api_error *err) {
    *out = NULL;
    const char *mode = "auto", *only = NULL;
    if (choice && !cJSON_IsNull(choice)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(choice, "type");
        if (!cJSON_IsString(type)) return api_fail(err, 400, "'tool_choice' must be an object with a type");
        mode = type->valuestring;
        if (!strcmp(mode, "tool")) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(choice, "name");
            if (!cJSON_IsString(name)) return api_fail(err, 400, "'tool_choice' of type tool needs a name");
            only = name->valuestring;
        } else if (strcmp(mode, "auto") && strcmp(mode, "any") && strcmp(mode, "none")) {
            return api_fail(err, 400, "'tool_choice' type must be auto, any, tool or none");
        }
    }
    if (only && (!cJSON_IsArray(tools) || !cJSON_GetArraySize(tools)))
        return api_fail(err, 400, "'tool_choice' names '%s' but no tools were given", only);
    if (!tools || cJSON_IsNull(tools) || !strcmp(mode, "none")) return 0;
    if (!cJSON_IsArray(tools)) return api_fail(err, 400, "'tools' must be an array");
    cJSON *list = cJSON_CreateArray();
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
        if (!cJSON_IsString(name) || (cJSON_IsString(type) && strcmp(type->valuestring, "custom")) || !cJSON_IsObject(schema)) {
            cJSON_Delete(list);
            return api_fail(err, 400, "tools[%d] must be a custom tool with a name and an input_schema", i);
        }
        i++;
        if (only && strcmp(only, name->valuestring)) continue;
        cJSON *fn = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(fn, "function");
        cJSON_AddStringToObject(fn, "type", "function");
        cJSON_AddStringToObject(f, "name", name->valuestring);
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
        if (cJSON_IsString(desc)) cJSON_AddStringToObject(f, "description", desc->valuestring);
        cJSON_AddItemToObject(f, "parameters", cJSON_Duplicate(schema, 1));
        cJSON_AddItemToArray(list, fn);
    }
    if (only && !cJSON_GetArraySize(list)) {
        cJSON_Delete(list);
        return api_fail(err, 400, "'tool_choice' names '%s', which is not among the tools", only);
    }
    if (!cJSON_GetArraySize(list)) cJSON_Delete(list), list = NULL;
    *out = list;
    return 0;
}

int anthropic_parse(server *srv, cJSON *body, api_request *req, api_error *err) {
    job *j = req->job;
    if (api_parse_model_stream(srv, body, req, err)) return -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
    if (!cJSON_IsNumber(mt) || mt->valuedouble < 1 || mt->valuedouble > 1e9 || mt->valuedouble != (int)mt->valuedouble)
        return api_fail(err, 400, "'max_tokens' is required and must be a positive integer");
    if (api_parse_sampling(srv, body, j, err) ||
        api_add_stop(j, cJSON_GetObjectItemCaseSensitive(body, "stop_sequences"), "stop_sequences", err))
        return -1;
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(messages) || !cJSON_GetArraySize(messages))
        return api_fail(err, 400, "'messages' must be a non-empty array");
    cJSON *tools = NULL;
    if (convert_tools(cJSON_GetObjectItemCaseSensitive(body, "tools"), cJSON_GetObjectItemCaseSensitive(body, "tool_choice"),
                      &tools, err))
        return -1;
    cJSON *list = cJSON_CreateArray();
    strbuf system = {0};
    int rc = api_text_content(cJSON_GetObjectItemCaseSensitive(body, "system"), "'system'", &system, err);
    if (!rc && system.len) cJSON_AddItemToArray(list, text_message("system", system.data));
    sb_free(&system);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        if (rc) break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "user")) rc = user_message(content, i, list, err);
        else if (cJSON_IsString(role) && !strcmp(role->valuestring, "assistant")) rc = assistant_message(content, i, list, err);
        else rc = api_fail(err, 400, "messages[%d].role must be user or assistant", i);
        i++;
    }
    /* Extended thinking on or off when the request says; else the server's setting. */
    int thinking = srv->cfg.thinking;
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "thinking"), "type");
    if (cJSON_IsString(th)) thinking = !strcmp(th->valuestring, "enabled");
    /* A last assistant message is a prefill: the answer continues it (its text ends the prompt). */
    char *prefill = NULL;
    cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
    if (!rc && last && !strcmp(cJSON_GetObjectItemCaseSensitive(last, "role")->valuestring, "assistant") &&
        !cJSON_GetObjectItemCaseSensitive(last, "tool_calls")) {
        prefill = strdup(cJSON_GetObjectItemCaseSensitive(last, "content")->valuestring);
        cJSON_Delete(cJSON_DetachItemFromArray(list, cJSON_GetArraySize(list) - 1));
        if (!prefill) rc = api_fail(err, 500, "out of memory");
    }
    if (!rc) rc = api_render_chat(srv, list, tools, thinking, prefill, j, err);
    free(prefill);
    cJSON_Delete(list);
    cJSON_Delete(tools);
    return rc ? rc : api_check_context(srv, j, (int)mt->valuedouble, err);
}

static const char *stop_reason(const job *j) {
    if (!strcmp(j->finish, "tool_calls")) return "tool_use";
    if (!strcmp(j->finish, "length")) return "max_tokens";
    return j->stop_hit ? "stop_sequence" : "end_turn";
}

static cJSON *usage_json(const job *j, int final) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", j->n_ids - j->n_cached); /* as Anthropic counts: cache reads apart */
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", j->n_cached);
    cJSON_AddNumberToObject(u, "output_tokens", final ? j->n_generated : 0);
    return u;
}

static cJSON *tool_use_block(const tool_call *c, int with_input) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "tool_use");
    cJSON_AddStringToObject(b, "id", c->id);
    cJSON_AddStringToObject(b, "name", c->name);
    cJSON *input = with_input ? cJSON_Parse(c->arguments) : NULL;
    cJSON_AddItemToObject(b, "input", input ? input : cJSON_CreateObject());
    return b;
}

static cJSON *message_json(const api_request *req, int final) {
    const job *j = req->job;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", req->id);
    cJSON_AddStringToObject(r, "type", "message");
    cJSON_AddStringToObject(r, "role", "assistant");
    cJSON_AddStringToObject(r, "model", req->model);
    cJSON *content = cJSON_AddArrayToObject(r, "content");
    if (final) {
        if (j->out.reasoning) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "type", "thinking");
            cJSON_AddStringToObject(b, "thinking", j->out.reasoning);
            cJSON_AddStringToObject(b, "signature", "");
            cJSON_AddItemToArray(content, b);
        }
        if ((j->out.content && *j->out.content) || !j->out.n_calls) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "type", "text");
            cJSON_AddStringToObject(b, "text", j->out.content ? j->out.content : "");
            cJSON_AddItemToArray(content, b);
        }
        for (int i = 0; i < j->out.n_calls; i++) cJSON_AddItemToArray(content, tool_use_block(&j->out.calls[i], 1));
        cJSON_AddStringToObject(r, "stop_reason", stop_reason(j));
        if (j->stop_hit) cJSON_AddStringToObject(r, "stop_sequence", j->stop_hit);
        else cJSON_AddNullToObject(r, "stop_sequence");
        /* The model wrote a tool call that could not be used: its text stays in the text block. */
        if (j->out.error) cJSON_AddStringToObject(r, "tool_call_error", j->out.error);
    } else {
        cJSON_AddNullToObject(r, "stop_reason");
        cJSON_AddNullToObject(r, "stop_sequence");
    }
    cJSON_AddItemToObject(r, "usage", usage_json(j, final));
    return r;
}

char *anthropic_response(api_request *req) {
    cJSON *r = message_json(req, 1);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static void event(strbuf *out, const char *name, cJSON *data) {
    char *s = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (!s) {
        out->failed = 1;
        return;
    }
    sb_printf(out, "event: %s\ndata: %s\n\n", name, s);
    cJSON_free(s);
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void block_stop(api_request *req, strbuf *out) {
    if (req->block < 0) return;
    cJSON *e = typed("content_block_stop");
    cJSON_AddNumberToObject(e, "index", req->block);
    event(out, "content_block_stop", e);
    req->block = -1;
    req->block_kind = 0;
}

/* Opens a block of `kind` (1 thinking, 2 text) unless it is the open one. */
static void block_start(api_request *req, strbuf *out, int kind, cJSON *content_block) {
    if (req->block_kind == kind && kind != 3) {
        cJSON_Delete(content_block);
        return;
    }
    block_stop(req, out);
    req->block = req->n_blocks++;
    req->block_kind = kind;
    cJSON *e = typed("content_block_start");
    cJSON_AddNumberToObject(e, "index", req->block);
    cJSON_AddItemToObject(e, "content_block", content_block);
    event(out, "content_block_start", e);
}

static void delta(api_request *req, strbuf *out, int kind, const char *text, size_t n) {
    if (!n) return;
    char *t = strndup(text, n);
    if (!t) {
        out->failed = 1;
        return;
    }
    cJSON *cb = typed(kind == 1 ? "thinking" : "text");
    cJSON_AddStringToObject(cb, kind == 1 ? "thinking" : "text", "");
    if (kind == 1) cJSON_AddStringToObject(cb, "signature", "");
    block_start(req, out, kind, cb);
    cJSON *e = typed("content_block_delta"), *d = typed(kind == 1 ? "thinking_delta" : "text_delta");
    cJSON_AddNumberToObject(e, "index", req->block);
    cJSON_AddStringToObject(d, kind == 1 ? "thinking" : "text", t);
    cJSON_AddItemToObject(e, "delta", d);
    event(out, "content_block_delta", e);
    free(t);
}

static void block_delta(api_request *req, strbuf *out, int reasoning, const char *text, size_t n) {
    delta(req, out, reasoning ? 1 : 2, text, n);
}

void anthropic_stream(api_request *req, strbuf *out) {
    job *j = req->job;
    if (req->finished || !j->started) return; /* message_start carries the cached token count */
    if (!req->started) {
        cJSON *e = typed("message_start");
        cJSON_AddItemToObject(e, "message", message_json(req, 0));
        event(out, "message_start", e);
        req->started = 1;
    }
    api_stream_text(req, block_delta, out);
    if (!j->done || j->status) return;
    if (!req->n_blocks && !j->out.n_calls) { /* an empty answer still has its text block */
        cJSON *cb = typed("text");
        cJSON_AddStringToObject(cb, "text", "");
        block_start(req, out, 2, cb);
    }
    for (int i = 0; i < j->out.n_calls; i++) {
        block_start(req, out, 3, tool_use_block(&j->out.calls[i], 0));
        cJSON *e = typed("content_block_delta"), *d = typed("input_json_delta");
        cJSON_AddNumberToObject(e, "index", req->block);
        cJSON_AddStringToObject(d, "partial_json", j->out.calls[i].arguments);
        cJSON_AddItemToObject(e, "delta", d);
        event(out, "content_block_delta", e);
    }
    block_stop(req, out);
    cJSON *e = typed("message_delta"), *d = cJSON_AddObjectToObject(e, "delta");
    cJSON_AddStringToObject(d, "stop_reason", stop_reason(j));
    if (j->stop_hit) cJSON_AddStringToObject(d, "stop_sequence", j->stop_hit);
    else cJSON_AddNullToObject(d, "stop_sequence");
    cJSON_AddItemToObject(e, "usage", usage_json(j, 1));
    event(out, "message_delta", e);
    event(out, "message_stop", typed("message_stop"));
    req->finished = 1;
}

char *anthropic_error_body(const api_error *err) {
    cJSON *r = typed("error"), *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(e, "type", err->type ? err->type : "invalid_request_error");
    cJSON_AddStringToObject(e, "message", err->message);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* The chat-template part of the public API (fm_chat_template_*): compiles a
 * model's Jinja chat_template once and renders conversations with the
 * variables transformers' apply_chat_template passes: messages, tools (None
 * when absent, as transformers passes it), documents (None),
 * add_generation_prompt, enable_thinking when given, and the bos/eos tokens.
 *
 * The interpreter (jinja_*.c) covers what chat templates use, with Jinja's
 * whitespace rules as transformers sets them (trim_blocks, lstrip_blocks):
 * {{ }} {% %} {# #} with -/+ controls, raw; if/elif/else, for (else, filter,
 * unpacking, loop.*), break/continue, set (names, tuples, namespace
 * attributes, blocks), macro, with, filter blocks, transformers'
 * {% generation %}; Python operators, literals, slicing and the str, dict and
 * list methods; Jinja's filters and tests; tojson as json.dumps; undefined
 * values as Jinja's Undefined. Not covered: include/import/extends/block/
 * call, recursive loops, loop.changed, cycler/joiner/lipsum, Markup
 * auto-escaping semantics (| safe and | e give plain strings), dict views
 * (.items() and friends give lists), ints beyond 64 bits, and
 * str.upper()'s rarer one-to-many case mappings. */
#include "flashmoe.h"

#include "core/error.h"
#include "text/jinja_ast.h"
#include "text/jinja_json.h"

#include <stdlib.h>
#include <string.h>

struct fm_chat_template {
    jinja_template *tmpl;
};

fm_status fm_chat_template_new(const char *source, fm_chat_template **out) {
    if (!out) return fm_error(FM_ERR_ARGUMENT, "fm_chat_template_new: out is NULL");
    *out = NULL;
    if (!source) return fm_error(FM_ERR_ARGUMENT, "fm_chat_template_new: source is NULL");
    size_t len = strlen(source);
    if (len > JINJA_MAX_TEXT)
        return fm_error(FM_ERR_ARGUMENT, "chat template longer than %u MiB", JINJA_MAX_TEXT >> 20);
    fm_chat_template *t = calloc(1, sizeof *t);
    if (!t) return fm_error(FM_ERR_NOMEM, "out of memory");
    fm_status st = jinja_template_parse(source, len, &t->tmpl);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return FM_OK;
}

void fm_chat_template_free(fm_chat_template *t) {
    if (!t) return;
    jinja_template_free(t->tmpl);
    free(t);
}

/* Sets globals[name] = value (steals value). */
static fm_status set_global(jinja_dict *globals, const char *name, jinja_value value) {
    jinja_value key;
    fm_status st = jinja_string_new(name, strlen(name), &key);
    if (st) {
        jinja_release(value);
        return st;
    }
    return jinja_dict_set(globals, key, value);
}

static fm_status set_global_text(jinja_dict *globals, const char *name, const char *text) {
    jinja_value v;
    fm_status st = jinja_string_new(text, strlen(text), &v);
    return st ? st : set_global(globals, name, v);
}

static const char *json_kind(jinja_value v) {
    switch (v.type) {
    case JINJA_NONE: return "null";
    case JINJA_BOOL: return "a boolean";
    case JINJA_INT:
    case JINJA_FLOAT: return "a number";
    case JINJA_STRING: return "a string";
    case JINJA_LIST: return "an array";
    default: return "an object";
    }
}

static fm_status read_messages(const char *messages_json, jinja_value *out) {
    fm_status st = jinja_value_from_json(messages_json, strlen(messages_json), "messages_json", out);
    if (st) return st;
    if (out->type != JINJA_LIST) {
        st = fm_error(FM_ERR_ARGUMENT, "messages_json must be a JSON array of messages, not %s", json_kind(*out));
    } else {
        for (size_t i = 0; i < out->as.list->len && !st; i++)
            if (out->as.list->items[i].type != JINJA_DICT)
                st = fm_error(FM_ERR_ARGUMENT, "messages_json: message %zu is %s, not an object", i,
                              json_kind(out->as.list->items[i]));
    }
    if (st) jinja_clear(out);
    return st;
}

static fm_status read_tools(const char *tools_json, jinja_value *out) {
    if (!tools_json) {
        *out = jinja_none();
        return FM_OK;
    }
    fm_status st = jinja_value_from_json(tools_json, strlen(tools_json), "tools_json", out);
    if (!st && out->type != JINJA_LIST && out->type != JINJA_NONE) {
        st = fm_error(FM_ERR_ARGUMENT, "tools_json must be a JSON array of tool definitions, not %s", json_kind(*out));
        jinja_clear(out);
    }
    return st;
}

fm_status fm_chat_template_render(const fm_chat_template *t, const char *messages_json, const char *tools_json,
                                  const fm_chat_options *options, char **out) {
    if (!out) return fm_error(FM_ERR_ARGUMENT, "fm_chat_template_render: out is NULL");
    *out = NULL;
    if (!t || !messages_json)
        return fm_error(FM_ERR_ARGUMENT, "fm_chat_template_render: template or messages_json is NULL");
    fm_chat_options defaults = {.add_generation_prompt = 0, .enable_thinking = -1};
    if (!options) options = &defaults;
    if (options->enable_thinking < -1 || options->enable_thinking > 1)
        return fm_error(FM_ERR_ARGUMENT, "enable_thinking must be -1, 0 or 1, not %d", options->enable_thinking);

    jinja_value globals, messages, tools;
    fm_status st = jinja_dict_new(&globals);
    if (st) return st;
    if (!(st = read_messages(messages_json, &messages))) st = set_global(globals.as.dict, "messages", messages);
    if (!st && !(st = read_tools(tools_json, &tools))) st = set_global(globals.as.dict, "tools", tools);
    if (!st) st = set_global(globals.as.dict, "documents", jinja_none());
    if (!st) st = set_global(globals.as.dict, "add_generation_prompt", jinja_bool(options->add_generation_prompt != 0));
    if (!st && options->enable_thinking >= 0)
        st = set_global(globals.as.dict, "enable_thinking", jinja_bool(options->enable_thinking != 0));
    if (!st && options->bos_token) st = set_global_text(globals.as.dict, "bos_token", options->bos_token);
    if (!st && options->eos_token) st = set_global_text(globals.as.dict, "eos_token", options->eos_token);
    size_t len;
    size_t input_bytes = strlen(messages_json) + (tools_json ? strlen(tools_json) : 0);
    if (!st) st = jinja_template_render(t->tmpl, globals.as.dict, input_bytes, out, &len);
    jinja_release(globals);
    return st;
}

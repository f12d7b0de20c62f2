/* Assistant output parser: see tool_calls.h. Every JSON text is copied into a
 * NUL-terminated buffer before cJSON sees it: the output need not end in a
 * NUL, and cJSON (not built with sanitizers) then cannot read past it. */
#include "server/tool_calls.h"

#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NPOS ((size_t)-1)

static const char TOOL_OPEN[] = "<tool_call>", TOOL_CLOSE[] = "</tool_call>";
static const char THINK_OPEN[] = "<think>", THINK_CLOSE[] = "</think>";
static const char FUNC_OPEN[] = "<function=", FUNC_CLOSE[] = "</function>";
static const char PARAM_OPEN[] = "<parameter=", PARAM_CLOSE[] = "</parameter>";
#define LIT_LEN(s) (sizeof(s) - 1)

/* ---- small helpers ------------------------------------------------------- */

/* A growable string; `oom` sticks once an allocation failed. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static size_t skip_ws(const char *s, size_t i, size_t end) {
    while (i < end && is_ws(s[i])) i++;
    return i;
}

/* Shrinks [*a, *b) to exclude surrounding whitespace. */
static void trim(const char *s, size_t *a, size_t *b) {
    *a = skip_ws(s, *a, *b);
    while (*b > *a && is_ws(s[*b - 1])) (*b)--;
}

static int starts_with(const char *s, size_t i, size_t end, const char *lit, size_t n) {
    return end - i >= n && memcmp(s + i, lit, n) == 0;
}

/* First occurrence of lit in s[from, end), or NPOS. */
static size_t find(const char *s, size_t from, size_t end, const char *lit, size_t n) {
    if (from >= end) return NPOS;
    const char *p = memmem(s + from, end - from, lit, n);
    return p ? (size_t)(p - s) : NPOS;
}

static char *dup_range(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A copy without NUL bytes: outputs are C strings, and dropping a stray NUL
 * beats silently cutting the text there. */
static char *dup_text(const char *s, size_t n) {
    char *p = malloc(n + 1), *o = p;
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i]) *o++ = s[i];
    *o = 0;
    return p;
}

/* dup_text, then surrounding whitespace removed. */
static char *clean_text(const char *s, size_t n) {
    char *t = dup_text(s, n);
    if (!t) return NULL;
    size_t a = 0, b = strlen(t);
    trim(t, &a, &b);
    memmove(t, t + a, b - a);
    t[b - a] = 0;
    return t;
}

/* Parses s[0, n) as exactly one JSON value (surrounding whitespace allowed).
 * NULL if invalid, with *err_at the byte where parsing stopped; *oom set when
 * the copy could not be made (cJSON's own allocation failures look invalid). */
static cJSON *parse_json(const char *s, size_t n, size_t *err_at, int *oom) {
    char *buf = dup_range(s, n);
    if (!buf) {
        *oom = 1;
        return NULL;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithOpts(buf, &end, 0);
    size_t at = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
    if (v) {
        at = skip_ws(buf, at, n);
        if (at < n) { /* trailing text, or a NUL byte that cut the parse short */
            cJSON_Delete(v);
            v = NULL;
        }
    }
    *err_at = at;
    free(buf);
    return v;
}

/* Shortens user text quoted in error messages. */
#define QUOTE_MAX 64
#define QUOTE_FMT "'%.*s%s'"
#define QUOTE_ARG(s) (int)(strlen(s) > QUOTE_MAX ? QUOTE_MAX : strlen(s)), (s), strlen(s) > QUOTE_MAX ? "..." : ""

/* Name of an object member that occurs twice, or NULL. */
static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static const char *duplicate_key(const cJSON *obj, int *oom) {
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return NULL;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys) {
        *oom = 1;
        return NULL;
    }
    int k = 0;
    for (const cJSON *c = obj->child; c && k < n; c = c->next) keys[k++] = c->string ? c->string : "";
    qsort(keys, (size_t)k, sizeof *keys, cmp_str_ptr);
    const char *dup = NULL;
    for (int i = 1; i < k && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i])) dup = keys[i];
    free(keys);
    return dup;
}

/* ---- call ids ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char *new_call_id(uint64_t *rng) {
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *id = malloc(5 + 24 + 1);
    if (!id) return NULL;
    memcpy(id, "call_", 5);
    uint64_t x = splitmix64(rng), left = 10; /* 62^10 < 2^64: ten letters per draw */
    for (int i = 0; i < 24; i++) {
        if (!left) x = splitmix64(rng), left = 10;
        id[5 + i] = alnum[x % 62];
        x /= 62;
        left--;
    }
    id[29] = 0;
    return id;
}

/* ---- tools and schemas --------------------------------------------------- */

/* The function object ({"name", "parameters"}) of a tools entry, or NULL. */
static const cJSON *tool_function(const cJSON *entry) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(entry, "function");
    return cJSON_IsObject(f) ? f : cJSON_IsObject(entry) ? entry : NULL;
}

static const char *tool_name(const cJSON *entry) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(tool_function(entry), "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

/* JSON schema types a parameter may take, as bits. */
enum { T_STRING = 1, T_NUMBER = 2, T_BOOL = 4, T_NULL = 8, T_OBJECT = 16, T_ARRAY = 32 };

static unsigned type_bit(const cJSON *t) {
    if (!cJSON_IsString(t)) return 0;
    const char *s = t->valuestring;
    if (!strcmp(s, "string")) return T_STRING;
    if (!strcmp(s, "integer") || !strcmp(s, "number")) return T_NUMBER;
    if (!strcmp(s, "boolean")) return T_BOOL;
    if (!strcmp(s, "null")) return T_NULL;
    if (!strcmp(s, "object")) return T_OBJECT;
    if (!strcmp(s, "array")) return T_ARRAY;
    return 0;
}

/* "type" as a name or a list of names; anyOf / oneOf alternatives one level
 * down (Optional[str] is {"anyOf": [{"type": "string"}, {"type": "null"}]}). */
static unsigned schema_types(const cJSON *schema, int depth) {
    if (!cJSON_IsObject(schema) || depth > 1) return 0;
    unsigned bits = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(schema, "type"), *e;
    if (cJSON_IsArray(t))
        cJSON_ArrayForEach(e, t) bits |= type_bit(e);
    else
        bits |= type_bit(t);
    static const char *const alts[] = {"anyOf", "oneOf"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(schema, alts[i]);
        if (cJSON_IsArray(a)) cJSON_ArrayForEach(e, a) bits |= schema_types(e, depth + 1);
    }
    return bits;
}

/* A raw XML parameter value as JSON: strings stay strings, other schema
 * types (and unknown parameters) take the value as JSON when it is valid. */
static cJSON *typed_value(const char *v, size_t n, unsigned types, int *oom) {
    size_t a = 0, b = n;
    trim(v, &a, &b);
    if ((types & T_NULL) && b - a == 4 && !memcmp(v + a, "null", 4)) return cJSON_CreateNull();
    if (!(types & T_STRING)) {
        /* Python-style True / False from models trained on Python tool calls. */
        if ((types & T_BOOL) && b - a == 4 && !strncasecmp(v + a, "true", 4)) return cJSON_CreateTrue();
        if ((types & T_BOOL) && b - a == 5 && !strncasecmp(v + a, "false", 5)) return cJSON_CreateFalse();
        size_t at;
        cJSON *j = b > a ? parse_json(v + a, b - a, &at, oom) : NULL;
        if (j || *oom) return j;
    }
    char *s = dup_text(v, n);
    if (!s) return NULL;
    cJSON *j = cJSON_CreateString(s);
    free(s);
    return j;
}

/* ---- the parser ---------------------------------------------------------- */

typedef struct {
    const cJSON *tools; /* array, or NULL: any function accepted */
    uint64_t *rng;
    sbuf content, err;
    tool_call *calls;
    int n_calls, cap_calls;
    int n_errors;
    int oom;
} parser;

/* Errors listed in full; more are only counted (the message is for people). */
#define MAX_ERRORS 10

static void add_error(parser *p, int call, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_error(parser *p, int call, const char *fmt, ...) {
    if (++p->n_errors > MAX_ERRORS) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err.n) sb_puts(&p->err, "; ");
    sb_printf(&p->err, "tool call %d: %s", call, msg);
}

/* The tool called `name`, or NULL after reporting it unknown. With no tools
 * list, returns a dummy non-NULL pointer only for the check. */
static const cJSON *lookup_tool(parser *p, int call, const char *name) {
    static const cJSON any;
    if (!p->tools) return &any;
    const cJSON *e;
    cJSON_ArrayForEach(e, p->tools) {
        const char *n = tool_name(e);
        if (n && !strcmp(n, name)) return tool_function(e);
    }
    /* Lists the tools to help whoever reads the error; at most ten. */
    char list[300] = "";
    size_t used = 0;
    int shown = 0, total = 0;
    cJSON_ArrayForEach(e, p->tools) {
        const char *n = tool_name(e);
        if (!n) continue;
        if (total++ >= 10) continue;
        int w = snprintf(list + used, sizeof list - used, "%s%.40s", shown ? ", " : "", n);
        if (w < 0 || (size_t)w >= sizeof list - used) break;
        used += (size_t)w;
        shown++;
    }
    if (total > shown) snprintf(list + used, sizeof list - used, "%s...", shown ? ", " : "");
    add_error(p, call, "unknown function " QUOTE_FMT " (%s%s)", QUOTE_ARG(name), total ? "tools: " : "no tools",
              list);
    return NULL;
}

/* Checks a function name (trimmed copy in *out). 0 if invalid (reported). */
static int check_name(parser *p, int call, const char *s, size_t n, char **out, const cJSON **fn) {
    size_t a = 0, b = n;
    trim(s, &a, &b);
    if (a == b) {
        add_error(p, call, "missing function name");
        return 0;
    }
    for (size_t i = a; i < b; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '<' || s[i] == '>') {
            add_error(p, call, "invalid function name");
            return 0;
        }
    char *name = dup_range(s + a, b - a);
    if (!name) {
        p->oom = 1;
        return 0;
    }
    *fn = lookup_tool(p, call, name);
    if (!*fn) {
        free(name);
        return 0;
    }
    *out = name;
    return 1;
}

/* Takes ownership of name; renders args. 1 on success. */
static int add_call(parser *p, char *name, const cJSON *args) {
    char *json = cJSON_PrintUnformatted(args);
    char *id = new_call_id(p->rng);
    if (p->n_calls == p->cap_calls) {
        int cap = p->cap_calls ? 2 * p->cap_calls : 4;
        tool_call *c = realloc(p->calls, (size_t)cap * sizeof *c);
        if (c) p->calls = c, p->cap_calls = cap;
    }
    if (!json || !id || p->n_calls == p->cap_calls) {
        free(json);
        free(id);
        free(name);
        p->oom = 1;
        return 0;
    }
    p->calls[p->n_calls++] = (tool_call){.id = id, .name = name, .arguments = json};
    return 1;
}

/* JSON form: {"name": "...", "arguments": {...} or "{...}"}. 1 if valid. */
static int parse_json_call(parser *p, int call, const char *s, size_t n) {
    size_t at;
    cJSON *root = parse_json(s, n, &at, &p->oom);
    if (!root) {
        if (!p->oom) add_error(p, call, "not valid JSON at byte %zu", at);
        return 0;
    }
    int ok = 0;
    cJSON *args = NULL;
    char *name = NULL;
    cJSON *jname = NULL, *jargs = NULL, *c;
    const char *dup;
    if (!cJSON_IsObject(root)) {
        add_error(p, call, "expected a JSON object");
        goto done;
    }
    if ((dup = duplicate_key(root, &p->oom))) {
        add_error(p, call, "duplicate key " QUOTE_FMT, QUOTE_ARG(dup));
        goto done;
    }
    /* Strict keys: "parameters" instead of "arguments" would drop the arguments. */
    cJSON_ArrayForEach(c, root) {
        if (!strcmp(c->string, "name"))
            jname = c;
        else if (!strcmp(c->string, "arguments"))
            jargs = c;
        else {
            add_error(p, call, "unexpected key " QUOTE_FMT, QUOTE_ARG(c->string));
            goto done;
        }
    }
    if (!jname) {
        add_error(p, call, "missing \"name\"");
        goto done;
    }
    if (!cJSON_IsString(jname)) {
        add_error(p, call, "\"name\" is not a string");
        goto done;
    }
    const cJSON *fn;
    if (!check_name(p, call, jname->valuestring, strlen(jname->valuestring), &name, &fn)) goto done;
    if (!jargs) { /* a call without arguments */
        args = cJSON_CreateObject();
        if (!args) p->oom = 1;
    } else if (cJSON_IsString(jargs)) {
        const char *a = jargs->valuestring;
        args = parse_json(a, strlen(a), &at, &p->oom);
        if (!args) {
            if (!p->oom) add_error(p, call, "arguments are not valid JSON at byte %zu", at);
            goto done;
        }
    } else {
        args = cJSON_DetachItemViaPointer(root, jargs);
    }
    if (!args) goto done;
    if (!cJSON_IsObject(args)) {
        add_error(p, call, "arguments are not a JSON object");
        goto done;
    }
    if ((dup = duplicate_key(args, &p->oom))) {
        add_error(p, call, "duplicate parameter " QUOTE_FMT, QUOTE_ARG(dup));
        goto done;
    }
    if (p->oom) goto done;
    ok = add_call(p, name, args);
    name = NULL;
done:
    free(name);
    cJSON_Delete(args);
    cJSON_Delete(root);
    return ok;
}

/* XML form: <function=NAME> (<parameter=KEY>value</parameter>)* </function>.
 * s[0, n) is the trimmed block body, starting with "<function=". */
static int parse_xml_call(parser *p, int call, const char *s, size_t n) {
    size_t i = LIT_LEN(FUNC_OPEN);
    const char *gt = memchr(s + i, '>', n - i);
    if (!gt) {
        add_error(p, call, "unterminated <function=");
        return 0;
    }
    char *name = NULL;
    const cJSON *fn;
    if (!check_name(p, call, s + i, (size_t)(gt - s) - i, &name, &fn)) return 0;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fn, "parameters"),
                                                          "properties");
    cJSON *args = cJSON_CreateObject();
    char *key = NULL;
    int ok = 0;
    if (!args) {
        p->oom = 1;
        goto done;
    }
    i = (size_t)(gt - s) + 1;
    for (;;) {
        i = skip_ws(s, i, n);
        if (i == n) {
            add_error(p, call, "unterminated <function=" QUOTE_FMT ">", QUOTE_ARG(name));
            goto done;
        }
        if (starts_with(s, i, n, FUNC_CLOSE, LIT_LEN(FUNC_CLOSE))) {
            i += LIT_LEN(FUNC_CLOSE);
            break;
        }
        if (!starts_with(s, i, n, PARAM_OPEN, LIT_LEN(PARAM_OPEN))) {
            add_error(p, call, "unexpected text in <function=" QUOTE_FMT ">", QUOTE_ARG(name));
            goto done;
        }
        i += LIT_LEN(PARAM_OPEN);
        const char *pgt = memchr(s + i, '>', n - i);
        size_t k0 = i, k1 = pgt ? (size_t)(pgt - s) : n;
        trim(s, &k0, &k1);
        int bad = k0 == k1;
        for (size_t j = k0; j < k1 && !bad; j++) bad = (unsigned char)s[j] < 0x20 || s[j] == '<';
        if (!pgt || bad) {
            add_error(p, call, pgt ? "invalid parameter name" : "unterminated <parameter=");
            goto done;
        }
        key = dup_range(s + k0, k1 - k0);
        if (!key) {
            p->oom = 1;
            goto done;
        }
        size_t v0 = (size_t)(pgt - s) + 1;
        size_t v1 = find(s, v0, n, PARAM_CLOSE, LIT_LEN(PARAM_CLOSE));
        if (v1 == NPOS) {
            add_error(p, call, "unterminated <parameter=" QUOTE_FMT ">", QUOTE_ARG(key));
            goto done;
        }
        i = v1 + LIT_LEN(PARAM_CLOSE);
        /* The template puts the value on its own lines: one newline each side is layout. */
        if (v0 < v1 && s[v0] == '\n') v0++;
        else if (v1 - v0 >= 2 && s[v0] == '\r' && s[v0 + 1] == '\n') v0 += 2;
        if (v1 > v0 && s[v1 - 1] == '\n') v1 -= v1 - v0 >= 2 && s[v1 - 2] == '\r' ? 2 : 1;
        if (cJSON_GetObjectItemCaseSensitive(args, key)) {
            add_error(p, call, "duplicate parameter " QUOTE_FMT, QUOTE_ARG(key));
            goto done;
        }
        unsigned types = schema_types(cJSON_GetObjectItemCaseSensitive(props, key), 0);
        cJSON *v = typed_value(s + v0, v1 - v0, types, &p->oom);
        if (!v || !cJSON_AddItemToObject(args, key, v)) {
            cJSON_Delete(v);
            p->oom = 1;
            goto done;
        }
        free(key);
        key = NULL;
    }
    if (skip_ws(s, i, n) != n) {
        add_error(p, call, "unexpected text after </function>");
        goto done;
    }
    ok = add_call(p, name, args);
    name = NULL;
done:
    free(key);
    free(name);
    cJSON_Delete(args);
    return ok;
}

/* The body of the call-th <tool_call> block. 1 if it made a call. */
static int parse_block(parser *p, int call, const char *s, size_t n) {
    size_t a = 0, b = n;
    trim(s, &a, &b);
    if (a == b) {
        add_error(p, call, "empty <tool_call>");
        return 0;
    }
    if (s[a] == '{') return parse_json_call(p, call, s + a, b - a);
    if (starts_with(s, a, b, FUNC_OPEN, LIT_LEN(FUNC_OPEN))) return parse_xml_call(p, call, s + a, b - a);
    add_error(p, call, "expected a JSON object or <function=...>");
    return 0;
}

void assistant_output_free(assistant_output *o) {
    if (!o) return;
    for (int i = 0; i < o->n_calls; i++) {
        free(o->calls[i].id);
        free(o->calls[i].name);
        free(o->calls[i].arguments);
    }
    free(o->calls);
    free(o->reasoning);
    free(o->content);
    free(o->error);
    memset(o, 0, sizeof *o);
}

int assistant_parse(const char *text, size_t len, const char *tools_json, int think_open, uint64_t *rng,
                    assistant_output *out) {
    memset(out, 0, sizeof *out);
    if (!text) text = "", len = 0;
    uint64_t fixed_seed = 0;
    parser p = {.rng = rng ? rng : &fixed_seed};
    cJSON *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    if (cJSON_IsArray(tools)) p.tools = tools;

    /* Reasoning: a leading <think> block, or everything up to </think> when
     * the prompt opened it. Unclosed: the answer stopped while thinking. */
    size_t pos = 0, i = skip_ws(text, 0, len);
    int opened = starts_with(text, i, len, THINK_OPEN, LIT_LEN(THINK_OPEN));
    if (think_open || opened) {
        size_t r0 = opened ? i + LIT_LEN(THINK_OPEN) : i;
        size_t close = find(text, r0, len, THINK_CLOSE, LIT_LEN(THINK_CLOSE));
        size_t r1 = close == NPOS ? len : close;
        pos = close == NPOS ? len : close + LIT_LEN(THINK_CLOSE);
        if (!(out->reasoning = clean_text(text + r0, r1 - r0))) p.oom = 1;
        else if (!out->reasoning[0]) free(out->reasoning), out->reasoning = NULL;
    }

    /* Tool call blocks; the text around them is content. The first
     * </tool_call> at or after a block start is remembered: later blocks
     * reuse it while it lies ahead, so the scan stays linear. */
    size_t close = 0;
    int searched = 0;
    for (int call = 1; !p.oom; call++) {
        size_t open = find(text, pos, len, TOOL_OPEN, LIT_LEN(TOOL_OPEN));
        if (open == NPOS) {
            sb_put(&p.content, text + pos, len - pos);
            break;
        }
        sb_put(&p.content, text + pos, open - pos);
        size_t body = open + LIT_LEN(TOOL_OPEN);
        if (!searched || (close != NPOS && close < body)) {
            close = find(text, body, len, TOOL_CLOSE, LIT_LEN(TOOL_CLOSE));
            searched = 1;
        }
        size_t next = find(text, body, close == NPOS ? len : close, TOOL_OPEN, LIT_LEN(TOOL_OPEN));
        if (close == NPOS || next != NPOS) { /* no </tool_call> before the end or the next <tool_call> */
            add_error(&p, call, "unterminated <tool_call>");
            pos = next != NPOS ? next : len;
            sb_put(&p.content, text + open, pos - open);
            continue;
        }
        pos = close + LIT_LEN(TOOL_CLOSE);
        if (!parse_block(&p, call, text + body, close - body) && !p.oom)
            sb_put(&p.content, text + open, pos - open);
    }
    cJSON_Delete(tools);
    if (p.n_errors > MAX_ERRORS) sb_printf(&p.err, "; %d more invalid tool calls", p.n_errors - MAX_ERRORS);

    out->content = clean_text(p.content.p ? p.content.p : "", p.content.n);
    if (p.err.n && !p.err.oom) out->error = dup_range(p.err.p, p.err.n);
    out->calls = p.calls;
    out->n_calls = p.n_calls;
    int oom = p.oom || p.content.oom || p.err.oom || !out->content || (p.err.n && !out->error);
    free(p.content.p);
    free(p.err.p);
    if (oom) {
        assistant_output_free(out);
        return -1;
    }
    return 0;
}

/* ---- streaming ----------------------------------------------------------- */

/* End of the longest prefix of s[0, n) that does not stop inside a UTF-8
 * sequence still missing continuation bytes. */
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = n;
    while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
    return need && n - (i - 1) < need ? i - 1 : n;
}

size_t assistant_stream_safe(const char *text, size_t len) {
    static const char *const markers[] = {TOOL_OPEN, THINK_OPEN, THINK_CLOSE};
    if (!text) return 0;
    size_t cut = len;
    for (const char *lt = memchr(text, '<', len); lt; lt = memchr(lt + 1, '<', len - (size_t)(lt + 1 - text))) {
        size_t i = (size_t)(lt - text), rest = len - i;
        int hit = 0;
        for (int m = 0; m < 3 && !hit; m++) {
            size_t ml = strlen(markers[m]);
            hit = !memcmp(lt, markers[m], rest < ml ? rest : ml); /* whole marker, or its start at the end */
        }
        if (hit) {
            cut = i;
            break;
        }
    }
    return utf8_complete(text, cut);
}

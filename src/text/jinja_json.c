/* JSON for the chat-template interpreter: reading messages and tools with
 * cJSON into values, and the tojson filter, which must print exactly what
 * Python's json.dumps prints (transformers renders tools with it): ", " and
 * ": " separators (or "," with indent), control characters as lowercase
 * \u00XX, non-ASCII kept, floats as repr() prints them, ints as ints. */
#include "text/jinja_json.h"

#include "core/error.h"
#include "text/jinja_runtime.h"
#include "text/jinja_unicode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ------------------------------------------------------------------------- */

/* cJSON keeps only a double per number, so the number tokens are read again
 * from the text, in document order (the order of a pre-order walk of the
 * tree), to tell 1 from 1.0 and keep large integers exact. */
typedef struct {
    const char *text;
    size_t len, pos;
} number_scanner;

static bool next_number(number_scanner *s, const char **start, size_t *len) {
    while (s->pos < s->len) {
        char c = s->text[s->pos];
        if (c == '"') {
            for (s->pos++; s->pos < s->len && s->text[s->pos] != '"'; s->pos++)
                if (s->text[s->pos] == '\\') s->pos++;
            s->pos++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t from = s->pos;
            while (s->pos < s->len && strchr("+-.eE0123456789", s->text[s->pos]) && s->text[s->pos]) s->pos++;
            *start = s->text + from;
            *len = s->pos - from;
            return true;
        } else {
            s->pos++;
        }
    }
    return false;
}

static fm_status number_value(number_scanner *s, const cJSON *item, jinja_value *out) {
    const char *tok;
    size_t n;
    *out = jinja_float(item->valuedouble);
    if (!next_number(s, &tok, &n)) return FM_OK; /* cannot happen for text cJSON accepted */
    if (memchr(tok, '.', n) || memchr(tok, 'e', n) || memchr(tok, 'E', n) || n > 40) return FM_OK;
    char digits[48];
    memcpy(digits, tok, n);
    digits[n] = 0;
    errno = 0;
    long long v = strtoll(digits, NULL, 10);
    if (errno != ERANGE) *out = jinja_int(v); /* beyond 64 bits it stays a float */
    return FM_OK;
}

static fm_status from_cjson(const cJSON *item, number_scanner *s, jinja_value *out) {
    fm_status st = FM_OK;
    *out = jinja_undefined(NULL);
    if (cJSON_IsNull(item))
        *out = jinja_none();
    else if (cJSON_IsBool(item))
        *out = jinja_bool(cJSON_IsTrue(item));
    else if (cJSON_IsNumber(item))
        st = number_value(s, item, out);
    else if (cJSON_IsString(item))
        st = jinja_string_new(item->valuestring, strlen(item->valuestring), out);
    else if (cJSON_IsArray(item)) {
        if ((st = jinja_list_new((size_t)cJSON_GetArraySize(item), false, out))) return st;
        for (const cJSON *c = item->child; c && !st; c = c->next) {
            jinja_value v;
            if (!(st = from_cjson(c, s, &v))) st = jinja_list_push(out->as.list, v);
        }
    } else if (cJSON_IsObject(item)) {
        if ((st = jinja_dict_new(out))) return st;
        for (const cJSON *c = item->child; c && !st; c = c->next) {
            jinja_value key, v;
            if ((st = jinja_string_new(c->string, strlen(c->string), &key))) break;
            if ((st = from_cjson(c, s, &v))) {
                jinja_release(key);
                break;
            }
            st = jinja_dict_set(out->as.dict, key, v);
        }
    } else {
        st = fm_error(FM_ERR_ARGUMENT, "unexpected JSON value");
    }
    if (st) jinja_clear(out);
    return st;
}

fm_status jinja_value_from_json(const char *text, size_t len, const char *label, jinja_value *out) {
    *out = jinja_undefined(NULL);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    const char *at = end && end >= text && end <= text + len ? end : text;
    if (root) { /* nothing but whitespace may follow */
        while (at < text + len && (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r')) at++;
        if (at < text + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        int line = 1, col = 1;
        for (const char *p = text; p < at; p++) {
            if (*p == '\n')
                line++, col = 1;
            else if (((unsigned char)*p & 0xc0) != 0x80)
                col++;
        }
        return fm_error(FM_ERR_ARGUMENT, "%s: invalid JSON at line %d column %d", label, line, col);
    }
    number_scanner s = {.text = text, .len = len};
    fm_status st = from_cjson(root, &s, out);
    cJSON_Delete(root);
    if (st == FM_ERR_ARGUMENT) {
        char msg[900];
        snprintf(msg, sizeof msg, "%s", fm_last_error());
        st = fm_error(st, "%s: %s", label, msg);
    }
    return st;
}

/* ---- writing (tojson) ------------------------------------------------------------------------ */

static fm_status write_string(const char *s, size_t len, bool ensure_ascii, jinja_buf *b) {
    static const char hex[] = "0123456789abcdef";
    fm_status st = jinja_buf_putc(b, '"');
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0, n; i < len && !st; i += n) {
        unsigned char c = (unsigned char)s[i];
        n = 1;
        const char *esc = NULL;
        char tmp[16];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
            snprintf(tmp, sizeof tmp, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            esc = tmp;
        } else if (c >= 0x80 && ensure_ascii) {
            int32_t cp = jinja_utf8_decode(s + i, len - i, &n);
            if (cp >= 0x10000) { /* a surrogate pair, as Python writes it */
                int32_t v = cp - 0x10000, hi = 0xd800 + (v >> 10), lo = 0xdc00 + (v & 0x3ff);
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", (unsigned)hi, (unsigned)lo);
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            }
            esc = tmp;
        }
        if (!esc) {
            run++;
            continue;
        }
        st = jinja_buf_append(b, s + i - run, run);
        run = 0;
        if (!st) st = jinja_buf_puts(b, esc);
    }
    if (!st) st = jinja_buf_append(b, s + len - run, run);
    return st ? st : jinja_buf_putc(b, '"');
}

static fm_status write_float(double x, jinja_buf *b) {
    if (isnan(x)) return jinja_buf_puts(b, "NaN");
    if (isinf(x)) return jinja_buf_puts(b, x < 0 ? "-Infinity" : "Infinity");
    char num[40];
    jinja_format_float(x, num);
    return jinja_buf_puts(b, num);
}

static fm_status newline_indent(const jinja_json_style *style, int level, jinja_buf *b) {
    fm_status st = jinja_buf_putc(b, '\n');
    for (int i = 0; i < level && !st; i++) st = jinja_buf_puts(b, style->indent);
    return st;
}

/* Dict keys become strings as json.dumps converts them. */
static fm_status write_key(jinja_ctx *ctx, jinja_value key, const jinja_json_style *style, jinja_buf *b) {
    char num[40];
    switch (key.type) {
    case JINJA_STRING: return write_string(key.as.str->data, key.as.str->len, style->ensure_ascii, b);
    case JINJA_NONE: return jinja_buf_puts(b, "\"null\"");
    case JINJA_BOOL: return jinja_buf_puts(b, key.as.boolean ? "\"true\"" : "\"false\"");
    case JINJA_INT: return jinja_buf_printf(b, "\"%" PRId64 "\"", key.as.integer);
    case JINJA_FLOAT:
        if (isnan(key.as.number)) return jinja_buf_puts(b, "\"NaN\"");
        if (isinf(key.as.number)) return jinja_buf_puts(b, key.as.number < 0 ? "\"-Infinity\"" : "\"Infinity\"");
        jinja_format_float(key.as.number, num);
        return jinja_buf_printf(b, "\"%s\"", num);
    default:
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "keys must be str, int, float, bool or None, not %s",
                          jinja_type_name(key));
    }
}

static fm_status write_json(jinja_ctx *ctx, jinja_value v, const jinja_json_style *style, int level, jinja_buf *b);

static fm_status write_dict(jinja_ctx *ctx, const jinja_dict *d, const jinja_json_style *style, int level,
                            jinja_buf *b) {
    if (!d->len) return jinja_buf_puts(b, "{}");
    size_t *order = malloc(d->len * sizeof *order);
    if (!order) return fm_error(FM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < d->len; i++) order[i] = i;
    fm_status st = FM_OK;
    if (style->sort_keys) { /* insertion sort: stable, and dicts in prompts are small */
        for (size_t i = 1; i < d->len && !st; i++)
            for (size_t j = i; j > 0 && !st; j--) {
                bool less;
                if ((st = jinja_less(ctx, d->keys[order[j]], d->keys[order[j - 1]], &less)) || !less) break;
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    }
    if (!st) st = jinja_buf_putc(b, '{');
    for (size_t k = 0; k < d->len && !st; k++) {
        size_t i = order[k];
        if (k) st = jinja_buf_puts(b, style->item_separator);
        if (!st && style->indent) st = newline_indent(style, level + 1, b);
        if (!st) st = write_key(ctx, d->keys[i], style, b);
        if (!st) st = jinja_buf_puts(b, style->key_separator);
        if (!st) st = write_json(ctx, d->values[i], style, level + 1, b);
    }
    if (!st && style->indent) st = newline_indent(style, level, b);
    free(order);
    return st ? st : jinja_buf_putc(b, '}');
}

static fm_status write_json(jinja_ctx *ctx, jinja_value v, const jinja_json_style *style, int level, jinja_buf *b) {
    if (level > JINJA_MAX_VALUE_DEPTH) return jinja_fail(ctx, FM_ERR_ARGUMENT, "value nested too deeply for tojson");
    fm_status st = jinja_charge(ctx, 1);
    if (st) return st;
    switch (v.type) {
    case JINJA_NONE: return jinja_buf_puts(b, "null");
    case JINJA_BOOL: return jinja_buf_puts(b, v.as.boolean ? "true" : "false");
    case JINJA_INT: return jinja_buf_printf(b, "%" PRId64, v.as.integer);
    case JINJA_FLOAT: return write_float(v.as.number, b);
    case JINJA_STRING:
        if ((st = jinja_charge(ctx, JINJA_TEXT_COST(v.as.str->len)))) return st;
        return write_string(v.as.str->data, v.as.str->len, style->ensure_ascii, b);
    case JINJA_LIST: {
        const jinja_list *l = v.as.list;
        if (!l->len) return jinja_buf_puts(b, "[]");
        st = jinja_buf_putc(b, '[');
        for (size_t i = 0; i < l->len && !st; i++) {
            if (i) st = jinja_buf_puts(b, style->item_separator);
            if (!st && style->indent) st = newline_indent(style, level + 1, b);
            if (!st) st = write_json(ctx, l->items[i], style, level + 1, b);
        }
        if (!st && style->indent) st = newline_indent(style, level, b);
        return st ? st : jinja_buf_putc(b, ']');
    }
    case JINJA_DICT: return write_dict(ctx, v.as.dict, style, level, b);
    default: return jinja_fail(ctx, FM_ERR_ARGUMENT, "Object of type %s is not JSON serializable", jinja_type_name(v));
    }
}

fm_status jinja_to_json(jinja_ctx *ctx, jinja_value v, const jinja_json_style *style, jinja_buf *b) {
    return write_json(ctx, v, style, 0, b);
}

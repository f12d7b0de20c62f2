/* Jinja's filters ({{ x | name(args) }}) and tests ({% if x is name %}), with
 * the arguments and edge cases of Jinja 3.1: string filters read undefined as
 * '', sort/unique/min/max ignore case unless told otherwise, select/map take
 * test and filter names, tojson is transformers' (json.dumps with
 * ensure_ascii=False). Results that Jinja returns as generators are lists. */
#include "text/jinja_runtime.h"

#include "text/jinja_unicode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef fm_status (*filter_fn)(jinja_ctx *ctx, jinja_value v, const jinja_args *args, jinja_value *out);

#define FILTER(name) static fm_status f_##name(jinja_ctx *ctx, jinja_value v, const jinja_args *args, jinja_value *out)
#define BIND(fname, n_required, ...)                                                                                   \
    static const char *const params[] = {__VA_ARGS__};                                                                 \
    jinja_value a[sizeof params / sizeof params[0]];                                                                   \
    fm_status st = jinja_bind(ctx, fname, args, params, (int)(sizeof params / sizeof params[0]), n_required, a);       \
    if (st) return st

static fm_status no_params(jinja_ctx *ctx, const char *fname, const jinja_args *args) {
    return jinja_bind(ctx, fname, args, NULL, 0, 0, NULL);
}

/* Jinja's soft_str: str(v), undefined as ''. */
static fm_status as_text(jinja_value v, jinja_value *out) { return jinja_to_string_value(v, out); }

static bool is_int(jinja_value v) { return v.type == JINJA_INT || v.type == JINJA_BOOL; }
static int64_t int_of(jinja_value v) { return v.type == JINJA_BOOL ? v.as.boolean : v.as.integer; }

static fm_status int_arg(jinja_ctx *ctx, jinja_value v, const char *what, int64_t fallback, int64_t *out) {
    if (!jinja_given(v)) return *out = fallback, FM_OK;
    if (!is_int(v)) return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s must be an integer, not %s", what, jinja_type_name(v));
    *out = int_of(v);
    return FM_OK;
}

static bool flag_arg(jinja_value v) { return jinja_given(v) && jinja_truthy(v); }

/* Applies a string function to str(v). */
static fm_status with_text(jinja_ctx *ctx, jinja_value v, jinja_case mode, jinja_value *out) {
    jinja_value s;
    fm_status st = as_text(v, &s);
    if (st) return st;
    st = jinja_str_case(ctx, s, mode, out);
    jinja_release(s);
    return st;
}

/* The value at an attribute path "a.b.0" (Jinja's make_attrgetter): each part
 * looked up as an item, digits as an index. */
static fm_status get_path(jinja_ctx *ctx, jinja_value item, jinja_value attribute, jinja_value *out) {
    if (attribute.type != JINJA_STRING) return jinja_get_item(ctx, item, attribute, out);
    const char *p = attribute.as.str->data, *end = p + attribute.as.str->len;
    jinja_value cur = jinja_retain(item);
    fm_status st = FM_OK;
    while (!st) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        bool digits = n > 0 && n < 18;
        for (size_t i = 0; i < n && digits; i++) digits = p[i] >= '0' && p[i] <= '9';
        jinja_value key, next;
        if (digits)
            key = jinja_int(strtoll(p, NULL, 10));
        else if ((st = jinja_string_new(p, n, &key)))
            break;
        st = jinja_get_item(ctx, cur, key, &next);
        jinja_release(key);
        jinja_release(cur);
        cur = next;
        if (st || !dot) break;
        p = dot + 1;
    }
    if (st) jinja_clear(&cur);
    *out = cur;
    return st;
}

/* ---- strings ------------------------------------------------------------------------- */

FILTER(upper) {
    fm_status st = no_params(ctx, "upper", args);
    return st ? st : with_text(ctx, v, JINJA_CASE_UPPER, out);
}
FILTER(lower) {
    fm_status st = no_params(ctx, "lower", args);
    return st ? st : with_text(ctx, v, JINJA_CASE_LOWER, out);
}
FILTER(capitalize) {
    fm_status st = no_params(ctx, "capitalize", args);
    return st ? st : with_text(ctx, v, JINJA_CASE_CAPITALIZE, out);
}
FILTER(title) {
    fm_status st = no_params(ctx, "title", args);
    return st ? st : with_text(ctx, v, JINJA_CASE_TITLE_FILTER, out);
}

FILTER(trim) {
    BIND("trim", 0, "chars");
    jinja_value s;
    if ((st = as_text(v, &s))) return st;
    st = jinja_str_strip(ctx, s, a[0], true, true, out);
    jinja_release(s);
    return st;
}

FILTER(string) {
    fm_status st = no_params(ctx, "string", args);
    if (st || (st = as_text(v, out))) return st;
    return jinja_charge(ctx, JINJA_TEXT_COST(out->as.str->len));
}

/* safe marks text as Markup, which is a str: whatever comes in leaves as text. */
FILTER(safe) {
    fm_status st = no_params(ctx, "safe", args);
    return st ? st : as_text(v, out);
}

FILTER(replace) {
    BIND("replace", 2, "old", "new", "count");
    int64_t count = -1;
    jinja_value s, old, repl;
    if (jinja_given(a[2]) && a[2].type != JINJA_NONE && (st = int_arg(ctx, a[2], "count", -1, &count))) return st;
    if ((st = as_text(v, &s))) return st;
    if (!(st = as_text(a[0], &old))) {
        if (!(st = as_text(a[1], &repl))) {
            st = jinja_str_replace(ctx, s, old, repl, count, out);
            jinja_release(repl);
        }
        jinja_release(old);
    }
    jinja_release(s);
    return st;
}

FILTER(escape) {
    fm_status st = no_params(ctx, "escape", args);
    jinja_value s;
    if (st || (st = as_text(v, &s))) return st;
    jinja_buf b = {0};
    st = jinja_charge(ctx, JINJA_TEXT_COST(s.as.str->len));
    for (size_t i = 0; i < s.as.str->len && !st; i++) {
        char c = s.as.str->data[i];
        switch (c) {
        case '&': st = jinja_buf_puts(&b, "&amp;"); break;
        case '<': st = jinja_buf_puts(&b, "&lt;"); break;
        case '>': st = jinja_buf_puts(&b, "&gt;"); break;
        case '"': st = jinja_buf_puts(&b, "&#34;"); break;
        case '\'': st = jinja_buf_puts(&b, "&#39;"); break;
        default: st = jinja_buf_putc(&b, c);
        }
    }
    jinja_release(s);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

/* Lines as str.splitlines() cuts them (without their breaks). */
static size_t next_line(const char *s, size_t len, size_t from, size_t *line_end) {
    size_t i = from, n;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t br = 0;
        if (c == '\r')
            br = i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
        else if (c == '\n' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e))
            br = 1;
        else if (c >= 0x80) {
            int32_t cp = jinja_utf8_decode(s + i, len - i, &n);
            if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) br = n;
        }
        if (br) {
            *line_end = i;
            return i + br;
        }
        i++;
    }
    *line_end = len;
    return len;
}

FILTER(indent) {
    BIND("indent", 0, "width", "first", "blank");
    if (v.type != JINJA_STRING)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "indent expects a string, not %s", jinja_type_name(v));
    jinja_buf pad = {0}, b = {0};
    if (jinja_given(a[0]) && a[0].type == JINJA_STRING) {
        st = jinja_buf_append(&pad, a[0].as.str->data, a[0].as.str->len);
    } else {
        int64_t width = 0;
        if (!(st = int_arg(ctx, a[0], "width", 4, &width)) && width > 4096)
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "indent width too large");
        for (int64_t i = 0; i < width && !st; i++) st = jinja_buf_putc(&pad, ' ');
    }
    bool first = flag_arg(a[1]), blank = flag_arg(a[2]);
    /* Jinja splits s + "\n" into lines: every line break of s ends a line and
     * the text after the last break (perhaps empty) is the last line. */
    const char *s = v.as.str->data;
    size_t len = v.as.str->len, pos = 0, line_end;
    if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(len));
    for (bool first_line = true; !st; first_line = false) {
        size_t next = next_line(s, len, pos, &line_end);
        bool empty = line_end == pos;
        if (!first_line) st = jinja_buf_putc(&b, '\n');
        if (!st && (first_line ? first : (blank || !empty))) st = jinja_buf_append(&b, pad.data, pad.len);
        if (!st) st = jinja_buf_append(&b, s + pos, line_end - pos);
        if (!st) st = jinja_charge(ctx, 1);
        if (line_end == len) break; /* no break after this line: it was the last */
        pos = next;
    }
    jinja_buf_free(&pad);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

FILTER(center) {
    BIND("center", 0, "width");
    int64_t width;
    jinja_value s;
    if ((st = int_arg(ctx, a[0], "width", 80, &width)) || (st = as_text(v, &s))) return st;
    jinja_value w = jinja_int(width);
    jinja_args call = {.pos = &w, .n_pos = 1};
    st = jinja_call_method(ctx, s, "center", &call, out);
    jinja_release(s);
    return st;
}

FILTER(wordcount) {
    fm_status st = no_params(ctx, "wordcount", args);
    jinja_value s;
    if (st || (st = as_text(v, &s))) return st;
    if ((st = jinja_charge(ctx, JINJA_TEXT_COST(s.as.str->len)))) {
        jinja_release(s);
        return st;
    }
    int64_t words = 0;
    bool in_word = false;
    for (size_t i = 0, n; i < s.as.str->len; i += n) {
        int32_t cp = jinja_utf8_decode(s.as.str->data + i, s.as.str->len - i, &n);
        bool w = cp == '_' || jinja_is_alpha(cp) || jinja_is_digit(cp);
        words += w && !in_word;
        in_word = w;
    }
    jinja_release(s);
    *out = jinja_int(words);
    return FM_OK;
}

/* The format filter: str(value) % args, as Jinja's. */
FILTER(format) {
    if (args->n_kw) return jinja_fail(ctx, FM_ERR_UNSUPPORTED, "format with keyword arguments is not supported");
    jinja_value text;
    fm_status st = as_text(v, &text);
    if (st) return st;
    st = jinja_percent_format(ctx, text, args->pos, args->n_pos, false, out);
    jinja_release(text);
    return st;
}

FILTER(tojson) {
    /* transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
    BIND("tojson", 0, "ensure_ascii", "indent", "separators", "sort_keys");
    jinja_json_style style = {.ensure_ascii = flag_arg(a[0]), .sort_keys = flag_arg(a[3])};
    char spaces[64];
    if (jinja_given(a[1]) && a[1].type != JINJA_NONE) {
        if (a[1].type == JINJA_STRING) {
            style.indent = a[1].as.str->data;
        } else if (is_int(a[1])) {
            int64_t n = int_of(a[1]);
            if (n > (int64_t)sizeof spaces - 1) return jinja_fail(ctx, FM_ERR_ARGUMENT, "tojson indent too large");
            memset(spaces, ' ', n > 0 ? (size_t)n : 0);
            spaces[n > 0 ? n : 0] = 0;
            style.indent = spaces;
        } else {
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "tojson indent must be an integer or a string");
        }
    }
    style.item_separator = style.indent ? "," : ", ";
    style.key_separator = ": ";
    if (jinja_given(a[2]) && a[2].type != JINJA_NONE) {
        jinja_value sep = a[2];
        if (sep.type != JINJA_LIST || sep.as.list->len != 2 || sep.as.list->items[0].type != JINJA_STRING ||
            sep.as.list->items[1].type != JINJA_STRING)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "tojson separators must be a pair of strings");
        style.item_separator = sep.as.list->items[0].as.str->data;
        style.key_separator = sep.as.list->items[1].as.str->data;
    }
    jinja_buf b = {0};
    if ((st = jinja_to_json(ctx, v, &style, &b))) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

/* ---- numbers ------------------------------------------------------------------------------ */

/* Python's float(str): surrounding whitespace, underscores between digits,
 * inf/nan spellings. */
static bool parse_float_text(const char *s, size_t len, double *out) {
    size_t from = 0, to = len, n;
    while (from < to && jinja_is_space(jinja_utf8_decode(s + from, to - from, &n))) from += n;
    while (to > from) {
        size_t prev = from + jinja_utf8_prev(s + from, to - from);
        if (!jinja_is_space(jinja_utf8_decode(s + prev, to - prev, &n))) break;
        to = prev;
    }
    char buf[128];
    size_t k = 0;
    if (to - from == 0 || to - from >= sizeof buf) return false;
    for (size_t i = from; i < to; i++) {
        char c = s[i];
        if (c == '_') {
            bool ok =
                i > from && i + 1 < to && s[i - 1] >= '0' && s[i - 1] <= '9' && s[i + 1] >= '0' && s[i + 1] <= '9';
            if (!ok) return false;
            continue;
        }
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' ||
              ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
            return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    const char *word = buf + (buf[0] == '+' || buf[0] == '-');
    if ((word[0] | 0x20) == 'i' || (word[0] | 0x20) == 'n') {
        if (strcasecmp(word, "inf") && strcasecmp(word, "infinity") && strcasecmp(word, "nan")) return false;
    } else {
        for (const char *p = word; *p; p++)
            if ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z' && (*p | 0x20) != 'e') return false;
    }
    char *end;
    errno = 0;
    *out = strtod(buf, &end);
    return *end == 0 && end != buf;
}

/* Python's int(str, base): whitespace, sign, underscores, 0x/0o/0b prefixes. */
static bool parse_int_text(const char *s, size_t len, int base, int64_t *out) {
    char buf[96];
    size_t k = 0, n, from = 0, to = len;
    while (from < to && jinja_is_space(jinja_utf8_decode(s + from, to - from, &n))) from += n;
    while (to > from) {
        size_t prev = from + jinja_utf8_prev(s + from, to - from);
        if (!jinja_is_space(jinja_utf8_decode(s + prev, to - prev, &n))) break;
        to = prev;
    }
    if (to - from == 0 || to - from >= sizeof buf) return false;
    bool negative = false;
    if (s[from] == '+' || s[from] == '-') negative = s[from++] == '-';
    if (to - from > 2 && s[from] == '0') {
        char x = (char)(s[from + 1] | 0x20);
        int prefixed = x == 'x' ? 16 : x == 'o' ? 8 : x == 'b' ? 2 : 0;
        if (prefixed && (base == prefixed || base == 0)) {
            base = prefixed;
            from += 2;
            if (from < to && s[from] == '_') from++;
        }
    }
    if (base == 0) base = 10;
    if (base < 2 || base > 36) return false;
    for (size_t i = from; i < to; i++) {
        if (s[i] == '_' && i > from && i + 1 < to && s[i + 1] != '_') continue;
        int d = s[i] >= '0' && s[i] <= '9'                       ? s[i] - '0'
                : ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') ? (s[i] | 0x20) - 'a' + 10
                                                                 : 99;
        if (d >= base) return false;
        buf[k++] = s[i];
    }
    if (!k) return false;
    buf[k] = 0;
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, base);
    if (errno == ERANGE || v > (unsigned long long)INT64_MAX + negative) return false;
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

FILTER(int) {
    BIND("int", 0, "default", "base");
    int64_t base, result;
    double f;
    if ((st = int_arg(ctx, a[1], "base", 10, &base))) return st;
    if (v.type == JINJA_STRING && (st = jinja_charge(ctx, JINJA_TEXT_COST(v.as.str->len)))) return st;
    if (v.type == JINJA_UNDEFINED) /* int(Undefined) raises rather than falling back to the default */
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' is undefined", v.as.hint ? v.as.hint : "value");
    if (is_int(v)) return *out = jinja_int(int_of(v)), FM_OK;
    if (v.type == JINJA_FLOAT && isfinite(v.as.number) && fabs(v.as.number) < 9.2e18)
        return *out = jinja_int((int64_t)v.as.number), FM_OK;
    if (v.type == JINJA_STRING) {
        if (parse_int_text(v.as.str->data, v.as.str->len, (int)base, &result)) return *out = jinja_int(result), FM_OK;
        if (parse_float_text(v.as.str->data, v.as.str->len, &f) && isfinite(f) && fabs(f) < 9.2e18)
            return *out = jinja_int((int64_t)f), FM_OK;
    }
    *out = jinja_given(a[0]) ? jinja_retain(a[0]) : jinja_int(0);
    return FM_OK;
}

FILTER(float) {
    BIND("float", 0, "default");
    double f;
    if (v.type == JINJA_STRING && (st = jinja_charge(ctx, JINJA_TEXT_COST(v.as.str->len)))) return st;
    if (v.type == JINJA_UNDEFINED)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' is undefined", v.as.hint ? v.as.hint : "value");
    if (v.type == JINJA_FLOAT) return *out = v, FM_OK;
    if (is_int(v)) return *out = jinja_float((double)int_of(v)), FM_OK;
    if (v.type == JINJA_STRING && parse_float_text(v.as.str->data, v.as.str->len, &f))
        return *out = jinja_float(f), FM_OK;
    *out = jinja_given(a[0]) ? jinja_retain(a[0]) : jinja_float(0.0);
    return FM_OK;
}

FILTER(abs) {
    fm_status st = no_params(ctx, "abs", args);
    if (st) return st;
    if (v.type == JINJA_FLOAT) return *out = jinja_float(fabs(v.as.number)), FM_OK;
    if (is_int(v)) return jinja_negate(ctx, v, int_of(v) < 0, out);
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "bad operand type for abs(): '%s'", jinja_type_name(v));
}

FILTER(round) {
    BIND("round", 0, "precision", "method");
    int64_t precision;
    if ((st = int_arg(ctx, a[0], "precision", 0, &precision))) return st;
    const char *method = jinja_given(a[1]) && a[1].type == JINJA_STRING ? a[1].as.str->data : "common";
    if (strcmp(method, "common") && strcmp(method, "floor") && strcmp(method, "ceil"))
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "method must be common, ceil or floor");
    if (is_int(v) && !strcmp(method, "common")) return *out = jinja_int(int_of(v)), FM_OK;
    if (!is_int(v) && v.type != JINJA_FLOAT)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "round expects a number, not %s", jinja_type_name(v));
    double x = v.type == JINJA_FLOAT ? v.as.number : (double)int_of(v);
    if (precision > 300) precision = 300;
    if (precision < -300) precision = -300;
    if (!isfinite(x)) return *out = jinja_float(x), FM_OK;
    if (!strcmp(method, "common") && precision >= 0) {
        /* printf rounds the exact binary value half-to-even, as Python's round() does */
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)precision, x);
        *out = jinja_float(strtod(buf, NULL));
        return FM_OK;
    }
    double scale = pow(10.0, (double)precision), y = x * scale;
    y = !strcmp(method, "floor") ? floor(y) : !strcmp(method, "ceil") ? ceil(y) : nearbyint(y);
    *out = jinja_float(y / scale);
    return FM_OK;
}

/* ---- sequences ------------------------------------------------------------------------------ */

FILTER(length) {
    fm_status st = no_params(ctx, "length", args);
    int64_t n;
    if (st || (st = jinja_length(ctx, v, &n))) return st;
    *out = jinja_int(n);
    return FM_OK;
}

FILTER(list) {
    fm_status st = no_params(ctx, "list", args);
    jinja_value items;
    if (st || (st = jinja_iterate(ctx, v, &items))) return st;
    if (!items.as.list->is_tuple && items.as.obj->refcount == 1) return *out = items, FM_OK;
    if (!(st = jinja_charge(ctx, items.as.list->len))) st = jinja_list_new(items.as.list->len, false, out);
    for (size_t i = 0; i < items.as.list->len && !st; i++)
        st = jinja_list_push(out->as.list, jinja_retain(items.as.list->items[i]));
    jinja_release(items);
    if (st) jinja_clear(out);
    return st;
}

FILTER(first) {
    fm_status st = no_params(ctx, "first", args);
    jinja_value items;
    if (st || (st = jinja_iterate(ctx, v, &items))) return st;
    *out = items.as.list->len ? jinja_retain(items.as.list->items[0]) : jinja_undefined("first item");
    jinja_release(items);
    return FM_OK;
}

FILTER(last) {
    fm_status st = no_params(ctx, "last", args);
    jinja_value items;
    if (st || (st = jinja_iterate(ctx, v, &items))) return st;
    size_t n = items.as.list->len;
    *out = n ? jinja_retain(items.as.list->items[n - 1]) : jinja_undefined("last item");
    jinja_release(items);
    return FM_OK;
}

FILTER(reverse) {
    fm_status st = no_params(ctx, "reverse", args);
    if (st) return st;
    if (v.type == JINJA_STRING) {
        jinja_value slice_step = jinja_int(-1);
        return jinja_slice(ctx, v, jinja_none(), jinja_none(), slice_step, out);
    }
    jinja_value items;
    if ((st = jinja_iterate(ctx, v, &items))) return st;
    size_t n = items.as.list->len;
    if (!(st = jinja_charge(ctx, n))) st = jinja_list_new(n, false, out);
    for (size_t i = n; i-- > 0 && !st;) st = jinja_list_push(out->as.list, jinja_retain(items.as.list->items[i]));
    jinja_release(items);
    if (st) jinja_clear(out);
    return st;
}

FILTER(join) {
    BIND("join", 0, "d", "attribute");
    jinja_value items, sep = jinja_undefined(NULL);
    if ((st = jinja_iterate(ctx, v, &items))) return st;
    if (jinja_given(a[0]) && (st = as_text(a[0], &sep))) {
        jinja_release(items);
        return st;
    }
    jinja_buf b = {0};
    for (size_t i = 0; i < items.as.list->len && !st; i++) {
        if (i && sep.type == JINJA_STRING) st = jinja_buf_append(&b, sep.as.str->data, sep.as.str->len);
        if (st) break;
        if (jinja_given(a[1]) && a[1].type != JINJA_NONE) {
            jinja_value item;
            if (!(st = get_path(ctx, items.as.list->items[i], a[1], &item))) {
                st = jinja_to_text(item, &b);
                jinja_release(item);
            }
        } else {
            st = jinja_to_text(items.as.list->items[i], &b);
        }
        if (!st) st = jinja_charge(ctx, 1);
    }
    jinja_release(items);
    jinja_release(sep);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

FILTER(items) {
    fm_status st = no_params(ctx, "items", args);
    if (st) return st;
    if (v.type == JINJA_UNDEFINED) return jinja_list_new(0, false, out);
    if (v.type != JINJA_DICT) return jinja_fail(ctx, FM_ERR_ARGUMENT, "can only get item pairs from a mapping");
    jinja_args none = {0};
    return jinja_call_method(ctx, v, "items", &none, out);
}

/* Sort keys: the item or its attribute, lower-cased when case-insensitive. */
static fm_status sort_key(jinja_ctx *ctx, jinja_value item, jinja_value attribute, bool case_sensitive,
                          jinja_value *key) {
    jinja_value k;
    fm_status st = jinja_given(attribute) && attribute.type != JINJA_NONE ? get_path(ctx, item, attribute, &k)
                                                                          : (k = jinja_retain(item), FM_OK);
    if (st) return st;
    if (!case_sensitive && k.type == JINJA_STRING) {
        st = jinja_str_case(ctx, k, JINJA_CASE_LOWER, key);
        jinja_release(k);
        return st;
    }
    *key = k;
    return FM_OK;
}

/* Keys of every item of a list (parallel array). */
static fm_status make_keys(jinja_ctx *ctx, const jinja_list *items, jinja_value attribute, bool case_sensitive,
                           jinja_value **keys) {
    *keys = calloc(items->len ? items->len : 1, sizeof **keys);
    if (!*keys) return jinja_fail(ctx, FM_ERR_NOMEM, "out of memory");
    fm_status st = jinja_charge(ctx, items->len);
    for (size_t i = 0; i < items->len && !st; i++)
        st = sort_key(ctx, items->items[i], attribute, case_sensitive, &(*keys)[i]);
    return st;
}

static void free_keys(jinja_value *keys, size_t n) {
    for (size_t i = 0; i < n; i++) jinja_release(keys[i]);
    free(keys);
}

/* Stable merge sort of indices by keys (Python's sort is stable). */
static fm_status sort_indices(jinja_ctx *ctx, const jinja_value *keys, size_t *idx, size_t n, bool reverse) {
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return jinja_fail(ctx, FM_ERR_NOMEM, "out of memory");
    fm_status st = FM_OK;
    for (size_t width = 1; width < n && !st; width *= 2) {
        for (size_t lo = 0; lo < n && !st; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi && !st) {
                bool take_right;
                /* right goes first only if strictly before left: keeps equal items in order */
                st = reverse ? jinja_less(ctx, keys[idx[i]], keys[idx[j]], &take_right)
                             : jinja_less(ctx, keys[idx[j]], keys[idx[i]], &take_right);
                if (st) break;
                tmp[k++] = take_right ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
            memcpy(idx + lo, tmp + lo, (hi - lo) * sizeof *idx);
        }
        if (!st) st = jinja_charge(ctx, n);
    }
    free(tmp);
    return st;
}

FILTER(sort) {
    BIND("sort", 0, "reverse", "case_sensitive", "attribute");
    jinja_value items, *keys = NULL;
    if ((st = jinja_iterate(ctx, v, &items))) return st;
    size_t n = items.as.list->len, *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) st = jinja_fail(ctx, FM_ERR_NOMEM, "out of memory");
    if (!st) st = make_keys(ctx, items.as.list, a[2], flag_arg(a[1]), &keys);
    for (size_t i = 0; i < n && idx; i++) idx[i] = i;
    if (!st) st = sort_indices(ctx, keys, idx, n, flag_arg(a[0]));
    if (!st) st = jinja_list_new(n, false, out);
    for (size_t i = 0; i < n && !st; i++)
        st = jinja_list_push(out->as.list, jinja_retain(items.as.list->items[idx[i]]));
    if (st) jinja_clear(out);
    if (keys) free_keys(keys, n);
    free(idx);
    jinja_release(items);
    return st;
}

FILTER(dictsort) {
    BIND("dictsort", 0, "case_sensitive", "by", "reverse");
    if (v.type != JINJA_DICT) return jinja_fail(ctx, FM_ERR_ARGUMENT, "dictsort expects a mapping");
    bool by_value = jinja_given(a[1]) && a[1].type == JINJA_STRING && !strcmp(a[1].as.str->data, "value");
    jinja_value pairs;
    jinja_args none = {0};
    if ((st = jinja_call_method(ctx, v, "items", &none, &pairs))) return st;
    jinja_value position = jinja_int(by_value ? 1 : 0);
    jinja_value *keys = NULL;
    size_t n = pairs.as.list->len, *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) st = jinja_fail(ctx, FM_ERR_NOMEM, "out of memory");
    if (!st) st = make_keys(ctx, pairs.as.list, position, flag_arg(a[0]), &keys);
    for (size_t i = 0; i < n && idx; i++) idx[i] = i;
    if (!st) st = sort_indices(ctx, keys, idx, n, flag_arg(a[2]));
    if (!st) st = jinja_list_new(n, false, out);
    for (size_t i = 0; i < n && !st; i++)
        st = jinja_list_push(out->as.list, jinja_retain(pairs.as.list->items[idx[i]]));
    if (st) jinja_clear(out);
    if (keys) free_keys(keys, n);
    free(idx);
    jinja_release(pairs);
    return st;
}

FILTER(unique) {
    BIND("unique", 0, "case_sensitive", "attribute");
    jinja_value items, *keys = NULL;
    if ((st = jinja_iterate(ctx, v, &items))) return st;
    size_t n = items.as.list->len;
    st = make_keys(ctx, items.as.list, a[1], flag_arg(a[0]), &keys);
    jinja_value seen;
    if (!st) st = jinja_dict_new(&seen);
    if (!st) {
        st = jinja_list_new(0, false, out);
        for (size_t i = 0; i < n && !st; i++) {
            if (!jinja_is_hashable(keys[i])) {
                st = jinja_fail(ctx, FM_ERR_ARGUMENT, "unhashable type: '%s'", jinja_type_name(keys[i]));
                break;
            }
            if (jinja_dict_get(seen.as.dict, keys[i])) continue;
            if (!(st = jinja_dict_set(seen.as.dict, jinja_retain(keys[i]), jinja_none())))
                st = jinja_list_push(out->as.list, jinja_retain(items.as.list->items[i]));
        }
        jinja_release(seen);
        if (st) jinja_clear(out);
    }
    if (keys) free_keys(keys, n);
    jinja_release(items);
    return st;
}

static fm_status min_max(jinja_ctx *ctx, jinja_value v, const jinja_args *args, bool want_max, jinja_value *out) {
    BIND(want_max ? "max" : "min", 0, "case_sensitive", "attribute");
    jinja_value items, *keys = NULL;
    if ((st = jinja_iterate(ctx, v, &items))) return st;
    size_t n = items.as.list->len, best = 0;
    st = make_keys(ctx, items.as.list, a[1], flag_arg(a[0]), &keys);
    for (size_t i = 1; i < n && !st; i++) {
        bool better;
        st = want_max ? jinja_less(ctx, keys[best], keys[i], &better) : jinja_less(ctx, keys[i], keys[best], &better);
        if (!st && better) best = i;
    }
    if (!st) *out = n ? jinja_retain(items.as.list->items[best]) : jinja_undefined("aggregated item");
    if (keys) free_keys(keys, n);
    jinja_release(items);
    return st;
}
FILTER(max) { return min_max(ctx, v, args, true, out); }
FILTER(min) { return min_max(ctx, v, args, false, out); }

FILTER(sum) {
    BIND("sum", 0, "attribute", "start");
    jinja_value items, total = jinja_given(a[1]) ? jinja_retain(a[1]) : jinja_int(0);
    if ((st = jinja_iterate(ctx, v, &items))) {
        jinja_release(total);
        return st;
    }
    for (size_t i = 0; i < items.as.list->len && !st; i++) {
        jinja_value item, next;
        if (jinja_given(a[0]) && a[0].type != JINJA_NONE)
            st = get_path(ctx, items.as.list->items[i], a[0], &item);
        else
            item = jinja_retain(items.as.list->items[i]);
        if (st) break;
        st = jinja_binary(ctx, JOP_ADD, total, item, &next);
        jinja_release(item);
        jinja_release(total);
        total = st ? jinja_undefined(NULL) : next;
    }
    jinja_release(items);
    if (st) {
        jinja_release(total);
        return st;
    }
    *out = total;
    return FM_OK;
}

FILTER(attr) {
    BIND("attr", 1, "name");
    if (a[0].type != JINJA_STRING) return jinja_fail(ctx, FM_ERR_ARGUMENT, "attr expects a string name");
    st = jinja_get_attr(ctx, v, a[0].as.str->data, out);
    if (!st && out->type == JINJA_UNDEFINED) out->as.hint = "attribute"; /* the name dies with the argument */
    return st;
}

FILTER(default) {
    BIND("default", 0, "default_value", "boolean");
    if (v.type == JINJA_UNDEFINED || (flag_arg(a[1]) && !jinja_truthy(v))) {
        if (jinja_given(a[0]))
            *out = jinja_retain(a[0]);
        else
            st = jinja_string_new("", 0, out);
        return st;
    }
    *out = jinja_retain(v);
    return FM_OK;
}

/* select / reject / selectattr / rejectattr */
static fm_status select_items(jinja_ctx *ctx, jinja_value v, const jinja_args *args, bool by_attr, bool keep_if,
                              jinja_value *out) {
    if (args->n_kw) return jinja_fail(ctx, FM_ERR_ARGUMENT, "select filters take no keyword arguments");
    if (by_attr && args->n_pos < 1) return jinja_fail(ctx, FM_ERR_ARGUMENT, "missing parameter for attribute name");
    int off = by_attr ? 1 : 0, test = -1;
    if (args->n_pos > off) {
        jinja_value name = args->pos[off];
        if (name.type != JINJA_STRING) return jinja_fail(ctx, FM_ERR_ARGUMENT, "test name must be a string");
        if ((test = jinja_test_find(name.as.str->data)) < 0)
            return jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown test '%s'", name.as.str->data);
    }
    jinja_args test_args = {.pos = args->pos + off + 1, .n_pos = args->n_pos > off ? args->n_pos - off - 1 : 0};
    if (!jinja_truthy(v)) return jinja_list_new(0, false, out); /* Jinja yields nothing for a falsy value */
    jinja_value items;
    fm_status st = jinja_iterate(ctx, v, &items);
    if (st || (st = jinja_list_new(0, false, out))) {
        jinja_release(items);
        return st;
    }
    for (size_t i = 0; i < items.as.list->len && !st; i++) {
        jinja_value subject;
        if ((st = jinja_charge(ctx, 1))) break;
        if (by_attr)
            st = get_path(ctx, items.as.list->items[i], args->pos[0], &subject);
        else
            subject = jinja_retain(items.as.list->items[i]);
        if (st) break;
        bool pass = test < 0 ? jinja_truthy(subject) : false;
        if (test >= 0) st = jinja_apply_test(ctx, test, subject, &test_args, &pass);
        jinja_release(subject);
        if (!st && pass == keep_if) st = jinja_list_push(out->as.list, jinja_retain(items.as.list->items[i]));
    }
    jinja_release(items);
    if (st) jinja_clear(out);
    return st;
}
FILTER(select) { return select_items(ctx, v, args, false, true, out); }
FILTER(reject) { return select_items(ctx, v, args, false, false, out); }
FILTER(selectattr) { return select_items(ctx, v, args, true, true, out); }
FILTER(rejectattr) { return select_items(ctx, v, args, true, false, out); }

FILTER(map) {
    jinja_value attribute = jinja_undefined(NULL), fallback = jinja_undefined(NULL);
    int filter = -1;
    jinja_args rest = {0};
    if (args->n_pos == 0) {
        for (int k = 0; k < args->n_kw; k++) {
            if (!strcmp(args->kw_names[k], "attribute"))
                attribute = args->kw[k];
            else if (!strcmp(args->kw_names[k], "default"))
                fallback = args->kw[k];
            else
                return jinja_fail(ctx, FM_ERR_ARGUMENT, "map() got an unexpected keyword argument '%s'",
                                  args->kw_names[k]);
        }
        if (!jinja_given(attribute))
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "map requires a filter name or attribute=");
    } else {
        if (args->pos[0].type != JINJA_STRING)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "map's filter name must be a string");
        if ((filter = jinja_filter_find(args->pos[0].as.str->data)) < 0)
            return jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown filter '%s'", args->pos[0].as.str->data);
        rest = *args;
        rest.pos++;
        rest.n_pos--;
    }
    if (!jinja_truthy(v)) return jinja_list_new(0, false, out); /* Jinja maps nothing for a falsy value */
    jinja_value items;
    fm_status st = jinja_iterate(ctx, v, &items);
    if (st || (st = jinja_list_new(items.as.list->len, false, out))) {
        jinja_release(items);
        return st;
    }
    for (size_t i = 0; i < items.as.list->len && !st; i++) {
        jinja_value r;
        if ((st = jinja_charge(ctx, 1))) break;
        if (filter >= 0) {
            st = jinja_apply_filter(ctx, filter, items.as.list->items[i], &rest, &r);
        } else if (!(st = get_path(ctx, items.as.list->items[i], attribute, &r)) && r.type == JINJA_UNDEFINED &&
                   jinja_given(fallback)) {
            r = jinja_retain(fallback);
        }
        if (!st) st = jinja_list_push(out->as.list, r);
    }
    jinja_release(items);
    if (st) jinja_clear(out);
    return st;
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

int jinja_filter_find(const char *name) {
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(filters[i].name, name)) return (int)i;
    return -1;
}

fm_status jinja_apply_filter(jinja_ctx *ctx, int id, jinja_value subject, const jinja_args *args, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (id < 0 || (size_t)id >= sizeof filters / sizeof filters[0])
        return jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown filter");
    return filters[id].fn(ctx, subject, args, out);
}

/* ---- tests ------------------------------------------------------------------------------------ */

typedef enum {
    T_DEFINED,
    T_UNDEFINED,
    T_NONE,
    T_BOOLEAN,
    T_TRUE,
    T_FALSE,
    T_STRING,
    T_NUMBER,
    T_INTEGER,
    T_FLOAT,
    T_MAPPING,
    T_SEQUENCE,
    T_ITERABLE,
    T_CALLABLE,
    T_LOWER,
    T_UPPER,
    T_ODD,
    T_EVEN,
    T_DIVISIBLEBY,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_IN,
    T_SAMEAS,
    T_ESCAPED,
    T_FILTER,
    T_TEST,
} test_kind;

static const struct {
    const char *name;
    test_kind kind;
} tests[] = {
    {"defined", T_DEFINED},
    {"undefined", T_UNDEFINED},
    {"none", T_NONE},
    {"boolean", T_BOOLEAN},
    {"true", T_TRUE},
    {"false", T_FALSE},
    {"string", T_STRING},
    {"number", T_NUMBER},
    {"integer", T_INTEGER},
    {"float", T_FLOAT},
    {"mapping", T_MAPPING},
    {"sequence", T_SEQUENCE},
    {"iterable", T_ITERABLE},
    {"callable", T_CALLABLE},
    {"lower", T_LOWER},
    {"upper", T_UPPER},
    {"odd", T_ODD},
    {"even", T_EVEN},
    {"divisibleby", T_DIVISIBLEBY},
    {"eq", T_EQ},
    {"equalto", T_EQ},
    {"==", T_EQ},
    {"ne", T_NE},
    {"!=", T_NE},
    {"lt", T_LT},
    {"lessthan", T_LT},
    {"<", T_LT},
    {"le", T_LE},
    {"<=", T_LE},
    {"gt", T_GT},
    {"greaterthan", T_GT},
    {">", T_GT},
    {"ge", T_GE},
    {">=", T_GE},
    {"in", T_IN},
    {"sameas", T_SAMEAS},
    {"escaped", T_ESCAPED},
    {"filter", T_FILTER},
    {"test", T_TEST},
};

int jinja_test_find(const char *name) {
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!strcmp(tests[i].name, name)) return (int)i;
    return -1;
}

static fm_status one_arg(jinja_ctx *ctx, const char *name, const jinja_args *args, jinja_value *arg) {
    if (args->n_pos + args->n_kw != 1) return jinja_fail(ctx, FM_ERR_ARGUMENT, "test '%s' takes one argument", name);
    *arg = args->n_pos ? args->pos[0] : args->kw[0];
    return FM_OK;
}

/* value % 2 == remainder (for floats, odd and even can both be false) */
static fm_status parity(jinja_ctx *ctx, jinja_value v, int64_t remainder, bool *out) {
    jinja_value r;
    fm_status st = jinja_binary(ctx, JOP_MOD, v, jinja_int(2), &r);
    if (st) return st;
    *out = jinja_equal(r, jinja_int(remainder));
    jinja_release(r);
    return FM_OK;
}

fm_status jinja_apply_test(jinja_ctx *ctx, int id, jinja_value v, const jinja_args *args, bool *out) {
    *out = false;
    if (id < 0 || (size_t)id >= sizeof tests / sizeof tests[0])
        return jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown test");
    test_kind kind = tests[id].kind;
    const char *name = tests[id].name;
    jinja_value arg = jinja_undefined(NULL);
    fm_status st = FM_OK;
    bool needs_arg = kind == T_DIVISIBLEBY || kind == T_SAMEAS || (kind >= T_EQ && kind <= T_IN);
    if (needs_arg) {
        if ((st = one_arg(ctx, name, args, &arg))) return st;
    } else if (args->n_pos || args->n_kw) {
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "test '%s' takes no arguments", name);
    }
    switch (kind) {
    case T_DEFINED: *out = v.type != JINJA_UNDEFINED; break;
    case T_UNDEFINED: *out = v.type == JINJA_UNDEFINED; break;
    case T_NONE: *out = v.type == JINJA_NONE; break;
    case T_BOOLEAN: *out = v.type == JINJA_BOOL; break;
    case T_TRUE: *out = v.type == JINJA_BOOL && v.as.boolean; break;
    case T_FALSE: *out = v.type == JINJA_BOOL && !v.as.boolean; break;
    case T_STRING: *out = v.type == JINJA_STRING; break;
    case T_NUMBER: *out = v.type == JINJA_INT || v.type == JINJA_FLOAT || v.type == JINJA_BOOL; break;
    case T_INTEGER: *out = v.type == JINJA_INT; break;
    case T_FLOAT: *out = v.type == JINJA_FLOAT; break;
    case T_MAPPING: *out = v.type == JINJA_DICT; break;
    case T_SEQUENCE:
        *out = v.type == JINJA_STRING || v.type == JINJA_LIST || v.type == JINJA_DICT || v.type == JINJA_UNDEFINED;
        break;
    case T_ITERABLE:
        *out = v.type == JINJA_STRING || v.type == JINJA_LIST || v.type == JINJA_DICT || v.type == JINJA_UNDEFINED ||
               v.type == JINJA_LOOP;
        break;
    case T_CALLABLE: *out = v.type == JINJA_CALLABLE || v.type == JINJA_UNDEFINED; break;
    case T_LOWER:
    case T_UPPER: {
        jinja_value s, r;
        jinja_args none = {0};
        if ((st = as_text(v, &s))) return st;
        st = jinja_call_method(ctx, s, kind == T_LOWER ? "islower" : "isupper", &none, &r);
        jinja_release(s);
        *out = !st && jinja_truthy(r);
        break;
    }
    case T_ODD: st = parity(ctx, v, 1, out); break;
    case T_EVEN: st = parity(ctx, v, 0, out); break;
    case T_DIVISIBLEBY: {
        jinja_value r;
        if ((st = jinja_binary(ctx, JOP_MOD, v, arg, &r))) return st;
        *out = jinja_equal(r, jinja_int(0));
        jinja_release(r);
        break;
    }
    case T_EQ: st = jinja_compare(ctx, JOP_EQ, v, arg, out); break;
    case T_NE: st = jinja_compare(ctx, JOP_NE, v, arg, out); break;
    case T_LT: st = jinja_compare(ctx, JOP_LT, v, arg, out); break;
    case T_LE: st = jinja_compare(ctx, JOP_LE, v, arg, out); break;
    case T_GT: st = jinja_compare(ctx, JOP_GT, v, arg, out); break;
    case T_GE: st = jinja_compare(ctx, JOP_GE, v, arg, out); break;
    case T_IN: st = jinja_compare(ctx, JINJA_CMP_IN, v, arg, out); break;
    case T_SAMEAS:
        /* identity: singletons and small values by value, objects by address */
        if (v.type != arg.type)
            *out = false;
        else if (jinja_is_object(v))
            *out = v.as.obj == arg.as.obj;
        else
            *out = jinja_equal(v, arg);
        break;
    case T_ESCAPED: *out = false; break;
    case T_FILTER: *out = v.type == JINJA_STRING && jinja_filter_find(v.as.str->data) >= 0; break;
    case T_TEST: *out = v.type == JINJA_STRING && jinja_test_find(v.as.str->data) >= 0; break;
    }
    return st;
}

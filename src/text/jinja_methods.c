/* Python methods templates call on values ('s'.split(), d.items(),
 * loop.cycle()) and Jinja's global functions (range, namespace, dict,
 * raise_exception, transformers' strftime_now). String methods work on code
 * points with Python's whitespace and line-break rules. Methods that would
 * mutate a list or dict fail, as in transformers' immutable sandbox. */
#include "text/jinja_runtime.h"

#include "core/error.h"
#include "text/jinja_unicode.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef fm_status (*method_fn)(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out);

#define STR_DATA(v) ((v).as.str->data)
#define STR_LEN(v) ((v).as.str->len)

static fm_status type_error(jinja_ctx *ctx, const char *what, jinja_value got) {
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s must be str, not %s", what, jinja_type_name(got));
}

static fm_status new_bool(bool b, jinja_value *out) {
    *out = jinja_bool(b);
    return FM_OK;
}

/* An optional int argument (None or absent counts as not given). */
static fm_status opt_int(jinja_ctx *ctx, jinja_value v, const char *what, bool *given, int64_t *out) {
    *given = false;
    if (!jinja_given(v) || v.type == JINJA_NONE) return FM_OK;
    if (v.type == JINJA_INT)
        *out = v.as.integer;
    else if (v.type == JINJA_BOOL)
        *out = v.as.boolean;
    else
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s must be an integer, not %s", what, jinja_type_name(v));
    *given = true;
    return FM_OK;
}

/* ---- whitespace, strip, split ------------------------------------------------------- */

static bool in_chars(int32_t cp, const char *chars, size_t len) {
    for (size_t i = 0, n; i < len; i += n)
        if (jinja_utf8_decode(chars + i, len - i, &n) == cp) return true;
    return false;
}

fm_status jinja_str_strip(jinja_ctx *ctx, jinja_value s, jinja_value chars, bool left, bool right, jinja_value *out) {
    if (s.type != JINJA_STRING) return type_error(ctx, "strip() subject", s);
    bool whitespace = !jinja_given(chars) || chars.type == JINJA_NONE;
    if (!whitespace && chars.type != JINJA_STRING) return type_error(ctx, "strip arg", chars);
    const char *d = STR_DATA(s);
    size_t from = 0, to = STR_LEN(s), n;
    while (left && from < to) {
        int32_t cp = jinja_utf8_decode(d + from, to - from, &n);
        if (whitespace ? !jinja_is_space(cp) : !in_chars(cp, STR_DATA(chars), STR_LEN(chars))) break;
        from += n;
    }
    while (right && to > from) {
        size_t prev = from + jinja_utf8_prev(d + from, to - from);
        int32_t cp = jinja_utf8_decode(d + prev, to - prev, &n);
        if (whitespace ? !jinja_is_space(cp) : !in_chars(cp, STR_DATA(chars), STR_LEN(chars))) break;
        to = prev;
    }
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(STR_LEN(s)));
    return st ? st : jinja_string_new(d + from, to - from, out);
}

static fm_status push_piece(jinja_value list, const char *s, size_t len) {
    jinja_value piece;
    fm_status st = jinja_string_new(s, len, &piece);
    return st ? st : jinja_list_push(list.as.list, piece);
}

/* Reverses a list in place (only for lists this file just built). */
static void reverse_items(jinja_list *l) {
    for (size_t i = 0, j = l->len ? l->len - 1 : 0; i < j; i++, j--) {
        jinja_value t = l->items[i];
        l->items[i] = l->items[j];
        l->items[j] = t;
    }
}

static bool space_before(const char *s, size_t at, size_t *start) {
    size_t prev = jinja_utf8_prev(s, at), n;
    *start = prev;
    return jinja_is_space(jinja_utf8_decode(s + prev, at - prev, &n));
}

/* str.split / str.rsplit, Python's rules for sep=None (runs of whitespace,
 * no empty pieces) and for a given separator. */
static fm_status split(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool from_right, jinja_value *out) {
    static const char *const params[] = {"sep", "maxsplit"};
    jinja_value a[2];
    int64_t maxsplit = -1;
    bool has_max;
    fm_status st = jinja_bind(ctx, from_right ? "rsplit" : "split", args, params, 2, 0, a);
    if (!st) st = opt_int(ctx, a[1], "maxsplit", &has_max, &maxsplit);
    if (st) return st;
    if (!has_max || maxsplit < 0) maxsplit = INT64_MAX;
    bool whitespace = !jinja_given(a[0]) || a[0].type == JINJA_NONE;
    if (!whitespace && a[0].type != JINJA_STRING) return type_error(ctx, "separator", a[0]);
    if (!whitespace && STR_LEN(a[0]) == 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "empty separator");
    if ((st = jinja_charge(ctx, JINJA_TEXT_COST(STR_LEN(self)))) || (st = jinja_list_new(0, false, out))) return st;
    const char *s = STR_DATA(self);
    size_t len = STR_LEN(self), n;
    if (whitespace && !from_right) {
        size_t i = 0;
        while (maxsplit-- > 0 && !st) {
            while (i < len && jinja_is_space(jinja_utf8_decode(s + i, len - i, &n))) i += n;
            if (i == len) break;
            size_t j = i;
            while (i < len && !jinja_is_space(jinja_utf8_decode(s + i, len - i, &n))) i += n;
            st = push_piece(*out, s + j, i - j);
        }
        while (i < len && jinja_is_space(jinja_utf8_decode(s + i, len - i, &n))) i += n;
        if (!st && i < len) st = push_piece(*out, s + i, len - i);
    } else if (whitespace) {
        size_t i = len, prev;
        while (maxsplit-- > 0 && !st) {
            while (i > 0 && space_before(s, i, &prev)) i = prev;
            if (i == 0) break;
            size_t j = i;
            while (i > 0 && !space_before(s, i, &prev)) i = prev;
            st = push_piece(*out, s + i, j - i);
        }
        while (i > 0 && space_before(s, i, &prev)) i = prev;
        if (!st && i > 0) st = push_piece(*out, s, i);
        reverse_items(out->as.list);
    } else if (!from_right) {
        const char *sep = STR_DATA(a[0]);
        size_t seplen = STR_LEN(a[0]), i = 0;
        const char *hit;
        while (maxsplit-- > 0 && !st && (hit = memmem(s + i, len - i, sep, seplen))) {
            st = push_piece(*out, s + i, (size_t)(hit - (s + i)));
            i = (size_t)(hit - s) + seplen;
        }
        if (!st) st = push_piece(*out, s + i, len - i);
    } else {
        const char *sep = STR_DATA(a[0]);
        size_t seplen = STR_LEN(a[0]), end = len;
        while (maxsplit > 0 && !st && end >= seplen) {
            size_t at = end - seplen, found = SIZE_MAX;
            for (size_t k = at + 1; k-- > 0;)
                if (!memcmp(s + k, sep, seplen)) {
                    found = k;
                    break;
                }
            if (found == SIZE_MAX) break;
            st = push_piece(*out, s + found + seplen, end - found - seplen);
            end = found;
            maxsplit--;
        }
        if (!st) st = push_piece(*out, s, end);
        reverse_items(out->as.list);
    }
    if (st) jinja_clear(out);
    return st;
}

static fm_status m_split(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return split(ctx, self, args, false, out);
}
static fm_status m_rsplit(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return split(ctx, self, args, true, out);
}

/* Length of the line break at s[i] as str.splitlines sees them, or 0. */
static size_t line_break_at(const char *s, size_t len, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r') return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e)) return 1;
    if (c < 0x80) return 0;
    size_t n;
    int32_t cp = jinja_utf8_decode(s + i, len - i, &n);
    return cp == 0x85 || cp == 0x2028 || cp == 0x2029 ? n : 0;
}

static fm_status m_splitlines(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"keepends"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, "splitlines", args, params, 1, 0, a);
    if (st || (st = jinja_charge(ctx, JINJA_TEXT_COST(STR_LEN(self)))) || (st = jinja_list_new(0, false, out)))
        return st;
    bool keep = jinja_given(a[0]) && jinja_truthy(a[0]);
    const char *s = STR_DATA(self);
    size_t len = STR_LEN(self), start = 0, i = 0;
    while (i < len && !st) {
        size_t br = line_break_at(s, len, i);
        if (!br) {
            i++;
            continue;
        }
        st = push_piece(*out, s + start, i - start + (keep ? br : 0));
        i += br;
        start = i;
    }
    if (!st && start < len) st = push_piece(*out, s + start, len - start);
    if (st) jinja_clear(out);
    return st;
}

static fm_status strip_method(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool left, bool right,
                              jinja_value *out) {
    static const char *const params[] = {"chars"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, "strip", args, params, 1, 0, a);
    return st ? st : jinja_str_strip(ctx, self, a[0], left, right, out);
}
static fm_status m_strip(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return strip_method(ctx, self, args, true, true, out);
}
static fm_status m_lstrip(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return strip_method(ctx, self, args, true, false, out);
}
static fm_status m_rstrip(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return strip_method(ctx, self, args, false, true, out);
}

/* ---- search and replace ------------------------------------------------------------ */

/* The byte range of s[start:end] for Python's optional start/end (code points). */
static fm_status sub_range(jinja_ctx *ctx, jinja_value s, jinja_value start, jinja_value end, size_t *from, size_t *to,
                           size_t *from_cp) {
    bool has_start, has_end;
    int64_t a = 0, b = 0;
    fm_status st = opt_int(ctx, start, "start", &has_start, &a);
    if (!st) st = opt_int(ctx, end, "end", &has_end, &b);
    if (st) return st;
    *from = 0;
    *to = STR_LEN(s);
    *from_cp = 0;
    if (!has_start && !has_end) return FM_OK;
    int64_t n = (int64_t)jinja_utf8_count(STR_DATA(s), STR_LEN(s));
    if (!has_start) a = 0;
    if (!has_end) b = n;
    if (a < 0) a = a + n < 0 ? 0 : a + n;
    if (b < 0) b = b + n < 0 ? 0 : b + n;
    if (a > n) a = n;
    if (b > n) b = n;
    if (b < a) b = a;
    *from_cp = (size_t)a;
    *from = jinja_utf8_offset(STR_DATA(s), STR_LEN(s), (size_t)a);
    *to = *from + jinja_utf8_offset(STR_DATA(s) + *from, STR_LEN(s) - *from, (size_t)(b - a));
    return FM_OK;
}

static const char *last_occurrence(const char *s, size_t len, const char *needle, size_t nlen) {
    if (nlen > len) return NULL;
    for (size_t k = len - nlen + 1; k-- > 0;)
        if (!memcmp(s + k, needle, nlen)) return s + k;
    return NULL;
}

static fm_status find(jinja_ctx *ctx, jinja_value self, const jinja_args *args, const char *name, bool from_right,
                      bool must_find, jinja_value *out) {
    static const char *const params[] = {"sub", "start", "end"};
    jinja_value a[3];
    size_t from, to, from_cp;
    fm_status st = jinja_bind(ctx, name, args, params, 3, 1, a);
    if (!st && a[0].type != JINJA_STRING) st = type_error(ctx, "substring", a[0]);
    if (!st) st = sub_range(ctx, self, a[1], a[2], &from, &to, &from_cp);
    if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(to - from));
    if (st) return st;
    const char *s = STR_DATA(self) + from;
    const char *hit = from_right ? last_occurrence(s, to - from, STR_DATA(a[0]), STR_LEN(a[0]))
                                 : memmem(s, to - from, STR_DATA(a[0]), STR_LEN(a[0]));
    if (!hit && must_find) return jinja_fail(ctx, FM_ERR_ARGUMENT, "substring not found");
    *out = jinja_int(hit ? (int64_t)(from_cp + jinja_utf8_count(s, (size_t)(hit - s))) : -1);
    return FM_OK;
}

static fm_status m_find(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return find(ctx, self, args, "find", false, false, out);
}
static fm_status m_rfind(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return find(ctx, self, args, "rfind", true, false, out);
}
static fm_status m_index(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return find(ctx, self, args, "index", false, true, out);
}
static fm_status m_rindex(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return find(ctx, self, args, "rindex", true, true, out);
}

static fm_status m_str_count(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"sub", "start", "end"};
    jinja_value a[3];
    size_t from, to, from_cp;
    fm_status st = jinja_bind(ctx, "count", args, params, 3, 1, a);
    if (!st && a[0].type != JINJA_STRING) st = type_error(ctx, "substring", a[0]);
    if (!st) st = sub_range(ctx, self, a[1], a[2], &from, &to, &from_cp);
    if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(to - from));
    if (st) return st;
    const char *s = STR_DATA(self) + from;
    size_t len = to - from, nlen = STR_LEN(a[0]);
    int64_t count = 0;
    if (!nlen) {
        count = (int64_t)jinja_utf8_count(s, len) + 1;
    } else {
        for (const char *p = s, *hit; (hit = memmem(p, len - (size_t)(p - s), STR_DATA(a[0]), nlen)); p = hit + nlen)
            count++;
    }
    *out = jinja_int(count);
    return FM_OK;
}

/* startswith / endswith: prefix may be a tuple of candidates. */
static fm_status affix(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool at_end, jinja_value *out) {
    static const char *const params[] = {"prefix", "start", "end"};
    jinja_value a[3];
    size_t from, to, from_cp;
    const char *name = at_end ? "endswith" : "startswith";
    fm_status st = jinja_bind(ctx, name, args, params, 3, 1, a);
    if (!st) st = sub_range(ctx, self, a[1], a[2], &from, &to, &from_cp);
    if (st) return st;
    const jinja_value *cands = &a[0];
    size_t n = 1;
    if (a[0].type == JINJA_LIST && a[0].as.list->is_tuple) {
        cands = a[0].as.list->items;
        n = a[0].as.list->len;
    }
    bool hit = false;
    for (size_t i = 0; i < n && !hit; i++) {
        if (cands[i].type != JINJA_STRING)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s first arg must be str or a tuple of str, not %s", name,
                              jinja_type_name(cands[i]));
        size_t k = STR_LEN(cands[i]);
        if (k > to - from) continue;
        hit = !memcmp(STR_DATA(self) + (at_end ? to - k : from), STR_DATA(cands[i]), k);
    }
    return new_bool(hit, out);
}

static fm_status m_startswith(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return affix(ctx, self, args, false, out);
}
static fm_status m_endswith(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return affix(ctx, self, args, true, out);
}

fm_status jinja_str_replace(jinja_ctx *ctx, jinja_value s, jinja_value old, jinja_value new_text, int64_t count,
                            jinja_value *out) {
    if (s.type != JINJA_STRING) return type_error(ctx, "replace() subject", s);
    if (old.type != JINJA_STRING) return type_error(ctx, "replace() argument 1", old);
    if (new_text.type != JINJA_STRING) return type_error(ctx, "replace() argument 2", new_text);
    if (count < 0) count = INT64_MAX;
    const char *d = STR_DATA(s), *o = STR_DATA(old);
    size_t len = STR_LEN(s), olen = STR_LEN(old);
    jinja_buf b = {0};
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(len));
    size_t i = 0;
    if (!olen) {
        /* Python inserts the replacement before every character and at the end. */
        size_t n;
        while (!st && count > 0) {
            st = jinja_buf_append(&b, STR_DATA(new_text), STR_LEN(new_text));
            count--;
            if (st || i >= len) break;
            jinja_utf8_decode(d + i, len - i, &n);
            st = jinja_buf_append(&b, d + i, n);
            i += n;
            if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(STR_LEN(new_text)) + 1);
        }
    } else {
        const char *hit;
        while (!st && count > 0 && (hit = memmem(d + i, len - i, o, olen))) {
            st = jinja_buf_append(&b, d + i, (size_t)(hit - (d + i)));
            if (!st) st = jinja_buf_append(&b, STR_DATA(new_text), STR_LEN(new_text));
            if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(STR_LEN(new_text)) + 1);
            i = (size_t)(hit - d) + olen;
            count--;
        }
    }
    if (!st) st = jinja_buf_append(&b, d + i, len - i);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

static fm_status m_replace(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"old", "new", "count"};
    jinja_value a[3];
    int64_t count = -1;
    bool given;
    fm_status st = jinja_bind(ctx, "replace", args, params, 3, 2, a);
    if (!st) st = opt_int(ctx, a[2], "count", &given, &count);
    return st ? st : jinja_str_replace(ctx, self, a[0], a[1], given ? count : -1, out);
}

static fm_status remove_affix(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool suffix, jinja_value *out) {
    static const char *const params[] = {"affix"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, suffix ? "removesuffix" : "removeprefix", args, params, 1, 1, a);
    if (!st && a[0].type != JINJA_STRING) st = type_error(ctx, "argument", a[0]);
    if (st) return st;
    size_t len = STR_LEN(self), k = STR_LEN(a[0]);
    if (k && k <= len && !memcmp(STR_DATA(self) + (suffix ? len - k : 0), STR_DATA(a[0]), k))
        return jinja_string_new(STR_DATA(self) + (suffix ? 0 : k), len - k, out);
    *out = jinja_retain(self);
    return FM_OK;
}
static fm_status m_removeprefix(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return remove_affix(ctx, self, args, false, out);
}
static fm_status m_removesuffix(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return remove_affix(ctx, self, args, true, out);
}

static fm_status partition(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool from_right,
                           jinja_value *out) {
    static const char *const params[] = {"sep"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, from_right ? "rpartition" : "partition", args, params, 1, 1, a);
    if (!st && a[0].type != JINJA_STRING) st = type_error(ctx, "separator", a[0]);
    if (!st && !STR_LEN(a[0])) st = jinja_fail(ctx, FM_ERR_ARGUMENT, "empty separator");
    if (st || (st = jinja_list_new(3, true, out))) return st;
    const char *s = STR_DATA(self), *sep = STR_DATA(a[0]);
    size_t len = STR_LEN(self), k = STR_LEN(a[0]);
    const char *hit = from_right ? last_occurrence(s, len, sep, k) : memmem(s, len, sep, k);
    if (!hit) {
        const char *parts[3] = {from_right ? "" : s, "", from_right ? s : ""};
        size_t lens[3] = {from_right ? 0 : len, 0, from_right ? len : 0};
        for (int i = 0; i < 3 && !st; i++) st = push_piece(*out, parts[i], lens[i]);
    } else {
        size_t at = (size_t)(hit - s);
        st = push_piece(*out, s, at);
        if (!st) st = push_piece(*out, sep, k);
        if (!st) st = push_piece(*out, s + at + k, len - at - k);
    }
    if (st) jinja_clear(out);
    return st;
}
static fm_status m_partition(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return partition(ctx, self, args, false, out);
}
static fm_status m_rpartition(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return partition(ctx, self, args, true, out);
}

/* ---- case and padding ---------------------------------------------------------------- */

static bool is_title_separator(int32_t cp) {
    /* Jinja's title filter starts a word after any of [-\s({\[<] */
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || jinja_is_space(cp);
}

/* The one-to-many case mappings of Unicode's SpecialCasing that Python
 * applies and utf8proc's simple mappings lack (the common ones). */
static const struct {
    int32_t cp;
    const char *upper, *title, *lower;
} special_cases[] = {
    {0x00df, "SS", "Ss", NULL},        /* ß */
    {0x0130, NULL, NULL, "i\xcc\x87"}, /* İ */
    {0x0149, "\xca\xbcN", "\xca\xbcN", NULL},
    {0xfb00, "FF", "Ff", NULL},
    {0xfb01, "FI", "Fi", NULL},
    {0xfb02, "FL", "Fl", NULL},
    {0xfb03, "FFI", "Ffi", NULL},
    {0xfb04, "FFL", "Ffl", NULL},
    {0xfb05, "ST", "St", NULL},
    {0xfb06, "ST", "St", NULL},
};

/* Appends the mapping of cp to upper (1), title (2) or lower (3) case. */
static fm_status put_case(jinja_buf *b, int32_t cp, int how) {
    for (size_t i = 0; cp >= 0xdf && i < sizeof special_cases / sizeof special_cases[0]; i++)
        if (special_cases[i].cp == cp) {
            const char *text = how == 1   ? special_cases[i].upper
                               : how == 2 ? special_cases[i].title
                                          : special_cases[i].lower;
            if (text) return jinja_buf_puts(b, text);
        }
    return jinja_buf_put_codepoint(b, how == 1   ? jinja_to_upper(cp)
                                      : how == 2 ? jinja_to_title(cp)
                                                 : jinja_to_lower(cp));
}

fm_status jinja_str_case(jinja_ctx *ctx, jinja_value s, jinja_case mode, jinja_value *out) {
    if (s.type != JINJA_STRING) return type_error(ctx, "subject", s);
    const char *d = STR_DATA(s);
    size_t len = STR_LEN(s), n;
    jinja_buf b = {0};
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(len));
    bool prev_cased = false, prev_separator = true;
    for (size_t i = 0; i < len && !st; i += n) {
        int32_t cp = jinja_utf8_decode(d + i, len - i, &n);
        int how; /* 1 upper, 2 title, 3 lower */
        switch (mode) {
        case JINJA_CASE_UPPER: how = 1; break;
        case JINJA_CASE_LOWER: how = 3; break;
        case JINJA_CASE_CAPITALIZE: how = i == 0 ? 2 : 3; break;
        case JINJA_CASE_TITLE: how = prev_cased ? 3 : 2; break;
        default: { /* the title filter: each word's first character upper, the rest lower */
            bool sep = is_title_separator(cp);
            how = sep == prev_separator && i > 0 ? 3 : 1;
            prev_separator = sep;
        }
        }
        prev_cased = jinja_is_cased(cp);
        /* invalid bytes pass through untouched */
        st = cp == 0xfffd && n == 1 ? jinja_buf_append(&b, d + i, 1) : put_case(&b, cp, how);
    }
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

static fm_status no_args(jinja_ctx *ctx, const char *name, const jinja_args *args) {
    return jinja_bind(ctx, name, args, NULL, 0, 0, NULL);
}

#define CASE_METHOD(method, mode)                                                                                      \
    static fm_status m_##method(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {          \
        fm_status st = no_args(ctx, #method, args);                                                                    \
        return st ? st : jinja_str_case(ctx, self, mode, out);                                                         \
    }
CASE_METHOD(upper, JINJA_CASE_UPPER)
CASE_METHOD(lower, JINJA_CASE_LOWER)
CASE_METHOD(capitalize, JINJA_CASE_CAPITALIZE)
CASE_METHOD(title, JINJA_CASE_TITLE)

/* is*(): every character passes and there is at least one. */
static fm_status char_class(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool (*pass)(int32_t),
                            jinja_value *out) {
    fm_status st = no_args(ctx, "is...", args);
    if (st) return st;
    const char *d = STR_DATA(self);
    size_t len = STR_LEN(self), n;
    bool ok = len > 0;
    for (size_t i = 0; i < len && ok; i += n) ok = pass(jinja_utf8_decode(d + i, len - i, &n));
    return new_bool(ok, out);
}

static bool is_alnum_cp(int32_t cp) { return jinja_is_alpha(cp) || jinja_is_digit(cp); }

/* isupper / islower: some cased character, none of the other case. */
static fm_status case_class(jinja_ctx *ctx, jinja_value self, const jinja_args *args, bool upper, jinja_value *out) {
    fm_status st = no_args(ctx, upper ? "isupper" : "islower", args);
    if (st) return st;
    const char *d = STR_DATA(self);
    size_t len = STR_LEN(self), n;
    bool cased = false, ok = true;
    for (size_t i = 0; i < len && ok; i += n) {
        int32_t cp = jinja_utf8_decode(d + i, len - i, &n);
        if (upper ? jinja_is_lower(cp) : jinja_is_upper(cp)) ok = false;
        cased |= jinja_is_cased(cp);
    }
    return new_bool(ok && cased, out);
}

static fm_status m_isdigit(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return char_class(ctx, self, args, jinja_is_digit, out);
}
static fm_status m_isalpha(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return char_class(ctx, self, args, jinja_is_alpha, out);
}
static fm_status m_isalnum(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return char_class(ctx, self, args, is_alnum_cp, out);
}
static fm_status m_isspace(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return char_class(ctx, self, args, jinja_is_space, out);
}
static fm_status m_isupper(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return case_class(ctx, self, args, true, out);
}
static fm_status m_islower(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return case_class(ctx, self, args, false, out);
}

/* center / ljust / rjust / zfill */
static fm_status pad(jinja_ctx *ctx, jinja_value self, const jinja_args *args, char where, jinja_value *out) {
    static const char *const params[] = {"width", "fillchar"};
    jinja_value a[2] = {jinja_undefined(NULL), jinja_undefined(NULL)};
    int64_t width = 0;
    bool given;
    fm_status st = jinja_bind(ctx, where == 'z' ? "zfill" : "pad", args, params, where == 'z' ? 1 : 2, 1, a);
    if (!st) st = opt_int(ctx, a[0], "width", &given, &width);
    if (st) return st;
    const char *fill = where == 'z' ? "0" : " ";
    size_t fill_len = 1;
    if (jinja_given(a[1])) {
        if (a[1].type != JINJA_STRING || jinja_utf8_count(STR_DATA(a[1]), STR_LEN(a[1])) != 1)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "the fill character must be exactly one character long");
        fill = STR_DATA(a[1]);
        fill_len = STR_LEN(a[1]);
    }
    int64_t len = (int64_t)jinja_utf8_count(STR_DATA(self), STR_LEN(self));
    if (width > (int64_t)JINJA_MAX_TEXT) return jinja_fail(ctx, FM_ERR_ARGUMENT, "width too large");
    if (width <= len) {
        *out = jinja_retain(self);
        return FM_OK;
    }
    int64_t marg = width - len, left;
    if (where == 'l')
        left = 0;
    else if (where == 'r' || where == 'z')
        left = marg;
    else
        left = marg / 2 + (marg & width & 1);
    jinja_buf b = {0};
    const char *d = STR_DATA(self);
    size_t dlen = STR_LEN(self), skip = 0;
    if (where == 'z' && dlen && (d[0] == '+' || d[0] == '-')) { /* the sign stays in front */
        st = jinja_buf_append(&b, d, 1);
        skip = 1;
    }
    if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(width));
    for (int64_t i = 0; i < left && !st; i++) st = jinja_buf_append(&b, fill, fill_len);
    if (!st) st = jinja_buf_append(&b, d + skip, dlen - skip);
    for (int64_t i = left; i < marg && !st; i++) st = jinja_buf_append(&b, fill, fill_len);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}
static fm_status m_center(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return pad(ctx, self, args, 'c', out);
}
static fm_status m_ljust(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return pad(ctx, self, args, 'l', out);
}
static fm_status m_rjust(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return pad(ctx, self, args, 'r', out);
}
static fm_status m_zfill(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return pad(ctx, self, args, 'z', out);
}

static fm_status m_join(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"iterable"};
    jinja_value a[1], items;
    fm_status st = jinja_bind(ctx, "join", args, params, 1, 1, a);
    if (st || (st = jinja_iterate(ctx, a[0], &items))) return st;
    jinja_buf b = {0};
    for (size_t i = 0; i < items.as.list->len && !st; i++) {
        jinja_value item = items.as.list->items[i];
        if (item.type != JINJA_STRING) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "sequence item %zu: expected str instance, %s found", i,
                            jinja_type_name(item));
            break;
        }
        if (i) st = jinja_buf_append(&b, STR_DATA(self), STR_LEN(self));
        if (!st) st = jinja_buf_append(&b, STR_DATA(item), STR_LEN(item));
        if (!st) st = jinja_charge(ctx, 1 + JINJA_TEXT_COST(STR_LEN(item) + STR_LEN(self)));
    }
    jinja_release(items);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

/* str.format with {}, {0} and {name} fields and !r / !s conversions; format
 * specs after ':' are not supported. */
static fm_status m_format(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    const char *s = STR_DATA(self);
    size_t len = STR_LEN(self);
    jinja_buf b = {0};
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(len));
    int auto_index = 0;
    for (size_t i = 0; i < len && !st;) {
        char c = s[i];
        if ((c == '{' || c == '}') && i + 1 < len && s[i + 1] == c) {
            st = jinja_buf_putc(&b, c);
            i += 2;
            continue;
        }
        if (c == '}') {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "single '}' encountered in format string");
            break;
        }
        if (c != '{') {
            st = jinja_buf_putc(&b, c);
            i++;
            continue;
        }
        const char *close = memchr(s + i, '}', len - i);
        if (!close) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "single '{' encountered in format string");
            break;
        }
        const char *field = s + i + 1;
        size_t flen = (size_t)(close - field);
        const char *bang = memchr(field, '!', flen), *colon = memchr(field, ':', flen);
        if (colon) {
            st = jinja_fail(ctx, FM_ERR_UNSUPPORTED, "format specs in str.format are not supported");
            break;
        }
        size_t name_len = bang ? (size_t)(bang - field) : flen;
        bool repr = bang && flen - name_len == 2 && bang[1] == 'r';
        const jinja_value *arg = NULL;
        if (name_len == 0) {
            if (auto_index < args->n_pos) arg = &args->pos[auto_index];
            auto_index++;
        } else if (field[0] >= '0' && field[0] <= '9') {
            /* All digits, and below the argument count: checked as it is read (no overflow). */
            size_t k = 0;
            long idx = 0;
            while (k < name_len && field[k] >= '0' && field[k] <= '9' && idx < args->n_pos) idx = idx * 10 + (field[k++] - '0');
            if (k == name_len && idx < args->n_pos) arg = &args->pos[idx];
        } else {
            for (int k = 0; k < args->n_kw && !arg; k++)
                if (strlen(args->kw_names[k]) == name_len && !memcmp(args->kw_names[k], field, name_len))
                    arg = &args->kw[k];
        }
        if (!arg) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "format field '%.*s' has no argument", (int)name_len, field);
            break;
        }
        st = repr ? jinja_repr(*arg, &b) : jinja_to_text(*arg, &b);
        i = (size_t)(close - s) + 1;
    }
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

/* ---- dict, list and loop methods --------------------------------------------------------- */

static fm_status dict_view(jinja_ctx *ctx, jinja_value self, const jinja_args *args, int which, jinja_value *out) {
    fm_status st = no_args(ctx, which == 0 ? "keys" : which == 1 ? "values" : "items", args);
    const jinja_dict *d = self.as.dict;
    if (st || (st = jinja_charge(ctx, d->len)) || (st = jinja_list_new(d->len, false, out))) return st;
    for (size_t i = 0; i < d->len && !st; i++) {
        if (which == 0)
            st = jinja_list_push(out->as.list, jinja_retain(d->keys[i]));
        else if (which == 1)
            st = jinja_list_push(out->as.list, jinja_retain(d->values[i]));
        else {
            jinja_value pair;
            if ((st = jinja_list_new(2, true, &pair))) break;
            if (!(st = jinja_list_push(pair.as.list, jinja_retain(d->keys[i]))) &&
                !(st = jinja_list_push(pair.as.list, jinja_retain(d->values[i]))))
                st = jinja_list_push(out->as.list, pair);
            else
                jinja_release(pair);
        }
    }
    if (st) jinja_clear(out);
    return st;
}
static fm_status m_keys(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return dict_view(ctx, self, args, 0, out);
}
static fm_status m_values(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return dict_view(ctx, self, args, 1, out);
}
static fm_status m_items(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    return dict_view(ctx, self, args, 2, out);
}

static fm_status m_get(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"key", "default"};
    jinja_value a[2];
    fm_status st = jinja_bind(ctx, "get", args, params, 2, 1, a);
    if (st) return st;
    if (!jinja_is_hashable(a[0]))
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "unhashable type: '%s'", jinja_type_name(a[0]));
    const jinja_value *v = jinja_dict_get(self.as.dict, a[0]);
    *out = v ? jinja_retain(*v) : jinja_given(a[1]) ? jinja_retain(a[1]) : jinja_none();
    return FM_OK;
}

static fm_status m_copy(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    fm_status st = no_args(ctx, "copy", args);
    if (!st) st = jinja_charge(ctx, self.type == JINJA_LIST ? self.as.list->len : self.as.dict->len);
    if (st) return st;
    if (self.type == JINJA_LIST) {
        if ((st = jinja_list_new(self.as.list->len, false, out))) return st;
        for (size_t i = 0; i < self.as.list->len && !st; i++)
            st = jinja_list_push(out->as.list, jinja_retain(self.as.list->items[i]));
    } else {
        if ((st = jinja_dict_new(out))) return st;
        for (size_t i = 0; i < self.as.dict->len && !st; i++)
            st = jinja_dict_set(out->as.dict, jinja_retain(self.as.dict->keys[i]),
                                jinja_retain(self.as.dict->values[i]));
    }
    if (st) jinja_clear(out);
    return st;
}

static fm_status m_list_index(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"value"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, "index", args, params, 1, 1, a);
    if (st) return st;
    for (size_t i = 0; i < self.as.list->len; i++)
        if (jinja_equal(self.as.list->items[i], a[0])) return *out = jinja_int((int64_t)i), FM_OK;
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "value is not in list");
}

static fm_status m_list_count(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    static const char *const params[] = {"value"};
    jinja_value a[1];
    fm_status st = jinja_bind(ctx, "count", args, params, 1, 1, a);
    if (st) return st;
    int64_t n = 0;
    for (size_t i = 0; i < self.as.list->len; i++) n += jinja_equal(self.as.list->items[i], a[0]);
    *out = jinja_int(n);
    return FM_OK;
}

static fm_status m_unsafe(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    (void)args, (void)out;
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s objects cannot be modified in a chat template", jinja_type_name(self));
}

static fm_status m_cycle(jinja_ctx *ctx, jinja_value self, const jinja_args *args, jinja_value *out) {
    if (args->n_kw || !args->n_pos)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "loop.cycle() takes one or more positional arguments");
    *out = jinja_retain(args->pos[self.as.loop->index0 % (size_t)args->n_pos]);
    return FM_OK;
}

static const struct {
    jinja_type type;
    const char *name;
    method_fn fn;
} methods[] = {
    {JINJA_STRING, "startswith", m_startswith},
    {JINJA_STRING, "endswith", m_endswith},
    {JINJA_STRING, "split", m_split},
    {JINJA_STRING, "rsplit", m_rsplit},
    {JINJA_STRING, "splitlines", m_splitlines},
    {JINJA_STRING, "strip", m_strip},
    {JINJA_STRING, "lstrip", m_lstrip},
    {JINJA_STRING, "rstrip", m_rstrip},
    {JINJA_STRING, "replace", m_replace},
    {JINJA_STRING, "upper", m_upper},
    {JINJA_STRING, "lower", m_lower},
    {JINJA_STRING, "casefold", m_lower},
    {JINJA_STRING, "title", m_title},
    {JINJA_STRING, "capitalize", m_capitalize},
    {JINJA_STRING, "find", m_find},
    {JINJA_STRING, "rfind", m_rfind},
    {JINJA_STRING, "index", m_index},
    {JINJA_STRING, "rindex", m_rindex},
    {JINJA_STRING, "count", m_str_count},
    {JINJA_STRING, "join", m_join},
    {JINJA_STRING, "format", m_format},
    {JINJA_STRING, "isdigit", m_isdigit},
    {JINJA_STRING, "isdecimal", m_isdigit},
    {JINJA_STRING, "isnumeric", m_isdigit},
    {JINJA_STRING, "isalpha", m_isalpha},
    {JINJA_STRING, "isalnum", m_isalnum},
    {JINJA_STRING, "isspace", m_isspace},
    {JINJA_STRING, "isupper", m_isupper},
    {JINJA_STRING, "islower", m_islower},
    {JINJA_STRING, "removeprefix", m_removeprefix},
    {JINJA_STRING, "removesuffix", m_removesuffix},
    {JINJA_STRING, "partition", m_partition},
    {JINJA_STRING, "rpartition", m_rpartition},
    {JINJA_STRING, "center", m_center},
    {JINJA_STRING, "ljust", m_ljust},
    {JINJA_STRING, "rjust", m_rjust},
    {JINJA_STRING, "zfill", m_zfill},
    {JINJA_DICT, "items", m_items},
    {JINJA_DICT, "keys", m_keys},
    {JINJA_DICT, "values", m_values},
    {JINJA_DICT, "get", m_get},
    {JINJA_DICT, "copy", m_copy},
    {JINJA_DICT, "pop", m_unsafe},
    {JINJA_DICT, "popitem", m_unsafe},
    {JINJA_DICT, "update", m_unsafe},
    {JINJA_DICT, "clear", m_unsafe},
    {JINJA_DICT, "setdefault", m_unsafe},
    {JINJA_LIST, "index", m_list_index},
    {JINJA_LIST, "count", m_list_count},
    {JINJA_LIST, "copy", m_copy},
    {JINJA_LIST, "append", m_unsafe},
    {JINJA_LIST, "extend", m_unsafe},
    {JINJA_LIST, "insert", m_unsafe},
    {JINJA_LIST, "pop", m_unsafe},
    {JINJA_LIST, "remove", m_unsafe},
    {JINJA_LIST, "clear", m_unsafe},
    {JINJA_LIST, "sort", m_unsafe},
    {JINJA_LIST, "reverse", m_unsafe},
    {JINJA_LOOP, "cycle", m_cycle},
};

static int method_index(jinja_value obj, const char *name) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].type == obj.type && !strcmp(methods[i].name, name)) {
            /* tuples have only index and count */
            if (obj.type == JINJA_LIST && obj.as.list->is_tuple && methods[i].fn != m_list_index &&
                methods[i].fn != m_list_count)
                return -1;
            return (int)i;
        }
    return -1;
}

const char *jinja_method_name(jinja_value obj, const char *name) {
    int i = method_index(obj, name);
    return i < 0 ? NULL : methods[i].name;
}

fm_status jinja_call_method(jinja_ctx *ctx, jinja_value self, const char *name, const jinja_args *args,
                            jinja_value *out) {
    *out = jinja_undefined(NULL);
    int i = method_index(self, name);
    if (i < 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object has no method '%s'", jinja_type_name(self), name);
    return methods[i].fn(ctx, self, args, out);
}

/* ---- global functions ------------------------------------------------------------------- */

static fm_status g_range(jinja_ctx *ctx, const jinja_args *args, jinja_value *out) {
    if (args->n_kw || args->n_pos < 1 || args->n_pos > 3)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "range() takes 1 to 3 positional arguments");
    int64_t v[3] = {0, 0, 1};
    for (int i = 0; i < args->n_pos; i++) {
        jinja_value a = args->pos[i];
        if (a.type != JINJA_INT && a.type != JINJA_BOOL)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object cannot be interpreted as an integer",
                              jinja_type_name(a));
        v[args->n_pos == 1 ? 1 : i] = a.type == JINJA_INT ? a.as.integer : a.as.boolean;
    }
    int64_t start = v[0], stop = v[1], step = v[2];
    if (step == 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "range() arg 3 must not be zero");
    /* count without overflow: work in long double-free unsigned arithmetic */
    uint64_t count = 0;
    if (step > 0 && stop > start) count = ((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step + 1;
    if (step < 0 && start > stop) count = ((uint64_t)start - (uint64_t)stop - 1) / (0 - (uint64_t)step) + 1;
    if (count > JINJA_MAX_RANGE)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "range too big: at most %d items in a chat template", JINJA_MAX_RANGE);
    fm_status st = jinja_charge(ctx, count);
    if (!st) st = jinja_list_new((size_t)count, false, out);
    for (uint64_t i = 0; i < count && !st; i++)
        st = jinja_list_push(out->as.list, jinja_int(start + (int64_t)i * step));
    if (st) jinja_clear(out);
    return st;
}

/* dict(mapping, **kwargs) and namespace(mapping, **kwargs). */
static fm_status g_dict(jinja_ctx *ctx, const jinja_args *args, bool is_namespace, jinja_value *out) {
    if (args->n_pos > 1)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s() takes at most one positional argument",
                          is_namespace ? "namespace" : "dict");
    fm_status st = jinja_dict_new(out);
    if (st) return st;
    if (args->n_pos == 1) {
        jinja_value src = args->pos[0];
        size_t n = src.type == JINJA_DICT || src.type == JINJA_NAMESPACE ? src.as.dict->len
                   : src.type == JINJA_LIST                              ? src.as.list->len
                                                                         : 0;
        if ((st = jinja_charge(ctx, n))) {
            jinja_clear(out);
            return st;
        }
    }
    if (args->n_pos == 1) {
        jinja_value src = args->pos[0];
        if (src.type == JINJA_DICT || src.type == JINJA_NAMESPACE) {
            for (size_t i = 0; i < src.as.dict->len && !st; i++)
                st = jinja_dict_set(out->as.dict, jinja_retain(src.as.dict->keys[i]),
                                    jinja_retain(src.as.dict->values[i]));
        } else if (src.type == JINJA_LIST) {
            for (size_t i = 0; i < src.as.list->len && !st; i++) {
                jinja_value pair = src.as.list->items[i];
                if (pair.type != JINJA_LIST || pair.as.list->len != 2 || !jinja_is_hashable(pair.as.list->items[0]))
                    st = jinja_fail(ctx, FM_ERR_ARGUMENT,
                                    "dictionary update sequence element #%zu is not a key-value pair", i);
                else
                    st = jinja_dict_set(out->as.dict, jinja_retain(pair.as.list->items[0]),
                                        jinja_retain(pair.as.list->items[1]));
            }
        } else if (src.type != JINJA_UNDEFINED) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object is not a mapping", jinja_type_name(src));
        }
    }
    for (int k = 0; k < args->n_kw && !st; k++) {
        jinja_value key;
        if (!(st = jinja_string_new(args->kw_names[k], strlen(args->kw_names[k]), &key)))
            st = jinja_dict_set(out->as.dict, key, jinja_retain(args->kw[k]));
    }
    if (!st && is_namespace) {
        out->type = JINJA_NAMESPACE;
        st = jinja_list_push(ctx->namespaces, jinja_retain(*out));
    }
    if (st) jinja_clear(out);
    return st;
}

static fm_status g_raise_exception(jinja_ctx *ctx, const jinja_args *args, jinja_value *out) {
    (void)out;
    jinja_buf msg = {0};
    fm_status st = args->n_pos ? jinja_to_text(args->pos[0], &msg) : FM_OK;
    if (!st) {
        ctx->raised = true; /* the template's own words reach the caller unchanged */
        st = fm_error(FM_ERR_ARGUMENT, "%s", msg.data ? msg.data : "");
    }
    jinja_buf_free(&msg);
    return st;
}

static fm_status g_strftime_now(jinja_ctx *ctx, const jinja_args *args, jinja_value *out) {
    if (args->n_pos != 1 || args->n_kw || args->pos[0].type != JINJA_STRING)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "strftime_now() takes one format string");
    char text[512];
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    size_t n = strftime(text, sizeof text, STR_DATA(args->pos[0]), &local);
    return jinja_string_new(text, n, out);
}

static const char *const global_names[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

const char *jinja_global_function(const char *name) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(global_names[i], name)) return global_names[i];
    return NULL;
}

fm_status jinja_call_global(jinja_ctx *ctx, const char *name, const jinja_args *args, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (!strcmp(name, "range")) return g_range(ctx, args, out);
    if (!strcmp(name, "namespace")) return g_dict(ctx, args, true, out);
    if (!strcmp(name, "dict")) return g_dict(ctx, args, false, out);
    if (!strcmp(name, "raise_exception")) return g_raise_exception(ctx, args, out);
    if (!strcmp(name, "strftime_now")) return g_strftime_now(ctx, args, out);
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' is not callable", name);
}

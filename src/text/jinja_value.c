/* Values of the chat-template interpreter (see jinja_value.h): the text
 * buffer, objects and their reference counts, dict hashing, and Python's
 * truthiness, equality, str() and repr(). */
#include "text/jinja_value.h"

#include "core/error.h"
#include "text/jinja_unicode.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local uint64_t allocation_work;

uint64_t jinja_allocation_work(void) { return allocation_work; }

static void count_allocation(size_t objects, size_t bytes) { allocation_work += 8 * objects + bytes / 16; }

/* ---- text buffer ---------------------------------------------------------- */

static fm_status buf_reserve(jinja_buf *b, size_t extra) {
    if (extra > JINJA_MAX_TEXT || b->len + extra > JINJA_MAX_TEXT)
        return fm_error(FM_ERR_ARGUMENT, "text longer than %u MiB", JINJA_MAX_TEXT >> 20);
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return FM_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return fm_error(FM_ERR_NOMEM, "out of memory");
    count_allocation(0, cap);
    b->data = p;
    b->cap = cap;
    return FM_OK;
}

fm_status jinja_buf_append(jinja_buf *b, const char *s, size_t len) {
    fm_status st = buf_reserve(b, len);
    if (st) return st;
    if (len) memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = 0;
    return FM_OK;
}

fm_status jinja_buf_puts(jinja_buf *b, const char *s) { return jinja_buf_append(b, s, strlen(s)); }
fm_status jinja_buf_putc(jinja_buf *b, char c) { return jinja_buf_append(b, &c, 1); }

fm_status jinja_buf_printf(jinja_buf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return fm_error(FM_ERR_ARGUMENT, "formatting failed");
    if ((size_t)n < sizeof small) return jinja_buf_append(b, small, (size_t)n);
    fm_status st = buf_reserve(b, (size_t)n);
    if (st) return st;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return FM_OK;
}

fm_status jinja_buf_put_codepoint(jinja_buf *b, int32_t cp) {
    char tmp[4];
    return jinja_buf_append(b, tmp, jinja_utf8_encode(cp, tmp));
}

void jinja_buf_free(jinja_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

fm_status jinja_buf_to_string(jinja_buf *b, jinja_value *out) {
    fm_status st = jinja_string_new(b->data ? b->data : "", b->len, out);
    jinja_buf_free(b);
    return st;
}

/* ---- objects --------------------------------------------------------------- */

static int child_depth(jinja_value v) {
    /* Namespaces are emptied by the renderer, never freed recursively. */
    if (v.type == JINJA_LIST || v.type == JINJA_DICT || v.type == JINJA_LOOP || v.type == JINJA_CALLABLE)
        return v.as.obj->depth + 1;
    return 1;
}

static fm_status check_depth(int depth) {
    if (depth > JINJA_MAX_VALUE_DEPTH)
        return fm_error(FM_ERR_ARGUMENT, "values nested deeper than %d levels", JINJA_MAX_VALUE_DEPTH);
    return FM_OK;
}

jinja_value jinja_retain(jinja_value v) {
    if (jinja_is_object(v) && v.as.obj->refcount > 0) v.as.obj->refcount++;
    return v;
}

static void dict_release_entries(jinja_dict *d) {
    /* Detach the entries first: releasing them may reach this dict again. */
    jinja_value *keys = d->keys, *values = d->values;
    size_t len = d->len;
    free(d->index);
    d->keys = d->values = NULL;
    d->index = NULL;
    d->len = d->cap = d->index_cap = 0;
    for (size_t i = 0; i < len; i++) {
        jinja_release(keys[i]);
        jinja_release(values[i]);
    }
    free(keys);
    free(values);
}

void jinja_dict_clear(jinja_dict *d) { dict_release_entries(d); }

void jinja_release(jinja_value v) {
    if (!jinja_is_object(v) || v.as.obj->refcount < 0 || --v.as.obj->refcount > 0) return;
    switch (v.type) {
    case JINJA_LIST:
        for (size_t i = 0; i < v.as.list->len; i++) jinja_release(v.as.list->items[i]);
        free(v.as.list->items);
        break;
    case JINJA_DICT:
    case JINJA_NAMESPACE: dict_release_entries(v.as.dict); break;
    case JINJA_LOOP: {
        jinja_value items = {.type = JINJA_LIST, .as.list = v.as.loop->items};
        jinja_release(items);
        break;
    }
    case JINJA_CALLABLE: jinja_release(v.as.fn->self); break;
    default: break;
    }
    free(v.as.obj);
}

void jinja_clear(jinja_value *v) {
    jinja_release(*v);
    *v = jinja_undefined(NULL);
}

static void *object_new(size_t size) {
    count_allocation(1, size);
    jinja_object *o = calloc(1, size);
    if (o) o->refcount = 1;
    return o;
}

fm_status jinja_string_new(const char *s, size_t len, jinja_value *out) { return jinja_string_cat(s, len, "", 0, out); }

fm_status jinja_string_new_immortal(const char *s, size_t len, jinja_value *out) {
    fm_status st = jinja_string_new(s, len, out);
    if (!st) out->as.obj->refcount = -1;
    return st;
}

void jinja_free_immortal(jinja_value v) {
    if (jinja_is_object(v)) free(v.as.obj);
}

fm_status jinja_string_alloc(size_t len, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (len > JINJA_MAX_TEXT) return fm_error(FM_ERR_ARGUMENT, "string longer than %u MiB", JINJA_MAX_TEXT >> 20);
    count_allocation(1, len);
    jinja_string *str = malloc(sizeof *str + len + 1);
    if (!str) return fm_error(FM_ERR_NOMEM, "out of memory");
    str->h.refcount = 1;
    str->h.depth = 0;
    str->len = len;
    str->data[len] = 0;
    out->type = JINJA_STRING;
    out->as.str = str;
    return FM_OK;
}

fm_status jinja_string_cat(const char *a, size_t alen, const char *b, size_t blen, jinja_value *out) {
    if (alen > JINJA_MAX_TEXT || blen > JINJA_MAX_TEXT - alen) {
        *out = jinja_undefined(NULL);
        return fm_error(FM_ERR_ARGUMENT, "string longer than %u MiB", JINJA_MAX_TEXT >> 20);
    }
    fm_status st = jinja_string_alloc(alen + blen, out);
    if (st) return st;
    if (alen) memcpy(out->as.str->data, a, alen);
    if (blen) memcpy(out->as.str->data + alen, b, blen);
    return FM_OK;
}

fm_status jinja_list_new(size_t cap, bool is_tuple, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (cap > JINJA_MAX_ITEMS) return fm_error(FM_ERR_ARGUMENT, "list longer than %u items", JINJA_MAX_ITEMS);
    jinja_list *l = object_new(sizeof *l);
    if (!l) return fm_error(FM_ERR_NOMEM, "out of memory");
    l->is_tuple = is_tuple;
    count_allocation(0, cap * sizeof *l->items);
    if (cap && !(l->items = malloc(cap * sizeof *l->items))) {
        free(l);
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    l->cap = cap;
    out->type = JINJA_LIST;
    out->as.list = l;
    return FM_OK;
}

fm_status jinja_list_push(jinja_list *l, jinja_value item) {
    int depth = child_depth(item);
    fm_status st = check_depth(depth);
    if (!st && l->len >= JINJA_MAX_ITEMS) st = fm_error(FM_ERR_ARGUMENT, "list longer than %u items", JINJA_MAX_ITEMS);
    if (!st && l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jinja_value *p = realloc(l->items, cap * sizeof *p);
        count_allocation(0, cap * sizeof *p);
        if (p)
            l->items = p, l->cap = cap;
        else
            st = fm_error(FM_ERR_NOMEM, "out of memory");
    }
    if (st) {
        jinja_release(item);
        return st;
    }
    l->items[l->len++] = item;
    if (depth > l->h.depth) l->h.depth = depth;
    return FM_OK;
}

/* ---- dicts ---------------------------------------------------------------- */

#define DICT_INDEX_MIN 8 /* below this many entries a linear search is faster */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Equal keys hash equally: 1, 1.0 and True share a hash, as in Python. */
static uint64_t value_hash(jinja_value v) {
    switch (v.type) {
    case JINJA_BOOL: return mix64((uint64_t)v.as.boolean);
    case JINJA_INT: return mix64((uint64_t)v.as.integer);
    case JINJA_FLOAT:
        if (v.as.number == floor(v.as.number) && fabs(v.as.number) < 9.2e18)
            return mix64((uint64_t)(int64_t)v.as.number);
        {
            uint64_t bits;
            double f = v.as.number == 0 ? 0.0 : v.as.number;
            memcpy(&bits, &f, sizeof bits);
            return mix64(bits);
        }
    case JINJA_STRING: return hash_bytes(v.as.str->data, v.as.str->len);
    case JINJA_LIST: {
        uint64_t h = 0x345678;
        for (size_t i = 0; i < v.as.list->len; i++) h = mix64(h ^ value_hash(v.as.list->items[i]));
        return h;
    }
    default: return 0x9e3779b97f4a7c15ull;
    }
}

bool jinja_is_hashable(jinja_value v) {
    switch (v.type) {
    case JINJA_UNDEFINED: /* Jinja's Undefined hashes (all undefined values are equal) */
    case JINJA_NONE:
    case JINJA_BOOL:
    case JINJA_INT:
    case JINJA_FLOAT:
    case JINJA_STRING: return true;
    case JINJA_LIST:
        if (!v.as.list->is_tuple) return false;
        for (size_t i = 0; i < v.as.list->len; i++)
            if (!jinja_is_hashable(v.as.list->items[i])) return false;
        return true;
    default: return false;
    }
}

fm_status jinja_dict_new(jinja_value *out) {
    jinja_dict *d = object_new(sizeof *d);
    *out = jinja_undefined(NULL);
    if (!d) return fm_error(FM_ERR_NOMEM, "out of memory");
    out->type = JINJA_DICT;
    out->as.dict = d;
    return FM_OK;
}

static fm_status dict_reindex(jinja_dict *d) {
    size_t cap = 16;
    while (cap < d->len * 2 + 2) cap *= 2;
    count_allocation(0, cap * sizeof(uint32_t));
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index) { /* fall back to linear search rather than keep a stale index */
        free(d->index);
        d->index = NULL;
        d->index_cap = 0;
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < d->len; i++) {
        size_t slot = value_hash(d->keys[i]) & (cap - 1);
        while (index[slot]) slot = (slot + 1) & (cap - 1);
        index[slot] = (uint32_t)(i + 1);
    }
    free(d->index);
    d->index = index;
    d->index_cap = cap;
    return FM_OK;
}

static ptrdiff_t dict_find(const jinja_dict *d, jinja_value key) {
    if (!d->index) {
        for (size_t i = 0; i < d->len; i++)
            if (jinja_equal(d->keys[i], key)) return (ptrdiff_t)i;
        return -1;
    }
    size_t mask = d->index_cap - 1;
    for (size_t slot = value_hash(key) & mask; d->index[slot]; slot = (slot + 1) & mask) {
        size_t i = d->index[slot] - 1;
        if (jinja_equal(d->keys[i], key)) return (ptrdiff_t)i;
    }
    return -1;
}

fm_status jinja_dict_set(jinja_dict *d, jinja_value key, jinja_value value) {
    fm_status st = FM_OK;
    ptrdiff_t at = dict_find(d, key);
    if (at >= 0) {
        st = check_depth(child_depth(value));
        if (st) goto fail;
        jinja_release(key);
        jinja_release(d->values[at]);
        d->values[at] = value;
    } else {
        st = check_depth(child_depth(value));
        if (!st && d->len >= JINJA_MAX_ITEMS)
            st = fm_error(FM_ERR_ARGUMENT, "dict larger than %u items", JINJA_MAX_ITEMS);
        if (st) goto fail;
        if (d->len == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 4;
            count_allocation(0, 2 * cap * sizeof(jinja_value));
            jinja_value *k = realloc(d->keys, cap * sizeof *k);
            if (k) d->keys = k;
            jinja_value *v = k ? realloc(d->values, cap * sizeof *v) : NULL;
            if (v) d->values = v;
            if (!k || !v) {
                st = fm_error(FM_ERR_NOMEM, "out of memory");
                goto fail;
            }
            d->cap = cap;
        }
        d->keys[d->len] = key;
        d->values[d->len] = value;
        d->len++;
        if (d->len >= DICT_INDEX_MIN && (!d->index || d->len * 2 >= d->index_cap)) {
            if ((st = dict_reindex(d))) return st; /* the entry is stored; only the index failed */
        } else if (d->index) {
            size_t mask = d->index_cap - 1, slot = value_hash(key) & mask;
            while (d->index[slot]) slot = (slot + 1) & mask;
            d->index[slot] = (uint32_t)d->len;
        }
    }
    int depth = child_depth(value);
    if (depth > d->h.depth) d->h.depth = depth;
    return FM_OK;
fail:
    jinja_release(key);
    jinja_release(value);
    return st;
}

const jinja_value *jinja_dict_get(const jinja_dict *d, jinja_value key) {
    ptrdiff_t at = dict_find(d, key);
    return at < 0 ? NULL : &d->values[at];
}

static bool key_is_bytes(jinja_value k, const char *s, size_t len) {
    return k.type == JINJA_STRING && k.as.str->len == len && !memcmp(k.as.str->data, s, len);
}

const jinja_value *jinja_dict_get_str(const jinja_dict *d, const char *key) {
    size_t len = strlen(key);
    if (!d->index) {
        for (size_t i = 0; i < d->len; i++)
            if (key_is_bytes(d->keys[i], key, len)) return &d->values[i];
        return NULL;
    }
    size_t mask = d->index_cap - 1;
    for (size_t slot = hash_bytes(key, len) & mask; d->index[slot]; slot = (slot + 1) & mask) {
        size_t i = d->index[slot] - 1;
        if (key_is_bytes(d->keys[i], key, len)) return &d->values[i];
    }
    return NULL;
}

/* ---- loops and callables ---------------------------------------------------- */

fm_status jinja_loop_new(jinja_list *items, size_t index0, size_t length, jinja_value *out) {
    jinja_loop *l = object_new(sizeof *l);
    *out = jinja_undefined(NULL);
    if (!l) return fm_error(FM_ERR_NOMEM, "out of memory");
    items->h.refcount++;
    l->items = items;
    l->index0 = index0;
    l->length = length;
    l->h.depth = items->h.depth + 1;
    out->type = JINJA_LOOP;
    out->as.loop = l;
    return FM_OK;
}

fm_status jinja_callable_new(jinja_callable_kind kind, const char *name, jinja_value self, const void *macro,
                             jinja_value *out) {
    *out = jinja_undefined(NULL);
    fm_status st = check_depth(child_depth(self));
    if (st) return st;
    jinja_callable *f = object_new(sizeof *f);
    if (!f) return fm_error(FM_ERR_NOMEM, "out of memory");
    f->kind = kind;
    f->name = name;
    f->self = jinja_retain(self);
    f->macro = macro;
    f->h.depth = child_depth(self);
    out->type = JINJA_CALLABLE;
    out->as.fn = f;
    return FM_OK;
}

/* ---- Python semantics ------------------------------------------------------ */

const char *jinja_type_name(jinja_value v) {
    switch (v.type) {
    case JINJA_UNDEFINED: return "Undefined";
    case JINJA_NONE: return "NoneType";
    case JINJA_BOOL: return "bool";
    case JINJA_INT: return "int";
    case JINJA_FLOAT: return "float";
    case JINJA_STRING: return "str";
    case JINJA_LIST: return v.as.list->is_tuple ? "tuple" : "list";
    case JINJA_DICT: return "dict";
    case JINJA_NAMESPACE: return "Namespace";
    case JINJA_LOOP: return "LoopContext";
    case JINJA_CALLABLE: return v.as.fn->kind == JINJA_FN_MACRO ? "Macro" : "function";
    }
    return "object";
}

bool jinja_truthy(jinja_value v) {
    switch (v.type) {
    case JINJA_UNDEFINED:
    case JINJA_NONE: return false;
    case JINJA_BOOL: return v.as.boolean;
    case JINJA_INT: return v.as.integer != 0;
    case JINJA_FLOAT: return v.as.number != 0;
    case JINJA_STRING: return v.as.str->len > 0;
    case JINJA_LIST: return v.as.list->len > 0;
    case JINJA_DICT: return v.as.dict->len > 0;
    default: return true;
    }
}

static bool is_intlike(jinja_value v) { return v.type == JINJA_INT || v.type == JINJA_BOOL; }
static int64_t int_of(jinja_value v) { return v.type == JINJA_BOOL ? v.as.boolean : v.as.integer; }

bool jinja_equal(jinja_value a, jinja_value b) {
    uint64_t work = 0;
    return jinja_equal_work(a, b, &work);
}

bool jinja_equal_work(jinja_value a, jinja_value b, uint64_t *work) {
    ++*work;
    if (is_intlike(a) && is_intlike(b)) return int_of(a) == int_of(b);
    if ((is_intlike(a) || a.type == JINJA_FLOAT) && (is_intlike(b) || b.type == JINJA_FLOAT)) {
        if (a.type == JINJA_FLOAT && b.type == JINJA_FLOAT) return a.as.number == b.as.number;
        /* int vs float compares exactly, as Python does */
        double f = a.type == JINJA_FLOAT ? a.as.number : b.as.number;
        int64_t i = a.type == JINJA_FLOAT ? int_of(b) : int_of(a);
        if (!(f == floor(f)) || fabs(f) >= 9.2233720368547758e18) return false;
        return (int64_t)f == i;
    }
    if (a.type != b.type) return false;
    switch (a.type) {
    case JINJA_UNDEFINED:
    case JINJA_NONE: return true;
    case JINJA_STRING:
        if (a.as.str->len != b.as.str->len) return false;
        *work += a.as.str->len / 16;
        return !memcmp(a.as.str->data, b.as.str->data, a.as.str->len);
    case JINJA_LIST:
        if (a.as.list->is_tuple != b.as.list->is_tuple || a.as.list->len != b.as.list->len) return false;
        for (size_t i = 0; i < a.as.list->len; i++)
            if (!jinja_equal_work(a.as.list->items[i], b.as.list->items[i], work)) return false;
        return true;
    case JINJA_DICT:
        if (a.as.dict->len != b.as.dict->len) return false;
        for (size_t i = 0; i < a.as.dict->len; i++) {
            const jinja_value *other = jinja_dict_get(b.as.dict, a.as.dict->keys[i]);
            if (!other || !jinja_equal_work(a.as.dict->values[i], *other, work)) return false;
        }
        return true;
    default: return a.as.obj == b.as.obj;
    }
}

void jinja_format_float(double x, char *buf) {
    if (isnan(x)) {
        strcpy(buf, "nan");
        return;
    }
    if (isinf(x)) {
        strcpy(buf, x < 0 ? "-inf" : "inf");
        return;
    }
    /* The fewest significant digits that read back as x: what repr() prints. */
    char sci[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, x);
        if (strtod(sci, NULL) == x) break;
    }
    /* sci is [-]d[.ddd]e±XX: collect the digits and the decimal exponent. */
    const char *p = sci;
    char digits[24];
    int nd = 0;
    bool negative = *p == '-';
    if (negative) p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *o = buf;
    if (negative) *o++ = '-';
    if (exp10 >= -5 + 1 && exp10 < 16) {
        /* Positional: Python switches to exponent form below 1e-4 and from 1e16. */
        if (exp10 < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static fm_status repr_string(const char *s, size_t len, jinja_buf *b) {
    /* Python picks single quotes unless the text has ' and no ". */
    bool has_single = memchr(s, '\'', len) != NULL, has_double = memchr(s, '"', len) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    fm_status st = jinja_buf_putc(b, quote);
    for (size_t i = 0, n; i < len && !st; i += n) {
        int32_t cp = jinja_utf8_decode(s + i, len - i, &n);
        if (cp == quote || cp == '\\')
            st = jinja_buf_printf(b, "\\%c", (char)cp);
        else if (cp == '\t')
            st = jinja_buf_puts(b, "\\t");
        else if (cp == '\n')
            st = jinja_buf_puts(b, "\\n");
        else if (cp == '\r')
            st = jinja_buf_puts(b, "\\r");
        else if (jinja_is_printable(cp))
            st = jinja_buf_append(b, s + i, n);
        else if (cp < 0x100)
            st = jinja_buf_printf(b, "\\x%02x", (unsigned)cp);
        else if (cp < 0x10000)
            st = jinja_buf_printf(b, "\\u%04x", (unsigned)cp);
        else
            st = jinja_buf_printf(b, "\\U%08x", (unsigned)cp);
    }
    return st ? st : jinja_buf_putc(b, quote);
}

static fm_status write_value(jinja_value v, jinja_buf *b, bool repr, int depth);

static fm_status write_dict_body(const jinja_dict *d, jinja_buf *b, int depth) {
    fm_status st = jinja_buf_putc(b, '{');
    for (size_t i = 0; i < d->len && !st; i++) {
        if (i) st = jinja_buf_puts(b, ", ");
        if (!st) st = write_value(d->keys[i], b, true, depth + 1);
        if (!st) st = jinja_buf_puts(b, ": ");
        if (!st) st = write_value(d->values[i], b, true, depth + 1);
    }
    return st ? st : jinja_buf_putc(b, '}');
}

static fm_status write_value(jinja_value v, jinja_buf *b, bool repr, int depth) {
    if (depth > JINJA_MAX_VALUE_DEPTH + 8) /* only namespaces can make a cycle */
        return fm_error(FM_ERR_ARGUMENT, "value nested too deeply (or containing itself) to print");
    char num[40];
    switch (v.type) {
    case JINJA_UNDEFINED: return repr ? jinja_buf_puts(b, "Undefined") : FM_OK;
    case JINJA_NONE: return jinja_buf_puts(b, "None");
    case JINJA_BOOL: return jinja_buf_puts(b, v.as.boolean ? "True" : "False");
    case JINJA_INT: return jinja_buf_printf(b, "%" PRId64, v.as.integer);
    case JINJA_FLOAT: jinja_format_float(v.as.number, num); return jinja_buf_puts(b, num);
    case JINJA_STRING:
        return repr ? repr_string(v.as.str->data, v.as.str->len, b)
                    : jinja_buf_append(b, v.as.str->data, v.as.str->len);
    case JINJA_LIST: {
        const jinja_list *l = v.as.list;
        fm_status st = jinja_buf_putc(b, l->is_tuple ? '(' : '[');
        for (size_t i = 0; i < l->len && !st; i++) {
            if (i) st = jinja_buf_puts(b, ", ");
            if (!st) st = write_value(l->items[i], b, true, depth + 1);
        }
        if (!st && l->is_tuple && l->len == 1) st = jinja_buf_putc(b, ',');
        return st ? st : jinja_buf_putc(b, l->is_tuple ? ')' : ']');
    }
    case JINJA_DICT: return write_dict_body(v.as.dict, b, depth);
    case JINJA_NAMESPACE: {
        fm_status st = jinja_buf_puts(b, "<Namespace ");
        if (!st) st = write_dict_body(v.as.dict, b, depth);
        return st ? st : jinja_buf_putc(b, '>');
    }
    case JINJA_LOOP: return jinja_buf_printf(b, "<LoopContext %zu/%zu>", v.as.loop->index0 + 1, v.as.loop->length);
    case JINJA_CALLABLE:
        if (v.as.fn->kind == JINJA_FN_MACRO) return jinja_buf_printf(b, "<Macro '%s'>", v.as.fn->name);
        if (v.as.fn->kind == JINJA_FN_METHOD)
            return jinja_buf_printf(b, "<built-in method %s of %s object>", v.as.fn->name,
                                    jinja_type_name(v.as.fn->self));
        return jinja_buf_printf(b, "<function %s>", v.as.fn->name);
    }
    return FM_OK;
}

fm_status jinja_to_text(jinja_value v, jinja_buf *b) { return write_value(v, b, false, 0); }
fm_status jinja_repr(jinja_value v, jinja_buf *b) { return write_value(v, b, true, 0); }

fm_status jinja_to_string_value(jinja_value v, jinja_value *out) {
    if (v.type == JINJA_STRING) {
        *out = jinja_retain(v);
        return FM_OK;
    }
    jinja_buf b = {0};
    fm_status st = jinja_to_text(v, &b);
    if (st) {
        jinja_buf_free(&b);
        *out = jinja_undefined(NULL);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

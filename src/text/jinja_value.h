/* Values of the chat-template interpreter: Python's objects as Jinja sees
 * them (undefined, None, bool, int, float, str, list/tuple, dict, namespace,
 * loop, callables), reference counted, plus a growable text buffer and the
 * conversions to text (Python str() and repr()).
 *
 * Ownership: a jinja_value holding an object owns one reference. Functions
 * documented as "steals" take over the caller's reference; everything else
 * borrows. Lists and dicts are immutable once built (the sandbox transformers
 * renders in forbids mutation), except a namespace's attributes; cycles
 * through namespaces are broken by the renderer when it finishes. */
#ifndef FM_TEXT_JINJA_VALUE_H
#define FM_TEXT_JINJA_VALUE_H

#include "flashmoe.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds that keep untrusted templates from exhausting memory or stack. */
#define JINJA_MAX_TEXT (64u << 20) /* bytes in any string and in the output */
#define JINJA_MAX_ITEMS (1u << 22) /* elements in a list or dict */
#define JINJA_MAX_VALUE_DEPTH 1100 /* nesting of lists/dicts (cJSON allows 1000) */

typedef enum {
    JINJA_UNDEFINED,
    JINJA_NONE,
    JINJA_BOOL,
    JINJA_INT,
    JINJA_FLOAT,
    JINJA_STRING,
    JINJA_LIST, /* also tuples (is_tuple) */
    JINJA_DICT,
    JINJA_NAMESPACE, /* a dict whose attributes `set ns.x = ...` may change */
    JINJA_LOOP,      /* the `loop` variable of a for loop */
    JINJA_CALLABLE,  /* a global function, a bound method or a macro */
} jinja_type;

/* Every heap object starts with this header. A negative refcount marks an
 * immortal object (a template's string constants, shared by concurrent
 * renders): retain and release leave it alone.  depth: the nesting below it,
 * bounded so that freeing and printing recurse a bounded number of times. */
typedef struct {
    int refcount;
    int depth;
} jinja_object;

typedef struct jinja_string {
    jinja_object h;
    size_t len;
    char data[]; /* NUL-terminated */
} jinja_string;

typedef struct jinja_value {
    jinja_type type;
    union {
        bool boolean;
        int64_t integer;
        double number;
        const char *hint; /* JINJA_UNDEFINED: the missing name, for messages (not owned) */
        jinja_object *obj;
        jinja_string *str;
        struct jinja_list *list;
        struct jinja_dict *dict; /* JINJA_DICT and JINJA_NAMESPACE */
        struct jinja_loop *loop;
        struct jinja_callable *fn;
    } as;
} jinja_value;

typedef struct jinja_list {
    jinja_object h;
    bool is_tuple;
    size_t len, cap;
    jinja_value *items;
} jinja_list;

/* Insertion-ordered, as Python's dict; a hash index once it grows. */
typedef struct jinja_dict {
    jinja_object h;
    size_t len, cap;
    jinja_value *keys, *values;
    uint32_t *index; /* open addressing over entry numbers + 1; 0 = empty */
    size_t index_cap;
} jinja_dict;

typedef struct jinja_loop {
    jinja_object h;
    size_t index0, length;
    jinja_list *items; /* what is iterated, for previtem / nextitem */
} jinja_loop;

typedef enum {
    JINJA_FN_GLOBAL, /* range, namespace, dict, raise_exception, strftime_now */
    JINJA_FN_METHOD, /* a method of `self`, e.g. 'abc'.upper */
    JINJA_FN_MACRO,
} jinja_callable_kind;

typedef struct jinja_callable {
    jinja_object h;
    jinja_callable_kind kind;
    const char *name;  /* not owned: a literal or a name in the template's syntax tree */
    jinja_value self;  /* JINJA_FN_METHOD */
    const void *macro; /* JINJA_FN_MACRO: the macro's syntax node */
} jinja_callable;

/* ---- text buffer ---------------------------------------------------------- */

typedef struct {
    char *data; /* NUL-terminated when non-NULL */
    size_t len, cap;
} jinja_buf;

fm_status jinja_buf_append(jinja_buf *b, const char *s, size_t len);
fm_status jinja_buf_puts(jinja_buf *b, const char *s);
fm_status jinja_buf_putc(jinja_buf *b, char c);
fm_status jinja_buf_printf(jinja_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends the UTF-8 encoding of code point `cp`. */
fm_status jinja_buf_put_codepoint(jinja_buf *b, int32_t cp);
void jinja_buf_free(jinja_buf *b);
/* Moves the buffer's text into a string value and empties the buffer. */
fm_status jinja_buf_to_string(jinja_buf *b, jinja_value *out);

/* ---- construction and reference counting -------------------------------- */

static inline jinja_value jinja_undefined(const char *hint) {
    jinja_value v = {.type = JINJA_UNDEFINED, .as.hint = hint};
    return v;
}
static inline jinja_value jinja_none(void) {
    jinja_value v = {.type = JINJA_NONE};
    return v;
}
static inline jinja_value jinja_bool(bool b) {
    jinja_value v = {.type = JINJA_BOOL, .as.boolean = b};
    return v;
}
static inline jinja_value jinja_int(int64_t i) {
    jinja_value v = {.type = JINJA_INT, .as.integer = i};
    return v;
}
static inline jinja_value jinja_float(double f) {
    jinja_value v = {.type = JINJA_FLOAT, .as.number = f};
    return v;
}
static inline bool jinja_is_object(jinja_value v) { return v.type >= JINJA_STRING; }

/* Work done allocating on this thread so far, in the renderer's budget units:
 * 8 per object plus 1 per 16 bytes (strings, item arrays, text buffers).
 * Renders charge their budget with the difference, so a filter that builds
 * millions of objects or huge strings is counted wherever it does so. */
uint64_t jinja_allocation_work(void);

jinja_value jinja_retain(jinja_value v);
void jinja_release(jinja_value v);
/* Releases *v and leaves undefined in its place. */
void jinja_clear(jinja_value *v);

fm_status jinja_string_new(const char *s, size_t len, jinja_value *out);
/* An immortal string, freed only by jinja_free_immortal. */
fm_status jinja_string_new_immortal(const char *s, size_t len, jinja_value *out);
void jinja_free_immortal(jinja_value v);
/* A string of len bytes (NUL-terminated) for the caller to fill before sharing it. */
fm_status jinja_string_alloc(size_t len, jinja_value *out);
fm_status jinja_string_cat(const char *a, size_t alen, const char *b, size_t blen, jinja_value *out);

fm_status jinja_list_new(size_t cap, bool is_tuple, jinja_value *out);
/* Appends `item` (steals it, also on failure). */
fm_status jinja_list_push(jinja_list *l, jinja_value item);

fm_status jinja_dict_new(jinja_value *out);
/* Sets key to value, keeping the position of an existing key (steals both,
 * also on failure). Keys must be hashable (see jinja_is_hashable). */
fm_status jinja_dict_set(jinja_dict *d, jinja_value key, jinja_value value);
/* The value stored under key (borrowed), or NULL. */
const jinja_value *jinja_dict_get(const jinja_dict *d, jinja_value key);
const jinja_value *jinja_dict_get_str(const jinja_dict *d, const char *key);
/* Releases every entry (how the renderer breaks namespace cycles). */
void jinja_dict_clear(jinja_dict *d);

fm_status jinja_loop_new(jinja_list *items, size_t index0, size_t length, jinja_value *out);
/* `self` is retained; `name` and `macro` must outlive the value. */
fm_status jinja_callable_new(jinja_callable_kind kind, const char *name, jinja_value self, const void *macro,
                             jinja_value *out);

/* ---- Python semantics ------------------------------------------------------ */

const char *jinja_type_name(jinja_value v); /* Python's: 'str', 'NoneType', ... */
bool jinja_truthy(jinja_value v);
bool jinja_is_hashable(jinja_value v);
/* Python ==, where 1 == 1.0 == True and undefined equals only undefined. */
bool jinja_equal(jinja_value a, jinja_value b);
/* The same, adding to *work the elements and text (in 16-byte units) compared. */
bool jinja_equal_work(jinja_value a, jinja_value b, uint64_t *work);
/* Appends Python's str(v): strings raw, undefined as nothing, None, True, 1.0, [..]. */
fm_status jinja_to_text(jinja_value v, jinja_buf *b);
/* Appends Python's repr(v): strings quoted and escaped. */
fm_status jinja_repr(jinja_value v, jinja_buf *b);
/* str(v) as a new string value (a string is returned as is, retained). */
fm_status jinja_to_string_value(jinja_value v, jinja_value *out);
/* Python's repr of a float: the shortest text that reads back as the same
 * double ("1.0", "0.1", "1e-05", "1e+16", "inf"). buf: at least 32 bytes. */
void jinja_format_float(double x, char *buf);

#endif

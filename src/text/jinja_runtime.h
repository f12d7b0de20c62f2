/* What the evaluator (jinja_eval.c) shares with the operator semantics
 * (jinja_ops.c), the filters and tests (jinja_filters.c) and the methods and
 * global functions (jinja_methods.c): the render context, argument binding,
 * error reporting and the work budget. */
#ifndef FM_TEXT_JINJA_RUNTIME_H
#define FM_TEXT_JINJA_RUNTIME_H

#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"

/* Work a render may do (one unit per node evaluated and per 16 bytes of text
 * scanned, plus what jinja_allocation_work counts): a fraction of a second
 * for the template alone, plus JINJA_STEPS_PER_INPUT_BYTE for each byte of
 * the variables' JSON, so long conversations always fit. */
#define JINJA_MAX_STEPS 10000000ull
#define JINJA_STEPS_PER_INPUT_BYTE 4
#define JINJA_MAX_CALL_DEPTH 64 /* nested macro calls */
/* Nested evaluations (expressions, statements, macro bodies together): what
 * bounds the evaluator's stack, whatever recursion a template sets up. */
#define JINJA_MAX_EVAL_DEPTH 1000
#define JINJA_MAX_RANGE 100000 /* as the sandbox transformers renders in */
/* Work units for copying or scanning `bytes` of text. */
#define JINJA_TEXT_COST(bytes) ((uint64_t)(bytes) / 16)

typedef struct jinja_scope jinja_scope;

typedef enum { JINJA_FLOW_NORMAL, JINJA_FLOW_BREAK, JINJA_FLOW_CONTINUE } jinja_flow;

typedef struct jinja_ctx {
    const jinja_dict *globals;
    jinja_buf *out;         /* where text goes: the result, or a capture */
    jinja_scope *scope;     /* innermost */
    jinja_scope *top;       /* the template's own (where macros look up names) */
    jinja_list *namespaces; /* every namespace made, emptied at the end to break cycles */
    int line;               /* of the node being evaluated, for messages */
    int call_depth;
    int eval_depth;
    uint64_t steps, max_steps;
    uint64_t allocation_work_seen; /* jinja_allocation_work() when last charged */
    jinja_flow flow;
    bool raised; /* the error is raise_exception's message, reported verbatim */
} jinja_ctx;

/* Call arguments: positional values, then keyword names and values. */
typedef struct {
    const jinja_value *pos;
    int n_pos;
    const char *const *kw_names;
    const jinja_value *kw;
    int n_kw;
} jinja_args;

/* Records a render error (the line is added when the render fails). */
fm_status jinja_fail(jinja_ctx *ctx, fm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Counts `cost` units of work; fails once the budget is spent. */
fm_status jinja_charge(jinja_ctx *ctx, uint64_t cost);

/* Binds arguments to parameters as Python does: positional first, then by
 * keyword. slots[i] borrows the argument or is undefined (hint NULL) when it
 * was not given; the first n_required must be given. */
fm_status jinja_bind(jinja_ctx *ctx, const char *fname, const jinja_args *args, const char *const *params, int n_params,
                     int n_required, jinja_value *slots);
static inline bool jinja_given(jinja_value slot) { return !(slot.type == JINJA_UNDEFINED && !slot.as.hint); }

/* ---- operators (jinja_ops.c) ------------------------------------------------ */

fm_status jinja_binary(jinja_ctx *ctx, int op, jinja_value a, jinja_value b, jinja_value *out);
fm_status jinja_negate(jinja_ctx *ctx, jinja_value a, bool minus, jinja_value *out);
/* op: JOP_EQ .. JOP_GE, JINJA_CMP_IN, JINJA_CMP_NOT_IN. */
fm_status jinja_compare(jinja_ctx *ctx, int op, jinja_value a, jinja_value b, bool *out);
/* Python's a < b for sorting, min and max; *less undefined on failure. */
fm_status jinja_less(jinja_ctx *ctx, jinja_value a, jinja_value b, bool *less);
/* The items a for loop visits: a list's elements, a dict's keys, a string's
 * characters; undefined gives none. Returns a new list (or the list itself, retained). */
fm_status jinja_iterate(jinja_ctx *ctx, jinja_value v, jinja_value *out_list);
/* len(v), or an error for values without one. */
fm_status jinja_length(jinja_ctx *ctx, jinja_value v, int64_t *out);
/* Jinja's getattr: Python attribute first (methods of str/dict/list, loop
 * fields, namespace attributes), then item; missing gives undefined. */
fm_status jinja_get_attr(jinja_ctx *ctx, jinja_value obj, const char *name, jinja_value *out);
/* Jinja's getitem: item first, then attribute for string keys. */
fm_status jinja_get_item(jinja_ctx *ctx, jinja_value obj, jinja_value key, jinja_value *out);
fm_status jinja_slice(jinja_ctx *ctx, jinja_value obj, jinja_value start, jinja_value stop, jinja_value step,
                      jinja_value *out);
/* Python's printf-style fmt % args for the conversions %s %r %d %i %%.
 * lenient: the arguments are one list or dict, which Python lets go unused. */
fm_status jinja_percent_format(jinja_ctx *ctx, jinja_value fmt, const jinja_value *args, int n_args, bool lenient,
                               jinja_value *out);
/* Substring of a string value by code-point range [from, to). */
fm_status jinja_substring(jinja_value s, size_t from_cp, size_t to_cp, jinja_value *out);

/* ---- methods and global functions (jinja_methods.c) ------------------------ */

/* When obj's Python type has a method called `name` that templates may use:
 * that name as a static string (it outlives any value); else NULL. */
const char *jinja_method_name(jinja_value obj, const char *name);
fm_status jinja_call_method(jinja_ctx *ctx, jinja_value self, const char *name, const jinja_args *args,
                            jinja_value *out);
/* The canonical name of a global function (range, namespace, ...), or NULL. */
const char *jinja_global_function(const char *name);
fm_status jinja_call_global(jinja_ctx *ctx, const char *name, const jinja_args *args, jinja_value *out);
/* Python str methods the filters share. chars: NULL strips whitespace. */
fm_status jinja_str_strip(jinja_ctx *ctx, jinja_value s, jinja_value chars, bool left, bool right, jinja_value *out);
fm_status jinja_str_replace(jinja_ctx *ctx, jinja_value s, jinja_value old, jinja_value new_text, int64_t count,
                            jinja_value *out);
/* upper / lower / capitalize / Jinja's title filter / str.title. */
typedef enum {
    JINJA_CASE_UPPER,
    JINJA_CASE_LOWER,
    JINJA_CASE_CAPITALIZE,
    JINJA_CASE_TITLE_FILTER,
    JINJA_CASE_TITLE
} jinja_case;
fm_status jinja_str_case(jinja_ctx *ctx, jinja_value s, jinja_case mode, jinja_value *out);

/* ---- filters and tests (jinja_filters.c) ------------------------------------ */

/* Filter / test ids by name, -1 when unknown (an error only if evaluated). */
int jinja_filter_find(const char *name);
int jinja_test_find(const char *name);
fm_status jinja_apply_filter(jinja_ctx *ctx, int id, jinja_value subject, const jinja_args *args, jinja_value *out);
fm_status jinja_apply_test(jinja_ctx *ctx, int id, jinja_value subject, const jinja_args *args, bool *out);

/* ---- JSON (jinja_json.c) ----------------------------------------------------- */

typedef struct {
    const char *indent; /* NULL: one line */
    const char *item_separator, *key_separator;
    bool sort_keys;
    bool ensure_ascii;
} jinja_json_style;

/* Python's json.dumps(v, ...) appended to b. */
fm_status jinja_to_json(jinja_ctx *ctx, jinja_value v, const jinja_json_style *style, jinja_buf *b);

#endif

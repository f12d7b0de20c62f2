/* Evaluator of the chat-template interpreter: walks the syntax tree of
 * jinja_ast.h, with Jinja's scoping (a for loop's body gets fresh variables
 * each iteration and they do not leak out; if blocks share their
 * surroundings; macros see the template's top level), break/continue, macro
 * calls and output capture for {% set %} blocks, macros and filter blocks.
 * Values follow jinja_value.h's ownership rules: eval() hands back a new
 * reference. */
#include "text/jinja_runtime.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jinja_scope {
    jinja_scope *parent;
    const char **names; /* not owned: names in the syntax tree or literals */
    jinja_value *values;
    int n, cap;
};

/* ---- context services ------------------------------------------------------------ */

fm_status jinja_fail(jinja_ctx *ctx, fm_status status, const char *fmt, ...) {
    (void)ctx;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fm_error(status, "%s", msg);
}

fm_status jinja_charge(jinja_ctx *ctx, uint64_t cost) {
    uint64_t allocation_work = jinja_allocation_work();
    ctx->steps += cost + (allocation_work - ctx->allocation_work_seen);
    ctx->allocation_work_seen = allocation_work;
    if (ctx->steps > ctx->max_steps)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "template exceeds its work budget (endless loop?)");
    return FM_OK;
}

fm_status jinja_bind(jinja_ctx *ctx, const char *fname, const jinja_args *args, const char *const *params, int n_params,
                     int n_required, jinja_value *slots) {
    for (int i = 0; i < n_params; i++) slots[i] = jinja_undefined(NULL);
    if (args->n_pos > n_params)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s() takes at most %d argument%s (%d given)", fname, n_params,
                          n_params == 1 ? "" : "s", args->n_pos);
    for (int i = 0; i < args->n_pos; i++) slots[i] = args->pos[i];
    for (int k = 0; k < args->n_kw; k++) {
        int at = -1;
        for (int i = 0; i < n_params && at < 0; i++)
            if (!strcmp(params[i], args->kw_names[k])) at = i;
        if (at < 0)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s() got an unexpected keyword argument '%s'", fname,
                              args->kw_names[k]);
        if (at < args->n_pos || jinja_given(slots[at]))
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s() got multiple values for argument '%s'", fname, params[at]);
        slots[at] = args->kw[k];
        if (!jinja_given(slots[at])) slots[at].as.hint = params[at]; /* an undefined argument still counts as given */
    }
    for (int i = 0; i < n_required; i++)
        if (!jinja_given(slots[i]))
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "%s() missing required argument '%s'", fname, params[i]);
    return FM_OK;
}

/* ---- scopes ----------------------------------------------------------------------- */

static jinja_value *scope_find(jinja_scope *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) return &s->values[i];
    return NULL;
}

/* Binds name to value in scope s (steals value). */
static fm_status scope_set(jinja_scope *s, const char *name, jinja_value value) {
    jinja_value *slot = scope_find(s, name);
    if (slot) {
        jinja_release(*slot);
        *slot = value;
        return FM_OK;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        const char **names = realloc(s->names, (size_t)cap * sizeof *names);
        if (names) s->names = names;
        jinja_value *values = names ? realloc(s->values, (size_t)cap * sizeof *values) : NULL;
        if (values) s->values = values;
        if (!names || !values) {
            jinja_release(value);
            return fm_error(FM_ERR_NOMEM, "out of memory");
        }
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->values[s->n++] = value;
    return FM_OK;
}

static void scope_clear(jinja_scope *s) {
    for (int i = 0; i < s->n; i++) jinja_release(s->values[i]);
    s->n = 0;
}

static void scope_free(jinja_scope *s) {
    scope_clear(s);
    free(s->names);
    free(s->values);
}

static fm_status lookup(jinja_ctx *ctx, const char *name, jinja_value *out) {
    for (jinja_scope *s = ctx->scope; s; s = s->parent) {
        jinja_value *v = scope_find(s, name);
        if (v) {
            *out = jinja_retain(*v);
            return FM_OK;
        }
    }
    const jinja_value *g = jinja_dict_get_str(ctx->globals, name);
    if (g) {
        *out = jinja_retain(*g);
        return FM_OK;
    }
    const char *fn = jinja_global_function(name);
    if (fn) return jinja_callable_new(JINJA_FN_GLOBAL, fn, jinja_none(), NULL, out);
    *out = jinja_undefined(name);
    return FM_OK;
}

/* ---- expressions --------------------------------------------------------------------- */

static fm_status eval(jinja_ctx *ctx, const jinja_node *n, jinja_value *out);
static fm_status exec_body(jinja_ctx *ctx, const jinja_node_list *body);

static fm_status enter(jinja_ctx *ctx) {
    if (++ctx->eval_depth <= JINJA_MAX_EVAL_DEPTH) return FM_OK;
    ctx->eval_depth--;
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "evaluation nested more than %d levels deep", JINJA_MAX_EVAL_DEPTH);
}

/* Evaluated call arguments; small calls need no allocation. */
typedef struct {
    jinja_args args;
    jinja_value small_values[8];
    const char *small_names[8];
    jinja_value *values;
    const char **names;
    int n_values;
} arg_pack;

static void args_free(arg_pack *pk) {
    for (int i = 0; i < pk->n_values; i++) jinja_release(pk->values[i]);
    if (pk->values != pk->small_values) free(pk->values);
    if (pk->names != pk->small_names) free(pk->names);
}

static fm_status eval_args(jinja_ctx *ctx, const jinja_node *n, arg_pack *pk) {
    int total = n->children.n + n->kwargs.n;
    pk->n_values = 0;
    pk->values = pk->small_values;
    pk->names = pk->small_names;
    if (total > 8) {
        pk->values = malloc((size_t)total * sizeof *pk->values);
        pk->names = malloc((size_t)total * sizeof *pk->names);
        if (!pk->values || !pk->names) {
            if (pk->values) free(pk->values);
            if (pk->names) free(pk->names);
            pk->values = pk->small_values;
            pk->names = pk->small_names;
            return fm_error(FM_ERR_NOMEM, "out of memory");
        }
    }
    for (int i = 0; i < total; i++) {
        const jinja_node *arg = i < n->children.n ? n->children.items[i] : n->kwargs.items[i - n->children.n];
        fm_status st = eval(ctx, arg->kind == JN_KWARG ? arg->a : arg, &pk->values[i]);
        if (st) {
            args_free(pk);
            return st;
        }
        pk->n_values++;
        if (arg->kind == JN_KWARG) pk->names[i - n->children.n] = arg->name;
    }
    pk->args.pos = pk->values;
    pk->args.n_pos = n->children.n;
    pk->args.kw = pk->values + n->children.n;
    pk->args.kw_names = pk->names;
    pk->args.n_kw = n->kwargs.n;
    return FM_OK;
}

static fm_status assign(jinja_ctx *ctx, const jinja_node *target, jinja_value value);

static fm_status call_macro(jinja_ctx *ctx, const jinja_callable *fn, const jinja_args *args, jinja_value *out) {
    const jinja_node *macro = fn->macro;
    if (ctx->call_depth >= JINJA_MAX_CALL_DEPTH)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "macro calls nested more than %d deep", JINJA_MAX_CALL_DEPTH);
    /* Macros see their parameters, then the template's top level. */
    jinja_scope scope = {.parent = ctx->top};
    jinja_value varargs = jinja_undefined(NULL), kwargs = jinja_undefined(NULL);
    fm_status st = jinja_list_new(0, true, &varargs);
    if (!st) st = jinja_dict_new(&kwargs);
    for (int i = 0; i < macro->children.n && !st; i++) {
        const jinja_node *param = macro->children.items[i];
        jinja_value v = jinja_undefined(param->name);
        bool given = false;
        if (i < args->n_pos) {
            v = jinja_retain(args->pos[i]);
            given = true;
        }
        for (int k = 0; k < args->n_kw; k++)
            if (!strcmp(args->kw_names[k], param->name)) {
                if (given) {
                    jinja_release(v);
                    st = jinja_fail(ctx, FM_ERR_ARGUMENT, "macro '%s' got multiple values for argument '%s'", fn->name,
                                    param->name);
                    break;
                }
                v = jinja_retain(args->kw[k]);
                given = true;
            }
        if (st) break;
        if (!given && param->kind == JN_KWARG) {
            jinja_scope *saved = ctx->scope;
            ctx->scope = &scope;
            st = eval(ctx, param->a, &v);
            ctx->scope = saved;
        }
        if (!st) st = scope_set(&scope, param->name, v);
    }
    /* Extra arguments land in varargs / kwargs, as Jinja's do. */
    for (int i = macro->children.n; i < args->n_pos && !st; i++)
        st = jinja_list_push(varargs.as.list, jinja_retain(args->pos[i]));
    for (int k = 0; k < args->n_kw && !st; k++) {
        bool is_param = false;
        for (int i = 0; i < macro->children.n; i++)
            is_param |= !strcmp(args->kw_names[k], macro->children.items[i]->name);
        if (is_param) continue;
        jinja_value key;
        st = jinja_string_new(args->kw_names[k], strlen(args->kw_names[k]), &key);
        if (!st) st = jinja_dict_set(kwargs.as.dict, key, jinja_retain(args->kw[k]));
    }
    if (!st) {
        st = scope_set(&scope, "varargs", varargs);
        varargs = jinja_undefined(NULL);
    }
    if (!st) {
        st = scope_set(&scope, "kwargs", kwargs);
        kwargs = jinja_undefined(NULL);
    }
    jinja_release(varargs);
    jinja_release(kwargs);
    jinja_buf text = {0};
    if (!st) {
        jinja_scope *saved_scope = ctx->scope;
        jinja_buf *saved_out = ctx->out;
        ctx->scope = &scope;
        ctx->out = &text;
        ctx->call_depth++;
        st = exec_body(ctx, &macro->body);
        ctx->call_depth--;
        ctx->scope = saved_scope;
        ctx->out = saved_out;
        ctx->flow = JINJA_FLOW_NORMAL;
    }
    scope_free(&scope);
    if (st) {
        jinja_buf_free(&text);
        return st;
    }
    return jinja_buf_to_string(&text, out);
}

static fm_status call_value(jinja_ctx *ctx, jinja_value f, const jinja_args *args, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (f.type == JINJA_CALLABLE) {
        switch (f.as.fn->kind) {
        case JINJA_FN_GLOBAL: return jinja_call_global(ctx, f.as.fn->name, args, out);
        case JINJA_FN_METHOD: return jinja_call_method(ctx, f.as.fn->self, f.as.fn->name, args, out);
        case JINJA_FN_MACRO: return call_macro(ctx, f.as.fn, args, out);
        }
    }
    if (f.type == JINJA_UNDEFINED)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' is undefined", f.as.hint ? f.as.hint : "value");
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object is not callable", jinja_type_name(f));
}

static fm_status eval_call(jinja_ctx *ctx, const jinja_node *n, jinja_value *out) {
    jinja_value f = jinja_undefined(NULL);
    fm_status st;
    const jinja_node *callee = n->a;
    if (callee->kind == JN_ATTR) {
        /* obj.method(...): call the method directly, no bound object needed */
        jinja_value obj;
        if ((st = eval(ctx, callee->a, &obj))) return st;
        if (jinja_method_name(obj, callee->name)) {
            arg_pack pk;
            st = eval_args(ctx, n, &pk);
            if (!st) {
                ctx->line = n->line;
                st = jinja_call_method(ctx, obj, callee->name, &pk.args, out);
                args_free(&pk);
            }
            jinja_release(obj);
            return st;
        }
        st = jinja_get_attr(ctx, obj, callee->name, &f);
        jinja_release(obj);
    } else {
        st = eval(ctx, callee, &f);
    }
    if (st) return st;
    arg_pack pk;
    st = eval_args(ctx, n, &pk);
    if (!st) {
        ctx->line = n->line;
        st = call_value(ctx, f, &pk.args, out);
        args_free(&pk);
    }
    jinja_release(f);
    return st;
}

/* A filter node, whose innermost subject is `inner` when the chain has none
 * (a filter block or set block). */
static fm_status eval_filter(jinja_ctx *ctx, const jinja_node *n, const jinja_value *inner, jinja_value *out) {
    jinja_value subject;
    *out = jinja_undefined(NULL);
    fm_status st = enter(ctx);
    if (st) return st;
    if (!n->a)
        st = (subject = jinja_retain(*inner), FM_OK);
    else if (n->a->kind == JN_FILTER)
        st = eval_filter(ctx, n->a, inner, &subject);
    else
        st = eval(ctx, n->a, &subject);
    if (st) {
        ctx->eval_depth--;
        return st;
    }
    arg_pack pk;
    if (!(st = eval_args(ctx, n, &pk))) {
        ctx->line = n->line;
        if (n->op < 0)
            st = jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown filter '%s'", n->name);
        else
            st = jinja_apply_filter(ctx, n->op, subject, &pk.args, out);
        args_free(&pk);
    }
    jinja_release(subject);
    ctx->eval_depth--;
    return st;
}

static fm_status eval_collection(jinja_ctx *ctx, const jinja_node *n, jinja_value *out) {
    fm_status st =
        n->kind == JN_DICT ? jinja_dict_new(out) : jinja_list_new((size_t)n->children.n, n->kind == JN_TUPLE, out);
    for (int i = 0; i < n->children.n && !st; i++) {
        const jinja_node *item = n->children.items[i];
        if (n->kind != JN_DICT) {
            jinja_value v;
            if (!(st = eval(ctx, item, &v))) st = jinja_list_push(out->as.list, v);
            continue;
        }
        jinja_value key, value;
        if ((st = eval(ctx, item->a, &key))) break;
        if (!jinja_is_hashable(key)) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "unhashable type: '%s'", jinja_type_name(key));
            jinja_release(key);
            break;
        }
        if ((st = eval(ctx, item->b, &value))) {
            jinja_release(key);
            break;
        }
        st = jinja_dict_set(out->as.dict, key, value);
    }
    if (st) jinja_clear(out);
    return st;
}

static fm_status eval_compare(jinja_ctx *ctx, const jinja_node *n, jinja_value *out) {
    jinja_value left;
    fm_status st = eval(ctx, n->a, &left);
    bool result = true;
    for (int i = 0; i < n->children.n && !st && result; i++) {
        const jinja_node *operand = n->children.items[i];
        jinja_value right;
        if ((st = eval(ctx, operand->a, &right))) break;
        ctx->line = operand->line;
        st = jinja_compare(ctx, operand->op, left, right, &result);
        jinja_release(left);
        left = right;
    }
    jinja_release(left);
    *out = jinja_bool(result);
    return st;
}

static fm_status eval_node(jinja_ctx *ctx, const jinja_node *n, jinja_value *out) {
    *out = jinja_undefined(NULL);
    ctx->line = n->line;
    fm_status st = jinja_charge(ctx, 1);
    if (st) return st;
    jinja_value a, b;
    switch (n->kind) {
    case JN_CONST: *out = jinja_retain(n->value); return FM_OK;
    case JN_NAME: return lookup(ctx, n->name, out);
    case JN_LIST:
    case JN_TUPLE:
    case JN_DICT: return eval_collection(ctx, n, out);
    case JN_ATTR:
        if ((st = eval(ctx, n->a, &a))) return st;
        ctx->line = n->line;
        st = jinja_get_attr(ctx, a, n->name, out);
        jinja_release(a);
        return st;
    case JN_ITEM:
        if ((st = eval(ctx, n->a, &a))) return st;
        if (n->b->kind == JN_SLICE) {
            const jinja_node *s = n->b;
            jinja_value parts[3] = {jinja_none(), jinja_none(), jinja_none()};
            const jinja_node *exprs[3] = {s->a, s->b, s->c};
            for (int i = 0; i < 3 && !st; i++)
                if (exprs[i]) st = eval(ctx, exprs[i], &parts[i]);
            ctx->line = n->line;
            if (!st) st = jinja_slice(ctx, a, parts[0], parts[1], parts[2], out);
            for (int i = 0; i < 3; i++) jinja_release(parts[i]);
        } else if (!(st = eval(ctx, n->b, &b))) {
            ctx->line = n->line;
            st = jinja_get_item(ctx, a, b, out);
            jinja_release(b);
        }
        jinja_release(a);
        return st;
    case JN_CALL: return eval_call(ctx, n, out);
    case JN_FILTER: return eval_filter(ctx, n, NULL, out);
    case JN_TEST: {
        if ((st = eval(ctx, n->a, &a))) return st;
        arg_pack pk;
        bool result = false;
        if (!(st = eval_args(ctx, n, &pk))) {
            ctx->line = n->line;
            if (n->op < 0)
                st = jinja_fail(ctx, FM_ERR_UNSUPPORTED, "unknown test '%s'", n->name);
            else
                st = jinja_apply_test(ctx, n->op, a, &pk.args, &result);
            args_free(&pk);
        }
        jinja_release(a);
        *out = jinja_bool(result != n->negated);
        return st;
    }
    case JN_NEG:
    case JN_POS:
        if ((st = eval(ctx, n->a, &a))) return st;
        ctx->line = n->line;
        st = jinja_negate(ctx, a, n->kind == JN_NEG, out);
        jinja_release(a);
        return st;
    case JN_NOT:
        if ((st = eval(ctx, n->a, &a))) return st;
        *out = jinja_bool(!jinja_truthy(a));
        jinja_release(a);
        return FM_OK;
    case JN_BINARY:
        if ((st = eval(ctx, n->a, &a))) return st;
        if ((st = eval(ctx, n->b, &b))) {
            jinja_release(a);
            return st;
        }
        ctx->line = n->line;
        st = jinja_binary(ctx, n->op, a, b, out);
        jinja_release(a);
        jinja_release(b);
        return st;
    case JN_AND:
    case JN_OR:
        /* Python's and/or return an operand, not a bool. */
        if ((st = eval(ctx, n->a, &a))) return st;
        if (jinja_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return FM_OK;
        }
        jinja_release(a);
        return eval(ctx, n->b, out);
    case JN_CONCAT: {
        jinja_buf text = {0};
        for (int i = 0; i < n->children.n && !st; i++) {
            if ((st = eval(ctx, n->children.items[i], &a))) break;
            st = jinja_to_text(a, &text);
            jinja_release(a);
        }
        if (!st) st = jinja_charge(ctx, JINJA_TEXT_COST(text.len));
        if (st) {
            jinja_buf_free(&text);
            return st;
        }
        return jinja_buf_to_string(&text, out);
    }
    case JN_COMPARE: return eval_compare(ctx, n, out);
    case JN_COND:
        if ((st = eval(ctx, n->b, &a))) return st;
        bool take = jinja_truthy(a);
        jinja_release(a);
        if (take) return eval(ctx, n->a, out);
        if (n->c) return eval(ctx, n->c, out);
        *out = jinja_undefined("if-expression without else");
        return FM_OK;
    default: return jinja_fail(ctx, FM_ERR_FORMAT, "this expression is not supported here");
    }
}

static fm_status eval(jinja_ctx *ctx, const jinja_node *n, jinja_value *out) {
    fm_status st = enter(ctx);
    if (st) {
        *out = jinja_undefined(NULL);
        return st;
    }
    st = eval_node(ctx, n, out);
    ctx->eval_depth--;
    return st;
}

/* ---- statements ------------------------------------------------------------------------- */

/* Binds a for/set target: a name, a tuple of targets (unpacking), or ns.attr.
 * Steals value. */
static fm_status assign(jinja_ctx *ctx, const jinja_node *target, jinja_value value) {
    fm_status st;
    if (target->kind == JN_NAME) return scope_set(ctx->scope, target->name, value);
    if (target->kind == JN_ATTR) {
        jinja_value ns;
        if ((st = lookup(ctx, target->a->name, &ns))) {
            jinja_release(value);
            return st;
        }
        if (ns.type != JINJA_NAMESPACE) {
            jinja_release(ns);
            jinja_release(value);
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "cannot assign attribute '%s' on '%s': not a namespace",
                              target->name, target->a->name);
        }
        jinja_value key;
        if (!(st = jinja_string_new(target->name, strlen(target->name), &key)))
            st = jinja_dict_set(ns.as.dict, key, value);
        else
            jinja_release(value);
        jinja_release(ns);
        return st;
    }
    /* unpacking */
    jinja_value items;
    st = jinja_iterate(ctx, value, &items);
    jinja_release(value);
    if (st) return st;
    size_t want = (size_t)target->children.n, got = items.as.list->len;
    if (got != want) {
        jinja_release(items);
        return got > want
                   ? jinja_fail(ctx, FM_ERR_ARGUMENT, "too many values to unpack (expected %zu)", want)
                   : jinja_fail(ctx, FM_ERR_ARGUMENT, "not enough values to unpack (expected %zu, got %zu)", want, got);
    }
    for (size_t i = 0; i < want && !st; i++)
        st = assign(ctx, target->children.items[i], jinja_retain(items.as.list->items[i]));
    jinja_release(items);
    return st;
}

/* Runs `body` in a scope of its own with ctx->out redirected; the text
 * becomes a string value. ({% set %} and {% filter %} blocks: what they
 * assign stays inside, as in Jinja.) */
static fm_status capture(jinja_ctx *ctx, const jinja_node_list *body, jinja_value *out) {
    jinja_buf text = {0};
    jinja_buf *saved = ctx->out;
    jinja_scope scope = {.parent = ctx->scope};
    jinja_scope *saved_scope = ctx->scope;
    ctx->out = &text;
    ctx->scope = &scope;
    fm_status st = exec_body(ctx, body);
    ctx->out = saved;
    ctx->scope = saved_scope;
    scope_free(&scope);
    if (st) {
        jinja_buf_free(&text);
        return st;
    }
    return jinja_buf_to_string(&text, out);
}

static fm_status exec_for(jinja_ctx *ctx, const jinja_node *n) {
    jinja_value iterable, items;
    fm_status st = eval(ctx, n->b, &iterable);
    if (st) return st;
    ctx->line = n->line;
    st = jinja_iterate(ctx, iterable, &items);
    jinja_release(iterable);
    if (st) return st;
    jinja_scope scope = {.parent = ctx->scope};
    jinja_scope *saved = ctx->scope;
    ctx->scope = &scope;
    if (n->c) {
        /* `for x in xs if cond`: filter first, so loop.length counts what is visited */
        jinja_value kept;
        st = jinja_list_new(0, false, &kept);
        for (size_t i = 0; i < items.as.list->len && !st; i++) {
            jinja_value cond, item = items.as.list->items[i];
            scope_clear(&scope);
            if ((st = assign(ctx, n->a, jinja_retain(item))) || (st = eval(ctx, n->c, &cond))) break;
            if (jinja_truthy(cond)) st = jinja_list_push(kept.as.list, jinja_retain(item));
            jinja_release(cond);
        }
        jinja_release(items);
        items = kept;
    }
    size_t length = st ? 0 : items.as.list->len;
    for (size_t i = 0; i < length && !st; i++) {
        scope_clear(&scope);
        jinja_value loop;
        /* an iteration allocates and binds: count it as a few nodes */
        if ((st = jinja_charge(ctx, 4)) || (st = jinja_loop_new(items.as.list, i, length, &loop))) break;
        if ((st = scope_set(&scope, "loop", loop))) break;
        if ((st = assign(ctx, n->a, jinja_retain(items.as.list->items[i])))) break;
        st = exec_body(ctx, &n->body);
        jinja_flow flow = ctx->flow;
        ctx->flow = JINJA_FLOW_NORMAL;
        if (flow == JINJA_FLOW_BREAK) break;
    }
    scope_free(&scope);
    ctx->scope = saved;
    jinja_release(items);
    if (!st && length == 0 && n->else_body.n) {
        jinja_scope else_scope = {.parent = ctx->scope};
        ctx->scope = &else_scope;
        st = exec_body(ctx, &n->else_body);
        ctx->scope = saved;
        scope_free(&else_scope);
    }
    return st;
}

/* Runs body in a scope of its own, after binding `bindings` (JN_KWARG nodes). */
static fm_status exec_scoped(jinja_ctx *ctx, const jinja_node_list *bindings, const jinja_node_list *body) {
    jinja_scope scope = {.parent = ctx->scope};
    jinja_scope *saved = ctx->scope;
    ctx->scope = &scope;
    fm_status st = FM_OK;
    for (int i = 0; bindings && i < bindings->n && !st; i++) {
        jinja_value v;
        if (!(st = eval(ctx, bindings->items[i]->a, &v))) st = scope_set(&scope, bindings->items[i]->name, v);
    }
    if (!st) st = exec_body(ctx, body);
    ctx->scope = saved;
    scope_free(&scope);
    return st;
}

static fm_status exec_node(jinja_ctx *ctx, const jinja_node *n) {
    ctx->line = n->line;
    fm_status st = jinja_charge(ctx, 1);
    if (st) return st;
    jinja_value v;
    switch (n->kind) {
    case JN_TEXT: return jinja_buf_append(ctx->out, n->text, n->len);
    case JN_OUTPUT:
        if ((st = eval(ctx, n->a, &v))) return st;
        st = jinja_to_text(v, ctx->out);
        jinja_release(v);
        return st;
    case JN_IF:
        for (int i = 0; i < n->children.n; i++) {
            const jinja_node *branch = n->children.items[i];
            bool take = true;
            if (branch->a) {
                if ((st = eval(ctx, branch->a, &v))) return st;
                take = jinja_truthy(v);
                jinja_release(v);
            }
            if (take) return exec_body(ctx, &branch->body);
        }
        return FM_OK;
    case JN_FOR: return exec_for(ctx, n);
    case JN_SET:
        if ((st = eval(ctx, n->b, &v))) return st;
        return assign(ctx, n->a, v);
    case JN_SET_BLOCK:
        if ((st = capture(ctx, &n->body, &v))) return st;
        if (n->c) {
            jinja_value filtered;
            st = eval_filter(ctx, n->c, &v, &filtered);
            jinja_release(v);
            if (st) return st;
            v = filtered;
        }
        return assign(ctx, n->a, v);
    case JN_MACRO:
        if ((st = jinja_callable_new(JINJA_FN_MACRO, n->name, jinja_none(), n, &v))) return st;
        return scope_set(ctx->scope, n->name, v);
    case JN_BREAK: ctx->flow = JINJA_FLOW_BREAK; return FM_OK;
    case JN_CONTINUE: ctx->flow = JINJA_FLOW_CONTINUE; return FM_OK;
    case JN_WITH: return exec_scoped(ctx, &n->children, &n->body);
    case JN_SCOPE: return exec_scoped(ctx, NULL, &n->body);
    case JN_FILTER_BLOCK: {
        if ((st = capture(ctx, &n->body, &v))) return st;
        jinja_value filtered;
        st = eval_filter(ctx, n->a, &v, &filtered);
        jinja_release(v);
        if (st) return st;
        st = jinja_to_text(filtered, ctx->out);
        jinja_release(filtered);
        return st;
    }
    default: return jinja_fail(ctx, FM_ERR_FORMAT, "this statement is not supported here");
    }
}

static fm_status exec_stmt(jinja_ctx *ctx, const jinja_node *n) {
    fm_status st = enter(ctx);
    if (st) return st;
    st = exec_node(ctx, n);
    ctx->eval_depth--;
    return st;
}

static fm_status exec_body(jinja_ctx *ctx, const jinja_node_list *body) {
    for (int i = 0; i < body->n; i++) {
        fm_status st = exec_stmt(ctx, body->items[i]);
        if (st) return st;
        if (ctx->flow != JINJA_FLOW_NORMAL) return FM_OK; /* break / continue unwinds to the loop */
    }
    return FM_OK;
}

fm_status jinja_template_render(const jinja_template *t, const jinja_dict *globals, size_t input_bytes, char **out,
                                size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    jinja_buf text = {0};
    jinja_scope top = {0};
    jinja_value namespaces;
    fm_status st = jinja_list_new(0, false, &namespaces);
    if (st) return st;
    jinja_ctx ctx = {.globals = globals,
                     .out = &text,
                     .scope = &top,
                     .top = &top,
                     .namespaces = namespaces.as.list,
                     .max_steps = JINJA_MAX_STEPS + JINJA_STEPS_PER_INPUT_BYTE * (uint64_t)input_bytes,
                     .allocation_work_seen = jinja_allocation_work()};
    st = exec_body(&ctx, &t->body);
    scope_free(&top);
    /* Empty every namespace first: one may hold itself or another. */
    for (size_t i = 0; i < namespaces.as.list->len; i++) jinja_dict_clear(namespaces.as.list->items[i].as.dict);
    jinja_release(namespaces);
    if (st) {
        jinja_buf_free(&text);
        if (!ctx.raised) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", fm_last_error());
            fm_error(st, "chat template line %d: %s", ctx.line, msg);
        }
        return st;
    }
    if (!text.data && (st = jinja_buf_append(&text, "", 0))) return st;
    *out = text.data;
    *out_len = text.len;
    return FM_OK;
}

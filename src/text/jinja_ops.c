/* Operator semantics of the chat-template interpreter, as Python defines
 * them and Jinja applies them: arithmetic (int overflow is an error where
 * Python would grow the int), comparisons and `in`, iteration, len(), and
 * Jinja's attribute/item lookup, where anything missing is undefined and
 * only using an undefined value (not printing or testing it) is an error. */
#include "text/jinja_runtime.h"

#include "text/jinja_unicode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_intlike(jinja_value v) { return v.type == JINJA_INT || v.type == JINJA_BOOL; }
static bool is_number(jinja_value v) { return is_intlike(v) || v.type == JINJA_FLOAT; }
static int64_t as_int(jinja_value v) { return v.type == JINJA_BOOL ? v.as.boolean : v.as.integer; }
static double as_double(jinja_value v) { return v.type == JINJA_FLOAT ? v.as.number : (double)as_int(v); }

static fm_status undefined_error(jinja_ctx *ctx, jinja_value v) {
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' is undefined", v.as.hint ? v.as.hint : "value");
}

static const char *op_symbol(int op) {
    switch (op) {
    case JOP_ADD: return "+";
    case JOP_SUB: return "-";
    case JOP_MUL: return "*";
    case JOP_DIV: return "/";
    case JOP_FLOORDIV: return "//";
    case JOP_MOD: return "%";
    case JOP_POW: return "**";
    case JOP_LT: return "<";
    case JOP_LE: return "<=";
    case JOP_GT: return ">";
    case JOP_GE: return ">=";
    default: return "?";
    }
}

static fm_status operand_error(jinja_ctx *ctx, int op, jinja_value a, jinja_value b) {
    if (op == JOP_ADD && a.type == JINJA_STRING)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "can only concatenate str (not \"%s\") to str", jinja_type_name(b));
    if (op == JOP_ADD && a.type == JINJA_LIST)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "can only concatenate %s (not \"%s\") to %s", jinja_type_name(a),
                          jinja_type_name(b), jinja_type_name(a));
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "unsupported operand type(s) for %s: '%s' and '%s'", op_symbol(op),
                      jinja_type_name(a), jinja_type_name(b));
}

static fm_status overflow_error(jinja_ctx *ctx) {
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "integer result does not fit in 64 bits");
}

/* Python's float divmod: the remainder takes the divisor's sign. */
static void float_divmod(double x, double y, double *div_out, double *mod_out) {
    double mod = fmod(x, y), div = (x - mod) / y;
    if (mod != 0) {
        if ((y < 0) != (mod < 0)) {
            mod += y;
            div -= 1.0;
        }
    } else {
        mod = copysign(0.0, y);
    }
    double floordiv;
    if (div != 0) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, x / y);
    }
    *div_out = floordiv;
    *mod_out = mod;
}

static fm_status repeat(jinja_ctx *ctx, jinja_value seq, int64_t times, jinja_value *out) {
    if (times < 0) times = 0;
    if (seq.type == JINJA_STRING) {
        size_t len = seq.as.str->len;
        if (len && (uint64_t)times > JINJA_MAX_TEXT / len)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "string longer than %u MiB", JINJA_MAX_TEXT >> 20);
        fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(len * (size_t)times));
        size_t total = len * (size_t)times;
        if (st || (st = jinja_string_alloc(total, out)) || !total) return st;
        /* one copy, then double what is there */
        memcpy(out->as.str->data, seq.as.str->data, len);
        for (size_t done = len; done < total;) {
            size_t n = done < total - done ? done : total - done;
            memcpy(out->as.str->data + done, out->as.str->data, n);
            done += n;
        }
        return FM_OK;
    }
    size_t len = seq.as.list->len;
    if (len && (uint64_t)times > JINJA_MAX_ITEMS / len)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "list longer than %u items", JINJA_MAX_ITEMS);
    fm_status st = jinja_list_new(len * (size_t)times, seq.as.list->is_tuple, out);
    if (!st) st = jinja_charge(ctx, len * (size_t)times);
    for (int64_t i = 0; i < times && !st; i++)
        for (size_t k = 0; k < len && !st; k++) st = jinja_list_push(out->as.list, jinja_retain(seq.as.list->items[k]));
    if (st) jinja_clear(out);
    return st;
}

static fm_status int_pow(jinja_ctx *ctx, int64_t base, int64_t exp, jinja_value *out) {
    int64_t result = 1;
    while (exp > 0) {
        if ((exp & 1) && __builtin_mul_overflow(result, base, &result)) return overflow_error(ctx);
        exp >>= 1;
        if (exp && __builtin_mul_overflow(base, base, &base)) return overflow_error(ctx);
    }
    *out = jinja_int(result);
    return FM_OK;
}

fm_status jinja_binary(jinja_ctx *ctx, int op, jinja_value a, jinja_value b, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (op == JOP_MOD && a.type == JINJA_STRING) {
        /* printf-style; a list, dict or undefined on the right is one argument Python may leave unused */
        if (b.type == JINJA_LIST && b.as.list->is_tuple)
            return jinja_percent_format(ctx, a, b.as.list->items, (int)b.as.list->len, false, out);
        bool mapping_like = b.type == JINJA_LIST || b.type == JINJA_DICT || b.type == JINJA_UNDEFINED;
        return jinja_percent_format(ctx, a, &b, 1, mapping_like, out);
    }
    if (a.type == JINJA_UNDEFINED) return undefined_error(ctx, a);
    if (b.type == JINJA_UNDEFINED) return undefined_error(ctx, b);
    if (is_number(a) && is_number(b)) {
        bool ints = is_intlike(a) && is_intlike(b);
        int64_t x = ints ? as_int(a) : 0, y = ints ? as_int(b) : 0, r;
        double fx = as_double(a), fy = as_double(b), q, m;
        switch (op) {
        case JOP_ADD:
            if (!ints) return *out = jinja_float(fx + fy), FM_OK;
            if (__builtin_add_overflow(x, y, &r)) return overflow_error(ctx);
            return *out = jinja_int(r), FM_OK;
        case JOP_SUB:
            if (!ints) return *out = jinja_float(fx - fy), FM_OK;
            if (__builtin_sub_overflow(x, y, &r)) return overflow_error(ctx);
            return *out = jinja_int(r), FM_OK;
        case JOP_MUL:
            if (!ints) return *out = jinja_float(fx * fy), FM_OK;
            if (__builtin_mul_overflow(x, y, &r)) return overflow_error(ctx);
            return *out = jinja_int(r), FM_OK;
        case JOP_DIV:
            if (fy == 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "division by zero");
            return *out = jinja_float(fx / fy), FM_OK;
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (ints) {
                if (y == 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) {
                    if (op == JOP_MOD) return *out = jinja_int(0), FM_OK;
                    return overflow_error(ctx);
                }
                int64_t d = x / y, mod = x % y;
                if (mod != 0 && ((mod < 0) != (y < 0))) {
                    mod += y;
                    d -= 1;
                }
                return *out = jinja_int(op == JOP_MOD ? mod : d), FM_OK;
            }
            if (fy == 0)
                return jinja_fail(ctx, FM_ERR_ARGUMENT,
                                  op == JOP_MOD ? "float modulo" : "float floor division by zero");
            float_divmod(fx, fy, &q, &m);
            return *out = jinja_float(op == JOP_MOD ? m : q), FM_OK;
        case JOP_POW:
            if (ints && y >= 0) return int_pow(ctx, x, y, out);
            if (fx == 0 && fy < 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "0.0 cannot be raised to a negative power");
            if (fx < 0 && fy != floor(fy)) return jinja_fail(ctx, FM_ERR_ARGUMENT, "complex results are not supported");
            return *out = jinja_float(pow(fx, fy)), FM_OK;
        default: break;
        }
        return operand_error(ctx, op, a, b);
    }
    if (op == JOP_ADD && a.type == JINJA_STRING && b.type == JINJA_STRING) {
        fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(a.as.str->len + b.as.str->len));
        return st ? st : jinja_string_cat(a.as.str->data, a.as.str->len, b.as.str->data, b.as.str->len, out);
    }
    if (op == JOP_ADD && a.type == JINJA_LIST && b.type == JINJA_LIST && a.as.list->is_tuple == b.as.list->is_tuple) {
        size_t n = a.as.list->len + b.as.list->len;
        fm_status st = jinja_charge(ctx, n);
        if (!st) st = jinja_list_new(n, a.as.list->is_tuple, out);
        for (size_t i = 0; i < a.as.list->len && !st; i++)
            st = jinja_list_push(out->as.list, jinja_retain(a.as.list->items[i]));
        for (size_t i = 0; i < b.as.list->len && !st; i++)
            st = jinja_list_push(out->as.list, jinja_retain(b.as.list->items[i]));
        if (st) jinja_clear(out);
        return st;
    }
    if (op == JOP_MUL && (a.type == JINJA_STRING || a.type == JINJA_LIST) && is_intlike(b))
        return repeat(ctx, a, as_int(b), out);
    if (op == JOP_MUL && (b.type == JINJA_STRING || b.type == JINJA_LIST) && is_intlike(a))
        return repeat(ctx, b, as_int(a), out);
    return operand_error(ctx, op, a, b);
}

fm_status jinja_percent_format(jinja_ctx *ctx, jinja_value fmt, const jinja_value *args, int n_args, bool lenient,
                               jinja_value *out) {
    const char *s = fmt.as.str->data;
    size_t len = fmt.as.str->len;
    int next = 0;
    jinja_buf b = {0};
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(len));
    for (size_t i = 0; i < len && !st; i++) {
        if (s[i] != '%') {
            st = jinja_buf_putc(&b, s[i]);
            continue;
        }
        char c = i + 1 < len ? s[++i] : 0;
        if (c == '%') {
            st = jinja_buf_putc(&b, '%');
            continue;
        }
        if (c != 's' && c != 'r' && c != 'd' && c != 'i') {
            st = jinja_fail(ctx, FM_ERR_UNSUPPORTED, "printf-style formatting supports %%s %%r %%d %%i only");
            break;
        }
        if (next >= n_args) {
            st = jinja_fail(ctx, FM_ERR_ARGUMENT, "not enough arguments for format string");
            break;
        }
        jinja_value arg = args[next++];
        if (arg.type == JINJA_UNDEFINED && (c == 'd' || c == 'i')) {
            st = undefined_error(ctx, arg);
        } else if (c == 'd' || c == 'i') {
            if (arg.type == JINJA_FLOAT && isfinite(arg.as.number))
                st = jinja_buf_printf(&b, "%.0f", trunc(arg.as.number));
            else if (is_intlike(arg))
                st = jinja_buf_printf(&b, "%lld", (long long)as_int(arg));
            else
                st = jinja_fail(ctx, FM_ERR_ARGUMENT, "%%%c format: a real number is required, not %s", c,
                                jinja_type_name(arg));
        } else {
            st = c == 'r' ? jinja_repr(arg, &b) : jinja_to_text(arg, &b);
        }
    }
    if (!st && next < n_args && !lenient)
        st = jinja_fail(ctx, FM_ERR_ARGUMENT, "not all arguments converted during string formatting");
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

fm_status jinja_negate(jinja_ctx *ctx, jinja_value a, bool minus, jinja_value *out) {
    *out = jinja_undefined(NULL);
    if (a.type == JINJA_UNDEFINED) return undefined_error(ctx, a);
    if (a.type == JINJA_FLOAT) return *out = jinja_float(minus ? -a.as.number : a.as.number), FM_OK;
    if (is_intlike(a)) {
        int64_t x = as_int(a);
        if (minus && x == INT64_MIN) return overflow_error(ctx);
        return *out = jinja_int(minus ? -x : x), FM_OK;
    }
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "bad operand type for unary %s: '%s'", minus ? "-" : "+",
                      jinja_type_name(a));
}

/* ---- comparison ------------------------------------------------------------------ */

static bool cmp_result(int op, int sign) {
    switch (op) {
    case JOP_LT: return sign < 0;
    case JOP_LE: return sign <= 0;
    case JOP_GT: return sign > 0;
    case JOP_GE: return sign >= 0;
    default: return false;
    }
}

static fm_status order(jinja_ctx *ctx, int op, jinja_value a, jinja_value b, bool *out) {
    *out = false;
    if (a.type == JINJA_UNDEFINED) return undefined_error(ctx, a);
    if (b.type == JINJA_UNDEFINED) return undefined_error(ctx, b);
    if (is_number(a) && is_number(b)) {
        if (is_intlike(a) && is_intlike(b)) {
            int64_t x = as_int(a), y = as_int(b);
            *out = cmp_result(op, (x > y) - (x < y));
        } else {
            double x = as_double(a), y = as_double(b);
            *out = (x == x && y == y) && cmp_result(op, (x > y) - (x < y)); /* NaN compares false */
        }
        return FM_OK;
    }
    if (a.type == JINJA_STRING && b.type == JINJA_STRING) {
        /* UTF-8 byte order is code-point order */
        size_t n = a.as.str->len < b.as.str->len ? a.as.str->len : b.as.str->len;
        int c = memcmp(a.as.str->data, b.as.str->data, n);
        if (!c) c = (a.as.str->len > b.as.str->len) - (a.as.str->len < b.as.str->len);
        *out = cmp_result(op, c);
        return FM_OK;
    }
    if (a.type == JINJA_LIST && b.type == JINJA_LIST && a.as.list->is_tuple == b.as.list->is_tuple) {
        const jinja_list *x = a.as.list, *y = b.as.list;
        for (size_t i = 0; i < x->len && i < y->len; i++)
            if (!jinja_equal(x->items[i], y->items[i])) return order(ctx, op, x->items[i], y->items[i], out);
        *out = cmp_result(op, (x->len > y->len) - (x->len < y->len));
        return FM_OK;
    }
    return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' not supported between instances of '%s' and '%s'", op_symbol(op),
                      jinja_type_name(a), jinja_type_name(b));
}

static fm_status contains(jinja_ctx *ctx, jinja_value container, jinja_value needle, bool *out) {
    *out = false;
    switch (container.type) {
    case JINJA_UNDEFINED: return FM_OK; /* iterating undefined yields nothing */
    case JINJA_STRING:
        if (needle.type != JINJA_STRING)
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "'in <string>' requires string as left operand, not %s",
                              jinja_type_name(needle));
        *out = memmem(container.as.str->data, container.as.str->len, needle.as.str->data, needle.as.str->len) != NULL;
        return jinja_charge(ctx, JINJA_TEXT_COST(container.as.str->len));
    case JINJA_LIST: {
        uint64_t work = 0;
        for (size_t i = 0; i < container.as.list->len && !*out; i++)
            *out = jinja_equal_work(container.as.list->items[i], needle, &work);
        return jinja_charge(ctx, work);
    }
    case JINJA_DICT:
        if (!jinja_is_hashable(needle))
            return jinja_fail(ctx, FM_ERR_ARGUMENT, "unhashable type: '%s'", jinja_type_name(needle));
        *out = jinja_dict_get(container.as.dict, needle) != NULL;
        return FM_OK;
    default:
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "argument of type '%s' is not iterable", jinja_type_name(container));
    }
}

fm_status jinja_compare(jinja_ctx *ctx, int op, jinja_value a, jinja_value b, bool *out) {
    *out = false;
    switch (op) {
    case JOP_EQ:
    case JOP_NE: {
        uint64_t work = 0;
        *out = jinja_equal_work(a, b, &work) == (op == JOP_EQ);
        return jinja_charge(ctx, work);
    }
    case JINJA_CMP_IN: return contains(ctx, b, a, out);
    case JINJA_CMP_NOT_IN: {
        fm_status st = contains(ctx, b, a, out);
        *out = !*out;
        return st;
    }
    default: return order(ctx, op, a, b, out);
    }
}

fm_status jinja_less(jinja_ctx *ctx, jinja_value a, jinja_value b, bool *less) {
    return order(ctx, JOP_LT, a, b, less);
}

/* ---- iteration and length ------------------------------------------------------------ */

fm_status jinja_iterate(jinja_ctx *ctx, jinja_value v, jinja_value *out) {
    *out = jinja_undefined(NULL);
    fm_status st;
    switch (v.type) {
    case JINJA_LIST: *out = jinja_retain(v); return FM_OK;
    case JINJA_UNDEFINED: return jinja_list_new(0, false, out);
    case JINJA_DICT:
        if ((st = jinja_charge(ctx, v.as.dict->len)) || (st = jinja_list_new(v.as.dict->len, false, out))) return st;
        for (size_t i = 0; i < v.as.dict->len && !st; i++)
            st = jinja_list_push(out->as.list, jinja_retain(v.as.dict->keys[i]));
        break;
    case JINJA_STRING: {
        const char *s = v.as.str->data;
        size_t len = v.as.str->len;
        if ((st = jinja_charge(ctx, len)) || (st = jinja_list_new(0, false, out))) return st;
        for (size_t i = 0, n; i < len && !st; i += n) {
            jinja_value ch;
            jinja_utf8_decode(s + i, len - i, &n);
            if (!(st = jinja_string_new(s + i, n, &ch))) st = jinja_list_push(out->as.list, ch);
        }
        break;
    }
    default: return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object is not iterable", jinja_type_name(v));
    }
    if (st) jinja_clear(out);
    return st;
}

fm_status jinja_length(jinja_ctx *ctx, jinja_value v, int64_t *out) {
    *out = 0;
    switch (v.type) {
    case JINJA_UNDEFINED: return FM_OK;
    case JINJA_STRING:
        *out = (int64_t)jinja_utf8_count(v.as.str->data, v.as.str->len);
        return jinja_charge(ctx, JINJA_TEXT_COST(v.as.str->len));
    case JINJA_LIST: *out = (int64_t)v.as.list->len; return FM_OK;
    case JINJA_DICT: *out = (int64_t)v.as.dict->len; return FM_OK;
    default: return jinja_fail(ctx, FM_ERR_ARGUMENT, "object of type '%s' has no len()", jinja_type_name(v));
    }
}

/* ---- attribute and item access ----------------------------------------------------- */

static fm_status loop_field(jinja_ctx *ctx, const jinja_loop *loop, const char *name, jinja_value *out) {
    (void)ctx;
    int64_t i = (int64_t)loop->index0, n = (int64_t)loop->length;
    if (!strcmp(name, "index0"))
        *out = jinja_int(i);
    else if (!strcmp(name, "index"))
        *out = jinja_int(i + 1);
    else if (!strcmp(name, "revindex"))
        *out = jinja_int(n - i);
    else if (!strcmp(name, "revindex0"))
        *out = jinja_int(n - i - 1);
    else if (!strcmp(name, "first"))
        *out = jinja_bool(i == 0);
    else if (!strcmp(name, "last"))
        *out = jinja_bool(i == n - 1);
    else if (!strcmp(name, "length"))
        *out = jinja_int(n);
    else if (!strcmp(name, "depth"))
        *out = jinja_int(1);
    else if (!strcmp(name, "depth0"))
        *out = jinja_int(0);
    else if (!strcmp(name, "previtem"))
        *out = i > 0 ? jinja_retain(loop->items->items[i - 1]) : jinja_undefined("previtem");
    else if (!strcmp(name, "nextitem"))
        *out = i + 1 < n ? jinja_retain(loop->items->items[i + 1]) : jinja_undefined("nextitem");
    else
        *out = jinja_undefined(name);
    return FM_OK;
}

fm_status jinja_get_attr(jinja_ctx *ctx, jinja_value obj, const char *name, jinja_value *out) {
    *out = jinja_undefined(name);
    if (obj.type == JINJA_UNDEFINED) return undefined_error(ctx, obj);
    const char *method = jinja_method_name(obj, name);
    if (method) return jinja_callable_new(JINJA_FN_METHOD, method, obj, NULL, out);
    if (obj.type == JINJA_LOOP) return loop_field(ctx, obj.as.loop, name, out);
    if (obj.type == JINJA_DICT || obj.type == JINJA_NAMESPACE) {
        const jinja_value *v = jinja_dict_get_str(obj.as.dict, name);
        if (v) *out = jinja_retain(*v);
    }
    return FM_OK;
}

static bool index_of(int64_t i, size_t len, size_t *at) {
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len) return false;
    *at = (size_t)i;
    return true;
}

fm_status jinja_get_item(jinja_ctx *ctx, jinja_value obj, jinja_value key, jinja_value *out) {
    *out = jinja_undefined("item");
    size_t at;
    switch (obj.type) {
    case JINJA_UNDEFINED: return undefined_error(ctx, obj);
    case JINJA_LIST:
        if (is_intlike(key)) {
            if (index_of(as_int(key), obj.as.list->len, &at)) *out = jinja_retain(obj.as.list->items[at]);
            return FM_OK;
        }
        break;
    case JINJA_STRING:
        if (is_intlike(key)) {
            fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(obj.as.str->len));
            if (st) return st;
            size_t n = jinja_utf8_count(obj.as.str->data, obj.as.str->len);
            if (index_of(as_int(key), n, &at)) return jinja_substring(obj, at, at + 1, out);
            return FM_OK;
        }
        break;
    case JINJA_DICT:
    case JINJA_NAMESPACE:
        if (jinja_is_hashable(key)) {
            const jinja_value *v = jinja_dict_get(obj.as.dict, key);
            if (v) {
                *out = jinja_retain(*v);
                return FM_OK;
            }
        }
        break;
    default: break;
    }
    /* Jinja falls back to the attribute of that name (so d['items'] finds the method). */
    if (key.type == JINJA_STRING) {
        fm_status st = jinja_get_attr(ctx, obj, key.as.str->data, out);
        if (!st && out->type == JINJA_UNDEFINED) out->as.hint = "item"; /* the key's text dies with the key */
        return st;
    }
    return FM_OK;
}

fm_status jinja_substring(jinja_value s, size_t from_cp, size_t to_cp, jinja_value *out) {
    const char *data = s.as.str->data;
    size_t len = s.as.str->len;
    size_t from = jinja_utf8_offset(data, len, from_cp);
    size_t to = from + jinja_utf8_offset(data + from, len - from, to_cp - from_cp);
    return jinja_string_new(data + from, to - from, out);
}

/* Python's slice.indices(): clamps start/stop for `length` items. */
static void slice_indices(int64_t length, const int64_t *start_in, const int64_t *stop_in, int64_t step, int64_t *start,
                          int64_t *count) {
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? length : length - 1;
    int64_t bounds[2];
    const int64_t *given[2] = {start_in, stop_in};
    for (int k = 0; k < 2; k++) {
        if (!given[k]) {
            bounds[k] = (k == 0) == (step < 0) ? upper : lower;
            continue;
        }
        int64_t v = *given[k];
        if (v < 0) {
            v = v < -length ? lower : v + length;
            if (v < lower) v = lower;
        } else if (v > upper) {
            v = upper;
        }
        bounds[k] = v;
    }
    *start = bounds[0];
    if (step > 0)
        *count = bounds[1] > bounds[0] ? (bounds[1] - bounds[0] - 1) / step + 1 : 0;
    else
        *count = bounds[0] > bounds[1] ? (bounds[0] - bounds[1] - 1) / (-step) + 1 : 0;
}

fm_status jinja_slice(jinja_ctx *ctx, jinja_value obj, jinja_value start, jinja_value stop, jinja_value step,
                      jinja_value *out) {
    /* Jinja slices with Python's own subscript, not its forgiving getitem:
     * what Python refuses is an error here too. */
    *out = jinja_undefined("slice");
    if (obj.type == JINJA_UNDEFINED) return undefined_error(ctx, obj);
    if (obj.type == JINJA_DICT) return jinja_fail(ctx, FM_ERR_ARGUMENT, "unhashable type: 'slice'");
    if (obj.type != JINJA_LIST && obj.type != JINJA_STRING)
        return jinja_fail(ctx, FM_ERR_ARGUMENT, "'%s' object is not subscriptable", jinja_type_name(obj));
    jinja_value parts[3] = {start, stop, step};
    int64_t values[3];
    for (int i = 0; i < 3; i++) {
        if (parts[i].type == JINJA_NONE) continue;
        if (!is_intlike(parts[i]))
            return jinja_fail(ctx, FM_ERR_ARGUMENT,
                              "slice indices must be integers or None or have an __index__ method");
        values[i] = as_int(parts[i]);
    }
    int64_t step_v = step.type == JINJA_NONE ? 1 : values[2];
    if (step_v == 0) return jinja_fail(ctx, FM_ERR_ARGUMENT, "slice step cannot be zero");
    if (step_v == INT64_MIN) step_v = -INT64_MAX;
    const char *data = obj.type == JINJA_STRING ? obj.as.str->data : NULL;
    size_t byte_len = obj.type == JINJA_STRING ? obj.as.str->len : 0;
    int64_t length = obj.type == JINJA_LIST ? (int64_t)obj.as.list->len : (int64_t)jinja_utf8_count(data, byte_len);
    int64_t first, count;
    fm_status st = jinja_charge(ctx, JINJA_TEXT_COST(byte_len));
    if (st) return st;
    slice_indices(length, start.type == JINJA_NONE ? NULL : &values[0], stop.type == JINJA_NONE ? NULL : &values[1],
                  step_v, &first, &count);
    if ((st = jinja_charge(ctx, (uint64_t)count))) return st;
    if (obj.type == JINJA_LIST) {
        if ((st = jinja_list_new((size_t)count, obj.as.list->is_tuple, out))) return st;
        for (int64_t k = 0; k < count && !st; k++)
            st = jinja_list_push(out->as.list, jinja_retain(obj.as.list->items[first + k * step_v]));
        if (st) jinja_clear(out);
        return st;
    }
    if (step_v == 1) return jinja_substring(obj, (size_t)first, (size_t)(first + count), out);
    /* Any other step: index the characters once, then pick. */
    size_t *offsets = malloc(((size_t)length + 1) * sizeof *offsets);
    if (!offsets) return jinja_fail(ctx, FM_ERR_NOMEM, "out of memory");
    size_t i = 0, n;
    for (int64_t k = 0; k < length; k++, i += n) {
        offsets[k] = i;
        jinja_utf8_decode(data + i, byte_len - i, &n);
    }
    offsets[length] = byte_len;
    jinja_buf b = {0};
    for (int64_t k = 0; k < count && !st; k++) {
        int64_t c = first + k * step_v;
        st = jinja_buf_append(&b, data + offsets[c], offsets[c + 1] - offsets[c]);
    }
    free(offsets);
    if (st) {
        jinja_buf_free(&b);
        return st;
    }
    return jinja_buf_to_string(&b, out);
}

/* Parser of the chat-template interpreter: Jinja's grammar (precedence,
 * tuples without parentheses, tests taking one bare argument, the
 * statements chat templates use) over the tokens of jinja_lexer.c, into the
 * syntax tree of jinja_ast.h. Every node is also recorded in a flat list so
 * that freeing (and cleaning up after an error) needs no recursion. */
#include "text/jinja_ast.h"

#include "core/error.h"
#include "text/jinja_lexer.h"
#include "text/jinja_runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const jinja_token *tokens;
    size_t pos;
    int depth;      /* recursion of the parser itself */
    int loop_depth; /* enclosing for loops (break/continue), reset in macros */
    fm_status status;
    jinja_node **nodes; /* every node made, for freeing */
    size_t n_nodes, cap_nodes;
} parser;

/* ---- tokens ------------------------------------------------------------------ */

static const jinja_token *cur(const parser *p) { return &p->tokens[p->pos]; }
static const jinja_token *peek(const parser *p) {
    return p->tokens[p->pos].kind == JT_EOF ? &p->tokens[p->pos] : &p->tokens[p->pos + 1];
}
static void next(parser *p) {
    if (p->tokens[p->pos].kind != JT_EOF) p->pos++;
}
static bool tok_is_name(const jinja_token *t, const char *name) {
    return t->kind == JT_NAME && t->len == strlen(name) && !memcmp(t->text, name, t->len);
}
static bool tok_is_op(const jinja_token *t, jinja_op op) { return t->kind == JT_OP && t->op == op; }
static bool at_name(const parser *p, const char *name) { return tok_is_name(cur(p), name); }
static bool at_op(const parser *p, jinja_op op) { return tok_is_op(cur(p), op); }

static void describe(const jinja_token *t, char *buf, size_t size) {
    switch (t->kind) {
    case JT_EOF: snprintf(buf, size, "end of template"); break;
    case JT_TEXT: snprintf(buf, size, "template text"); break;
    case JT_VAR_BEGIN: snprintf(buf, size, "'{{'"); break;
    case JT_VAR_END: snprintf(buf, size, "'}}'"); break;
    case JT_BLOCK_BEGIN: snprintf(buf, size, "'{%%'"); break;
    case JT_BLOCK_END: snprintf(buf, size, "'%%}'"); break;
    case JT_NAME: snprintf(buf, size, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text); break;
    case JT_STRING: snprintf(buf, size, "a string"); break;
    case JT_INT:
    case JT_FLOAT: snprintf(buf, size, "a number"); break;
    case JT_OP: snprintf(buf, size, "'%s'", jinja_op_text(t->op)); break;
    }
}

static void *fail_at(parser *p, const jinja_token *t, fm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void *fail_at(parser *p, const jinja_token *t, fm_status status, const char *fmt, ...) {
    if (p->status) return NULL; /* keep the first error */
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->status = fm_error(status, "chat template line %d column %d: %s", t->line, t->col, msg);
    return NULL;
}

static void *fail_expected(parser *p, const char *what) {
    char got[64];
    describe(cur(p), got, sizeof got);
    return fail_at(p, cur(p), FM_ERR_FORMAT, "expected %s, got %s", what, got);
}

static void *fail_nomem(parser *p) {
    if (!p->status) p->status = fm_error(FM_ERR_NOMEM, "out of memory");
    return NULL;
}

static bool expect_op(parser *p, jinja_op op) {
    if (at_op(p, op)) {
        next(p);
        return true;
    }
    char what[16];
    snprintf(what, sizeof what, "'%s'", jinja_op_text(op));
    fail_expected(p, what);
    return false;
}

static bool expect_kind(parser *p, jinja_token_kind kind, const char *what) {
    if (cur(p)->kind == kind) {
        next(p);
        return true;
    }
    fail_expected(p, what);
    return false;
}

static bool expect_block_end(parser *p) { return expect_kind(p, JT_BLOCK_END, "'%}'"); }

static bool enter(parser *p) {
    if (++p->depth <= JINJA_MAX_NESTING) return true;
    fail_at(p, cur(p), FM_ERR_FORMAT, "nested more than %d levels deep", JINJA_MAX_NESTING);
    return false;
}
static void leave(parser *p) { p->depth--; }

/* ---- nodes -------------------------------------------------------------------- */

static jinja_node *node_new(parser *p, jinja_node_kind kind, const jinja_token *at) {
    if (p->n_nodes == p->cap_nodes) {
        size_t cap = p->cap_nodes ? p->cap_nodes * 2 : 64;
        jinja_node **nodes = realloc(p->nodes, cap * sizeof *nodes);
        if (!nodes) return fail_nomem(p);
        p->nodes = nodes;
        p->cap_nodes = cap;
    }
    jinja_node *n = calloc(1, sizeof *n);
    if (!n) return fail_nomem(p);
    p->nodes[p->n_nodes++] = n;
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    n->op = -1;
    return n;
}

static bool list_push(parser *p, jinja_node_list *l, jinja_node *n) {
    if (!n) return false;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        jinja_node **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return fail_nomem(p), false;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = n;
    return true;
}

static int max_depth(int d, const jinja_node *n) { return n && n->depth > d ? n->depth : d; }

/* Records how deep an expression nests; the evaluator recurses that far. */
static jinja_node *finish(parser *p, jinja_node *n) {
    if (!n) return NULL;
    int d = max_depth(max_depth(max_depth(0, n->a), n->b), n->c);
    for (int i = 0; i < n->children.n; i++) d = max_depth(d, n->children.items[i]);
    for (int i = 0; i < n->kwargs.n; i++) d = max_depth(d, n->kwargs.items[i]);
    n->depth = d + 1;
    if (n->depth > JINJA_MAX_NESTING) {
        const jinja_token at = {.line = n->line, .col = n->col};
        return fail_at(p, &at, FM_ERR_FORMAT, "expression nested more than %d levels deep", JINJA_MAX_NESTING);
    }
    return n;
}

static char *copy_text(parser *p, const char *s, size_t len) {
    char *c = malloc(len + 1);
    if (!c) return fail_nomem(p);
    memcpy(c, s, len);
    c[len] = 0;
    return c;
}

static void node_free(jinja_node *n) {
    free(n->name);
    free(n->children.items);
    free(n->kwargs.items);
    free(n->body.items);
    free(n->else_body.items);
    if (n->value.type == JINJA_STRING) jinja_free_immortal(n->value);
    free(n);
}

/* ---- expressions ----------------------------------------------------------------- */

static jinja_node *parse_expression(parser *p, bool with_condexpr);
static jinja_node *parse_or(parser *p);
static jinja_node *parse_unary(parser *p, bool with_filter);
static jinja_node *parse_primary(parser *p);
static jinja_node *parse_postfix(parser *p, jinja_node *n);

static jinja_node *binary_node(parser *p, jinja_node_kind kind, int op, const jinja_token *at, jinja_node *a,
                               jinja_node *b) {
    if (!a || !b) return NULL;
    jinja_node *n = node_new(p, kind, at);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return finish(p, n);
}

/* A tuple when commas appear ("a, b"), else the single expression. An empty
 * tuple is allowed only inside parentheses. */
static jinja_node *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens, const char *extra_end) {
    const jinja_token *start = cur(p);
    jinja_node *t = node_new(p, JN_TUPLE, start);
    if (!t) return NULL;
    bool is_tuple = false;
    for (;;) {
        if (t->children.n && !expect_op(p, JOP_COMMA)) return NULL;
        jinja_token_kind k = cur(p)->kind;
        if (k == JT_VAR_END || k == JT_BLOCK_END || at_op(p, JOP_RPAREN) || (extra_end && at_name(p, extra_end))) break;
        if (!list_push(p, &t->children, parse_expression(p, with_condexpr))) return NULL;
        if (!at_op(p, JOP_COMMA)) break;
        is_tuple = true;
    }
    if (!is_tuple) {
        if (t->children.n) return t->children.items[0];
        if (!explicit_parens) return fail_expected(p, "an expression");
    }
    return finish(p, t);
}

static bool parse_call_args(parser *p, jinja_node *n) {
    if (!expect_op(p, JOP_LPAREN)) return false;
    while (!at_op(p, JOP_RPAREN)) {
        if (n->children.n + n->kwargs.n > 0) {
            if (!expect_op(p, JOP_COMMA)) return false;
            if (at_op(p, JOP_RPAREN)) break;
        }
        if (at_op(p, JOP_MUL) || at_op(p, JOP_POW))
            return fail_at(p, cur(p), FM_ERR_UNSUPPORTED, "*args and **kwargs in calls are not supported"), false;
        if (cur(p)->kind == JT_NAME && tok_is_op(peek(p), JOP_ASSIGN)) {
            jinja_node *kw = node_new(p, JN_KWARG, cur(p));
            if (!kw || !(kw->name = copy_text(p, cur(p)->text, cur(p)->len))) return false;
            next(p);
            next(p);
            kw->a = parse_expression(p, true);
            if (!kw->a || !list_push(p, &n->kwargs, finish(p, kw))) return false;
        } else {
            if (n->kwargs.n)
                return fail_at(p, cur(p), FM_ERR_FORMAT, "positional argument after a keyword argument"), false;
            if (!list_push(p, &n->children, parse_expression(p, true))) return false;
        }
    }
    next(p);
    return true;
}

/* A filter or test name: NAME ('.' NAME)*. */
static char *parse_dotted_name(parser *p) {
    if (cur(p)->kind != JT_NAME) return fail_expected(p, "a name");
    size_t start_pos = p->pos;
    size_t total = cur(p)->len;
    next(p);
    while (at_op(p, JOP_DOT) && peek(p)->kind == JT_NAME) {
        next(p);
        total += 1 + cur(p)->len;
        next(p);
    }
    char *name = malloc(total + 1);
    if (!name) return fail_nomem(p);
    size_t n = 0;
    for (size_t i = start_pos; i < p->pos; i++) {
        const jinja_token *t = &p->tokens[i];
        if (t->kind == JT_NAME)
            memcpy(name + n, t->text, t->len), n += t->len;
        else
            name[n++] = '.';
    }
    name[n] = 0;
    return name;
}

/* `subject | name(args)`; subject may be NULL (filter blocks). */
static jinja_node *parse_filter(parser *p, jinja_node *subject) {
    jinja_node *f = node_new(p, JN_FILTER, cur(p));
    if (!f || !(f->name = parse_dotted_name(p))) return NULL;
    f->a = subject;
    f->op = jinja_filter_find(f->name);
    if (at_op(p, JOP_LPAREN) && !parse_call_args(p, f)) return NULL;
    return finish(p, f);
}

static jinja_node *parse_test(parser *p, jinja_node *subject) {
    jinja_node *t = node_new(p, JN_TEST, cur(p));
    if (!t) return NULL;
    next(p); /* is */
    if (at_name(p, "not")) {
        next(p);
        t->negated = true;
    }
    if (!(t->name = parse_dotted_name(p))) return NULL;
    t->a = subject;
    t->op = jinja_test_find(t->name);
    const jinja_token *c = cur(p);
    if (at_op(p, JOP_LPAREN)) {
        if (!parse_call_args(p, t)) return NULL;
    } else if ((c->kind == JT_NAME || c->kind == JT_STRING || c->kind == JT_INT || c->kind == JT_FLOAT ||
                tok_is_op(c, JOP_LBRACKET) || tok_is_op(c, JOP_LBRACE)) &&
               !at_name(p, "else") && !at_name(p, "or") && !at_name(p, "and")) {
        /* Jinja lets a test take one argument without parentheses: x is divisibleby 3 */
        if (at_name(p, "is")) return fail_at(p, c, FM_ERR_FORMAT, "tests cannot be chained with 'is'");
        jinja_node *arg = parse_primary(p);
        if (!list_push(p, &t->children, parse_postfix(p, arg))) return NULL;
    }
    return finish(p, t);
}

static jinja_node *parse_subscript(parser *p) {
    const jinja_token *start = cur(p);
    jinja_node *lo = NULL, *hi = NULL, *step = NULL;
    if (at_op(p, JOP_COLON)) {
        next(p);
    } else {
        if (!(lo = parse_expression(p, true))) return NULL;
        if (!at_op(p, JOP_COLON)) return lo;
        next(p);
    }
    if (!at_op(p, JOP_COLON) && !at_op(p, JOP_RBRACKET) && !at_op(p, JOP_COMMA) && !(hi = parse_expression(p, true)))
        return NULL;
    if (at_op(p, JOP_COLON)) {
        next(p);
        if (!at_op(p, JOP_RBRACKET) && !at_op(p, JOP_COMMA) && !(step = parse_expression(p, true))) return NULL;
    }
    jinja_node *s = node_new(p, JN_SLICE, start);
    if (!s) return NULL;
    s->a = lo;
    s->b = hi;
    s->c = step;
    return finish(p, s);
}

static jinja_node *parse_postfix(parser *p, jinja_node *n) {
    while (n) {
        const jinja_token *at = cur(p);
        if (at_op(p, JOP_DOT)) {
            next(p);
            const jinja_token *t = cur(p);
            if (t->kind == JT_NAME) {
                jinja_node *attr = node_new(p, JN_ATTR, at);
                if (!attr || !(attr->name = copy_text(p, t->text, t->len))) return NULL;
                next(p);
                attr->a = n;
                n = finish(p, attr);
            } else if (t->kind == JT_INT) {
                jinja_node *key = node_new(p, JN_CONST, t);
                if (!key) return NULL;
                key->value = jinja_int(t->integer);
                next(p);
                n = binary_node(p, JN_ITEM, -1, at, n, finish(p, key));
            } else {
                return fail_expected(p, "a name or number after '.'");
            }
        } else if (at_op(p, JOP_LBRACKET)) {
            next(p);
            jinja_node *tuple = node_new(p, JN_TUPLE, cur(p));
            if (!tuple) return NULL;
            while (!at_op(p, JOP_RBRACKET)) {
                if (tuple->children.n && !expect_op(p, JOP_COMMA)) return NULL;
                if (!list_push(p, &tuple->children, parse_subscript(p))) return NULL;
            }
            next(p);
            jinja_node *key = tuple->children.n == 1 ? tuple->children.items[0] : finish(p, tuple);
            n = binary_node(p, JN_ITEM, -1, at, n, key);
        } else if (at_op(p, JOP_LPAREN)) {
            jinja_node *call = node_new(p, JN_CALL, at);
            if (!call) return NULL;
            call->a = n;
            if (!parse_call_args(p, call)) return NULL;
            n = finish(p, call);
        } else {
            break;
        }
    }
    return n;
}

static jinja_node *parse_filter_expr(parser *p, jinja_node *n) {
    while (n) {
        if (at_op(p, JOP_PIPE)) {
            next(p);
            n = parse_filter(p, n);
        } else if (at_name(p, "is")) {
            n = parse_test(p, n);
        } else if (at_op(p, JOP_LPAREN)) {
            jinja_node *call = node_new(p, JN_CALL, cur(p));
            if (!call) return NULL;
            call->a = n;
            if (!parse_call_args(p, call)) return NULL;
            n = finish(p, call);
        } else {
            break;
        }
    }
    return n;
}

static jinja_node *parse_primary(parser *p) {
    const jinja_token *t = cur(p);
    jinja_node *n;
    switch (t->kind) {
    case JT_NAME:
        if (!(n = node_new(p, JN_CONST, t))) return NULL;
        if (tok_is_name(t, "true") || tok_is_name(t, "True"))
            n->value = jinja_bool(true);
        else if (tok_is_name(t, "false") || tok_is_name(t, "False"))
            n->value = jinja_bool(false);
        else if (tok_is_name(t, "none") || tok_is_name(t, "None"))
            n->value = jinja_none();
        else {
            n->kind = JN_NAME;
            if (!(n->name = copy_text(p, t->text, t->len))) return NULL;
        }
        next(p);
        return finish(p, n);
    case JT_STRING: {
        /* Adjacent literals join: "a" "b" is "ab". */
        size_t total = 0, start = p->pos;
        for (; cur(p)->kind == JT_STRING; next(p)) total += cur(p)->len;
        char *joined = malloc(total + 1);
        if (!joined) return fail_nomem(p);
        size_t off = 0;
        for (size_t i = start; i < p->pos; i++) {
            memcpy(joined + off, p->tokens[i].text, p->tokens[i].len);
            off += p->tokens[i].len;
        }
        if (!(n = node_new(p, JN_CONST, t))) {
            free(joined);
            return NULL;
        }
        fm_status st = jinja_string_new_immortal(joined, total, &n->value);
        free(joined);
        if (st) return p->status = st, NULL;
        return finish(p, n);
    }
    case JT_INT:
    case JT_FLOAT:
        if (!(n = node_new(p, JN_CONST, t))) return NULL;
        n->value = t->kind == JT_INT ? jinja_int(t->integer) : jinja_float(t->number);
        next(p);
        return finish(p, n);
    case JT_OP:
        if (t->op == JOP_LPAREN) {
            next(p);
            n = parse_tuple(p, true, true, NULL);
            if (!n || !expect_op(p, JOP_RPAREN)) return NULL;
            return n;
        }
        if (t->op == JOP_LBRACKET) {
            next(p);
            if (!(n = node_new(p, JN_LIST, t))) return NULL;
            while (!at_op(p, JOP_RBRACKET)) {
                if (n->children.n && !expect_op(p, JOP_COMMA)) return NULL;
                if (at_op(p, JOP_RBRACKET)) break;
                if (!list_push(p, &n->children, parse_expression(p, true))) return NULL;
            }
            next(p);
            return finish(p, n);
        }
        if (t->op == JOP_LBRACE) {
            next(p);
            if (!(n = node_new(p, JN_DICT, t))) return NULL;
            while (!at_op(p, JOP_RBRACE)) {
                if (n->children.n && !expect_op(p, JOP_COMMA)) return NULL;
                if (at_op(p, JOP_RBRACE)) break;
                jinja_node *pair = node_new(p, JN_PAIR, cur(p));
                if (!pair || !(pair->a = parse_expression(p, true)) || !expect_op(p, JOP_COLON) ||
                    !(pair->b = parse_expression(p, true)) || !list_push(p, &n->children, finish(p, pair)))
                    return NULL;
            }
            next(p);
            return finish(p, n);
        }
        break;
    default: break;
    }
    return fail_expected(p, "an expression");
}

static jinja_node *parse_unary(parser *p, bool with_filter) {
    if (!enter(p)) return NULL;
    const jinja_token *t = cur(p);
    jinja_node *n;
    if (at_op(p, JOP_SUB) || at_op(p, JOP_ADD)) {
        next(p);
        jinja_node *operand = parse_unary(p, false);
        n = operand ? node_new(p, t->op == JOP_SUB ? JN_NEG : JN_POS, t) : NULL;
        if (n) {
            n->a = operand;
            n = finish(p, n);
        }
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    leave(p);
    return n;
}

static jinja_node *parse_pow(parser *p) {
    jinja_node *n = parse_unary(p, true);
    while (n && at_op(p, JOP_POW)) {
        const jinja_token *t = cur(p);
        next(p);
        n = binary_node(p, JN_BINARY, JOP_POW, t, n, parse_unary(p, true));
    }
    return n;
}

static jinja_node *parse_math2(parser *p) {
    jinja_node *n = parse_pow(p);
    while (n && (at_op(p, JOP_MUL) || at_op(p, JOP_DIV) || at_op(p, JOP_FLOORDIV) || at_op(p, JOP_MOD))) {
        const jinja_token *t = cur(p);
        next(p);
        n = binary_node(p, JN_BINARY, t->op, t, n, parse_pow(p));
    }
    return n;
}

static jinja_node *parse_concat(parser *p) {
    jinja_node *first = parse_math2(p);
    if (!first || !at_op(p, JOP_TILDE)) return first;
    jinja_node *n = node_new(p, JN_CONCAT, cur(p));
    if (!n || !list_push(p, &n->children, first)) return NULL;
    while (at_op(p, JOP_TILDE)) {
        next(p);
        if (!list_push(p, &n->children, parse_math2(p))) return NULL;
    }
    return finish(p, n);
}

static jinja_node *parse_math1(parser *p) {
    jinja_node *n = parse_concat(p);
    while (n && (at_op(p, JOP_ADD) || at_op(p, JOP_SUB))) {
        const jinja_token *t = cur(p);
        next(p);
        n = binary_node(p, JN_BINARY, t->op, t, n, parse_concat(p));
    }
    return n;
}

static jinja_node *parse_compare(parser *p) {
    jinja_node *first = parse_math1(p);
    if (!first) return NULL;
    jinja_node *cmp = NULL;
    for (;;) {
        const jinja_token *t = cur(p);
        int op;
        if (t->kind == JT_OP && t->op >= JOP_EQ && t->op <= JOP_GE) {
            op = t->op;
            next(p);
        } else if (at_name(p, "in")) {
            op = JINJA_CMP_IN;
            next(p);
        } else if (at_name(p, "not") && tok_is_name(peek(p), "in")) {
            op = JINJA_CMP_NOT_IN;
            next(p);
            next(p);
        } else {
            break;
        }
        if (!cmp) {
            if (!(cmp = node_new(p, JN_COMPARE, t))) return NULL;
            cmp->a = first;
        }
        jinja_node *operand = node_new(p, JN_OPERAND, t);
        if (!operand) return NULL;
        operand->op = op;
        if (!(operand->a = parse_math1(p)) || !list_push(p, &cmp->children, finish(p, operand))) return NULL;
    }
    return cmp ? finish(p, cmp) : first;
}

static jinja_node *parse_not(parser *p) {
    if (!at_name(p, "not")) return parse_compare(p);
    if (!enter(p)) return NULL;
    const jinja_token *t = cur(p);
    next(p);
    jinja_node *operand = parse_not(p);
    jinja_node *n = operand ? node_new(p, JN_NOT, t) : NULL;
    if (n) {
        n->a = operand;
        n = finish(p, n);
    }
    leave(p);
    return n;
}

static jinja_node *parse_and(parser *p) {
    jinja_node *n = parse_not(p);
    while (n && at_name(p, "and")) {
        const jinja_token *t = cur(p);
        next(p);
        n = binary_node(p, JN_AND, -1, t, n, parse_not(p));
    }
    return n;
}

static jinja_node *parse_or(parser *p) {
    jinja_node *n = parse_and(p);
    while (n && at_name(p, "or")) {
        const jinja_token *t = cur(p);
        next(p);
        n = binary_node(p, JN_OR, -1, t, n, parse_and(p));
    }
    return n;
}

static jinja_node *parse_condexpr(parser *p) {
    if (!enter(p)) return NULL;
    jinja_node *n = parse_or(p);
    while (n && at_name(p, "if")) {
        const jinja_token *t = cur(p);
        next(p);
        jinja_node *c = node_new(p, JN_COND, t);
        if (!c || !(c->b = parse_or(p))) {
            n = NULL;
            break;
        }
        c->a = n;
        if (at_name(p, "else")) {
            next(p);
            if (!(c->c = parse_condexpr(p))) {
                n = NULL;
                break;
            }
        }
        n = finish(p, c);
    }
    leave(p);
    return n;
}

static jinja_node *parse_expression(parser *p, bool with_condexpr) {
    return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

/* ---- statements -------------------------------------------------------------- */

static bool parse_body(parser *p, jinja_node_list *body, const char *const *ends, const jinja_token *opener);

static bool is_assignable(const jinja_node *n) {
    if (n->kind == JN_NAME) return true;
    if (n->kind != JN_TUPLE) return false;
    for (int i = 0; i < n->children.n; i++)
        if (!is_assignable(n->children.items[i])) return false;
    return true;
}

/* A name, a tuple of names (for unpacking), or with_namespace `ns.attr`. */
static jinja_node *parse_assign_target(parser *p, bool with_namespace, const char *extra_end) {
    const jinja_token *t = cur(p);
    if (with_namespace && t->kind == JT_NAME && tok_is_op(peek(p), JOP_DOT)) {
        jinja_node *ns = node_new(p, JN_NAME, t);
        if (!ns || !(ns->name = copy_text(p, t->text, t->len))) return NULL;
        next(p);
        next(p);
        if (cur(p)->kind != JT_NAME) return fail_expected(p, "an attribute name");
        jinja_node *attr = node_new(p, JN_ATTR, t);
        if (!attr || !(attr->name = copy_text(p, cur(p)->text, cur(p)->len))) return NULL;
        next(p);
        attr->a = finish(p, ns);
        return finish(p, attr);
    }
    /* Jinja reads targets as primaries: `a`, `a, b`, `(a, b), c`. */
    jinja_node *tuple = node_new(p, JN_TUPLE, t);
    if (!tuple) return NULL;
    bool is_tuple = false;
    for (;;) {
        if (tuple->children.n && !expect_op(p, JOP_COMMA)) return NULL;
        jinja_token_kind k = cur(p)->kind;
        if (k == JT_VAR_END || k == JT_BLOCK_END || at_op(p, JOP_RPAREN) || (extra_end && at_name(p, extra_end))) break;
        if (!list_push(p, &tuple->children, parse_primary(p))) return NULL;
        if (!at_op(p, JOP_COMMA)) break;
        is_tuple = true;
    }
    if (!tuple->children.n) return fail_expected(p, "a name to assign to");
    jinja_node *target = !is_tuple ? tuple->children.items[0] : finish(p, tuple);
    if (!target) return NULL;
    if (!is_assignable(target))
        return fail_at(p, t, FM_ERR_FORMAT, "can only assign to names (or a namespace attribute in set)");
    return target;
}

/* Checks for the closing tag the body stopped at, e.g. {% endfor %}. */
static bool expect_end(parser *p, const char *name) {
    if (!at_name(p, name)) {
        char what[32];
        snprintf(what, sizeof what, "'%s'", name);
        fail_expected(p, what);
        return false;
    }
    next(p);
    return expect_block_end(p);
}

static jinja_node *parse_if(parser *p, const jinja_token *opener) {
    jinja_node *n = node_new(p, JN_IF, opener);
    if (!n) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const else_ends[] = {"endif", NULL};
    for (;;) {
        jinja_node *branch = node_new(p, JN_BRANCH, cur(p));
        if (!branch || !list_push(p, &n->children, branch)) return NULL;
        if (!(branch->a = parse_tuple(p, false, false, NULL)) || !expect_block_end(p)) return NULL;
        if (!parse_body(p, &branch->body, ends, opener)) return NULL;
        if (at_name(p, "elif")) {
            next(p);
            continue;
        }
        if (at_name(p, "else")) {
            next(p);
            jinja_node *other = node_new(p, JN_BRANCH, cur(p));
            if (!other || !list_push(p, &n->children, other) || !expect_block_end(p)) return NULL;
            if (!parse_body(p, &other->body, else_ends, opener)) return NULL;
        }
        return expect_end(p, "endif") ? n : NULL;
    }
}

static jinja_node *parse_for(parser *p, const jinja_token *opener) {
    jinja_node *n = node_new(p, JN_FOR, opener);
    if (!n || !(n->a = parse_assign_target(p, false, "in"))) return NULL;
    if (!at_name(p, "in")) return fail_expected(p, "'in'");
    next(p);
    if (!(n->b = parse_tuple(p, false, false, "recursive"))) return NULL;
    if (at_name(p, "if")) {
        next(p);
        if (!(n->c = parse_expression(p, true))) return NULL;
    }
    if (at_name(p, "recursive")) return fail_at(p, cur(p), FM_ERR_UNSUPPORTED, "recursive for loops are not supported");
    if (!expect_block_end(p)) return NULL;
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const else_ends[] = {"endfor", NULL};
    p->loop_depth++;
    bool ok = parse_body(p, &n->body, ends, opener);
    p->loop_depth--;
    if (!ok) return NULL;
    if (at_name(p, "else")) {
        next(p);
        if (!expect_block_end(p) || !parse_body(p, &n->else_body, else_ends, opener)) return NULL;
    }
    return expect_end(p, "endfor") ? n : NULL;
}

/* `| f | g` after a set-block target or `f | g` in {% filter %}: a chain
 * whose innermost subject is NULL (the captured text). */
static jinja_node *parse_filter_chain(parser *p, bool first_inline) {
    jinja_node *chain = NULL;
    if (first_inline && !(chain = parse_filter(p, NULL))) return NULL;
    while (at_op(p, JOP_PIPE)) {
        next(p);
        if (!(chain = parse_filter(p, chain))) return NULL;
    }
    return chain;
}

static jinja_node *parse_set(parser *p, const jinja_token *opener) {
    jinja_node *n = node_new(p, JN_SET, opener);
    if (!n || !(n->a = parse_assign_target(p, true, NULL))) return NULL;
    if (at_op(p, JOP_ASSIGN)) {
        next(p);
        if (!(n->b = parse_tuple(p, true, false, NULL)) || !expect_block_end(p)) return NULL;
        return n;
    }
    n->kind = JN_SET_BLOCK;
    if (n->a->kind == JN_TUPLE) return fail_at(p, opener, FM_ERR_FORMAT, "a set block assigns to one name");
    if (at_op(p, JOP_PIPE) && !(n->c = parse_filter_chain(p, false))) return NULL;
    static const char *const ends[] = {"endset", NULL};
    if (!expect_block_end(p) || !parse_body(p, &n->body, ends, opener)) return NULL;
    return expect_end(p, "endset") ? n : NULL;
}

static jinja_node *parse_macro(parser *p, const jinja_token *opener) {
    jinja_node *n = node_new(p, JN_MACRO, opener);
    if (!n) return NULL;
    if (cur(p)->kind != JT_NAME) return fail_expected(p, "a macro name");
    if (!(n->name = copy_text(p, cur(p)->text, cur(p)->len))) return NULL;
    next(p);
    if (!expect_op(p, JOP_LPAREN)) return NULL;
    bool has_default = false;
    while (!at_op(p, JOP_RPAREN)) {
        if (n->children.n && !expect_op(p, JOP_COMMA)) return NULL;
        if (cur(p)->kind != JT_NAME) return fail_expected(p, "a parameter name");
        jinja_node *param = node_new(p, JN_NAME, cur(p));
        if (!param || !(param->name = copy_text(p, cur(p)->text, cur(p)->len))) return NULL;
        next(p);
        if (at_op(p, JOP_ASSIGN)) {
            next(p);
            param->kind = JN_KWARG;
            if (!(param->a = parse_expression(p, true))) return NULL;
            has_default = true;
        } else if (has_default) {
            return fail_at(p, cur(p), FM_ERR_FORMAT, "parameter without a default after one with a default");
        }
        if (!list_push(p, &n->children, param)) return NULL;
    }
    next(p);
    if (!expect_block_end(p)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    int saved_loops = p->loop_depth;
    p->loop_depth = 0;
    bool ok = parse_body(p, &n->body, ends, opener);
    p->loop_depth = saved_loops;
    return ok && expect_end(p, "endmacro") ? n : NULL;
}

static jinja_node *parse_with(parser *p, const jinja_token *opener) {
    jinja_node *n = node_new(p, JN_WITH, opener);
    if (!n) return NULL;
    while (cur(p)->kind != JT_BLOCK_END) {
        if (n->children.n && !expect_op(p, JOP_COMMA)) return NULL;
        if (cur(p)->kind != JT_NAME) return fail_expected(p, "a name");
        jinja_node *kw = node_new(p, JN_KWARG, cur(p));
        if (!kw || !(kw->name = copy_text(p, cur(p)->text, cur(p)->len))) return NULL;
        next(p);
        if (!expect_op(p, JOP_ASSIGN) || !(kw->a = parse_expression(p, true)) || !list_push(p, &n->children, kw))
            return NULL;
    }
    next(p);
    static const char *const ends[] = {"endwith", NULL};
    if (!parse_body(p, &n->body, ends, opener)) return NULL;
    return expect_end(p, "endwith") ? n : NULL;
}

/* The statement after {%; the opener's line is kept for messages. */
static jinja_node *parse_statement(parser *p) {
    const jinja_token *t = cur(p);
    if (t->kind != JT_NAME) return fail_expected(p, "a statement name");
    if (!enter(p)) return NULL;
    jinja_node *n = NULL;
    next(p);
    if (tok_is_name(t, "if")) {
        n = parse_if(p, t);
    } else if (tok_is_name(t, "for")) {
        n = parse_for(p, t);
    } else if (tok_is_name(t, "set")) {
        n = parse_set(p, t);
    } else if (tok_is_name(t, "macro")) {
        n = parse_macro(p, t);
    } else if (tok_is_name(t, "with")) {
        n = parse_with(p, t);
    } else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        bool is_break = tok_is_name(t, "break");
        if (!p->loop_depth)
            fail_at(p, t, FM_ERR_FORMAT, "'%s' outside a for loop", is_break ? "break" : "continue");
        else if ((n = node_new(p, is_break ? JN_BREAK : JN_CONTINUE, t)) && !expect_block_end(p))
            n = NULL;
    } else if (tok_is_name(t, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        if ((n = node_new(p, JN_FILTER_BLOCK, t)) && (!(n->a = parse_filter_chain(p, true)) || !expect_block_end(p) ||
                                                      !parse_body(p, &n->body, ends, t) || !expect_end(p, "endfilter")))
            n = NULL;
    } else if (tok_is_name(t, "generation")) {
        /* transformers' {% generation %} marks assistant text; it renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        if ((n = node_new(p, JN_SCOPE, t)) &&
            (!expect_block_end(p) || !parse_body(p, &n->body, ends, t) || !expect_end(p, "endgeneration")))
            n = NULL;
    } else {
        static const char *const unsupported[] = {"include", "import", "from", "extends", "block", "call", "do", NULL};
        for (int i = 0; unsupported[i]; i++)
            if (tok_is_name(t, unsupported[i]))
                fail_at(p, t, FM_ERR_UNSUPPORTED, "'{%% %s %%}' is not supported in chat templates", unsupported[i]);
        fail_at(p, t, FM_ERR_FORMAT, "unknown tag '%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text);
    }
    leave(p);
    return n;
}

/* Statements and text until {% END %} for an END in `ends` (NULL-terminated;
 * ends == NULL: until the end of the template). Stops with the end name as
 * the current token. */
static bool parse_body(parser *p, jinja_node_list *body, const char *const *ends, const jinja_token *opener) {
    for (;;) {
        const jinja_token *t = cur(p);
        switch (t->kind) {
        case JT_TEXT: {
            jinja_node *n = node_new(p, JN_TEXT, t);
            if (!n) return false;
            n->text = t->text;
            n->len = t->len;
            if (!list_push(p, body, n)) return false;
            next(p);
            break;
        }
        case JT_VAR_BEGIN: {
            jinja_node *n = node_new(p, JN_OUTPUT, t);
            if (!n) return false;
            next(p);
            if (!(n->a = parse_tuple(p, true, false, NULL)) || !expect_kind(p, JT_VAR_END, "'}}'")) return false;
            if (!list_push(p, body, n)) return false;
            break;
        }
        case JT_BLOCK_BEGIN: {
            const jinja_token *name = peek(p);
            for (int i = 0; ends && ends[i]; i++)
                if (tok_is_name(name, ends[i])) {
                    next(p);
                    return true;
                }
            static const char *const closers[] = {"endif",     "endfor",        "endset", "endmacro", "endwith",
                                                  "endfilter", "endgeneration", "elif",   "else",     NULL};
            for (int i = 0; closers[i]; i++)
                if (tok_is_name(name, closers[i])) {
                    if (opener)
                        fail_at(p, name, FM_ERR_FORMAT, "unexpected '%s' inside the '%.*s' opened at line %d",
                                closers[i], (int)opener->len, opener->text, opener->line);
                    else
                        fail_at(p, name, FM_ERR_FORMAT, "unexpected '%s' outside any block", closers[i]);
                    return false;
                }
            next(p);
            if (!list_push(p, body, parse_statement(p))) return false;
            break;
        }
        case JT_EOF: {
            if (!ends) return true;
            const char *closer = ends[0];
            for (int i = 0; ends[i]; i++)
                if (!strncmp(ends[i], "end", 3)) closer = ends[i];
            fail_at(p, t, FM_ERR_FORMAT,
                    "unexpected end of template: the '%.*s' opened at line %d column %d is not closed by '{%% %s %%}'",
                    (int)opener->len, opener->text, opener->line, opener->col, closer);
            return false;
        }
        default: fail_expected(p, "text, '{{' or '{%'"); return false;
        }
    }
}

fm_status jinja_template_parse(const char *source, size_t len, jinja_template **out) {
    *out = NULL;
    jinja_template *t = calloc(1, sizeof *t);
    if (!t || !(t->source = jinja_normalize_source(source, len, &t->len))) {
        free(t);
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    jinja_token_list tokens;
    fm_status st = jinja_tokenize(t->source, t->len, &tokens);
    parser p = {.tokens = tokens.tokens};
    if (!st) {
        parse_body(&p, &t->body, NULL, NULL);
        st = p.status;
    }
    jinja_token_list_free(&tokens);
    t->nodes = p.nodes;
    t->n_nodes = p.n_nodes;
    if (st) {
        jinja_template_free(t);
        return st;
    }
    *out = t;
    return FM_OK;
}

void jinja_template_free(jinja_template *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_nodes; i++) node_free(t->nodes[i]);
    free(t->nodes);
    free(t->body.items);
    free(t->source);
    free(t);
}

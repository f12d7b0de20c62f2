/* Syntax tree of a chat template, built by jinja_parse.c and walked by
 * jinja_eval.c. One node struct serves every construct; the comment on each
 * kind says which fields it uses. */
#ifndef FM_TEXT_JINJA_AST_H
#define FM_TEXT_JINJA_AST_H

#include "text/jinja_value.h"

/* How deep statements and expressions may nest: the evaluator recurses once
 * per level, so this bounds its stack use. Real templates stay below 20. */
#define JINJA_MAX_NESTING 150

typedef enum {
    /* statements */
    JN_TEXT,      /* template text: text, len */
    JN_OUTPUT,    /* {{ a }} */
    JN_IF,        /* children: JN_BRANCH in order (the else branch has no condition) */
    JN_BRANCH,    /* a: condition or NULL; body */
    JN_FOR,       /* a: target (JN_NAME or JN_TUPLE of names), b: iterable, c: filter or NULL; body, else_body */
    JN_SET,       /* a: target (JN_NAME, JN_TUPLE of names, or JN_ATTR on a namespace), b: value */
    JN_SET_BLOCK, /* a: target; body; c: filter chain over the captured text, or NULL */
    JN_MACRO,     /* name; children: parameters (JN_NAME, or JN_KWARG with a default); body */
    JN_BREAK,
    JN_CONTINUE,
    JN_WITH,         /* children: JN_KWARG assignments; body */
    JN_FILTER_BLOCK, /* a: filter chain whose innermost subject is NULL; body */
    JN_SCOPE,        /* {% generation %} ... : body in a scope of its own */
    /* expressions */
    JN_CONST,   /* value */
    JN_NAME,    /* name */
    JN_LIST,    /* children */
    JN_TUPLE,   /* children */
    JN_DICT,    /* children: JN_PAIR */
    JN_PAIR,    /* a: key, b: value */
    JN_ATTR,    /* a.name */
    JN_ITEM,    /* a[b] */
    JN_SLICE,   /* a: start, b: stop, c: step; each may be NULL */
    JN_CALL,    /* a: callee; children: positional arguments; kwargs: JN_KWARG */
    JN_FILTER,  /* a: subject (NULL innermost in filter blocks); name, op: filter id or -1; children, kwargs */
    JN_TEST,    /* a: subject; name, op: test id or -1; negated; children, kwargs */
    JN_KWARG,   /* name = a */
    JN_NEG,     /* -a */
    JN_POS,     /* +a */
    JN_NOT,     /* not a */
    JN_BINARY,  /* a op b, op one of JOP_ADD .. JOP_POW */
    JN_AND,     /* a and b */
    JN_OR,      /* a or b */
    JN_CONCAT,  /* children joined by ~ */
    JN_COMPARE, /* a, then children: JN_OPERAND each comparing with the previous operand */
    JN_OPERAND, /* op: JOP_EQ .. JOP_GE, JINJA_CMP_IN or JINJA_CMP_NOT_IN; a */
    JN_COND,    /* a if b else c (c may be NULL) */
} jinja_node_kind;

enum { JINJA_CMP_IN = 100, JINJA_CMP_NOT_IN };

typedef struct jinja_node jinja_node;

typedef struct {
    jinja_node **items;
    int n, cap;
} jinja_node_list;

struct jinja_node {
    jinja_node_kind kind;
    int line, col;
    int op;
    int depth; /* expression nesting below this node */
    bool negated;
    char *name;
    const char *text; /* JN_TEXT: into the template's source */
    size_t len;
    jinja_value value; /* JN_CONST: strings are immortal (shared between renders) */
    jinja_node *a, *b, *c;
    jinja_node_list children, kwargs, body, else_body;
};

typedef struct jinja_template {
    char *source; /* normalised source; JN_TEXT nodes point into it */
    size_t len;
    jinja_node_list body;
    jinja_node **nodes; /* every node, for freeing without recursion */
    size_t n_nodes;
} jinja_template;

/* Parses template source. On failure returns FM_ERR_FORMAT (syntax) or
 * FM_ERR_UNSUPPORTED (a Jinja feature chat templates do not use, such as
 * {% include %}) with a message naming line and column. */
fm_status jinja_template_parse(const char *source, size_t len, jinja_template **out);
void jinja_template_free(jinja_template *t);

/* Renders with `globals` (a dict of the template's variables), which came
 * from input_bytes of JSON (the work budget grows with it); *out is a
 * malloc'd NUL-terminated string of *out_len bytes. */
fm_status jinja_template_render(const jinja_template *t, const jinja_dict *globals, size_t input_bytes, char **out,
                                size_t *out_len);

#endif

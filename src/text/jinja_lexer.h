/* Tokenizer of the chat-template interpreter: splits template source into
 * text and the tokens inside {{ }} and {% %}, dropping {# #} comments and
 * applying whitespace control as transformers configures Jinja:
 * trim_blocks (the newline after a block or comment tag is dropped),
 * lstrip_blocks (spaces before a block or comment tag at the start of a line
 * are dropped), '-' on a tag strips all whitespace on that side, '+' turns
 * the trimming off. {% raw %} ... {% endraw %} becomes text. */
#ifndef FM_TEXT_JINJA_LEXER_H
#define FM_TEXT_JINJA_LEXER_H

#include "flashmoe.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JT_EOF,
    JT_TEXT,        /* template text between tags */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP,
} jinja_token_kind;

typedef enum {
    JOP_ADD,      /* + */
    JOP_SUB,      /* - */
    JOP_MUL,      /* * */
    JOP_DIV,      /* / */
    JOP_FLOORDIV, /* // */
    JOP_MOD,      /* % */
    JOP_POW,      /* ** */
    JOP_TILDE,    /* ~ */
    JOP_EQ,       /* == */
    JOP_NE,       /* != */
    JOP_LT,       /* < */
    JOP_LE,       /* <= */
    JOP_GT,       /* > */
    JOP_GE,       /* >= */
    JOP_ASSIGN,   /* = */
    JOP_DOT,      /* . */
    JOP_COLON,    /* : */
    JOP_PIPE,     /* | */
    JOP_COMMA,    /* , */
    JOP_SEMICOLON,
    JOP_LPAREN,
    JOP_RPAREN,
    JOP_LBRACKET,
    JOP_RBRACKET,
    JOP_LBRACE,
    JOP_RBRACE,
} jinja_op;

typedef struct {
    jinja_token_kind kind;
    int line, col; /* 1-based; col counts characters */
    jinja_op op;   /* JT_OP */
    /* JT_TEXT and JT_NAME point into the template's (normalised) source;
     * JT_STRING points to the decoded literal owned by the token list. */
    const char *text;
    size_t len;
    int64_t integer; /* JT_INT */
    double number;   /* JT_FLOAT */
} jinja_token;

typedef struct {
    jinja_token *tokens; /* ends with JT_EOF */
    size_t n, cap;
    char **strings; /* decoded string literals */
    size_t n_strings;
} jinja_token_list;

/* Tokenizes `source` (newlines already normalised to \n, see
 * jinja_normalize_source). On failure returns FM_ERR_FORMAT with a message
 * naming line and column. The list must be freed even on failure. */
fm_status jinja_tokenize(const char *source, size_t len, jinja_token_list *out);
void jinja_token_list_free(jinja_token_list *list);

/* Jinja's reading of a template: \r\n and \r become \n and one trailing
 * newline is dropped (keep_trailing_newline is off). Returns a malloc'd
 * copy, or NULL when out of memory. */
char *jinja_normalize_source(const char *source, size_t len, size_t *out_len);

const char *jinja_op_text(jinja_op op);

#endif

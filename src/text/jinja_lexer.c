/* Tokenizer of the chat-template interpreter (see jinja_lexer.h). It follows
 * Jinja's lexer rule for rule, because whitespace control decides the bytes
 * of the rendered prompt:
 *   - a '-' after the tag opener strips every whitespace character (Python's
 *     str.isspace) before the tag; one before the closer strips all after it;
 *   - without a sign, a block or comment tag drops the whitespace between the
 *     previous newline and itself (lstrip_blocks) when nothing else is on that
 *     line; "the previous newline" may also be one a tag end just consumed;
 *   - a block or comment closer eats one following newline (trim_blocks)
 *     unless written +%} / +#}; {{ }} never trims. */
#include "text/jinja_lexer.h"

#include "core/error.h"
#include "text/jinja_unicode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *src;
    size_t len;
    size_t pos;
    int line, col; /* of pos */
    jinja_token_list *out;
} lexer;

static fm_status lex_error(int line, int col, const char *what) {
    return fm_error(FM_ERR_FORMAT, "chat template line %d column %d: %s", line, col, what);
}

/* Moves pos to `to`, counting lines and characters on the way. */
static void advance_to(lexer *lx, size_t to) {
    for (; lx->pos < to; lx->pos++) {
        unsigned char c = (unsigned char)lx->src[lx->pos];
        if (c == '\n') {
            lx->line++;
            lx->col = 1;
        } else if ((c & 0xc0) != 0x80) {
            lx->col++;
        }
    }
}

static fm_status push(lexer *lx, jinja_token tok) {
    jinja_token_list *l = lx->out;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        jinja_token *p = realloc(l->tokens, cap * sizeof *p);
        if (!p) return fm_error(FM_ERR_NOMEM, "out of memory");
        l->tokens = p;
        l->cap = cap;
    }
    l->tokens[l->n++] = tok;
    return FM_OK;
}

static fm_status push_simple(lexer *lx, jinja_token_kind kind, int line, int col) {
    jinja_token t = {.kind = kind, .line = line, .col = col};
    return push(lx, t);
}

/* ---- whitespace ----------------------------------------------------------- */

/* Length of the whitespace character at s[i], or 0. */
static size_t space_at(const char *s, size_t len, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) return jinja_is_space(c) ? 1 : 0;
    size_t n;
    int32_t cp = jinja_utf8_decode(s + i, len - i, &n);
    return jinja_is_space(cp) ? n : 0;
}

static size_t skip_space(const char *s, size_t len, size_t i) {
    for (size_t n; i < len && (n = space_at(s, len, i));) i += n;
    return i;
}

/* Start of the trailing whitespace of s[from, to). */
static size_t rstrip_space(const char *s, size_t from, size_t to) {
    while (to > from) {
        size_t prev = from + jinja_utf8_prev(s + from, to - from);
        if (!space_at(s, to, prev)) break;
        to = prev;
    }
    return to;
}

static bool all_space(const char *s, size_t from, size_t to) { return skip_space(s, to, from) == to; }

static bool starts_with(const lexer *lx, size_t at, const char *lit) {
    size_t n = strlen(lit);
    return at <= lx->len && lx->len - at >= n && !memcmp(lx->src + at, lit, n);
}

/* The text before a tag, with the tag's whitespace control applied.
 * `sign` is '-', '+' or 0; lstrip applies to block and comment tags. */
static size_t text_end(const lexer *lx, size_t from, size_t to, char sign, bool lstrip, bool line_starting) {
    if (sign == '-') return rstrip_space(lx->src, from, to);
    if (sign == '+' || !lstrip) return to;
    size_t line_start = to;
    while (line_start > from && lx->src[line_start - 1] != '\n') line_start--;
    bool after_newline = line_start > from;
    if ((after_newline || line_starting) && line_start < to && all_space(lx->src, line_start, to)) return line_start;
    return to;
}

static fm_status emit_text(lexer *lx, size_t from, size_t to) {
    if (to <= from) return FM_OK;
    jinja_token t = {.kind = JT_TEXT, .line = lx->line, .col = lx->col, .text = lx->src + from, .len = to - from};
    return push(lx, t);
}

/* After a block or comment closer at `at` (pointing to the '-', '+' or the
 * closer itself): the position after it with trimming applied. */
static size_t after_closer(const lexer *lx, size_t at) {
    if (lx->src[at] == '+') return at + 3;
    if (lx->src[at] == '-') return skip_space(lx->src, lx->len, at + 3);
    size_t p = at + 2;
    return p < lx->len && lx->src[p] == '\n' ? p + 1 : p;
}

/* Matches `{%[-+]? \s* word \s* closer` at `at`, where the closer is "%}" or
 * "-%}" and, when allow_plus, "+%}". Returns the position of the closer
 * (its sign included) or 0 when the text there is something else. */
static size_t match_word_tag(const lexer *lx, size_t at, const char *word, bool allow_plus, char *sign) {
    if (!starts_with(lx, at, "{%")) return 0;
    size_t p = at + 2;
    *sign = 0;
    if (p < lx->len && (lx->src[p] == '-' || lx->src[p] == '+')) *sign = lx->src[p++];
    p = skip_space(lx->src, lx->len, p);
    if (!starts_with(lx, p, word)) return 0;
    p = skip_space(lx->src, lx->len, p + strlen(word));
    if (starts_with(lx, p, "-%}") || starts_with(lx, p, "%}") || (allow_plus && starts_with(lx, p, "+%}"))) return p;
    return 0;
}

/* ---- literals ------------------------------------------------------------- */

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Python's unicode-escape decoding of a string literal's body, as Jinja
 * applies it. Returns NULL with *error set on a bad escape. */
static char *decode_string(const char *s, size_t len, size_t *out_len, const char **error) {
    char *out = malloc(len + 1); /* decoding never lengthens except after a backslash before non-ASCII */
    size_t cap = len + 1, n = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        while (cap - n < 16) { /* room for the longest expansion of one escape */
            char *p = realloc(out, cap * 2);
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
            cap *= 2;
        }
        if (s[i] != '\\' || i + 1 >= len) {
            out[n++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        int32_t cp = -1;
        switch (c) {
        case '\n': continue; /* line continuation */
        case '\\': out[n++] = '\\'; continue;
        case '\'': out[n++] = '\''; continue;
        case '"': out[n++] = '"'; continue;
        case 'a': out[n++] = '\a'; continue;
        case 'b': out[n++] = '\b'; continue;
        case 'f': out[n++] = '\f'; continue;
        case 'n': out[n++] = '\n'; continue;
        case 'r': out[n++] = '\r'; continue;
        case 't': out[n++] = '\t'; continue;
        case 'v': out[n++] = '\v'; continue;
        case 'x':
        case 'u':
        case 'U': {
            int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + (size_t)k < len ? hex_value(s[i + k]) : -1;
                if (h < 0) {
                    *error = c == 'x'   ? "truncated \\xXX escape"
                             : c == 'u' ? "truncated \\uXXXX escape"
                                        : "truncated \\UXXXXXXXX escape";
                    free(out);
                    return NULL;
                }
                cp = cp * 16 + h;
                if (cp > 0x10ffff) {
                    *error = "illegal Unicode character in \\U escape";
                    free(out);
                    return NULL;
                }
            }
            i += (size_t)digits;
            break;
        }
        case 'N':
            *error = "\\N{...} escapes are not supported";
            free(out);
            return NULL;
        default:
            if (c >= '0' && c <= '7') {
                cp = c - '0';
                for (int k = 0; k < 2 && i < len && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (s[i++] - '0');
            } else if ((unsigned char)c >= 0x80) {
                /* Jinja backslash-escapes non-ASCII characters before decoding, so
                 * "\é" reads as a backslash followed by the text "xe9". */
                size_t nb;
                int32_t ch = jinja_utf8_decode(s + i - 1, len - (i - 1), &nb);
                i += nb - 1;
                const char *hex = "0123456789abcdef";
                int digits = ch < 0x100 ? 2 : ch < 0x10000 ? 4 : 8;
                out[n++] = '\\';
                out[n++] = ch < 0x100 ? 'x' : ch < 0x10000 ? 'u' : 'U';
                for (int k = digits - 1; k >= 0; k--) out[n++] = hex[(ch >> (4 * k)) & 15];
                continue;
            } else { /* unknown escapes stay as written */
                out[n++] = '\\';
                out[n++] = c;
                continue;
            }
        }
        n += jinja_utf8_encode(cp, out + n);
    }
    out[n] = 0;
    *out_len = n;
    return out;
}

static fm_status lex_string(lexer *lx) {
    int line = lx->line, col = lx->col;
    char quote = lx->src[lx->pos];
    size_t p = lx->pos + 1;
    while (p < lx->len && lx->src[p] != quote) p += lx->src[p] == '\\' && p + 1 < lx->len ? 2 : 1;
    if (p >= lx->len) return lex_error(line, col, "unterminated string literal");
    const char *error = NULL;
    size_t n = 0;
    char *text = decode_string(lx->src + lx->pos + 1, p - lx->pos - 1, &n, &error);
    if (!text) return error ? lex_error(line, col, error) : fm_error(FM_ERR_NOMEM, "out of memory");
    jinja_token_list *l = lx->out;
    char **strings = realloc(l->strings, (l->n_strings + 1) * sizeof *strings);
    if (!strings) {
        free(text);
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    l->strings = strings;
    l->strings[l->n_strings++] = text;
    jinja_token t = {.kind = JT_STRING, .line = line, .col = col, .text = text, .len = n};
    advance_to(lx, p + 1);
    return push(lx, t);
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits with single underscores between them, as Jinja's `(\d+_)*\d+`. */
static size_t scan_digits(const char *s, size_t len, size_t i) {
    if (i >= len || !is_digit(s[i])) return 0;
    size_t p = i;
    while (p < len && is_digit(s[p])) {
        p++;
        if (p + 1 < len && s[p] == '_' && is_digit(s[p + 1])) p++;
    }
    return p - i;
}

/* Length of a float literal at i (Jinja's float rule), or 0. */
static size_t scan_float(const char *s, size_t len, size_t i) {
    size_t d = scan_digits(s, len, i), p = i + d;
    if (!d) return 0;
    size_t frac = 0;
    if (p < len && s[p] == '.' && (frac = scan_digits(s, len, p + 1))) frac += 1;
    size_t e = p + frac;
    if (e < len && (s[e] | 0x20) == 'e') {
        size_t q = e + 1;
        if (q < len && (s[q] == '+' || s[q] == '-')) q++;
        size_t ed = scan_digits(s, len, q);
        if (ed) return q + ed - i;
    }
    return frac ? p + frac - i : 0;
}

/* Length of an integer literal at i and its base (Jinja's integer rule). */
static size_t scan_int(const char *s, size_t len, size_t i, int *base) {
    *base = 10;
    if (s[i] == '0' && i + 1 < len) {
        char x = (char)(s[i + 1] | 0x20);
        int b = x == 'b' ? 2 : x == 'o' ? 8 : x == 'x' ? 16 : 0;
        if (b) {
            size_t p = i + 2, count = 0;
            for (;;) {
                size_t q = p < len && s[p] == '_' ? p + 1 : p;
                int v = q < len ? hex_value(s[q]) : -1;
                if (v < 0 || v >= b) break;
                p = q + 1;
                count++;
            }
            if (count) {
                *base = b;
                return p - i;
            }
        }
    }
    if (s[i] == '0') { /* 0(_?0)* */
        size_t p = i + 1;
        for (;;) {
            size_t q = p < len && s[p] == '_' ? p + 1 : p;
            if (q < len && s[q] == '0')
                p = q + 1;
            else
                break;
        }
        return p - i;
    }
    size_t p = i + 1; /* [1-9](_?\d)* */
    for (;;) {
        size_t q = p < len && s[p] == '_' ? p + 1 : p;
        if (q < len && is_digit(s[q]))
            p = q + 1;
        else
            break;
    }
    return p - i;
}

static fm_status lex_number(lexer *lx) {
    const char *s = lx->src;
    size_t i = lx->pos;
    int line = lx->line, col = lx->col;
    /* Jinja does not read a float right after a '.', so x.0.1 is x[0][1]. */
    size_t flen = i > 0 && s[i - 1] == '.' ? 0 : scan_float(s, lx->len, i);
    int base = 10;
    size_t n = flen ? flen : scan_int(s, lx->len, i, &base);
    char digits[128];
    size_t nd = 0;
    for (size_t k = base == 10 ? 0 : 2; k < n; k++)
        if (s[i + k] != '_') {
            if (nd + 1 >= sizeof digits) return lex_error(line, col, "number literal too long");
            digits[nd++] = s[i + k];
        }
    digits[nd] = 0;
    jinja_token t = {.line = line, .col = col};
    errno = 0;
    if (flen) {
        t.kind = JT_FLOAT;
        t.number = strtod(digits, NULL);
    } else {
        t.kind = JT_INT;
        unsigned long long v = strtoull(digits, NULL, base);
        if (errno == ERANGE || v > (unsigned long long)INT64_MAX)
            return lex_error(line, col, "integer literal too large");
        t.integer = (int64_t)v;
    }
    advance_to(lx, i + n);
    return push(lx, t);
}

/* ---- operators ------------------------------------------------------------ */

static const struct {
    const char *text;
    jinja_op op;
} operators[] = {
    /* two-character operators first: the longest match wins */
    {"//", JOP_FLOORDIV}, {"**", JOP_POW},   {"==", JOP_EQ},      {"!=", JOP_NE},      {"<=", JOP_LE},
    {">=", JOP_GE},       {"+", JOP_ADD},    {"-", JOP_SUB},      {"*", JOP_MUL},      {"/", JOP_DIV},
    {"%", JOP_MOD},       {"~", JOP_TILDE},  {"<", JOP_LT},       {">", JOP_GT},       {"=", JOP_ASSIGN},
    {".", JOP_DOT},       {":", JOP_COLON},  {"|", JOP_PIPE},     {",", JOP_COMMA},    {";", JOP_SEMICOLON},
    {"(", JOP_LPAREN},    {")", JOP_RPAREN}, {"[", JOP_LBRACKET}, {"]", JOP_RBRACKET}, {"{", JOP_LBRACE},
    {"}", JOP_RBRACE},
};

const char *jinja_op_text(jinja_op op) {
    for (size_t i = 0; i < sizeof operators / sizeof operators[0]; i++)
        if (operators[i].op == op) return operators[i].text;
    return "?";
}

/* Brackets must balance inside a tag; a closer only ends the tag when none is open. */
typedef struct {
    char open[256];
    int depth;
} bracket_stack;

static fm_status lex_operator(lexer *lx, bracket_stack *brackets) {
    int line = lx->line, col = lx->col;
    for (size_t k = 0; k < sizeof operators / sizeof operators[0]; k++) {
        if (!starts_with(lx, lx->pos, operators[k].text)) continue;
        jinja_op op = operators[k].op;
        char msg[64];
        if (op == JOP_LPAREN || op == JOP_LBRACKET || op == JOP_LBRACE) {
            if (brackets->depth >= (int)sizeof brackets->open)
                return lex_error(line, col, "brackets nested too deeply");
            brackets->open[brackets->depth++] = op == JOP_LPAREN ? ')' : op == JOP_LBRACKET ? ']' : '}';
        } else if (op == JOP_RPAREN || op == JOP_RBRACKET || op == JOP_RBRACE) {
            char c = operators[k].text[0];
            if (!brackets->depth) {
                snprintf(msg, sizeof msg, "unexpected '%c'", c);
                return lex_error(line, col, msg);
            }
            char want = brackets->open[--brackets->depth];
            if (want != c) {
                snprintf(msg, sizeof msg, "unexpected '%c', expected '%c'", c, want);
                return lex_error(line, col, msg);
            }
        }
        jinja_token t = {.kind = JT_OP, .op = op, .line = line, .col = col};
        advance_to(lx, lx->pos + strlen(operators[k].text));
        return push(lx, t);
    }
    char msg[64];
    unsigned char c = (unsigned char)lx->src[lx->pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(msg, sizeof msg, "unexpected character '%c'", c);
    else
        snprintf(msg, sizeof msg, "unexpected character (byte 0x%02x)", c);
    return lex_error(line, col, msg);
}

/* Tokens of one {{ }} or {% %} up to and including its closer. Sets
 * *line_starting to whether what the closer consumed ended with a newline. */
static fm_status lex_tag(lexer *lx, bool is_block, int open_line, int open_col, bool *line_starting) {
    bracket_stack brackets = {.depth = 0};
    for (;;) {
        advance_to(lx, skip_space(lx->src, lx->len, lx->pos));
        if (lx->pos >= lx->len)
            return lex_error(open_line, open_col,
                             is_block ? "'{%' is never closed by '%}'" : "'{{' is never closed by '}}'");
        size_t p = lx->pos, after = 0;
        if (!brackets.depth) {
            if (is_block && (starts_with(lx, p, "+%}") || starts_with(lx, p, "-%}") || starts_with(lx, p, "%}")))
                after = after_closer(lx, p);
            else if (!is_block && starts_with(lx, p, "-}}"))
                after = skip_space(lx->src, lx->len, p + 3);
            else if (!is_block && starts_with(lx, p, "}}"))
                after = p + 2;
        }
        if (after) {
            fm_status st = push_simple(lx, is_block ? JT_BLOCK_END : JT_VAR_END, lx->line, lx->col);
            advance_to(lx, after);
            *line_starting = lx->src[after - 1] == '\n';
            return st;
        }
        char c = lx->src[p];
        fm_status st;
        if (is_digit(c)) {
            st = lex_number(lx);
        } else if (c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
            size_t q = p;
            while (q < lx->len && (lx->src[q] == '_' || is_digit(lx->src[q]) ||
                                   ((lx->src[q] | 0x20) >= 'a' && (lx->src[q] | 0x20) <= 'z')))
                q++;
            jinja_token t = {.kind = JT_NAME, .line = lx->line, .col = lx->col, .text = lx->src + p, .len = q - p};
            advance_to(lx, q);
            st = push(lx, t);
        } else if (c == '\'' || c == '"') {
            st = lex_string(lx);
        } else {
            st = lex_operator(lx, &brackets);
        }
        if (st) return st;
    }
}

fm_status jinja_tokenize(const char *source, size_t len, jinja_token_list *out) {
    memset(out, 0, sizeof *out);
    lexer lx = {.src = source, .len = len, .line = 1, .col = 1, .out = out};
    bool line_starting = true; /* the template's start counts as a line start */
    fm_status st = FM_OK;
    while (lx.pos < len && !st) {
        /* the next tag opener: {{, {% or {# */
        size_t p = lx.pos;
        while (p + 1 < len &&
               !(source[p] == '{' && (source[p + 1] == '{' || source[p + 1] == '%' || source[p + 1] == '#')))
            p++;
        if (p + 1 >= len) {
            st = emit_text(&lx, lx.pos, len);
            advance_to(&lx, len);
            break;
        }
        char kind = source[p + 1];
        char sign = p + 2 < len && (source[p + 2] == '-' || source[p + 2] == '+') ? source[p + 2] : 0;
        char raw_sign = 0;
        size_t raw_closer = kind == '%' ? match_word_tag(&lx, p, "raw", false, &raw_sign) : 0;
        size_t end = text_end(&lx, lx.pos, p, sign, kind != '{', line_starting);
        if ((st = emit_text(&lx, lx.pos, end))) break;
        advance_to(&lx, p);
        int line = lx.line, col = lx.col;
        if (kind == '#') {
            size_t q = p + 2 + (sign ? 1 : 0);
            while (q < len && !starts_with(&lx, q, "+#}") && !starts_with(&lx, q, "-#}") && !starts_with(&lx, q, "#}"))
                q++;
            if (q >= len) {
                st = lex_error(line, col, "comment '{#' is never closed by '#}'");
                break;
            }
            size_t after = after_closer(&lx, q);
            advance_to(&lx, after);
            line_starting = source[after - 1] == '\n';
        } else if (raw_closer) {
            /* {% raw %}: everything up to {% endraw %} is text. Jinja does not
             * trim the newline after the raw opener. */
            size_t body = source[raw_closer] == '-' ? skip_space(source, len, raw_closer + 3) : raw_closer + 2;
            advance_to(&lx, body);
            line_starting = source[body - 1] == '\n';
            size_t q = body, closer = 0;
            char end_sign = 0;
            for (; q + 1 < len; q++)
                if (source[q] == '{' && (closer = match_word_tag(&lx, q, "endraw", true, &end_sign))) break;
            if (!closer) {
                st = lex_error(line, col, "'{% raw %}' is never closed by '{% endraw %}'");
                break;
            }
            size_t text_stop = text_end(&lx, body, q, end_sign, true, line_starting);
            if ((st = emit_text(&lx, body, text_stop))) break;
            size_t after = after_closer(&lx, closer);
            advance_to(&lx, after);
            line_starting = source[after - 1] == '\n';
        } else {
            bool is_block = kind == '%';
            if ((st = push_simple(&lx, is_block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, line, col))) break;
            advance_to(&lx, p + 2 + (sign ? 1 : 0));
            st = lex_tag(&lx, is_block, line, col, &line_starting);
        }
    }
    if (!st) st = push_simple(&lx, JT_EOF, lx.line, lx.col);
    return st;
}

void jinja_token_list_free(jinja_token_list *list) {
    for (size_t i = 0; i < list->n_strings; i++) free(list->strings[i]);
    free(list->strings);
    free(list->tokens);
    memset(list, 0, sizeof *list);
}

char *jinja_normalize_source(const char *source, size_t len, size_t *out_len) {
    char *out = malloc(len + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (source[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') i++;
        } else {
            out[n++] = source[i];
        }
    }
    if (n > 0 && out[n - 1] == '\n') n--;
    out[n] = 0;
    *out_len = n;
    return out;
}

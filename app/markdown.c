/* Streaming Markdown → ANSI terminal renderer (see markdown.h).
 *
 * Every byte goes through one step function whatever the chunking, and what
 * is held back lives in the renderer, so the output depends on the text alone.
 * A line is in one of four modes:
 *   LINE_START        its first bytes are held until they tell what the line
 *                     is: a header, list item, quote, rule, fence or text
 *                     (rules and fences only at the line's end: "---" could
 *                     still become "--- text", "```js" needs its language)
 *   INLINE            text: emphasis, code spans, links, escapes
 *   FENCE_LINE_START  in a fenced block, a line's leading blanks and fence
 *                     characters are held until it is known not to close it
 *   FENCE_TEXT        the rest of a code line, printed verbatim
 * Inline markup is rendered optimistically: "**" that can open bold turns bold
 * on at once (holding the text until a closer appears would stall the stream),
 * so an opener never closed styles the rest of its line. Inline state ends at
 * every line end, which bounds the damage and resets the terminal.
 * Styles are emitted lazily, just before the next byte printed, as one SGR
 * sequence for the whole combination (nesting needs no stack). */
#include "markdown.h"

#include <stdlib.h>
#include <string.h>

enum {
    LINE_HOLD_MAX = 1024, /* a line start held longer than this is plain text */
    LINK_TEXT_MAX = 256,  /* a "[text" held longer than this is not a link */
    LANG_MAX = 32,        /* bytes of a fence's language name shown */
    RULE_WIDTH = 40,      /* "─" of a horizontal rule */
};

/* Style bits; the SGR colour number sits above them. */
enum { ST_BOLD = 1, ST_DIM = 2, ST_ITALIC = 4, ST_UNDERLINE = 8, ST_COLOUR_SHIFT = 8 };
enum { COLOUR_CODE = 33, COLOUR_LINK = 34, COLOUR_HEADER = 36 };
#define ST_COLOUR(c) ((unsigned)(c) << ST_COLOUR_SHIFT)

static const char RULE_PIECE[] = "\xe2\x94\x80"; /* U+2500 "─" */
static const char BULLET[] = "\xe2\x80\xa2";     /* U+2022 "•" */
static const char QUOTE_BAR[] = "\xe2\x94\x82";  /* U+2502 "│" */

typedef enum { MODE_LINE_START, MODE_INLINE, MODE_FENCE_LINE_START, MODE_FENCE_TEXT } line_mode;
typedef enum { LINK_NONE, LINK_TEXT, LINK_AFTER_TEXT, LINK_URL } link_state;
/* For the emphasis flanking rules. CH_OTHER (non-ASCII and control bytes)
 * counts as a letter, except that 2*3*4 only looks at ASCII ones. */
typedef enum { CH_SPACE, CH_PUNCT, CH_ALNUM, CH_OTHER } char_class;

struct md_renderer {
    FILE *out;
    int style_on;
    line_mode mode;
    unsigned emitted; /* the style the terminal is in */

    /* The start of a line (or of a code line) held until classified. */
    unsigned char line[LINE_HOLD_MAX];
    size_t line_len;

    /* The fenced code block we are in; fence_len 0: none. */
    unsigned char fence_char;
    size_t fence_len;

    /* Inline state, reset at every line end. */
    int header_level;
    int skip_spaces;   /* after "# ": the header text starts at its first non-blank */
    char_class prev;   /* the character before the current one */
    unsigned char run_char;
    size_t run_len;    /* a held run of '*', '_' or '`' */
    int escape;        /* a held '\\' */
    unsigned char bold, italic; /* the delimiter that opened it; 0: off */
    size_t code_len;   /* backticks that opened the code span; 0: none */
    link_state link;
    int in_link_text;  /* replaying a confirmed link's text */
    size_t url_depth;  /* '(' open inside the url */
    unsigned char link_text[LINK_TEXT_MAX];
    size_t link_len;
};

/* ---- output -------------------------------------------------------------- */

static char_class class_of(unsigned char c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') return CH_SPACE;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CH_ALNUM;
    if (c > ' ' && c < 0x7f) return CH_PUNCT;
    return CH_OTHER;
}

static int is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Switches the terminal to `want` with one SGR sequence ("\033[0m" for none;
 * a leading 0 clears the previous combination). */
static void emit_style(md_renderer *r, unsigned want) {
    if (want == r->emitted) return;
    if (!want) {
        fputs("\033[0m", r->out);
    } else {
        static const struct { unsigned bit; char code; } attrs[] = {
            {ST_BOLD, '1'}, {ST_DIM, '2'}, {ST_ITALIC, '3'}, {ST_UNDERLINE, '4'}};
        fputs(r->emitted ? "\033[0" : "\033[", r->out);
        int first = !r->emitted;
        for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
            if (!(want & attrs[i].bit)) continue;
            if (!first) fputc(';', r->out);
            fputc(attrs[i].code, r->out);
            first = 0;
        }
        if (want >> ST_COLOUR_SHIFT) fprintf(r->out, "%s%u", first ? "" : ";", want >> ST_COLOUR_SHIFT);
        fputc('m', r->out);
    }
    r->emitted = want;
}

/* The style text printed now should have. */
static unsigned current_style(const md_renderer *r) {
    if (r->mode == MODE_FENCE_LINE_START || r->mode == MODE_FENCE_TEXT) return ST_COLOUR(COLOUR_CODE);
    if (r->link == LINK_URL) return ST_DIM;
    unsigned style = 0, colour = 0;
    if (r->header_level) {
        style |= ST_BOLD;
        if (r->header_level == 1) style |= ST_UNDERLINE;
        if (r->header_level <= 2) colour = COLOUR_HEADER;
    }
    if (r->bold) style |= ST_BOLD;
    if (r->italic) style |= ST_ITALIC;
    if (r->in_link_text) style |= ST_UNDERLINE, colour = COLOUR_LINK;
    if (r->code_len) colour = COLOUR_CODE;
    return style | ST_COLOUR(colour);
}

static void put(md_renderer *r, unsigned char c) {
    emit_style(r, current_style(r));
    fputc(c, r->out);
}

/* A character of text: also remembered for the flanking rules. */
static void put_text(md_renderer *r, unsigned char c) {
    put(r, c);
    r->prev = class_of(c);
}

static void put_string(md_renderer *r, const char *s) {
    while (*s) put(r, (unsigned char)*s++);
}

/* Decoration (bars, rules, labels) in its own style, whatever the text's. */
static void put_decoration(md_renderer *r, unsigned style, const char *s) {
    emit_style(r, style);
    fputs(s, r->out);
}

/* ---- inline markup ------------------------------------------------------- */

static void inline_char(md_renderer *r, unsigned char c);

static void put_run_literally(md_renderer *r, unsigned char c, size_t n) {
    while (n--) put(r, c);
    r->prev = CH_PUNCT;
}

/* Decides what a held run of '*', '_' or '`' does, now that the character
 * after it is known (CH_SPACE at the line's end). */
static void resolve_run(md_renderer *r, char_class next) {
    unsigned char c = r->run_char;
    size_t n = r->run_len;
    r->run_len = 0;
    if (c == '`') {
        /* A span closes on a run of the same length; any other run inside is
         * literal. A run before a blank is taken as a literal backtick ("the
         * ` key"), since a span is shown without its backticks. */
        if (r->code_len) {
            if (n == r->code_len) r->code_len = 0;
            else put_run_literally(r, c, n);
        } else if (next == CH_SPACE) {
            put_run_literally(r, c, n);
        } else {
            r->code_len = n;
        }
        r->prev = CH_PUNCT;
        return;
    }
    /* CommonMark's flanking rules: a run can open when it is not followed by
     * a blank (nor by punctuation after a letter), close when mirrored. */
    char_class before = r->prev;
    int left_flanking = next != CH_SPACE && (next != CH_PUNCT || before == CH_SPACE || before == CH_PUNCT);
    int right_flanking = before != CH_SPACE && (before != CH_PUNCT || next == CH_SPACE || next == CH_PUNCT);
    int can_open, can_close;
    if (c == '_') { /* not inside words: snake_case_names */
        can_open = left_flanking && (!right_flanking || before == CH_PUNCT);
        can_close = right_flanking && (!left_flanking || next == CH_PUNCT);
    } else { /* '*' between ASCII letters or digits is arithmetic (2*3*4, x**2);
              * other letters keep intraword emphasis (CJK has no spaces) */
        int arithmetic = before == CH_ALNUM && next == CH_ALNUM;
        can_open = left_flanking && !arithmetic;
        can_close = right_flanking && !arithmetic;
    }
    size_t rest = n > 3 ? 0 : n; /* longer runs are decoration, printed as they are */
    int closed = 0;
    if (rest && can_close) { /* "***" closes both */
        if (rest >= 2 && r->bold == c) {
            r->bold = 0;
            rest -= 2;
            closed = 1;
        }
        if (rest >= 1 && r->italic == c) {
            r->italic = 0;
            rest -= 1;
            closed = 1;
        }
    }
    if (rest && !closed && can_open) { /* "***" opens both */
        if (rest == 3 && !r->bold && !r->italic) {
            r->bold = r->italic = c;
            rest = 0;
        } else if (rest == 2 && !r->bold) {
            r->bold = c;
            rest = 0;
        } else if (rest == 1 && !r->italic) {
            r->italic = c;
            rest = 0;
        }
    }
    put_run_literally(r, c, n > 3 ? n : rest);
}

/* The held "[text" (and "]" when closed) was not a link: prints it as text. */
static void link_not_a_link(md_renderer *r, int closed) {
    unsigned char text[LINK_TEXT_MAX];
    size_t n = r->link_len;
    memcpy(text, r->link_text, n);
    r->link = LINK_NONE;
    r->link_len = 0;
    put_text(r, '[');
    /* The text holds no '[' or ']', so this cannot start another hold. */
    for (size_t i = 0; i < n; i++) inline_char(r, text[i]);
    if (closed) inline_char(r, ']');
}

/* "[text](" seen: the text underlined, then the url dim, up to its ')'. */
static void link_confirmed(md_renderer *r) {
    unsigned char text[LINK_TEXT_MAX];
    size_t n = r->link_len;
    memcpy(text, r->link_text, n);
    r->link = LINK_NONE;
    r->link_len = 0;
    r->in_link_text = 1;
    for (size_t i = 0; i < n; i++) inline_char(r, text[i]);
    /* What the text left held back is followed by ']'. */
    if (r->escape) r->escape = 0, put_text(r, '\\');
    if (r->run_len) resolve_run(r, CH_PUNCT);
    r->in_link_text = 0;
    put(r, ' ');
    r->link = LINK_URL;
    r->url_depth = 0;
    put(r, '(');
    r->prev = CH_PUNCT;
}

static void inline_char(md_renderer *r, unsigned char c) {
    if (r->skip_spaces) {
        if (c == ' ' || c == '\t') return;
        r->skip_spaces = 0;
    }
    if (r->escape) { /* "\*" is a literal '*'; before anything else the '\\' stays */
        r->escape = 0;
        if (class_of(c) == CH_PUNCT) {
            put_text(r, c);
            return;
        }
        put_text(r, '\\');
    }
    if (r->run_len) {
        if (c == r->run_char) {
            r->run_len++;
            return;
        }
        resolve_run(r, class_of(c));
    }
    switch (r->link) {
    case LINK_TEXT:
        if (c == ']') {
            r->link = LINK_AFTER_TEXT;
            return;
        }
        if (c != '[' && r->link_len < LINK_TEXT_MAX) {
            r->link_text[r->link_len++] = c;
            return;
        }
        link_not_a_link(r, 0); /* nested '[' or too long: c starts afresh */
        inline_char(r, c);
        return;
    case LINK_AFTER_TEXT:
        if (c == '(') {
            link_confirmed(r);
            return;
        }
        link_not_a_link(r, 1);
        inline_char(r, c);
        return;
    case LINK_URL: /* verbatim: urls are full of '_' */
        if (c == '(') {
            r->url_depth++;
        } else if (c == ')') {
            if (r->url_depth == 0) {
                put(r, c);
                r->link = LINK_NONE;
                r->prev = CH_PUNCT;
                return;
            }
            r->url_depth--;
        }
        put(r, c);
        return;
    case LINK_NONE:
        break;
    }
    if (r->code_len) { /* no markup inside a code span, only its closing run */
        if (c == '`') r->run_char = c, r->run_len = 1;
        else put_text(r, c);
        return;
    }
    switch (c) {
    case '*':
    case '_':
    case '`':
        r->run_char = c;
        r->run_len = 1;
        return;
    case '\\':
        r->escape = 1;
        return;
    case '[':
        r->link = LINK_TEXT;
        r->link_len = 0;
        return;
    default:
        put_text(r, c);
    }
}

/* Prints what the line left held back (its style is ended by the caller). */
static void end_inline(md_renderer *r) {
    if (r->link == LINK_TEXT) link_not_a_link(r, 0);
    else if (r->link == LINK_AFTER_TEXT) link_not_a_link(r, 1);
    if (r->escape) r->escape = 0, put_text(r, '\\');
    if (r->run_len) resolve_run(r, CH_SPACE);
}

static void reset_inline(md_renderer *r) {
    r->header_level = 0;
    r->skip_spaces = 0;
    r->prev = CH_SPACE;
    r->run_len = 0;
    r->escape = 0;
    r->bold = r->italic = 0;
    r->code_len = 0;
    r->link = LINK_NONE;
    r->in_link_text = 0;
    r->url_depth = 0;
    r->link_len = 0;
}

/* ---- line starts --------------------------------------------------------- */

typedef enum { KIND_MORE, KIND_TEXT, KIND_HEADER, KIND_BULLET, KIND_RULE, KIND_FENCE, KIND_BLANK } line_kind;

typedef struct {
    line_kind kind;
    int quotes;                   /* '>' markers */
    size_t indent_at, indent_len; /* blanks after them, printed as they are */
    size_t text_at;               /* the text after the marker; a fence's info string */
    size_t marker_len;            /* header level; fence length */
} line_shape;

/* What the line s[0..n) is; KIND_MORE if that depends on bytes not seen yet
 * (complete: the line has ended). */
static line_shape shape_of_line(const unsigned char *s, size_t n, int complete) {
    line_shape sh = {.kind = KIND_MORE};
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == n) {
            if (complete) sh.kind = KIND_BLANK;
            return sh;
        }
        if (s[i] != '>') {
            sh.indent_at = start;
            sh.indent_len = i - start;
            break;
        }
        sh.quotes++;
        i++;
        if (i < n && s[i] == ' ') i++; /* the bar replaces "> " */
    }
    unsigned char c = s[i];
    size_t j = i;
    sh.text_at = i;
    if (c == '#') {
        while (j < n && s[j] == '#') j++;
        if (j - i > 6) {
            sh.kind = KIND_TEXT; /* "#######" */
        } else if (j == n && !complete) {
            /* "#", "##": a header only if a blank follows */
        } else if (j == n || s[j] == ' ' || s[j] == '\t') {
            sh.kind = KIND_HEADER;
            sh.marker_len = j - i;
            sh.text_at = j;
        } else {
            sh.kind = KIND_TEXT; /* "#hashtag" */
        }
        return sh;
    }
    if ((c == '`' || c == '~') && sh.quotes == 0) {
        while (j < n && s[j] == c) j++;
        if (j == n && !complete) return sh;
        /* CommonMark: a backtick fence's info has no backtick ("```x```" is a span). */
        if (j - i < 3 || (c == '`' && memchr(s + j, '`', n - j))) {
            sh.kind = KIND_TEXT;
        } else if (complete) {
            sh.kind = KIND_FENCE;
            sh.marker_len = j - i;
            sh.text_at = j;
        }
        return sh;
    }
    if (c == '-' || c == '*' || c == '_' || c == '+') {
        if (c != '+') { /* "---", "* * *": only marks and blanks to the end */
            size_t marks = 0;
            while (j < n && (s[j] == c || is_blank(s[j]))) marks += s[j++] == c;
            if (j == n && !complete) return sh;
            if (j == n && marks >= 3) {
                sh.kind = KIND_RULE;
                return sh;
            }
        }
        if (c != '_') {
            if (i + 1 == n && !complete) return sh;
            if (i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')) {
                sh.kind = KIND_BULLET;
                sh.text_at = i + 1;
                return sh;
            }
        }
    }
    sh.kind = KIND_TEXT; /* ordered list items ("1. ") are text as well */
    return sh;
}

static void put_rule(md_renderer *r, int width) {
    emit_style(r, ST_DIM);
    for (int i = 0; i < width; i++) fputs(RULE_PIECE, r->out);
}

/* "─── lang": the fence's first word, control bytes dropped, cut to LANG_MAX
 * bytes without splitting a UTF-8 character. */
static void put_fence_label(md_renderer *r, const unsigned char *info, size_t n) {
    put_rule(r, 3);
    size_t i = 0;
    while (i < n && is_blank(info[i])) i++;
    size_t end = i;
    while (end < n && !is_blank(info[end])) end++;
    if (end - i > LANG_MAX) {
        end = i + LANG_MAX;
        while (end > i && (info[end] & 0xC0) == 0x80) end--; /* info[end] is the first byte cut */
    }
    if (end == i) return;
    fputc(' ', r->out);
    for (; i < end; i++)
        if (info[i] >= ' ' && info[i] != 0x7f) fputc(info[i], r->out);
}

/* Prints the held line start as `sh` says, then its remaining bytes as text. */
static void start_line(md_renderer *r, line_shape sh) {
    const unsigned char *s = r->line;
    size_t n = r->line_len;
    for (int q = 0; q < sh.quotes; q++) {
        put_decoration(r, ST_DIM, QUOTE_BAR);
        put(r, ' ');
    }
    if (sh.kind == KIND_BLANK) return;
    if (sh.kind == KIND_RULE) {
        put_rule(r, RULE_WIDTH);
        return;
    }
    for (size_t i = 0; i < sh.indent_len; i++) put(r, s[sh.indent_at + i]);
    if (sh.kind == KIND_FENCE) {
        put_fence_label(r, s + sh.text_at, n - sh.text_at);
        r->fence_char = s[sh.text_at - 1];
        r->fence_len = sh.marker_len;
        return;
    }
    if (sh.kind == KIND_BULLET) put_string(r, BULLET);
    if (sh.kind == KIND_HEADER) {
        r->header_level = (int)sh.marker_len;
        r->skip_spaces = 1;
    }
    r->mode = MODE_INLINE;
    r->prev = CH_SPACE;
    for (size_t i = sh.text_at; i < n; i++) inline_char(r, s[i]);
}

/* 1: the held code line is the closing fence; 0: it may still be; -1: it is not. */
static int fence_closes(const md_renderer *r, int complete) {
    const unsigned char *s = r->line;
    size_t n = r->line_len, i = 0, run = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    while (i < n && s[i] == r->fence_char) i++, run++;
    if (i < n && run < r->fence_len) return -1;
    while (i < n && is_blank(s[i])) i++;
    if (i < n) return -1;
    if (!complete) return 0;
    return run >= r->fence_len ? 1 : -1;
}

static void put_held_code(md_renderer *r) {
    for (size_t i = 0; i < r->line_len; i++) put(r, r->line[i]);
    r->line_len = 0;
}

/* The line ends (at a newline or md_finish): prints what it held back and
 * resets the styles. */
static void end_line(md_renderer *r) {
    switch (r->mode) {
    case MODE_LINE_START:
        start_line(r, shape_of_line(r->line, r->line_len, 1));
        if (r->mode == MODE_INLINE) end_inline(r);
        break;
    case MODE_INLINE:
        end_inline(r);
        break;
    case MODE_FENCE_LINE_START:
        if (fence_closes(r, 1) == 1) { /* a rule, indented as the fence was */
            emit_style(r, 0);
            for (size_t i = 0; i < r->line_len && (r->line[i] == ' ' || r->line[i] == '\t'); i++)
                fputc(r->line[i], r->out);
            put_rule(r, 3);
            r->fence_len = 0;
        } else {
            put_held_code(r);
        }
        break;
    case MODE_FENCE_TEXT:
        break;
    }
    r->line_len = 0;
    emit_style(r, 0);
    reset_inline(r);
    r->mode = r->fence_len ? MODE_FENCE_LINE_START : MODE_LINE_START;
}

static void step(md_renderer *r, unsigned char c) {
    if (c == '\n') {
        end_line(r);
        fputc('\n', r->out);
        return;
    }
    switch (r->mode) {
    case MODE_LINE_START: {
        r->line[r->line_len++] = c;
        line_shape sh = shape_of_line(r->line, r->line_len, 0);
        if (sh.kind == KIND_MORE) {
            if (r->line_len < LINE_HOLD_MAX) return;
            sh = (line_shape){.kind = KIND_TEXT}; /* a freak line: no more holding */
        }
        start_line(r, sh);
        r->line_len = 0;
        return;
    }
    case MODE_INLINE:
        inline_char(r, c);
        return;
    case MODE_FENCE_LINE_START:
        r->line[r->line_len++] = c;
        if (fence_closes(r, 0) == 0 && r->line_len < LINE_HOLD_MAX) return;
        r->mode = MODE_FENCE_TEXT;
        put_held_code(r);
        return;
    case MODE_FENCE_TEXT:
        put(r, c);
        return;
    }
}

/* ---- API ----------------------------------------------------------------- */

md_renderer *md_new(FILE *out, int style) {
    if (!out) return NULL;
    md_renderer *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->out = out;
    r->style_on = style != 0;
    reset_inline(r);
    return r;
}

void md_feed(md_renderer *r, const char *text, size_t len) {
    if (!r || !text) return;
    if (!r->style_on) fwrite(text, 1, len, r->out);
    else
        for (size_t i = 0; i < len; i++) step(r, (unsigned char)text[i]);
    fflush(r->out); /* the point is to show tokens as they come */
}

void md_finish(md_renderer *r) {
    if (!r) return;
    if (r->style_on) {
        end_line(r);
        r->fence_len = 0;
        r->mode = MODE_LINE_START;
    }
    fflush(r->out);
}

void md_free(md_renderer *r) { free(r); }

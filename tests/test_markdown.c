/* The streaming Markdown renderer (app/markdown.c). Output goes to a memory
 * stream and is compared byte for byte, ANSI codes included; every expected
 * case is rendered twice, fed all at once and byte by byte.
 *   - style 0: the output is exactly the input (random bytes, NULs, chunks)
 *   - headers, bold/italic, code spans, fences, lists, quotes, rules, links,
 *     backslash escapes: the exact sequences
 *   - no false emphasis: snake_case_words, 2*3*4, x**2, a * b stay as they are
 *   - styles reset: an unclosed ** / ` / link at a line end or md_finish
 *     leaves the terminal unstyled; md_finish returns to a fresh renderer
 *   - chunking: documents covering every feature render the same all at once,
 *     byte by byte, split at every position, and in random chunks
 *   - streaming: plain text appears at once, ambiguous bytes are held back,
 *     never more than the current line (each newline is out when fed)
 *   - random bytes (markdown-heavy and arbitrary) and huge lines: no crash
 *     (the ASan build checks every access), chunking invariance, reset at end */
#include "test_util.h"

#include "markdown.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESET "\033[0m"
#define BOLD "\033[1m"
#define ITALIC "\033[3m"
#define BOLD_ITALIC "\033[1;3m"
#define DIM "\033[2m"
#define H1 "\033[1;4;36m"
#define H2 "\033[1;36m"
#define CODE "\033[33m"
#define LINK "\033[4;34m"
#define BAR DIM "\xe2\x94\x82" RESET
#define DOT "\xe2\x80\xa2"
#define RULE3 "\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80"
#define RULE15 RULE3 RULE3 RULE3 RULE3 RULE3
#define RULE40 RULE15 RULE15 RULE3 RULE3 RULE3 "\xe2\x94\x80"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t next_random(uint64_t *state) { /* xorshift64 */
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

typedef struct {
    char *data;
    size_t len;
} rendered;

/* Renders in[0..len): max_chunk 0 feeds it at once, else in chunks of 1 to
 * max_chunk bytes drawn from seed (max_chunk 1: byte by byte). */
static rendered render(const char *in, size_t len, int style, size_t max_chunk, uint64_t seed) {
    rendered out = {0};
    FILE *f = open_memstream(&out.data, &out.len);
    assert_non_null(f);
    md_renderer *r = md_new(f, style);
    assert_non_null(r);
    if (!seed) seed = 1;
    for (size_t at = 0; at < len;) {
        size_t n = max_chunk == 0 ? len - at : 1 + (size_t)(next_random(&seed) % max_chunk);
        if (n > len - at) n = len - at;
        md_feed(r, in + at, n);
        at += n;
    }
    md_finish(r);
    md_free(r);
    fclose(f);
    return out;
}

/* s with control bytes shown as \e, \n, \xNN: for failure messages. */
static const char *shown(const char *s, size_t n) {
    static char buf[2][8192];
    static int which;
    char *b = buf[which ^= 1];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 8 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 27) k += (size_t)sprintf(b + k, "\\e");
        else if (c == '\n') k += (size_t)sprintf(b + k, "\\n");
        else if (c < 32 || c == 127) k += (size_t)sprintf(b + k, "\\x%02x", c);
        else b[k++] = (char)c;
    }
    b[k] = 0;
    return b;
}

static void expect_output(const char *label, rendered got, const char *want, size_t want_len) {
    if (got.len != want_len || memcmp(got.data, want, want_len) != 0) {
        print_error("%s\n  got:  %s\n  want: %s\n", label, shown(got.data, got.len), shown(want, want_len));
        free(got.data);
        fail();
    }
    free(got.data);
}

/* Renders in with styles, fed at once and byte by byte; both must be want. */
static void check_render(const char *in, size_t in_len, const char *want, size_t want_len) {
    char label[256];
    snprintf(label, sizeof label, "input \"%s\" (at once)", shown(in, in_len));
    expect_output(label, render(in, in_len, 1, 0, 0), want, want_len);
    snprintf(label, sizeof label, "input \"%s\" (byte by byte)", shown(in, in_len));
    expect_output(label, render(in, in_len, 1, 1, 0), want, want_len);
}
#define CHECK(in, want) check_render(in, sizeof(in) - 1, want, sizeof(want) - 1)
/* Text Markdown leaves alone comes out unchanged, styles on. */
#define UNCHANGED(in) check_render(in, sizeof(in) - 1, in, sizeof(in) - 1)

static size_t count_byte(const char *s, size_t n, char c) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

/* The last SGR sequence in s is a reset (or there is none): the terminal is
 * left unstyled. */
static int ends_unstyled(const char *s, size_t n) {
    for (size_t i = n; i-- > 0;)
        if (s[i] == '\033') return n - i >= 4 && memcmp(s + i, RESET, 4) == 0;
    return 1;
}

/* A document with every feature, and the edge cases around them. */
static const char DOC_ALL[] =
    "# Title with **bold** and `code`\n"
    "## Second level\n"
    "### Third _level_\n"
    "####### not a header, #hashtag\n"
    "Plain text with **bold**, __bold__, *italic*, _italic_, ***both***, and `inline *code*`.\n"
    "snake_case_words, 2*3*4 = 24, x**2 + y**2, a * b, my_var_ stay; __init__ is bold as in CommonMark.\n"
    "中文**粗体**文字 and **Note:** text. Unclosed **bold to the end\n"
    "- bullet one\n"
    "* bullet two with [a link](https://example.org/a_(b)_c) and [x] box\n"
    "+ bullet three\n"
    "  - nested **item**\n"
    "1. first\n"
    "2) second\n"
    "> a quote with *style*\n"
    "> > nested quote\n"
    ">\n"
    "> - quoted item\n"
    "---\n"
    "* * *\n"
    "___\n"
    "-- not a rule\n"
    "```python\n"
    "def f(x):  # **not bold** `not code`\n"
    "    return x*2\n"
    "```\n"
    "~~~\n"
    "```\n"
    "~~~~\n"
    "  ```sh\n"
    "  ls -l\n"
    "  ```\n"
    "```inline``` span, ``a ` b``, the ` key, \\*escaped\\*, C:\\Users\n"
    "[nested [link](u)] and ![img](p.png) and [unclosed\n"
    "\n"
    "# Unclosed *header style\n"
    "last line without newline `code";

/* ---- tests -------------------------------------------------------------- */

static void test_style0_passthrough(void **state) {
    (void)state;
    uint64_t seed = 7;
    char random_bytes[4096];
    for (size_t i = 0; i < sizeof random_bytes; i++) random_bytes[i] = (char)next_random(&seed);
    const struct {
        const char *text;
        size_t len;
    } docs[] = {{DOC_ALL, sizeof DOC_ALL - 1}, {random_bytes, sizeof random_bytes}, {"a\0**b**\n", 8}};
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        const size_t chunks[] = {0, 1, 3, 17};
        for (size_t c = 0; c < 4; c++) {
            char label[64];
            snprintf(label, sizeof label, "style 0, document %zu, chunks %zu", d, chunks[c]);
            expect_output(label, render(docs[d].text, docs[d].len, 0, chunks[c], 99 + c), docs[d].text, docs[d].len);
        }
    }
}

static void test_headers(void **state) {
    (void)state;
    CHECK("# Title\n", H1 "Title" RESET "\n");
    CHECK("## Two\n", H2 "Two" RESET "\n");
    CHECK("### Three\n", BOLD "Three" RESET "\n");
    CHECK("###### Six\n", BOLD "Six" RESET "\n");
    CHECK("#   Spaced\n", H1 "Spaced" RESET "\n");
    CHECK("  # Indented\n", "  " H1 "Indented" RESET "\n");
    CHECK("## A **b** `c`\n", H2 "A b " "\033[0;1;33m" "c" RESET "\n");
    CHECK("# A *b* c\n", H1 "A " "\033[0;1;3;4;36m" "b" "\033[0;1;4;36m" " c" RESET "\n");
    CHECK("# Last", H1 "Last" RESET);
    UNCHANGED("####### Seven\n");
    UNCHANGED("#hashtag\n");
    UNCHANGED("#!/bin/sh\n");
    UNCHANGED("text # not a header\n");
}

static void test_emphasis(void **state) {
    (void)state;
    CHECK("**bold** and __bold__\n", BOLD "bold" RESET " and " BOLD "bold" RESET "\n");
    CHECK("*it* _it_\n", ITALIC "it" RESET " " ITALIC "it" RESET "\n");
    CHECK("***both*** x\n", BOLD_ITALIC "both" RESET " x\n");
    CHECK("**a *b* c**", BOLD "a " "\033[0;1;3m" "b" "\033[0;1m" " c" RESET);
    CHECK("*a **b** c*", ITALIC "a " "\033[0;1;3m" "b" "\033[0;3m" " c" RESET);
    CHECK("**Note:** text", BOLD "Note:" RESET " text");
    CHECK("(**x**)", "(" BOLD "x" RESET ")");
    /* Intraword '*' between non-ASCII letters: CJK has no spaces. */
    CHECK("中文**粗体**文字", "中文" BOLD "粗体" RESET "文字");
    /* A NUL inside len is a byte like any other. */
    check_render("a\0**b**", 7, "a\0" BOLD "b" RESET, 1 + 1 + 4 + 1 + 4);
}

static void test_no_false_emphasis(void **state) {
    (void)state;
    UNCHANGED("snake_case_words and my_var_ and _ alone\n");
    UNCHANGED("2*3*4 = 24\n");
    UNCHANGED("x**2 + y**2 = r**2\n");
    UNCHANGED("a * b * c and a*b\n");
    UNCHANGED("**** and ____ and ***** are decoration\n");
    UNCHANGED("file_name.py and CONSTANT_NAME_2\n");
    UNCHANGED("** spaced ** and * spaced *\n");
}

static void test_inline_code(void **state) {
    (void)state;
    CHECK("use `x = **y**` now\n", "use " CODE "x = **y**" RESET " now\n");
    CHECK("``a ` b``\n", CODE "a ` b" RESET "\n");
    CHECK("`a\\*b_c_`", CODE "a\\*b_c_" RESET);
    CHECK("**`x`**", "\033[1;33m" "x" RESET);
    CHECK("`[a](b)`", CODE "[a](b)" RESET);
    UNCHANGED("the ` key and `` too\n");
}

static void test_code_fences(void **state) {
    (void)state;
    CHECK("```python\nx = 1  # **no** `no`\n```\nafter\n",
          DIM RULE3 " python" RESET "\n" CODE "x = 1  # **no** `no`" RESET "\n" DIM RULE3 RESET "\nafter\n");
    CHECK("~~~\ncode\n~~~\n", DIM RULE3 RESET "\n" CODE "code" RESET "\n" DIM RULE3 RESET "\n");
    /* A shorter fence or the other character does not close; a longer one does. */
    CHECK("````\n```\n~~~~\n`````\n",
          DIM RULE3 RESET "\n" CODE "```" RESET "\n" CODE "~~~~" RESET "\n" DIM RULE3 RESET "\n");
    /* Blank lines stay blank, indentation is kept, held blanks are code. */
    CHECK("```\n\n  x\n   \n```", DIM RULE3 RESET "\n\n" CODE "  x" RESET "\n" CODE "   " RESET "\n" DIM RULE3 RESET);
    /* Not closing: text after the fence. */
    CHECK("```\n``` x\n```\n", DIM RULE3 RESET "\n" CODE "``` x" RESET "\n" DIM RULE3 RESET "\n");
    /* Indented in a list: the rules keep the indentation. */
    CHECK("- a\n  ```sh\n  ls\n  ```\n",
          DOT " a\n  " DIM RULE3 " sh" RESET "\n" CODE "  ls" RESET "\n  " DIM RULE3 RESET "\n");
    /* Only the info string's first word; control bytes dropped. */
    CHECK("``` c {.x}\n```\n", DIM RULE3 " c" RESET "\n" DIM RULE3 RESET "\n");
    CHECK("```a\x01" "b\n```\n", DIM RULE3 " ab" RESET "\n" DIM RULE3 RESET "\n");
    /* A backtick in the info string: an inline span, not a fence. */
    CHECK("```inline``` text\n", CODE "inline" RESET " text\n");
    UNCHANGED("``\n");
    /* Not inside quotes. */
    CHECK("> ```\n", BAR " ```\n");
}

static void test_lists(void **state) {
    (void)state;
    CHECK("- one\n* two\n+ three\n", DOT " one\n" DOT " two\n" DOT " three\n");
    CHECK("  - nested\n\t* tab\n", "  " DOT " nested\n\t" DOT " tab\n");
    CHECK("- **b**: x\n", DOT " " BOLD "b" RESET ": x\n");
    CHECK("* *it*\n", DOT " " ITALIC "it" RESET "\n");
    CHECK("- ", DOT " ");
    CHECK("*emph* start\n", ITALIC "emph" RESET " start\n");
    UNCHANGED("1. first\n2) second\n10. tenth\n");
    UNCHANGED("-- not\n+1\n-x\n-\n");
}

static void test_quotes_and_rules(void **state) {
    (void)state;
    CHECK("> quote\n", BAR " quote\n");
    CHECK(">quote\n", BAR " quote\n");
    CHECK("> > two\n", BAR " " BAR " two\n");
    CHECK(">\n", BAR " \n");
    CHECK("> - item\n", BAR " " DOT " item\n");
    CHECK("> # H\n", BAR " " H1 "H" RESET "\n");
    CHECK("> **b\n", BAR " " BOLD "b" RESET "\n");
    CHECK("---\n***\n* * *\n___\n- - -\n", DIM RULE40 RESET "\n" DIM RULE40 RESET "\n" DIM RULE40 RESET "\n" DIM RULE40 RESET
                                          "\n" DIM RULE40 RESET "\n");
    CHECK("----------", DIM RULE40 RESET);
    CHECK("> ---\n", BAR " " DIM RULE40 RESET "\n");
    UNCHANGED("--\n-- text\n---x\n");
    CHECK("- - x\n", DOT " - x\n");
}

static void test_links(void **state) {
    (void)state;
    CHECK("see [docs](https://x.org/a_b_c) now", "see " LINK "docs" RESET " " DIM "(https://x.org/a_b_c)" RESET " now");
    CHECK("[w](https://en.wikipedia.org/wiki/A_(b)).", LINK "w" RESET " " DIM "(https://en.wikipedia.org/wiki/A_(b))" RESET ".");
    CHECK("[**b**](u)", "\033[1;4;34m" "b" RESET " " DIM "(u)" RESET);
    CHECK("[a **b**](u)", LINK "a " "\033[0;1;4;34m" "b" RESET " " DIM "(u)" RESET);
    CHECK("[a [b](c)]", "[a " LINK "b" RESET " " DIM "(c)" RESET "]");
    CHECK("![img](p.png)", "!" LINK "img" RESET " " DIM "(p.png)" RESET);
    CHECK("[*x*] y", "[" ITALIC "x" RESET "] y");
    CHECK("[a](http://x", LINK "a" RESET " " DIM "(http://x" RESET);
    UNCHANGED("[x] done, a[i] = b[j], [unclosed\n[a] (b)\n[]");
}

static void test_escapes(void **state) {
    (void)state;
    CHECK("\\*not\\* \\_x\\_ \\# \\`y\\`\n", "*not* _x_ # `y`\n");
    CHECK("\\# not a header\n", "# not a header\n");
    UNCHANGED("C:\\Users\\me and \\n and a \\\nnext \\");
}

static void test_styles_always_reset(void **state) {
    (void)state;
    CHECK("**bold", BOLD "bold" RESET);
    CHECK("*italic", ITALIC "italic" RESET);
    CHECK("`code", CODE "code" RESET);
    CHECK("# **Title\nnext", H1 "Title" RESET "\nnext");
    CHECK("**a\nb**", BOLD "a" RESET "\nb**");
    CHECK("```js\nlet a", DIM RULE3 " js" RESET "\n" CODE "let a" RESET);
    CHECK("```js\n", DIM RULE3 " js" RESET "\n");
}

static void test_finish_resets_state(void **state) {
    (void)state;
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    assert_non_null(f);
    md_renderer *r = md_new(f, 1);
    assert_non_null(r);
    /* An unclosed fence and a held line start, then a new answer. */
    md_feed(r, "```\ncode\n  ``", 13);
    md_finish(r);
    md_feed(r, "# x **y", 7);
    md_finish(r);
    md_feed(r, "-", 1);
    md_finish(r);
    md_free(r);
    fclose(f);
    const char want[] = DIM RULE3 RESET "\n" CODE "code" RESET "\n" CODE "  ``" RESET H1 "x y" RESET "-";
    expect_output("after md_finish", (rendered){data, len}, want, sizeof want - 1);
    md_free(NULL);
    md_finish(NULL);
    md_feed(NULL, "x", 1);
    assert_null(md_new(NULL, 1));
}

static void test_chunking_invariance(void **state) {
    (void)state;
    static const char *const docs[] = {
        DOC_ALL,
        "**bold** then *it* then `code` then [l](u) then \\* then ***x***\n",
        "```\n```\n```\n\n~~~~ ruby\n~~~\n~~~~~\n- - -\n--\n#\n##\n> \n>>\n",
        "[[[a]]](b) **`x`** _`y`_ `**` *[a](b)* [`c`](d) \\",
    };
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t len = strlen(docs[d]);
        rendered whole = render(docs[d], len, 1, 0, 0);
        assert_true(ends_unstyled(whole.data, whole.len));
        char label[96];
        snprintf(label, sizeof label, "document %zu byte by byte", d);
        expect_output(label, render(docs[d], len, 1, 1, 0), whole.data, whole.len);
        for (uint64_t seed = 1; seed <= 20; seed++) {
            snprintf(label, sizeof label, "document %zu, random chunks (seed %llu)", d, (unsigned long long)seed);
            expect_output(label, render(docs[d], len, 1, 1 + seed % 9, seed), whole.data, whole.len);
        }
        /* Split in two at every position. */
        for (size_t cut = 1; cut < len; cut++) {
            char *data = NULL;
            size_t n = 0;
            FILE *f = open_memstream(&data, &n);
            assert_non_null(f);
            md_renderer *r = md_new(f, 1);
            md_feed(r, docs[d], cut);
            md_feed(r, docs[d] + cut, len - cut);
            md_finish(r);
            md_free(r);
            fclose(f);
            snprintf(label, sizeof label, "document %zu cut at %zu", d, cut);
            expect_output(label, (rendered){data, n}, whole.data, whole.len);
        }
        free(whole.data);
    }
}

/* What has been fed shows at once unless it is ambiguous, and a line is out
 * as soon as its newline is fed. */
static void test_streams_promptly(void **state) {
    (void)state;
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    assert_non_null(f);
    md_renderer *r = md_new(f, 1);
    assert_non_null(r);
    const struct {
        const char *feed, *total; /* the output so far after feeding `feed` */
    } steps[] = {
        {"Hello wor", "Hello wor"},
        {"ld", "Hello world"},
        {" *", "Hello world "},       /* '*' could open italic */
        {"x", "Hello world " ITALIC "x"},
        {"*", "Hello world " ITALIC "x"},
        {"\n", "Hello world " ITALIC "x" RESET "\n"},
        {"-", "Hello world " ITALIC "x" RESET "\n"}, /* list, rule, or text? */
        {" ", "Hello world " ITALIC "x" RESET "\n"},
        {"i", "Hello world " ITALIC "x" RESET "\n" DOT " i"},
        {"tem [li", "Hello world " ITALIC "x" RESET "\n" DOT " item "}, /* a link? */
        {"nk](", "Hello world " ITALIC "x" RESET "\n" DOT " item " LINK "link" RESET " " DIM "("},
        {"u) `c", "Hello world " ITALIC "x" RESET "\n" DOT " item " LINK "link" RESET " " DIM "(u)" RESET " " CODE "c"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        md_feed(r, steps[i].feed, strlen(steps[i].feed));
        char label[64];
        snprintf(label, sizeof label, "after step %zu", i);
        if (len != strlen(steps[i].total) || memcmp(data, steps[i].total, len) != 0) {
            print_error("%s\n  got:  %s\n  want: %s\n", label, shown(data, len), shown(steps[i].total, strlen(steps[i].total)));
            fail();
        }
    }
    md_finish(r);
    md_free(r);
    fclose(f);
    free(data);

    /* Line by line: every newline fed is in the output at once. */
    data = NULL;
    f = open_memstream(&data, &len);
    assert_non_null(f);
    r = md_new(f, 1);
    size_t lines = 0;
    for (const char *p = DOC_ALL; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        md_feed(r, p, n);
        lines += nl != NULL;
        assert_int_equal(count_byte(data, len, '\n'), lines);
        if (nl) assert_true(ends_unstyled(data, len));
        p += n;
    }
    md_finish(r);
    md_free(r);
    fclose(f);
    free(data);
}

/* Random documents: markdown-heavy ones and arbitrary bytes. None may crash
 * (ASan checks), chunking must not matter, every newline comes out, and
 * without ESC bytes in the input the terminal ends unstyled. */
static void test_random_bytes(void **state) {
    (void)state;
    static const char alphabet[] = "**__``~~##-->>[]()!\\+ \n\n\t1a.Z\xe4\xb8\xad";
    const int n_docs = SANITIZED ? 4000 : 20000; /* every load checked there: fewer documents */
    uint64_t seed = 12345;
    char doc[700];
    for (int d = 0; d < n_docs; d++) {
        size_t len = next_random(&seed) % sizeof doc;
        int arbitrary = d % 4 == 3;
        for (size_t i = 0; i < len; i++) {
            uint64_t x = next_random(&seed);
            doc[i] = arbitrary ? (char)x : alphabet[x % (sizeof alphabet - 1)];
        }
        rendered whole = render(doc, len, 1, 0, 0);
        rendered chunked = render(doc, len, 1, 1 + (size_t)(d % 13), (uint64_t)d + 1);
        if (whole.len != chunked.len || memcmp(whole.data, chunked.data, whole.len) != 0)
            fail_msg("random document %d: chunking changed the output", d);
        assert_int_equal(count_byte(whole.data, whole.len, '\n'), count_byte(doc, len, '\n'));
        if (!memchr(doc, '\033', len)) assert_true(ends_unstyled(whole.data, whole.len));
        free(whole.data);
        free(chunked.data);
    }
}

/* Lines far longer than anything held back. */
static void test_huge_lines(void **state) {
    (void)state;
    const size_t big = 1 << 20;
    char *doc = malloc(big + 8);
    assert_non_null(doc);
    const char fills[] = {'-', '`', '*', '[', ' ', '#', '>', '(', 'a'};
    const char *prefixes[] = {"", "```\n", "[a](", "> ", "- "};
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        for (size_t k = 0; k < sizeof fills; k++) {
            size_t pre = strlen(prefixes[p]);
            memcpy(doc, prefixes[p], pre);
            memset(doc + pre, fills[k], big - pre);
            rendered out = render(doc, big, 1, 4096, k + 1);
            assert_true(out.len >= big / 2); /* the text comes out, give or take markers */
            assert_true(ends_unstyled(out.data, out.len));
            free(out.data);
        }
    }
    free(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_style0_passthrough),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_emphasis),
        cmocka_unit_test(test_no_false_emphasis),
        cmocka_unit_test(test_inline_code),
        cmocka_unit_test(test_code_fences),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_quotes_and_rules),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_styles_always_reset),
        cmocka_unit_test(test_finish_resets_state),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_streams_promptly),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_huge_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The think filter (app/think_filter.c): answers split into reasoning and
 * content, each expected case fed whole, byte by byte and split at every
 * position (the outputs must be the same), then random chunks of random text
 * (no crash under ASan, chunking invariance).
 *   - an empty <think></think> block (whitespace only) gives no reasoning
 *   - whitespace at both ends of the reasoning and newlines after </think> go
 *   - tags split across pieces are recognised; "<thinking…" is content
 *   - a prompt that opened <think> starts inside it; an unclosed block ends */
#include "test_util.h"

#include "think_filter.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char out[2][8192]; /* [0] content, [1] reasoning */
    size_t n[2];
    int order_ok; /* no reasoning after content */
} sink;

static void collect(void *user, int is_reasoning, const char *text, size_t n) {
    sink *s = user;
    if (is_reasoning && s->n[0]) s->order_ok = 0;
    if (n == 0) fail_msg("an empty piece was emitted");
    memcpy(s->out[is_reasoning] + s->n[is_reasoning], text, n);
    s->n[is_reasoning] += n;
    s->out[is_reasoning][s->n[is_reasoning]] = 0;
}

/* Feeds text in pieces cut at the given positions (sorted, within the text). */
static void run(const char *text, int inside, const size_t *cuts, int n_cuts, sink *s) {
    memset(s, 0, sizeof *s);
    s->order_ok = 1;
    think_filter f;
    think_filter_init(&f, inside, collect, s);
    size_t at = 0, len = strlen(text);
    for (int i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        think_filter_push(&f, text + at, to - at);
        at = to;
    }
    think_filter_finish(&f);
}

static void expect(const char *text, int inside, const char *reasoning, const char *content) {
    sink s;
    run(text, inside, NULL, 0, &s);
    if (strcmp(s.out[1], reasoning) || strcmp(s.out[0], content) || !s.order_ok)
        fail_msg("%s: reasoning [%s] content [%s], expected [%s] [%s]", text, s.out[1], s.out[0], reasoning, content);
    const size_t len = strlen(text);
    for (size_t cut = 1; cut < len; cut++) { /* split in two at every position */
        run(text, inside, &cut, 1, &s);
        if (strcmp(s.out[1], reasoning) || strcmp(s.out[0], content))
            fail_msg("%s split at %zu: reasoning [%s] content [%s]", text, cut, s.out[1], s.out[0]);
    }
    size_t cuts[512];
    for (size_t i = 1; i < len && i <= 512; i++) cuts[i - 1] = i; /* byte by byte */
    run(text, inside, cuts, len - 1 < 512 ? (int)len - 1 : 512, &s);
    if (strcmp(s.out[1], reasoning) || strcmp(s.out[0], content))
        fail_msg("%s byte by byte: reasoning [%s] content [%s]", text, s.out[1], s.out[0]);
}

static void test_cases(void **state) {
    (void)state;
    expect("<think>\n\n</think>\n\nHello", 0, "", "Hello");
    expect("<think>\nI think.\n</think>\n\nAnswer", 0, "I think.", "Answer");
    expect("Plain answer", 0, "", "Plain answer");
    expect("  <think>x</think>y", 0, "x", "y");
    expect("\nstep one\n\nstep two\n</think>\n\nDone", 1, "step one\n\nstep two", "Done");
    expect("<think>unfinished  \n", 0, "unfinished", "");
    expect("<thinking is fun", 0, "", "<thinking is fun");
    expect("<thi", 0, "", "<thi");
    expect("<think>a </thi b</think>c", 0, "a </thi b", "c");
    expect("<think>\n\n\n</think>", 0, "", "");
    expect("x <think>y</think>", 0, "", "x <think>y</think>"); /* only a leading block is reasoning */
}

static void test_prompt_inside(void **state) {
    (void)state;
    assert_true(think_prompt_is_inside("<|im_start|>assistant\n<think>\n"));
    assert_false(think_prompt_is_inside("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    assert_false(think_prompt_is_inside("<|im_start|>assistant\n"));
    assert_true(think_prompt_is_inside("<think>a</think> then <think>"));
}

/* Random text rich in tag fragments, in random chunks: whole = chunked. */
static void test_random_chunks(void **state) {
    (void)state;
    static const char *const parts[] = {"<think>", "</think>", "<thi", "</th", "\n", " ", "a", "bc", "<", ">", "k"};
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 2000; round++) {
        char text[600] = {0};
        size_t len = 0;
        while (len < 500) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = parts[(seed >> 33) % (sizeof parts / sizeof *parts)];
            memcpy(text + len, p, strlen(p));
            len += strlen(p);
        }
        text[len] = 0;
        const int inside = round & 1;
        sink whole, chunked;
        run(text, inside, NULL, 0, &whole);
        size_t cuts[64];
        int n = 0;
        for (size_t at = 0; n < 64;) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            at += 1 + (seed >> 33) % 40;
            if (at >= len) break;
            cuts[n++] = at;
        }
        run(text, inside, cuts, n, &chunked);
        if (strcmp(whole.out[0], chunked.out[0]) || strcmp(whole.out[1], chunked.out[1]))
            fail_msg("round %d (inside %d): chunked output differs\ntext [%s]\nwhole [%s] [%s]\nchunked [%s] [%s]", round,
                     inside, text, whole.out[1], whole.out[0], chunked.out[1], chunked.out[0]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_prompt_inside),
        cmocka_unit_test(test_random_chunks),
    };
    return cmocka_run_group_tests_name("think_filter", tests, NULL, NULL);
}

/* Splits a streamed answer into reasoning (a leading <think>…</think> block)
 * and content, for the terminal: run and chat show reasoning apart from the
 * answer or not at all, and never an empty one. Whitespace at both ends of
 * the reasoning and the newlines after </think> are dropped; text that may be
 * the start of a tag is held back until it is known. */
#ifndef FM_APP_THINK_FILTER_H
#define FM_APP_THINK_FILTER_H

#include <stddef.h>

/* is_reasoning: 1 for reasoning text, 0 for the answer. */
typedef void (*think_emit)(void *user, int is_reasoning, const char *text, size_t n);

typedef struct {
    int state; /* 0 before the answer's first text, 1 in reasoning, 3 just after </think>
                  (its newlines are skipped), 2 in content */
    char held[1024];   /* held back: a possible tag, or reasoning's trailing whitespace */
    size_t n_held;
    int reasoning_sent; /* some reasoning went out */
    think_emit emit;
    void *user;
} think_filter;

/* inside: the prompt already opened <think> (the template's generation prompt). */
void think_filter_init(think_filter *f, int inside, think_emit emit, void *user);
void think_filter_push(think_filter *f, const char *text, size_t n);
/* The end of the answer: sends what was held back (an unclosed reasoning ends). */
void think_filter_finish(think_filter *f);
/* Whether rendered prompt text ends inside an opened <think> block. */
int think_prompt_is_inside(const char *prompt);

#endif

#include "think_filter.h"

#include <string.h>

static const char open_tag[] = "<think>", close_tag[] = "</think>";

void think_filter_init(think_filter *f, int inside, think_emit emit, void *user) {
    memset(f, 0, sizeof *f);
    f->state = inside ? 1 : 0;
    f->emit = emit;
    f->user = user;
}

int think_prompt_is_inside(const char *prompt) {
    const char *open = NULL;
    for (const char *p = strstr(prompt, open_tag); p; p = strstr(p + 1, open_tag)) open = p;
    return open && !strstr(open, close_tag);
}

/* Whether s[0..n) is a proper prefix of tag. */
static int tag_prefix(const char *s, size_t n, const char *tag) { return n < strlen(tag) && !strncmp(s, tag, n); }

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* A piece of reasoning: whitespace before the first text and at the end is
 * not sent; unless the block closed here, the trailing whitespace is kept in
 * `held` (it goes out if more reasoning follows). */
static void reasoning_piece(think_filter *f, const char *s, size_t n, int closed) {
    size_t from = 0, end = n;
    if (!f->reasoning_sent)
        while (from < n && is_space(s[from])) from++;
    while (end > from && is_space(s[end - 1])) end--;
    if (end > from) {
        f->emit(f->user, 1, s + from, end - from);
        f->reasoning_sent = 1;
    }
    if (closed || !f->reasoning_sent) return;
    size_t ws = n - end;
    const size_t room = sizeof f->held - 16; /* 16: a possible </think> prefix after it */
    if (ws > room) { /* an extraordinary run of whitespace: what does not fit goes now */
        f->emit(f->user, 1, s + end, ws - room);
        end += ws - room;
        ws = room;
    }
    memcpy(f->held + f->n_held, s + end, ws);
    f->n_held += ws;
}

void think_filter_push(think_filter *f, const char *text, size_t n) {
    /* Work on held + text so tags split across pieces are seen whole. */
    char buf[4096 + sizeof f->held];
    while (n > 0 || f->n_held > 0) {
        size_t take = n < sizeof buf - f->n_held ? n : sizeof buf - f->n_held;
        memcpy(buf, f->held, f->n_held);
        memcpy(buf + f->n_held, text, take);
        size_t len = f->n_held + take;
        f->n_held = 0;
        text += take;
        n -= take;
        size_t at = 0;
        if (f->state == 0) {
            while (at < len && is_space(buf[at])) at++;
            if ((at == len || tag_prefix(buf + at, len - at, open_tag)) && n == 0 && len <= sizeof f->held) {
                memcpy(f->held, buf, len); /* whitespace, or what may still be <think>: undecided */
                f->n_held = len;
                return;
            }
            if (!strncmp(buf + at, open_tag, strlen(open_tag))) {
                f->state = 1;
                at += strlen(open_tag);
            } else {
                f->state = 2;
                at = 0; /* a plain answer: as written */
            }
        }
        if (f->state == 1) {
            const char *close = memmem(buf + at, len - at, close_tag, strlen(close_tag));
            if (!close) {
                /* hold back what may begin </think> */
                size_t keep = 0;
                for (size_t k = 1; k < strlen(close_tag) && k <= len - at; k++)
                    if (tag_prefix(buf + len - k, k, close_tag)) keep = k;
                reasoning_piece(f, buf + at, len - at - keep, 0);
                memcpy(f->held + f->n_held, buf + len - keep, keep);
                f->n_held += keep;
                if (n == 0) return;
                continue;
            }
            reasoning_piece(f, buf + at, (size_t)(close - (buf + at)), 1);
            f->state = 3; /* newlines after </think> are skipped */
            at = (size_t)(close - buf) + strlen(close_tag);
        }
        if (f->state == 3) {
            while (at < len && buf[at] == '\n') at++;
            if (at == len) continue;
            f->state = 2;
        }
        if (at < len) f->emit(f->user, 0, buf + at, len - at);
    }
}

void think_filter_finish(think_filter *f) {
    if (f->state == 0 && f->n_held) f->emit(f->user, 0, f->held, f->n_held); /* "<thi…" that never became a tag */
    else if (f->state == 1 && f->n_held) reasoning_piece(f, f->held, f->n_held, 1); /* never closed */
    f->n_held = 0;
}

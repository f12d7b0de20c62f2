/* A streaming Markdown-to-terminal renderer for `flashmoe chat`: the model's
 * answer is fed as tokens arrive and printed at once with ANSI styles.
 *
 * Only what is still ambiguous is held back (a line's first characters until
 * it is known to be a header, list item, quote, rule or fence; a run of '*',
 * '_' or '`' until the next character; a link's "[text]" until "(" follows),
 * never more than one line. The output is the same however the text is cut
 * into chunks. Inline styles end at each line end; md_finish ends everything,
 * so the terminal is never left styled. */
#ifndef FM_APP_MARKDOWN_H
#define FM_APP_MARKDOWN_H

#include <stddef.h>
#include <stdio.h>

typedef struct md_renderer md_renderer;

/* style: 1 = ANSI styling (a terminal), 0 = pass text through unchanged.
 * NULL if out of memory. */
md_renderer *md_new(FILE *out, int style);
/* Any chunking, even byte by byte; may split UTF-8; any bytes (NULs too). */
void md_feed(md_renderer *r, const char *text, size_t len);
/* Flushes what is held back and resets styles; the renderer is as md_new left it. */
void md_finish(md_renderer *r);
void md_free(md_renderer *r);

#endif

/* A growable byte string for building responses. Allocation failure sets
 * `failed` and later appends do nothing, so callers check once at the end. */
#ifndef FM_APP_SERVER_STRBUF_H
#define FM_APP_SERVER_STRBUF_H

#include <stddef.h>

typedef struct {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
    int failed;
} strbuf;

void sb_append(strbuf *b, const char *s, size_t n);
void sb_puts(strbuf *b, const char *s);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes. */
void sb_consume(strbuf *b, size_t n);
void sb_free(strbuf *b);

#endif

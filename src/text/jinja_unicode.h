/* Code-point helpers for the chat-template interpreter: Python's str works on
 * code points while our strings are UTF-8 bytes. Decoding is lenient: a byte
 * that does not start a valid sequence counts as one character of its own,
 * so slicing and stripping never lose or corrupt bytes. */
#ifndef FM_TEXT_JINJA_UNICODE_H
#define FM_TEXT_JINJA_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The code point at s (len > 0 bytes left) and its byte length in *n.
 * An invalid byte decodes as U+FFFD with *n = 1. */
int32_t jinja_utf8_decode(const char *s, size_t len, size_t *n);
/* The start of the character that ends at s + len (len > 0). */
size_t jinja_utf8_prev(const char *s, size_t len);
size_t jinja_utf8_count(const char *s, size_t len);
/* Byte offset of the code point numbered `index` (len when past the end). */
size_t jinja_utf8_offset(const char *s, size_t len, size_t index);
/* Encodes cp into out (4 bytes at most); returns the byte count. */
size_t jinja_utf8_encode(int32_t cp, char *out);

/* Python's str.isspace for one character. */
bool jinja_is_space(int32_t cp);
/* Python's str.isprintable for one character (what repr() leaves unescaped). */
bool jinja_is_printable(int32_t cp);
bool jinja_is_cased(int32_t cp);
bool jinja_is_upper(int32_t cp);
bool jinja_is_lower(int32_t cp);
bool jinja_is_alpha(int32_t cp);
bool jinja_is_digit(int32_t cp);
int32_t jinja_to_upper(int32_t cp);
int32_t jinja_to_lower(int32_t cp);
int32_t jinja_to_title(int32_t cp);

#endif

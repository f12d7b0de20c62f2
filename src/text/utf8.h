/* UTF-8 helpers for the tokenizer: validation, and the lossy conversion
 * Hugging Face applies when decoding (each maximal ill-formed subsequence
 * becomes one U+FFFD, as Unicode recommends and Rust's from_utf8_lossy does). */
#ifndef FM_TEXT_UTF8_H
#define FM_TEXT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid sequence at s (1-4), or 0 if ill-formed; *ill gets the
 * length of the maximal ill-formed prefix to replace (≥ 1) in that case.
 * *truncated is set when the bytes are a valid prefix cut short by the end of the buffer. */
int utf8_sequence(const unsigned char *s, size_t len, int *ill, int *truncated);
/* Offset of the first invalid byte, or len if the whole string is valid UTF-8. */
size_t utf8_validate(const char *s, size_t len);
/* Appends s to out (room for 3*len bytes) replacing ill-formed sequences by
 * U+FFFD; returns the bytes written. */
size_t utf8_lossy(const char *s, size_t len, char *out);

#endif

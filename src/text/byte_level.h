/* The byte-level alphabet of GPT-2-style BPE: every byte 0..255 is shown as
 * one printable code point (bytes that are printable Latin-1 map to
 * themselves, the others to U+0100 upwards, in byte order). Vocab entries are
 * written in this alphabet; flashmoe converts them back to raw bytes at load
 * and runs BPE on bytes. */
#ifndef FM_TEXT_BYTE_LEVEL_H
#define FM_TEXT_BYTE_LEVEL_H

#include <stddef.h>
#include <stdint.h>

/* Code point shown for `byte`. */
uint32_t byte_level_encode(uint8_t byte);
/* Byte shown as code point `cp`, or -1 if `cp` is not in the alphabet. */
int byte_level_decode(uint32_t cp);
/* Converts a UTF-8 string in the alphabet to raw bytes (out has room for len
 * bytes). Returns the byte count, or -1 if a character is outside it. */
long byte_level_to_bytes(const char *s, size_t len, uint8_t *out);

#endif

/* UTF-8 validation and lossy conversion (see utf8.h). */
#include "text/utf8.h"

#include <string.h>

int utf8_sequence(const unsigned char *s, size_t len, int *ill, int *truncated) {
    *truncated = 0;
    *ill = 1;
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len) {
            *truncated = 1;
            *ill = i;
            return 0;
        }
        unsigned char b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
            *ill = i;
            return 0;
        }
    }
    return n;
}

size_t utf8_validate(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        int ill, truncated, n = utf8_sequence(p + i, len - i, &ill, &truncated);
        if (!n) return i;
        i += (size_t)n;
    }
    return len;
}

size_t utf8_lossy(const char *s, size_t len, char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        int ill, truncated, n = utf8_sequence(p + i, len - i, &ill, &truncated);
        if (n) {
            memcpy(out + o, p + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)ill;
        }
    }
    return o;
}

/* Byte-level alphabet (see byte_level.h). */
#include "text/byte_level.h"

static int printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

/* The non-printable bytes are 0..32, 127..160 and 173, numbered from U+0100 in that order. */
uint32_t byte_level_encode(uint8_t byte) {
    if (printable(byte)) return byte;
    if (byte <= 32) return 256u + byte;
    if (byte <= 160) return 256u + 33 + (byte - 127u);
    return 256u + 67; /* 173 */
}

int byte_level_decode(uint32_t cp) {
    if (cp < 256) return printable((int)cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 66) return (int)(cp - 256 - 33 + 127);
    return cp == 256 + 67 ? 173 : -1;
}

/* Decodes one UTF-8 character; returns its length or 0 if malformed. */
static int utf8_next(const unsigned char *s, size_t len, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (!n || (size_t)n > len) return 0;
    uint32_t v = s[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return n;
}

long byte_level_to_bytes(const char *s, size_t len, uint8_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (len) {
        uint32_t cp;
        int k = utf8_next(p, len, &cp);
        int b = k ? byte_level_decode(cp) : -1;
        if (b < 0) return -1;
        out[n++] = (uint8_t)b;
        p += k;
        len -= (size_t)k;
    }
    return n;
}

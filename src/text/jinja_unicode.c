/* Code-point helpers (see jinja_unicode.h). Character classes come from
 * utf8proc; case mappings are the simple one-to-one ones (Python's upper()
 * also applies the few one-to-many mappings such as 'ß' -> 'SS'). */
#include "text/jinja_unicode.h"

#include <utf8proc.h>

int32_t jinja_utf8_decode(const char *s, size_t len, size_t *n) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        *n = 1;
        return c;
    }
    size_t need;
    int32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        need = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 3, cp = c & 0x07, min = 0x10000;
    else
        goto invalid;
    if (len < need + 1) goto invalid;
    for (size_t i = 1; i <= need; i++) {
        if ((u[i] & 0xc0) != 0x80) goto invalid;
        cp = (cp << 6) | (u[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto invalid;
    *n = need + 1;
    return cp;
invalid:
    *n = 1;
    return 0xfffd;
}

size_t jinja_utf8_prev(const char *s, size_t len) {
    /* Walk back over at most three continuation bytes, then check that the
     * sequence found really decodes to exactly the tail. */
    size_t start = len - 1;
    for (int k = 0; k < 3 && start > 0 && ((unsigned char)s[start] & 0xc0) == 0x80; k++) start--;
    size_t n;
    jinja_utf8_decode(s + start, len - start, &n);
    return start + n == len ? start : len - 1;
}

size_t jinja_utf8_count(const char *s, size_t len) {
    size_t count = 0;
    for (size_t i = 0, n; i < len; i += n, count++) {
        if ((unsigned char)s[i] < 0x80) {
            n = 1;
            continue;
        }
        jinja_utf8_decode(s + i, len - i, &n);
    }
    return count;
}

size_t jinja_utf8_offset(const char *s, size_t len, size_t index) {
    size_t i = 0, n;
    for (size_t k = 0; k < index && i < len; k++, i += n) {
        if ((unsigned char)s[i] < 0x80)
            n = 1;
        else
            jinja_utf8_decode(s + i, len - i, &n);
    }
    return i;
}

size_t jinja_utf8_encode(int32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd; /* no lone surrogates in UTF-8 */
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

bool jinja_is_space(int32_t cp) {
    /* Exactly the characters Python's str.isspace() accepts. */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool jinja_is_printable(int32_t cp) {
    if (cp < 0x80) return cp >= 0x20 && cp < 0x7f;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

bool jinja_is_upper(int32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z';
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_LU;
}

bool jinja_is_lower(int32_t cp) {
    if (cp < 0x80) return cp >= 'a' && cp <= 'z';
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_LL;
}

bool jinja_is_cased(int32_t cp) {
    return jinja_is_upper(cp) || jinja_is_lower(cp) || (cp >= 0x80 && utf8proc_category(cp) == UTF8PROC_CATEGORY_LT);
}

bool jinja_is_alpha(int32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    utf8proc_category_t c = utf8proc_category(cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

bool jinja_is_digit(int32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_ND;
}

int32_t jinja_to_upper(int32_t cp) {
    if (cp < 0x80) return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    return utf8proc_toupper(cp);
}

int32_t jinja_to_lower(int32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return utf8proc_tolower(cp);
}

int32_t jinja_to_title(int32_t cp) {
    if (cp < 0x80) return jinja_to_upper(cp);
    return utf8proc_totitle(cp);
}

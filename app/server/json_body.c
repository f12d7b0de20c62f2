/* A request body → a cJSON object, refusing NUL characters (cJSON's strings
 * end at the first NUL, so "a\u0000b" would silently become "a"). A raw NUL
 * byte is refused outright; a \u0000 escape is found again after parsing by
 * parsing a copy in which each such escape is \uFDD0 (a Unicode noncharacter,
 * same length), so the message can name the field that held it. */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK "\xef\xb7\x90" /* U+FDD0 in UTF-8 */

/* Where a \u0000 escape starts (the backslash is not itself escaped), or NULL. */
static const char *find_nul_escape(const char *s, size_t n, size_t from) {
    for (size_t i = from; i + 6 <= n; i++) {
        if (memcmp(s + i, "\\u0000", 6)) continue;
        size_t k = i;
        while (k > 0 && s[k - 1] == '\\') k--;
        if ((i - k) % 2 == 0) return s + i; /* an even run before it: this backslash starts an escape */
    }
    return NULL;
}

/* Appends the path of the first string (or key) holding MARK to path; 1 if found. */
static int find_mark(const cJSON *v, char *path, size_t cap) {
    const size_t len = strlen(path);
    if (cJSON_IsString(v) && strstr(v->valuestring, MARK)) return 1;
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (cJSON_IsObject(v)) {
            if (c->string && strstr(c->string, MARK)) {
                snprintf(path + len, cap - len, "%s(a key)", len ? "." : "");
                return 1;
            }
            snprintf(path + len, cap - len, "%s%s", len ? "." : "", c->string ? c->string : "?");
        } else {
            snprintf(path + len, cap - len, "[%d]", i);
        }
        if (find_mark(c, path, cap)) return 1;
        path[len] = 0;
    }
    return 0;
}

cJSON *api_parse_body(const char *data, size_t n, api_error *err) {
    const char *nul = memchr(data, 0, n);
    if (nul) {
        api_fail(err, 400, "the request body holds a NUL byte (at byte %zu); JSON text cannot", (size_t)(nul - data));
        return NULL;
    }
    if (!find_nul_escape(data, n, 0)) {
        cJSON *body = cJSON_ParseWithLength(data, n);
        if (!body || !cJSON_IsObject(body)) {
            cJSON_Delete(body);
            api_fail(err, 400, "the request body is not a JSON object");
            return NULL;
        }
        return body;
    }
    char where[256] = "";
    char *copy = (memmem(data, n, MARK, 3) || memmem(data, n, "\\ufdd0", 6) || memmem(data, n, "\\uFDD0", 6))
                     ? NULL /* the marker is taken: no field name */
                     : malloc(n);
    if (copy) {
        memcpy(copy, data, n);
        for (const char *e = find_nul_escape(copy, n, 0); e; e = find_nul_escape(copy, n, (size_t)(e - copy) + 6))
            memcpy(copy + (e - copy), "\\ufdd0", 6);
        cJSON *marked = cJSON_ParseWithLength(copy, n);
        if (marked && !find_mark(marked, where, sizeof where)) where[0] = 0;
        cJSON_Delete(marked);
        free(copy);
    }
    if (where[0]) api_fail(err, 400, "'%s' holds a NUL character (\\u0000), which is not supported", where);
    else api_fail(err, 400, "a string in the request holds a NUL character (\\u0000), which is not supported");
    return NULL;
}

/* JSON file reading (see json_file.h). */
#include "core/json_file.h"

#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Config and index files are small; refuse anything absurd. */
#define JSON_FILE_MAX (64u << 20)

fm_status json_parse_text(const char *text, size_t len, const char *label, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out) return FM_OK;
    int line = 1;
    const char *at = end && end >= text && end <= text + len ? end : text;
    for (const char *p = text; p < at; p++) line += *p == '\n';
    return fm_error(FM_ERR_FORMAT, "%s: invalid JSON near line %d", label, line);
}

fm_status json_file_read(const char *path, cJSON **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fm_error(FM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    rewind(f);
    if (size < 0 || size > (long)JSON_FILE_MAX) {
        fclose(f);
        return size < 0 ? fm_error(FM_ERR_IO, "%s: cannot read: not a regular file", path)
                        : fm_error(FM_ERR_FORMAT, "%s: larger than %u bytes", path, JSON_FILE_MAX);
    }
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, (size_t)size + 1, f);
    int failed = ferror(f);
    fclose(f);
    fm_status st;
    if (failed)
        st = fm_error(FM_ERR_IO, "%s: read error", path);
    else if (len > (size_t)size)
        st = fm_error(FM_ERR_IO, "%s: file grew while being read", path);
    else
        st = json_parse_text(buf, len, path, out);
    free(buf);
    return st;
}

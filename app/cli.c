/* Shared option parsing and error printing for the commands. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("flashmoe: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_lib(const char *what) { return cli_fail("%s: %s", what, fm_last_error()); }

long cli_parse_count(const char *text) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0 || v > INT_MAX) return -1;
    return v;
}

int cli_parse_common(int argc, char **argv, int *i, cli_common *c) {
    const char *a = argv[*i];
    int is_model = !strcmp(a, "-m") || !strcmp(a, "--model");
    int is_threads = !strcmp(a, "-t") || !strcmp(a, "--threads");
    int is_ctx = !strcmp(a, "--ctx");
    if (!is_model && !is_threads && !is_ctx) return 0;
    if (*i + 1 >= argc) {
        cli_fail("%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    if (is_model) {
        c->model_dir = v;
        return 1;
    }
    long n = cli_parse_count(v);
    if (n < 0 || (is_ctx && n == 0)) {
        cli_fail("%s: '%s' is not a valid count", a, v);
        return -1;
    }
    if (is_threads) c->n_threads = (int)n;
    else c->max_context = (int)n;
    return 1;
}

int cli_open_model(const cli_common *c, fm_model **model, fm_session **session) {
    *model = NULL;
    if (session) *session = NULL;
    if (!c->model_dir) return cli_fail("missing -m DIR (a Hugging Face model directory)");
    fm_model_options mo = {.n_threads = c->n_threads};
    if (fm_model_open(c->model_dir, &mo, model) != FM_OK) return cli_fail_lib("cannot open model");
    if (!session) return 0;
    fm_session_options so = {.max_context = c->max_context};
    if (fm_session_new(*model, &so, session) != FM_OK) {
        fm_model_close(*model);
        *model = NULL;
        return cli_fail_lib("cannot create a session");
    }
    return 0;
}

int cli_parse_ids(const char *text, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    int32_t *out = malloc(cap * sizeof *out);
    if (!out) return cli_fail("out of memory");
    const char *p = text;
    while (1) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(out);
            return cli_fail("--ids: '%s' is not a comma-separated list of token ids", text);
        }
        out[(*n)++] = (int32_t)v;
        if (!*end) break;
        p = end + 1;
    }
    *ids = out;
    return 0;
}

int cli_open_with_ids(const cli_common *c, const char *ids_text, int32_t **ids, int *n, fm_model **model,
                      fm_session **session) {
    int rc = cli_parse_ids(ids_text, ids, n);
    if (!rc && (rc = cli_open_model(c, model, session))) {
        free(*ids);
        *ids = NULL;
    }
    return rc;
}

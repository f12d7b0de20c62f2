/* flashmoe tokenize: text → ids, or ids → text (--decode). */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file ("-" = stdin) into a malloc'd buffer. */
static int read_all(const char *path, char **data, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return cli_fail("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *b = realloc(buf, cap *= 2);
        if (!b) free(buf);
        buf = b;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf) return cli_fail("%s: out of memory", path);
    if (err) {
        free(buf);
        return cli_fail("%s: read error", path);
    }
    *data = buf;
    *len = n;
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *text_file = NULL, *decode = NULL, *text = NULL;
    int skip_special = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: flashmoe tokenize --tokenizer PATH [--text-file F | TEXT]\n"
                 "       flashmoe tokenize --tokenizer PATH --decode 1,2,3 [--skip-special]\n"
                 "PATH is a tokenizer.json or a model directory. Encoding prints the ids space-separated\n"
                 "on one line (special tokens written in the text are matched); --decode prints the text.\n"
                 "--text-file - reads standard input.");
            return 0;
        }
        int takes_value = !strcmp(a, "--tokenizer") || !strcmp(a, "-m") || !strcmp(a, "--model") ||
                          !strcmp(a, "--text-file") || !strcmp(a, "--decode");
        if (takes_value && i + 1 >= argc) return cli_fail("%s needs a value", a);
        if (!strcmp(a, "--tokenizer") || !strcmp(a, "-m") || !strcmp(a, "--model")) tok_path = argv[++i];
        else if (!strcmp(a, "--text-file")) text_file = argv[++i];
        else if (!strcmp(a, "--decode")) decode = argv[++i];
        else if (!strcmp(a, "--skip-special")) skip_special = 1;
        else if (a[0] == '-' && a[1]) return cli_fail("tokenize: unknown option '%s'", a);
        else if (text) return cli_fail("tokenize: give the text once (quote it), or use --text-file");
        else text = a;
    }
    if (!tok_path) return cli_fail("tokenize: missing --tokenizer PATH");
    if (!decode && !!text == !!text_file) return cli_fail("tokenize: give TEXT or --text-file F (one of them)");
    fm_tokenizer *tok;
    if (fm_tokenizer_open(tok_path, &tok) != FM_OK) return cli_fail_lib("cannot open tokenizer");
    int rc = 0;
    if (decode) {
        int32_t *ids;
        int n;
        char *out;
        size_t len;
        if (!(rc = cli_parse_ids("--decode", decode, &ids, &n))) {
            if (fm_tokenizer_decode(tok, ids, n, skip_special, &out, &len) != FM_OK) rc = cli_fail_lib("--decode");
            else {
                fwrite(out, 1, len, stdout);
                fputc('\n', stdout);
                free(out);
            }
            free(ids);
        }
    } else {
        char *data = NULL;
        size_t len = text ? strlen(text) : 0;
        if (text_file && (rc = read_all(text_file, &data, &len))) {
            fm_tokenizer_close(tok);
            return rc;
        }
        int32_t *ids;
        int n;
        if (fm_tokenizer_encode(tok, data ? data : text, len, &ids, &n) != FM_OK) {
            rc = cli_fail_lib(text_file ? text_file : "tokenize");
        } else {
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
            free(ids);
        }
        free(data);
    }
    fm_tokenizer_close(tok);
    return rc;
}

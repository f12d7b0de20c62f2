/* flashmoe score: logits of every position as raw little-endian float32,
 * T rows of vocab_size. Written to a temporary name, then renamed, so a
 * failed run never leaves a file that looks complete. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_atomically(const char *path, const float *data, size_t n) {
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return cli_fail("out of memory");
    snprintf(tmp, len, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = cli_fail("%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    /* The format is little-endian; convert on big-endian hosts. */
    int ok = 1;
    if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
        ok = fwrite(data, sizeof *data, n, f) == n;
    } else {
        for (size_t i = 0; i < n && ok; i++) {
            uint32_t v;
            memcpy(&v, &data[i], 4);
            v = __builtin_bswap32(v);
            ok = fwrite(&v, 4, 1, f) == 1;
        }
    }
    int err = errno;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        ok = 0;
        err = errno;
    }
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        unlink(tmp);
        int rc = cli_fail("%s: cannot write: %s", path, strerror(err));
        free(tmp);
        return rc;
    }
    free(tmp);
    return 0;
}

int cmd_score(int argc, char **argv) {
    cli_common c = {0};
    const char *ids_text = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_common(argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: flashmoe score -m DIR --ids 1,2,3 -o OUT [-t N]\n"
                 "Writes the logits of every position to OUT as raw little-endian float32:\n"
                 "T rows of vocab_size values (T = number of ids).");
            fputs(cli_common_help, stdout);
            return 0;
        }
        if ((!strcmp(argv[i], "--ids") || !strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 >= argc)
            return cli_fail("%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--ids")) ids_text = argv[++i];
        else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) out_path = argv[++i];
        else return cli_fail("score: unknown option '%s'", argv[i]);
    }
    if (!ids_text) return cli_fail("score: missing --ids");
    if (!out_path) return cli_fail("score: missing -o OUT");
    int32_t *ids;
    int n;
    fm_model *m;
    fm_session *s;
    int rc = cli_open_with_ids(&c, ids_text, &ids, &n, &m, &s);
    if (rc) return rc;
    size_t V = (size_t)fm_model_get_info(m)->vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    if (!logits) rc = cli_fail("out of memory for %d x %zu logits", n, V);
    else if (fm_session_eval(s, ids, n, FM_LOGITS_ALL, logits) != FM_OK) rc = cli_fail_lib("score");
    else rc = write_atomically(out_path, logits, (size_t)n * V);
    if (c.timing && !rc) cli_print_timing(s);
    free(logits);
    free(ids);
    fm_session_free(s);
    fm_model_close(m);
    return rc;
}

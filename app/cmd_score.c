/* flashmoe score: logits of every position as raw little-endian float32,
 * T rows of vocab_size (output_file_write: a failed run never leaves a file
 * that looks complete). */
#include "cli.h"
#include "output_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The format is little-endian; big-endian hosts write a swapped copy. */
static int write_logits(const char *path, const float *data, size_t n) {
    if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) return output_file_write(path, data, n * sizeof *data, "logits");
    uint32_t *le = malloc(n * sizeof *le);
    if (!le) return cli_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        memcpy(&le[i], &data[i], 4);
        le[i] = __builtin_bswap32(le[i]);
    }
    int rc = output_file_write(path, le, n * sizeof *le, "logits");
    free(le);
    return rc;
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
    else rc = write_logits(out_path, logits, (size_t)n * V);
    if (c.timing && !rc) cli_print_timing(s);
    free(logits);
    free(ids);
    fm_session_free(s);
    fm_model_close(m);
    return rc;
}

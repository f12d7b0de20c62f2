/* flashmoe generate: greedy continuation of a list of token ids. */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_generate(int argc, char **argv) {
    cli_common c = {0};
    const char *ids_text = NULL;
    long n_new = -1;
    int stop_at_eos = 0, stats = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_common(argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: flashmoe generate -m DIR --ids 1,2,3 -n N --greedy [--stop-at-eos] [--stats] [-t N]\n"
                 "Prints the N generated token ids, space-separated, on one line of stdout.\n"
                 "  --greedy        pick the most likely token (the only decoding mode so far)\n"
                 "  --stop-at-eos   stop early after an end-of-sequence id (generation_config.json)\n"
                 "  --stats         print prefill and decode speed to stderr");
            fputs(cli_common_help, stdout);
            return 0;
        }
        if ((!strcmp(a, "--ids") || !strcmp(a, "-n")) && i + 1 >= argc) return cli_fail("%s needs a value", a);
        if (!strcmp(a, "--ids")) ids_text = argv[++i];
        else if (!strcmp(a, "-n")) {
            long n;
            if (cli_count_option("-n", argv[++i], 0, INT_MAX, &n)) return 1;
            n_new = n;
        } else if (!strcmp(a, "--greedy")) continue;
        else if (!strcmp(a, "--stop-at-eos")) stop_at_eos = 1;
        else if (!strcmp(a, "--stats")) stats = 1;
        else return cli_fail("generate: unknown option '%s'", a);
    }
    if (!ids_text) return cli_fail("generate: missing --ids");
    if (n_new < 0) return cli_fail("generate: missing -n N");
    int32_t *ids;
    int n;
    fm_model *m;
    fm_session *s;
    int rc = cli_open_with_ids(&c, ids_text, &ids, &n, &m, &s);
    if (rc) return rc;
    const fm_model_info *in = fm_model_get_info(m);
    float *logits = malloc((size_t)in->vocab_size * sizeof *logits);
    fm_sampler *greedy = NULL; /* the default parameters pick the most likely token */
    if (fm_sampler_new(NULL, in->vocab_size, &greedy) != FM_OK) rc = cli_fail_lib("sampler");
    double t0 = now_seconds(), t1 = t0;
    int produced = 0;
    if (!rc && !logits) rc = cli_fail("out of memory");
    else if (!rc && fm_session_eval(s, ids, n, FM_LOGITS_LAST, logits) != FM_OK) rc = cli_fail_lib("generate");
    t1 = now_seconds();
    for (long k = 0; !rc && k < n_new; k++) {
        int32_t tok = fm_sampler_sample(greedy, logits);
        printf(k ? " %d" : "%d", tok);
        fflush(stdout);
        produced++;
        int eos = 0;
        for (int e = 0; e < in->n_eos; e++) eos |= tok == in->eos_ids[e];
        if (k + 1 == n_new || (stop_at_eos && eos)) break;
        if (fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits) != FM_OK) rc = cli_fail_lib("generate");
    }
    if (produced) printf("\n");
    fflush(stdout);
    double t2 = now_seconds();
    if (stats && !rc)
        fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.1f tok/s)\n", n,
                t1 - t0, n / (t1 - t0), produced > 1 ? produced - 1 : 0, t2 - t1,
                produced > 1 ? (produced - 1) / (t2 - t1) : 0.0);
    if (c.timing && !rc) cli_print_timing(s);
    fm_sampler_free(greedy);
    free(logits);
    free(ids);
    fm_session_free(s);
    fm_model_close(m);
    return rc;
}

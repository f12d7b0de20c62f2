/* flashmoe convert SRC DST and flashmoe verify DIR. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    double t0, last_line;
    int tty;
    uint64_t first; /* bytes already done when this run started (resumed) */
} progress_state;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void format_eta(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 360000) snprintf(buf, n, "--");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%ds", (int)s);
}

/* One status line: on a terminal rewritten in place, else a line every 5 s. */
static void show_progress(void *user, uint64_t done, uint64_t total, const char *what) {
    progress_state *p = user;
    double t = now();
    if (!p->t0) {
        p->t0 = t;
        p->first = done;
    }
    int final = done >= total || !strcmp(what, "done");
    if (!p->tty && !final && t - p->last_line < 5.0) return;
    p->last_line = t;
    double rate = t > p->t0 ? (double)(done - p->first) / (t - p->t0) : 0;
    char eta[32];
    format_eta(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    fprintf(stderr, "%s%6.2f / %.2f GB (%5.1f%%)  %7.1f MB/s  ETA %-7s %-24s%s", p->tty ? "\r" : "", done / 1e9,
            total / 1e9, total ? 100.0 * (double)done / (double)total : 100.0, rate / 1e6, eta, what,
            p->tty && !final ? "" : "\n");
    fflush(stderr);
}

static int parse_bits(const char *opt, const char *v, int *out) {
    long n;
    if (cli_count_option(opt, v, 1, 1 << 20, &n)) return 1;
    *out = (int)n;
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0, quiet = 0;
    fm_convert_options o = {0};
    cli_common c = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: flashmoe convert SRC DST [--bits 8|4|2|16] [--group 64] [--dense-bits 16|8|4] [--force]\n"
                 "Packs a Hugging Face (bf16/f16/f32) or MLX (quantized) checkpoint into flashmoe's\n"
                 "packed model (docs/FORMAT.md): dense weights in one mapped file, each routed expert in\n"
                 "one 4 KiB-aligned extent that one read fetches.\n"
                 "  --bits B        routed experts: 8, 4 (default), 2 bits, or 16 = bf16 (unquantized)\n"
                 "  --group G       quantization group: 32, 64 (default) or 128\n"
                 "  --dense-bits B  dense matrices (attention, embeddings, LM head, shared experts):\n"
                 "                  8 (default) or 4 bits (routers keep 8), or 16 = as in the source\n"
                 "                  (the default with --bits 16)\n"
                 "  --ranges R      experts' quantization ranges: minmax (MLX's) or search (least\n"
                 "                  squared error; slower); default search at 2 bits, else minmax\n"
                 "  --force         replace a packed model already at DST\n"
                 "  --quiet         no progress\n"
                 "  -t, --threads N threads for quantizing\n"
                 "Interrupted conversions resume: run the same command again.");
            return 0;
        }
        int r = cli_parse_common(argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if ((!strcmp(a, "--bits") || !strcmp(a, "--group") || !strcmp(a, "--dense-bits")) && i + 1 >= argc)
            return cli_fail("%s needs a value", a);
        if (!strcmp(a, "--bits")) {
            if (parse_bits(a, argv[++i], &o.bits)) return 1;
        } else if (!strcmp(a, "--group")) {
            if (parse_bits(a, argv[++i], &o.group)) return 1;
        } else if (!strcmp(a, "--dense-bits")) {
            if (parse_bits(a, argv[++i], &o.dense_bits)) return 1;
        } else if (!strcmp(a, "--ranges")) {
            if (i + 1 >= argc) return cli_fail("--ranges needs a value");
            const char *v = argv[++i];
            if (strcmp(v, "minmax") && strcmp(v, "search")) return cli_fail("--ranges: '%s' (minmax or search)", v);
            o.range_search = !strcmp(v, "search") ? 1 : -1;
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail("convert: unknown option '%s'", a);
        } else if (n_paths < 2) {
            paths[n_paths++] = a;
        } else {
            return cli_fail("convert: more than two paths given ('%s')", a);
        }
    }
    if (n_paths != 2) return cli_fail("convert: usage: flashmoe convert SRC DST [options]");
    o.n_threads = c.n_threads;
    progress_state ps = {.tty = isatty(2)};
    if (!quiet) {
        o.progress = show_progress;
        o.user = &ps;
    }
    if (fm_convert(paths[0], paths[1], &o) != FM_OK) {
        if (!quiet && ps.tty) fputc('\n', stderr);
        return cli_fail_lib("convert");
    }
    if (!quiet) fprintf(stderr, "packed model written to %s\n", paths[1]);
    return 0;
}

int cmd_verify(int argc, char **argv) {
    const char *dir = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: flashmoe verify DIR [--quiet]\n"
                 "Reads every byte of a packed model and checks it against the manifest's checksums.");
            return 0;
        }
        if (!strcmp(argv[i], "--quiet")) quiet = 1;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) dir = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else return cli_fail("verify: unexpected argument '%s'", argv[i]);
    }
    if (!dir) return cli_fail("verify: usage: flashmoe verify DIR");
    progress_state ps = {.tty = isatty(2)};
    if (fm_verify(dir, quiet ? NULL : show_progress, &ps) != FM_OK) {
        if (!quiet && ps.tty) fputc('\n', stderr);
        return cli_fail_lib("verify");
    }
    printf("%s: all checksums match\n", dir);
    return 0;
}

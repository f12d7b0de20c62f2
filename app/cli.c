/* Shared option parsing and error printing for the commands. */
#include "cli.h"

#include <errno.h>
#include <unistd.h>
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

int cli_count_option(const char *opt, const char *text, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || (errno && errno != ERANGE)) return cli_fail("%s: '%s' is not a whole number", opt, text), -1;
    if (errno == ERANGE || v > max) return cli_fail("%s: %s is too large (at most %ld)", opt, text, max), -1;
    if (v < min) return cli_fail("%s: %s is too small (at least %ld)", opt, text, min), -1;
    *out = v;
    return 0;
}

const char cli_common_help[] =
    "  -t, --threads N       compute threads (default: one per core)\n"
    "  --ctx N               context limit in tokens (default: max_position_embeddings)\n"
    "  --batch N             prompt tokens per micro-batch (default 64; 256 for packed models)\n"
    "  --experts K           run K routed experts per token (default: the model's own)\n"
    "  --timing              print a per-layer time breakdown and run totals to stderr\n"
    "  --backend cpu|cuda|auto  where the model runs (default auto: cuda when a GPU is present)\n"
    "  --gpu N               CUDA device index (default 0)\n"
    "  Packed models (flashmoe convert) read their experts from disk:\n"
    "  --cache ram|os        ram: flashmoe's own expert cache (recency + frequency) with O_DIRECT\n"
    "                        reads (default); os: buffered reads, trusting the page cache\n"
    "  --cache-size SIZE     ram cache budget, e.g. 12G (default: from --memory-budget, else half\n"
    "                        the available memory)\n"
    "  --memory-budget SIZE  bytes the engine may use in all (dense weights + cache + buffers)\n"
    "  --preload             read every expert into the ram cache first (all in RAM)\n"
    "  --io pread|uring      I/O engine (default pread: a thread pool)\n"
    "  --io-threads N        pread threads (default 8)\n"
    "  --direct              O_DIRECT reads with --cache os too\n"
    "  --verify-reads        check the checksum of every expert read\n"
    "  --vram-cache SIZE     cuda: VRAM for experts (default: what the weights and sessions leave)\n";

uint64_t cli_parse_size(const char *text) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || !(v > 0)) return 0;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1e3; end++; break;
    case 'm': case 'M': mult = 1e6; end++; break;
    case 'g': case 'G': mult = 1e9; end++; break;
    case 't': case 'T': mult = 1e12; end++; break;
    default: break;
    }
    if (*end == 'i' && mult > 1) { /* KiB, MiB, GiB */
        mult = mult == 1e3 ? 1024.0 : mult == 1e6 ? 1048576.0 : mult == 1e9 ? 1073741824.0 : 1099511627776.0;
        end++;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mult > 1.8e19) return 0;
    return (uint64_t)(v * mult);
}

static int parse_expert_option(const char *a, const char *v, cli_common *c) {
    fm_model_options *m = &c->model;
    if (!strcmp(a, "--experts") || !strcmp(a, "--io-threads") || !strcmp(a, "--gpu")) {
        long n; /* --io-threads 0 and --gpu 0: the defaults */
        if (cli_count_option(a, v, strcmp(a, "--experts") ? 0 : 1, !strcmp(a, "--io-threads") ? 1024 : INT_MAX, &n))
            return -1;
        if (!strcmp(a, "--experts")) m->n_experts_per_token = (int)n;
        else if (!strcmp(a, "--gpu")) m->gpu_device = (int)n;
        else m->io_threads = (int)n;
    } else if (!strcmp(a, "--backend")) {
        if (!strcmp(v, "cpu")) m->backend = FM_BACKEND_CPU;
        else if (!strcmp(v, "cuda")) m->backend = FM_BACKEND_CUDA;
        else if (!strcmp(v, "auto")) m->backend = FM_BACKEND_AUTO;
        else return cli_fail("--backend: '%s' (cpu, cuda or auto)", v), -1;
    } else if (!strcmp(a, "--io")) {
        if (strcmp(v, "pread") && strcmp(v, "uring")) return cli_fail("--io: '%s' (pread or uring)", v), -1;
        m->io_uring = !strcmp(v, "uring");
    } else if (!strcmp(a, "--cache")) {
        if (strcmp(v, "os") && strcmp(v, "ram")) return cli_fail("--cache: '%s' (os or ram)", v), -1;
        m->cache = !strcmp(v, "ram") ? FM_EXPERT_CACHE_RAM : FM_EXPERT_CACHE_OS;
    } else {
        uint64_t n = cli_parse_size(v);
        if (!n) return cli_fail("%s: '%s' is not a size (e.g. 8G, 512M)", a, v), -1;
        if (!strcmp(a, "--cache-size")) m->cache_bytes = n;
        else if (!strcmp(a, "--vram-cache")) m->vram_cache_bytes = n;
        else m->memory_budget = n;
    }
    return 1;
}

int cli_parse_common(int argc, char **argv, int *i, cli_common *c) {
    const char *a = argv[*i];
    if (!strcmp(a, "--timing")) return c->timing = 1;
    if (!strcmp(a, "--direct")) return c->model.direct_io = 1;
    if (!strcmp(a, "--preload")) return c->model.preload = 1;
    if (!strcmp(a, "--verify-reads")) return c->model.verify = 1;
    static const char *const valued[] = {"--experts",    "--io",      "--io-threads", "--cache", "--cache-size",
                                         "--memory-budget", "--backend", "--gpu",        "--vram-cache"};
    for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) {
        if (strcmp(a, valued[k])) continue;
        if (*i + 1 >= argc) return cli_fail("%s needs a value", a), -1;
        return parse_expert_option(a, argv[++*i], c);
    }
    int is_model = !strcmp(a, "-m") || !strcmp(a, "--model");
    int is_threads = !strcmp(a, "-t") || !strcmp(a, "--threads");
    int is_ctx = !strcmp(a, "--ctx"), is_batch = !strcmp(a, "--batch");
    if (!is_model && !is_threads && !is_ctx && !is_batch) return 0;
    if (*i + 1 >= argc) {
        cli_fail("%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    if (is_model) {
        c->model_dir = v;
        return 1;
    }
    long n;
    if (cli_count_option(a, v, is_threads ? 0 : 1, is_batch ? 4096 : INT_MAX, &n)) return -1;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (is_threads && cpus > 0 && n > 4 * cpus) { /* far more threads than CPUs only slows every product down */
        fprintf(stderr, "flashmoe: %s %ld: more than 4 threads per CPU (%ld CPUs); using %ld\n", a, n, cpus, cpus);
        n = cpus;
    }
    if (is_threads) c->n_threads = (int)n;
    else if (is_batch) c->batch = (int)n;
    else c->max_context = (int)n;
    return 1;
}

/* The shipped model, looked up beside the binary: in the repository it was
 * built in (build/MODE/flashmoe → models/NAME) or where `make install` put it
 * (PREFIX/bin/flashmoe → PREFIX/share/flashmoe/NAME). Packed first. */
static const char *const shipped_models[] = {"assistant-q4", "assistant"};
static const struct {
    int up;             /* directories above the binary */
    const char *folder; /* where the models are from there */
} shipped_places[] = {{3, "models"}, {2, "share/flashmoe"}};

const char *cli_model_dir(const cli_common *c) {
    static char found[PATH_MAX];
    if (c->model_dir) return c->model_dir;
    const char *env = getenv("FLASHMOE_MODEL");
    if (env) return *env ? env : NULL; /* set but empty: no default */
    if (found[0]) return found;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    for (size_t p = 0; p < sizeof shipped_places / sizeof *shipped_places; p++) {
        char root[PATH_MAX];
        memcpy(root, exe, (size_t)n + 1);
        int ok = 1;
        for (int up = 0; up < shipped_places[p].up && ok; up++) {
            char *slash = strrchr(root, '/');
            if (!slash) ok = 0;
            else *slash = 0;
        }
        for (size_t i = 0; ok && i < sizeof shipped_models / sizeof *shipped_models; i++) {
            char path[PATH_MAX + 64];
            snprintf(path, sizeof path, "%s/%s/%s/config.json", root, shipped_places[p].folder, shipped_models[i]);
            if (access(path, R_OK) == 0 && strlen(path) < sizeof found) {
                path[strlen(path) - strlen("/config.json")] = 0;
                memcpy(found, path, strlen(path) + 1);
                return found;
            }
        }
    }
    return NULL;
}

int cli_open_model(const cli_common *c, fm_model **model, fm_session **session) {
    *model = NULL;
    if (session) *session = NULL;
    const char *dir = cli_model_dir(c);
    if (!dir) return cli_fail("missing -m DIR (a model directory): no FLASHMOE_MODEL and no shipped model beside the binary "
                                "(models/ of its repository, or PREFIX/share/flashmoe after make install)");
    fm_model_options mo = c->model;
    mo.n_threads = c->n_threads;
    if (fm_model_open(dir, &mo, model) != FM_OK) return cli_fail_lib("cannot open model");
    if (!session) return 0;
    fm_session_options so = {.max_context = c->max_context, .batch = c->batch};
    if (fm_session_new(*model, &so, session) != FM_OK) {
        fm_model_close(*model);
        *model = NULL;
        return cli_fail_lib("cannot create a session");
    }
    return 0;
}

int cli_parse_ids(const char *opt, const char *text, int32_t **ids, int *n) {
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
            const int at = *n + 1;
            return cli_fail("%s: item %d of '%s' is not a token id (a whole number from 0; ids are separated by commas)",
                            opt, at, text);
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
    int rc = cli_parse_ids("--ids", ids_text, ids, n);
    if (!rc && (rc = cli_open_model(c, model, session))) {
        free(*ids);
        *ids = NULL;
    }
    return rc;
}

/* A "Key: N kB" line of a /proc file, in bytes; 0 if absent. */
static uint64_t proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    const size_t k = strlen(key);
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            kb = strtoull(line + k + 1, NULL, 10);
            break;
        }
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* The bracketed word of the kernel's transparent huge page setting ("always",
 * "madvise", "never"), or "unknown". */
static const char *thp_setting(char *buf, size_t size) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char line[128] = "";
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    const char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
    snprintf(buf, size, "%.*s", a && b ? (int)(b - a - 1) : 7, a && b ? a + 1 : "unknown");
    return buf;
}

void cli_print_timing(const fm_session *s) {
    fm_timing t;
    fm_session_get_timing(s, &t);
    fm_layer_timing sum = {0};
    fputs("timing per layer (seconds):\n  layer  attention    routing    io wait    experts      other\n", stderr);
    for (int i = 0; i < t.n_layers; i++) {
        const fm_layer_timing *l = &t.layers[i];
        fprintf(stderr, "  %5d %10.4f %10.4f %10.4f %10.4f %10.4f\n", i, l->attention_s, l->routing_s,
                l->expert_io_wait_s, l->expert_compute_s, l->other_s);
        sum.attention_s += l->attention_s;
        sum.routing_s += l->routing_s;
        sum.expert_io_wait_s += l->expert_io_wait_s;
        sum.expert_compute_s += l->expert_compute_s;
        sum.other_s += l->other_s;
    }
    fprintf(stderr, "  total %10.4f %10.4f %10.4f %10.4f %10.4f   (+ embedding/LM head %.4f)\n", sum.attention_s,
            sum.routing_s, sum.expert_io_wait_s, sum.expert_compute_s, sum.other_s, t.head_s);
    fprintf(stderr, "run: %llu tokens in %llu evals, %.3f s (%.2f tok/s)\n", (unsigned long long)t.tokens,
            (unsigned long long)t.evals, t.eval_s, t.eval_s > 0 ? t.tokens / t.eval_s : 0.0);
    char thp[32];
    fprintf(stderr, "memory: peak RSS %.1f MB; %.1f MB of anonymous memory in 2 MB pages (transparent huge pages: %s)\n",
            proc_kb("/proc/self/status", "VmHWM") / 1e6, proc_kb("/proc/self/smaps_rollup", "AnonHugePages") / 1e6,
            thp_setting(thp, sizeof thp));
    fprintf(stderr, "threads: %d", t.threads);
    if (t.threads_active < t.threads) fprintf(stderr, " (%d taking work: other processes keep CPUs busy)", t.threads_active);
    fputc('\n', stderr);
    if (t.vram_lookups) {
        const double need = (double)t.vram_lookups;
        fprintf(stderr,
                "experts: %llu needed: %.1f%% in VRAM, %.1f%% from the RAM cache, %.1f%% read from disk "
                "(%.3f GB); %.3f GB copied to the GPU (%.2f GB/s while copying)\n",
                (unsigned long long)t.vram_lookups, 100.0 * t.vram_hits / need, 100.0 * t.cache_hits / need,
                100.0 * (t.experts_fetched - t.cache_hits) / need, t.bytes_read / 1e9, t.bytes_copied / 1e9,
                t.copy_s > 0 ? t.bytes_copied / 1e9 / t.copy_s : 0.0);
    } else if (t.experts_fetched) {
        double hit = 100.0 * (double)t.cache_hits / (double)t.experts_fetched;
        fprintf(stderr,
                "experts: %llu fetched, cache hit rate %.1f%%, %.3f GB read from disk, %.2f GB/s while reading, "
                "%.2f GB/s over the run\n",
                (unsigned long long)t.experts_fetched, hit, t.bytes_read / 1e9,
                t.read_s > 0 ? t.bytes_read / 1e9 / t.read_s : 0.0, t.eval_s > 0 ? t.bytes_read / 1e9 / t.eval_s : 0.0);
    }
}

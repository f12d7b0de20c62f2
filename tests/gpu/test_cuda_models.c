/* Whole models on the CUDA backend (run on a GPU machine by tests/gpu.sh):
 *   - every fixture against transformers' float32 reference, as tests/test_models.c does on the CPU:
 *     prompt logits and every layer's hidden state (relative L2 ≤ 1e-4), the 24 greedy tokens
 *     identical, prompt + continuation through prefill + decode, one batch and chunks of 7;
 *   - the GPU against the CPU backend (exact float kernels) on the same model, checkpoints (incl. MLX
 *     layouts) and packed models at 4 bits: relative L2 ≤ 1e-5;
 *   - packed models streamed through a VRAM cache of a few experts (rounds, evictions) equal, bit for
 *     bit, to the same model with every expert in VRAM; with the os and ram host caches;
 *   - errors: a missing GPU index, a VRAM cache smaller than one token's experts, no GPU memory left;
 *   - no GPU memory leak over thousands of tokens and repeated open/close.
 * Usage: test_cuda_models MODELS_DIR (the unpacked fixtures). Prints ok/not ok lines; exit 0 if all pass,
 * 1 otherwise, 77 without a GPU. */
#include "flashmoe.h"
#include "test_util.h" /* rel_l2 */
#include "load/safetensors.h"
#include "model/session.h" /* fm_session_capture_hidden */

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL_REF 1e-4 /* against transformers, as on the CPU */
#define TOL_CPU 1e-5 /* against the CPU backend's exact float kernels */

static int passed, failed;
static const char *models;

static void result(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "ok - " : "not ok - ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    ok ? passed++ : failed++;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static fm_model *open_model(const char *dir, fm_backend backend, uint64_t vram_cache, fm_expert_cache cache) {
    fm_model_options o = {.backend = backend, .vram_cache_bytes = vram_cache, .cache = cache};
    fm_model *m = NULL;
    if (fm_model_open(dir, &o, &m) != FM_OK) {
        result(0, "open %s (%s): %s", dir, backend == FM_BACKEND_CUDA ? "cuda" : "cpu", fm_last_error());
        return NULL;
    }
    return m;
}

/* Logits of all of ids [n] in one eval (NULL on failure). */
static float *run_all(fm_model *m, const int32_t *ids, int n) {
    const int V = fm_model_get_info(m)->vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    fm_session *s;
    if (!logits || fm_session_new(m, NULL, &s) != FM_OK) {
        free(logits);
        return NULL;
    }
    fm_status st = fm_session_eval(s, ids, n, FM_LOGITS_ALL, logits);
    fm_session_free(s);
    if (st != FM_OK) {
        printf("# eval: %s\n", fm_last_error());
        free(logits);
        return NULL;
    }
    return logits;
}

/* The reference may keep only the last rows of a logits tensor. */
static double ref_err(const float *got, int T, const st_tensor *want, int V) {
    int rows = (int)want->shape[0];
    if (want->shape[1] != V || rows > T) return INFINITY;
    return rel_l2(got + (size_t)(T - rows) * V, want->data, (size_t)rows * V);
}

static const st_tensor *tensor(st_file *f, const char *name) {
    const st_tensor *t = st_file_find(f, name);
    if (!t) result(0, "reference tensor %s missing", name);
    return t;
}

/* The fixture whose reference.safetensors applies (the fused layout shares qwen35moe's). */
static const char *reference_of(const char *name) { return !strcmp(name, "qwen35moe_fused") ? "qwen35moe" : name; }

/* test_models.c's checks, on the GPU. */
static void against_reference(const char *name) {
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s/%s", models, name);
    snprintf(ref, sizeof ref, "%s/%s/reference.safetensors", models, reference_of(name));
    st_file *rf;
    if (st_file_open(ref, &rf) != FM_OK) {
        result(0, "%s: %s", name, fm_last_error());
        return;
    }
    fm_model *m = open_model(dir, FM_BACKEND_CUDA, 0, FM_EXPERT_CACHE_DEFAULT);
    const st_tensor *ids = tensor(rf, "input_ids"), *hs = tensor(rf, "hidden_states"), *lg = tensor(rf, "logits");
    const st_tensor *full = tensor(rf, "full_ids"), *greedy = tensor(rf, "greedy_tokens");
    const st_tensor *full_lg = tensor(rf, "full_logits");
    if (!m || !ids || !hs || !lg || !full || !greedy || !full_lg) goto done;
    const fm_model_info *in = fm_model_get_info(m);
    result(!strcmp(in->backend, "cuda"), "%s runs on %s", name, in->device_name);
    const int V = in->vocab_size, H = in->hidden_size, L = in->n_layers, T = (int)ids->shape[0];
    const int G = (int)greedy->shape[0], N = (int)full->shape[0];
    float *logits = malloc((size_t)N * V * sizeof *logits);
    float *hidden = malloc((size_t)(L + 1) * T * H * sizeof *hidden);
    fm_session *s;
    if (!logits || !hidden || fm_session_new(m, NULL, &s) != FM_OK) {
        result(0, "%s: session: %s", name, fm_last_error());
        free(logits);
        free(hidden);
        goto done;
    }
    /* Prompt: logits and every hidden state. */
    fm_session_capture_hidden(s, hidden);
    fm_status st = fm_session_eval(s, ids->data, T, FM_LOGITS_ALL, logits);
    fm_session_capture_hidden(s, NULL);
    double worst = 0;
    int worst_layer = 0;
    for (int i = 0; st == FM_OK && i <= L && hs->shape[0] == L + 1; i++) {
        double e = rel_l2(hidden + (size_t)i * T * H, (const float *)hs->data + (size_t)i * T * H, (size_t)T * H);
        if (!(e <= worst)) worst = e, worst_layer = i;
    }
    result(st == FM_OK && hs->shape[0] == L + 1 && worst <= TOL_REF,
           "%s: %d hidden states match transformers (worst rel L2 %.3g at %d)", name, L + 1, worst, worst_layer);
    double e = st == FM_OK ? ref_err(logits, T, lg, V) : INFINITY;
    result(e <= TOL_REF, "%s: prompt logits (rel L2 %.3g)", name, e);

    /* Greedy continuation. */
    fm_session_reset(s);
    int differ = 0;
    st = fm_session_eval(s, full->data, T, FM_LOGITS_LAST, logits);
    for (int i = 0; st == FM_OK && i < G; i++) {
        int32_t tok = argmax(logits, V);
        differ += tok != ((const int32_t *)greedy->data)[i];
        st = fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits);
    }
    result(st == FM_OK && !differ, "%s: greedy %d tokens (%d differ)", name, G, differ);

    /* full_ids: prefill + decode steps, one batch, chunks of 7. */
    const int32_t *fid = full->data;
    fm_session_reset(s);
    st = fm_session_eval(s, fid, T, FM_LOGITS_ALL, logits);
    for (int i = T; st == FM_OK && i < N; i++) st = fm_session_eval(s, fid + i, 1, FM_LOGITS_ALL, logits + (size_t)i * V);
    e = st == FM_OK ? ref_err(logits, N, full_lg, V) : INFINITY;
    result(e <= TOL_REF, "%s: prefill + %d decode steps (rel L2 %.3g)", name, N - T, e);
    fm_session_reset(s);
    st = fm_session_eval(s, fid, N, FM_LOGITS_ALL, logits);
    e = st == FM_OK ? ref_err(logits, N, full_lg, V) : INFINITY;
    result(e <= TOL_REF, "%s: one batch of %d (rel L2 %.3g)", name, N, e);
    fm_session_reset(s);
    st = FM_OK;
    for (int i = 0; st == FM_OK && i < N; i += 7)
        st = fm_session_eval(s, fid + i, i + 7 > N ? N - i : 7, FM_LOGITS_ALL, logits + (size_t)i * V);
    e = st == FM_OK ? ref_err(logits, N, full_lg, V) : INFINITY;
    result(e <= TOL_REF, "%s: chunks of 7 (rel L2 %.3g)", name, e);
    fm_session_free(s);
    free(logits);
    free(hidden);
done:
    fm_model_close(m);
    st_file_close(rf);
}

/* full_ids of a fixture's reference (malloc'd), or NULL. */
static int32_t *fixture_ids(const char *name, int *n) {
    char ref[1100];
    snprintf(ref, sizeof ref, "%s/%s/reference.safetensors", models, reference_of(name));
    st_file *rf;
    if (st_file_open(ref, &rf) != FM_OK) return NULL;
    const st_tensor *t = st_file_find(rf, "full_ids");
    int32_t *ids = t ? malloc(t->shape[0] * sizeof *ids) : NULL;
    if (ids) {
        *n = (int)t->shape[0];
        memcpy(ids, t->data, (size_t)*n * sizeof *ids);
    }
    st_file_close(rf);
    return ids;
}

static void gpu_vs_cpu(const char *label, const char *dir, const int32_t *ids, int n) {
    fm_model *c = open_model(dir, FM_BACKEND_CPU, 0, FM_EXPERT_CACHE_DEFAULT);
    fm_model *g = open_model(dir, FM_BACKEND_CUDA, 0, FM_EXPERT_CACHE_DEFAULT);
    float *lc = c ? run_all(c, ids, n) : NULL, *lg = g ? run_all(g, ids, n) : NULL;
    if (lc && lg) {
        double e = rel_l2(lg, lc, (size_t)n * fm_model_get_info(c)->vocab_size);
        result(e <= TOL_CPU, "%s: GPU = CPU over %d tokens (rel L2 %.3g)", label, n, e);
    } else {
        result(0, "%s: GPU vs CPU: %s", label, fm_last_error());
    }
    free(lc);
    free(lg);
    fm_model_close(c);
    fm_model_close(g);
}

static int convert(const char *name, int bits, char *out, size_t size) {
    char src[1024];
    snprintf(src, sizeof src, "%s/%s", models, name);
    snprintf(out, size, "%s/%s-q%d-packed", models, name, bits);
    fm_convert_options o = {.bits = bits, .force = 1};
    if (fm_convert(src, out, &o) != FM_OK) {
        result(0, "convert %s: %s", name, fm_last_error());
        return -1;
    }
    return 0;
}

/* Logits of ids [n]: the first half as one prompt, then one decode step per token (NULL on failure);
 * the timing of the run in *t. */
static float *run_split(fm_model *m, const int32_t *ids, int n, fm_timing *t) {
    const size_t V = (size_t)fm_model_get_info(m)->vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    fm_session *s = NULL;
    int ok = logits && fm_session_new(m, NULL, &s) == FM_OK;
    const int half = n / 2;
    ok = ok && fm_session_eval(s, ids, half, FM_LOGITS_ALL, logits) == FM_OK;
    for (int i = half; ok && i < n; i++) ok = fm_session_eval(s, ids + i, 1, FM_LOGITS_ALL, logits + i * V) == FM_OK;
    if (ok) fm_session_get_timing(s, t);
    fm_session_free(s);
    if (!ok) {
        printf("# %s\n", fm_last_error());
        free(logits);
        return NULL;
    }
    return logits;
}

/* A packed model with a VRAM cache of a few experts (misses, rounds, evictions; the RAM tier
 * below with either cache policy) gives the same logits, bit for bit, as with all experts in VRAM. */
static void streamed_equals_resident(const char *name, const int32_t *ids, int n) {
    char dir[1200];
    if (convert(name, 4, dir, sizeof dir)) return;
    char label[256];
    snprintf(label, sizeof label, "%s packed at 4 bits", name);
    gpu_vs_cpu(label, dir, ids, n);
    fm_model *all = open_model(dir, FM_BACKEND_CUDA, 0, FM_EXPERT_CACHE_DEFAULT);
    fm_timing t;
    float *want = all ? run_split(all, ids, n, &t) : NULL;
    if (!want) {
        result(0, "%s packed: %s", name, fm_last_error());
        fm_model_close(all);
        return;
    }
    const fm_model_info *in = fm_model_get_info(all);
    const size_t V = (size_t)in->vocab_size;
    const uint64_t slot = (in->expert_bytes + 255) / 256 * 256;
    const int K = in->n_experts_run;
    int n_moe = 0;
    for (int i = 0; i < in->n_layers; i++) n_moe += fm_model_layer_is_moe(all, i);
    const struct {
        uint64_t slots;
        fm_expert_cache cache;
        const char *what;
    } runs[] = {{(uint64_t)K, FM_EXPERT_CACHE_RAM, "K slots, ram cache"},
                {(uint64_t)K + 3, FM_EXPERT_CACHE_OS, "K+3 slots, os cache"},
                {(uint64_t)in->n_experts, FM_EXPERT_CACHE_RAM, "one layer's worth of slots"},
                {(uint64_t)(n_moe * in->n_experts - K), FM_EXPERT_CACHE_RAM, "all experts but K"}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        fm_model *m = open_model(dir, FM_BACKEND_CUDA, runs[r].slots * slot, runs[r].cache);
        if (!m) continue;
        float *got = run_split(m, ids, n, &t);
        int same = got && !memcmp(got, want, (size_t)n * V * sizeof *got);
        result(same, "%s packed, %s: bit-identical to all in VRAM (%llu needed, %llu VRAM hits, %.2f MB copied)",
               name, runs[r].what, got ? (unsigned long long)t.vram_lookups : 0ULL,
               got ? (unsigned long long)t.vram_hits : 0ULL, got ? t.bytes_copied / 1e6 : 0.0);
        if (got && !same) printf("#   rel L2 %.3g\n", rel_l2(got, want, (size_t)n * V));
        free(got);
        fm_model_close(m);
    }
    /* Short prompts split a layer's experts between hits and rounds of misses in the store's
     * completion order: the result must not depend on the split (each launch's token tile). */
    fm_model *few = open_model(dir, FM_BACKEND_CUDA, (uint64_t)K * slot, FM_EXPERT_CACHE_RAM);
    int differ = 0, tried = 0;
    for (int len = 2; few && len <= 6 && len <= n; len++)
        for (int rep = 0; rep < 3; rep++, tried++) {
            float *a = run_all(all, ids + rep, len), *b = run_all(few, ids + rep, len);
            differ += !a || !b || memcmp(a, b, (size_t)len * V * sizeof *a);
            free(a);
            free(b);
        }
    result(few && !differ, "%s packed, K slots: %d short prompts (2-6 tokens) bit-identical to all in VRAM (%d differ)",
           name, tried, differ);
    fm_model_close(few);
    free(want);
    fm_model_close(all);
}

/* Snapshots (fm_session_state_*) of a GPU session: save after a prefix, go on, restore, go on
 * again: the same logits bit for bit; a CPU session's snapshot restores into a GPU session. */
static void snapshots(const char *name, const int32_t *ids, int n) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", models, name);
    fm_model *gm = open_model(dir, FM_BACKEND_CUDA, 0, FM_EXPERT_CACHE_DEFAULT);
    fm_model *cm = open_model(dir, FM_BACKEND_CPU, 0, FM_EXPERT_CACHE_DEFAULT);
    fm_session *g = NULL, *c = NULL;
    if (!gm || !cm || fm_session_new(gm, NULL, &g) != FM_OK || fm_session_new(cm, NULL, &c) != FM_OK) {
        result(0, "%s snapshots: %s", name, fm_last_error());
        goto done;
    }
    const int V = fm_model_get_info(gm)->vocab_size, P = n / 2;
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    size_t size = 0;
    void *snap = NULL;
    fm_status st = fm_session_eval(g, ids, P, FM_LOGITS_NONE, NULL);
    if (st == FM_OK) snap = malloc(size = fm_session_state_size(g));
    if (snap) st = fm_session_state_save(g, snap, size);
    if (st == FM_OK) st = fm_session_eval(g, ids + P, n - P, FM_LOGITS_LAST, want);
    if (st == FM_OK) st = fm_session_state_load(g, snap, size);
    if (st == FM_OK) st = fm_session_eval(g, ids + P, n - P, FM_LOGITS_LAST, got);
    result(st == FM_OK && !memcmp(got, want, (size_t)V * sizeof *got), "%s: GPU snapshot restored: same logits",
           name);
    /* CPU snapshot → GPU session, against the CPU going on. */
    if (st == FM_OK) st = fm_session_eval(c, ids, P, FM_LOGITS_NONE, NULL);
    if (st == FM_OK) st = fm_session_state_save(c, snap, size);
    if (st == FM_OK) st = fm_session_state_load(g, snap, size);
    if (st == FM_OK) st = fm_session_eval(g, ids + P, n - P, FM_LOGITS_LAST, got);
    if (st == FM_OK) st = fm_session_eval(c, ids + P, n - P, FM_LOGITS_LAST, want);
    double e = st == FM_OK ? rel_l2(got, want, (size_t)V) : INFINITY;
    result(e <= 1e-5, "%s: CPU snapshot restored on the GPU (rel L2 %.3g vs the CPU)", name, e);
    free(snap);
    free(want);
    free(got);
done:
    fm_session_free(g);
    fm_session_free(c);
    fm_model_close(gm);
    fm_model_close(cm);
}

static size_t gpu_free(void) {
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    return f;
}

static void errors(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", models, name);
    fm_model_options o = {.backend = FM_BACKEND_CUDA, .gpu_device = 99};
    fm_model *m = NULL;
    fm_status st = fm_model_open(dir, &o, &m);
    result(st == FM_ERR_ARGUMENT && strstr(fm_last_error(), "GPU 99"), "a GPU that does not exist: %s",
           fm_last_error());
    fm_model_close(m);

    char packed[1200];
    snprintf(packed, sizeof packed, "%s/%s-q4-packed", models, name);
    o = (fm_model_options){.backend = FM_BACKEND_CUDA, .vram_cache_bytes = 1000};
    m = NULL;
    st = fm_model_open(packed, &o, &m);
    result(st == FM_ERR_NOMEM && strstr(fm_last_error(), "VRAM"), "a VRAM cache too small for one token: %s",
           fm_last_error());
    fm_model_close(m);

    /* Take nearly all GPU memory, then open: a clear error, nothing crashes; then it opens again. */
    size_t f = gpu_free();
    void *hog = NULL;
    size_t take = f > (64u << 20) ? f - (4u << 20) : 0;
    while (take && cudaMalloc(&hog, take) != cudaSuccess) {
        cudaGetLastError();
        take -= 64u << 20;
    }
    m = NULL;
    o = (fm_model_options){.backend = FM_BACKEND_CUDA};
    st = fm_model_open(dir, &o, &m);
    fm_session *s = NULL;
    if (st == FM_OK) st = fm_session_new(m, NULL, &s);
    result(st == FM_ERR_NOMEM, "no GPU memory left (%.1f MB free): %s", (f - take) / 1e6,
           st == FM_OK ? "opened?" : fm_last_error());
    fm_session_free(s);
    fm_model_close(m);
    cudaFree(hog);
    o = (fm_model_options){.backend = FM_BACKEND_AUTO};
    m = NULL;
    st = fm_model_open(dir, &o, &m);
    result(st == FM_OK && !strcmp(fm_model_get_info(m)->backend, "cuda"), "the default backend is cuda on a GPU machine");
    fm_model_close(m);
}

/* Thousands of tokens, sessions and models opened and closed: free GPU memory comes back. */
static void leaks(const char *name, int tokens) {
    char packed[1200];
    snprintf(packed, sizeof packed, "%s/%s-q4-packed", models, name);
    size_t before = gpu_free();
    int done = 0;
    fm_status st = FM_OK;
    for (int round = 0; round < 4 && st == FM_OK; round++) {
        fm_model_options o = {.backend = FM_BACKEND_CUDA, .vram_cache_bytes = 8u << 20};
        fm_model *m = NULL;
        if ((st = fm_model_open(packed, &o, &m)) != FM_OK) break;
        const int V = fm_model_get_info(m)->vocab_size;
        float *logits = malloc((size_t)V * sizeof *logits);
        fm_session *s = NULL;
        st = fm_session_new(m, &(fm_session_options){.max_context = 4096}, &s);
        uint64_t seed = 12345 + round;
        for (int i = 0; st == FM_OK && i < tokens / 4; i++, done++) {
            if (fm_session_position(s) >= 1000) fm_session_reset(s);
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            int32_t tok = (int32_t)((seed >> 33) % (uint64_t)V);
            st = fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits);
        }
        fm_session_free(s);
        free(logits);
        fm_model_close(m);
    }
    size_t after = gpu_free();
    long long lost = (long long)before - (long long)after;
    result(st == FM_OK && lost <= (2 << 20), "%d tokens over 4 model opens: GPU free memory %.1f MB before, %.1f after",
           done, before / 1e6, after / 1e6);
    if (st != FM_OK) printf("# %s\n", fm_last_error());
}

/* name is a word of the space-separated list (NULL: every name). */
static int selected(const char *list, const char *name) {
    if (!list) return 1;
    const size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_cuda_models MODELS_DIR\n");
        return 2;
    }
    models = argv[1];
    int n_gpu = 0;
    cudaError_t err = cudaGetDeviceCount(&n_gpu);
    if (err != cudaSuccess || n_gpu == 0) {
        printf("cuda models: no CUDA device (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "none");
        return 77;
    }
    setenv("FM_ISA", "avx2", 1); /* the CPU side of the comparisons: exact float kernels */

    /* FM_TEST_FIXTURES="a b": only these (the CPU emulator in CI runs a few: it is slow). */
    const char *only = getenv("FM_TEST_FIXTURES");
    const char *fixtures[] = {"qwen35moe", "qwen35moe_fused", "qwen35moe_text", "qwen3next", "qwen3moe", "mixtral"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)
        if (selected(only, fixtures[i])) against_reference(fixtures[i]);

    const char *all[] = {"qwen35moe", "qwen35moe_fused", "qwen35moe_text", "qwen3next",
                         "qwen3moe",  "mixtral",         "qwen35moe_mlx4", "qwen3next_mlx4"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        if (!selected(only, all[i])) continue;
        int n = 0;
        int32_t *ids = fixture_ids(all[i], &n);
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", models, all[i]);
        if (!ids) {
            result(0, "%s: no full_ids", all[i]);
            continue;
        }
        gpu_vs_cpu(all[i], dir, ids, n);
        if (i < 6) streamed_equals_resident(all[i], ids, n);
        if (i == 0 || i == 3) snapshots(all[i], ids, n);
        free(ids);
    }
    errors("qwen35moe");
    const char *leak_tokens = getenv("FM_TEST_LEAK_TOKENS"); /* the CPU emulator runs fewer */
    leaks("qwen35moe", leak_tokens ? atoi(leak_tokens) : 4000);
    printf("cuda models: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

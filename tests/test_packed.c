/* Packed models (flashmoe convert) and the expert store, end to end on the
 * bundled fixtures (transformers' float32 references in reference.safetensors):
 *   - bf16 packed (--bits 16) = the checkpoint, bit for bit, for every
 *     architecture and expert layout (per-expert, fused), with --experts K too
 *   - streaming (OS page cache or the RAM cache, pread or io_uring, O_DIRECT)
 *     and all in RAM (preloaded RAM cache), and a RAM cache too small for one
 *     layer: logits bit-identical
 *   - 8-bit experts: logits relative L2 ≤ 0.05 of transformers' reference and
 *     top-1 agreement ≥ 90% over prompt + continuation (measured 0.018-0.030 /
 *     95-97% for qwen35moe, 0.032-0.039 / 94-95% for qwen3next, exact float and
 *     VNNI int8-activation kernels: these random-weight models
 *     route on small margins, and a flipped expert choice moves the logits in
 *     a step); 4- and 2-bit: KL divergence and top-1 agreement printed, and
 *     ordered (8 < 4 < 2 bits in KL), and 2 bits with searched ranges (the
 *     default) better than with MLX's min/max — all with dense weights kept bf16; experts
 *     and dense matrices at 8 bits (convert's default): rel L2 ≤ 0.08, top-1 ≥ 80%
 *   - MLX checkpoints (generated from the documented MLX layout, every matrix
 *     quantized): the dequantized weights sum to what numpy computed from the
 *     same files; 8-bit read directly: rel L2 ≤ 0.08, top-1 ≥ 80%; packed at
 *     the same bits (codes copied) = the MLX checkpoint read directly, bit for
 *     bit
 *   - an F32 copy of a BF16 checkpoint: the same logits, and the same 4-bit
 *     experts when converted
 *   - a full disk during convert: a clear error, no manifest; the rerun resumes
 *     and yields the same model
 *   - corrupt, truncated and missing files, checksum mismatches, injected read
 *     errors and short reads: clear errors naming the file; the session recovers */
#include "test_util.h"

#include "backend/cpu/kernels.h"
#include "core/fileio.h"
#include "pack/pack_format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char work[1024];

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", work, name); }

static void fixture_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", test_models_dir(), name); }

/* Converts fixture `name` with experts at `bits` and dense matrices at
 * `dense_bits` (0: the default) into work/<name>-<bits>-<dense_bits>, once per run. */
static const char *packed_opts(const char *name, int bits, int dense_bits, int range_search) {
    static char paths[24][1100];
    static int n;
    char dst[1100], src[1100];
    snprintf(dst, sizeof dst, "%s/%s-%d-%d-%d", work, name, bits, dense_bits, range_search);
    for (int i = 0; i < n; i++)
        if (!strcmp(paths[i], dst)) return paths[i];
    fixture_dir(src, sizeof src, name);
    fm_convert_options o = {.bits = bits, .dense_bits = dense_bits, .range_search = range_search};
    if (fm_convert(src, dst, &o) != FM_OK) fail_msg("convert %s: %s", name, fm_last_error());
    assert_true(n < 24);
    snprintf(paths[n], sizeof paths[n], "%s", dst);
    return paths[n++];
}

static const char *packed_dense(const char *name, int bits, int dense_bits) {
    return packed_opts(name, bits, dense_bits, 0);
}

static const char *packed(const char *name, int bits) { return packed_dense(name, bits, 0); }

/* A fixture's reference.safetensors (transformers' outputs). */
static st_file *open_reference(const char *name) {
    char ref[1100];
    fixture_dir(ref, sizeof ref, name);
    strncat(ref, "/reference.safetensors", sizeof ref - strlen(ref) - 1);
    st_file *rf;
    if (st_file_open(ref, &rf) != FM_OK) fail_msg("%s", fm_last_error());
    return rf;
}

typedef struct {
    int n, V;
    int32_t *ids;
    float *logits;
} run_result;

/* Logits of every position of the reference's full_ids (prompt + greedy continuation). */
static run_result run_model(const char *dir, const fm_model_options *mo, const char *ref_name) {
    st_file *rf = open_reference(ref_name);
    const st_tensor *full = ref_tensor(rf, "full_ids");
    run_result r = {.n = (int)full->shape[0]};
    r.ids = malloc((size_t)r.n * sizeof *r.ids);
    memcpy(r.ids, full->data, (size_t)r.n * sizeof *r.ids);
    st_file_close(rf);
    fm_model *m;
    if (fm_model_open(dir, mo, &m) != FM_OK) fail_msg("open %s: %s", dir, fm_last_error());
    r.V = fm_model_get_info(m)->vocab_size;
    r.logits = malloc((size_t)r.n * r.V * sizeof *r.logits);
    fm_session *s;
    assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
    /* A prefill then one-token decode steps: both paths of the MoE block. */
    const int T = r.n / 2;
    if (fm_session_eval(s, r.ids, T, FM_LOGITS_ALL, r.logits) != FM_OK) fail_msg("eval: %s", fm_last_error());
    for (int i = T; i < r.n; i++)
        if (fm_session_eval(s, r.ids + i, 1, FM_LOGITS_ALL, r.logits + (size_t)i * r.V) != FM_OK)
            fail_msg("eval: %s", fm_last_error());
    fm_session_free(s);
    fm_model_close(m);
    return r;
}

static void free_result(run_result *r) {
    free(r->ids);
    free(r->logits);
}

static void assert_identical(const char *label, const run_result *a, const run_result *b) {
    assert_int_equal(a->n, b->n);
    int same = memcmp(a->logits, b->logits, (size_t)a->n * a->V * sizeof(float)) == 0;
    printf("  %-44s %s (max |diff| %.3g)\n", label, same ? "bit-identical" : "DIFFERENT",
           max_abs_diff(a->logits, b->logits, (size_t)a->n * a->V));
    assert_true(same);
}

/* Reference full_logits of a fixture (malloc'd copy). */
static float *reference_logits(const char *name, int *n, int *V) {
    st_file *rf = open_reference(name);
    const st_tensor *t = ref_tensor(rf, "full_logits");
    *n = (int)t->shape[0];
    *V = (int)t->shape[1];
    float *out = malloc(t->nbytes);
    memcpy(out, t->data, t->nbytes);
    st_file_close(rf);
    return out;
}

typedef struct {
    double rel_l2, kl, top1;
} quality;

/* Against transformers' reference: relative L2 of the logits, mean KL(ref ‖ got)
 * of the next-token distributions, share of positions whose argmax agrees. */
static quality compare(const run_result *r, const float *ref, int n, int V) {
    quality q = {rel_l2(r->logits, ref, (size_t)n * V), 0, 0};
    for (int t = 0; t < n; t++) {
        const float *a = ref + (size_t)t * V, *b = r->logits + (size_t)t * V;
        double ma = a[0], mb = b[0];
        int ia = 0, ib = 0;
        for (int v = 1; v < V; v++) {
            if (a[v] > ma) ma = a[ia = v];
            if (b[v] > mb) mb = b[ib = v];
        }
        double za = 0, zb = 0;
        for (int v = 0; v < V; v++) {
            za += exp(a[v] - ma);
            zb += exp(b[v] - mb);
        }
        double kl = 0;
        for (int v = 0; v < V; v++) {
            double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);
            kl += exp(la) * (la - lb);
        }
        q.kl += kl / n;
        q.top1 += (ia == ib) / (double)n;
    }
    return q;
}

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "%s/packed", test_tmp_dir());
    mkdir(work, 0755);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmp_dir());
    return system(cmd) == 0 ? 0 : -1;
}

static void test_bf16_packed_is_the_checkpoint(void **state) {
    (void)state;
    static const char *const names[] = {"qwen35moe", "qwen35moe_fused", "qwen3next", "qwen3moe", "mixtral"};
    for (int i = 0; i < 5; i++) {
        const char *ref = !strcmp(names[i], "qwen35moe_fused") ? "qwen35moe" : names[i];
        char src[1100], label[128];
        fixture_dir(src, sizeof src, names[i]);
        run_result a = run_model(src, NULL, ref), b = run_model(packed(names[i], 16), NULL, ref);
        snprintf(label, sizeof label, "%s: packed bf16 vs checkpoint", names[i]);
        assert_identical(label, &a, &b);
        free_result(&b);
        if (i == 0) { /* fewer experts than the model's own: the same on both paths, and not the default */
            fm_model_options k2 = {.n_experts_per_token = 2};
            run_result c = run_model(src, &k2, ref), d = run_model(packed(names[i], 16), &k2, ref);
            assert_identical("qwen35moe --experts 2: packed vs checkpoint", &c, &d);
            assert_true(memcmp(a.logits, c.logits, (size_t)a.n * a.V * sizeof(float)) != 0);
            free_result(&c);
            free_result(&d);
            fm_model_options bad = {.n_experts_per_token = 17};
            fm_model *m;
            assert_int_equal(fm_model_open(src, &bad, &m), FM_ERR_ARGUMENT);
            printf("  --experts 17: %s\n", fm_last_error());
        }
        free_result(&a);
    }
}

static void test_streaming_equals_all_in_ram(void **state) {
    (void)state;
    const char *dir = packed("qwen35moe", 4);
    run_result base = run_model(dir, NULL, "qwen35moe");
    const struct {
        const char *label;
        fm_model_options o;
    } modes[] = {
        {"os cache, pread", {.cache = FM_EXPERT_CACHE_OS}},
        {"os cache, pread, O_DIRECT", {.cache = FM_EXPERT_CACHE_OS, .direct_io = 1}},
        {"os cache, io_uring", {.cache = FM_EXPERT_CACHE_OS, .io_uring = 1}},
        {"os cache, io_uring, O_DIRECT, verify", {.cache = FM_EXPERT_CACHE_OS, .io_uring = 1, .direct_io = 1, .verify = 1}},
        {"ram cache (default), io_uring, verify", {.io_uring = 1, .verify = 1}},
        {"ram cache preloaded (all in RAM)", {.cache = FM_EXPERT_CACHE_RAM, .preload = 1}},
        {"ram cache of 3 experts, pread", {.cache = FM_EXPERT_CACHE_RAM, .cache_bytes = 3 * 12288}},
        {"ram cache of 20 experts, io_uring", {.cache = FM_EXPERT_CACHE_RAM, .cache_bytes = 20 * 12288, .io_uring = 1}},
    };
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        run_result r = run_model(dir, &modes[i].o, "qwen35moe");
        assert_identical(modes[i].label, &base, &r);
        free_result(&r);
    }
    free_result(&base);
}

static void test_quantized_quality(void **state) {
    (void)state;
    static const char *const names[] = {"qwen35moe", "qwen3next"};
    for (int f = 0; f < 2; f++) {
        int n, V;
        float *ref = reference_logits(names[f], &n, &V);
        double last_kl = 0;
        static const int bits[] = {16, 8, 4, 2};
        for (int b = 0; b < 4; b++) { /* dense kept bf16: the experts' quantization alone */
            run_result r = run_model(packed_dense(names[f], bits[b], 16), NULL, names[f]);
            quality q = compare(&r, ref, n, V);
            printf("  %-10s experts at %2d bits, dense bf16: logits rel L2 %.4f, KL %.2e, top-1 agreement %.1f%%\n",
                   names[f], bits[b], q.rel_l2, q.kl, 100 * q.top1);
            if (bits[b] == 16) assert_true(q.rel_l2 <= 1e-4);
            if (bits[b] == 8) {
                assert_true(q.rel_l2 <= 0.05);
                assert_true(q.top1 >= 0.90);
            }
            if (bits[b] < 16) assert_true(q.kl > last_kl);
            last_kl = q.kl;
            free_result(&r);
        }
        /* 2 bits with MLX's min/max ranges instead of searched ones: worse. */
        run_result mm = run_model(packed_opts(names[f], 2, 16, -1), NULL, names[f]);
        quality qm = compare(&mm, ref, n, V);
        printf("  %-10s experts at  2 bits, min/max ranges: logits rel L2 %.4f, KL %.2e, top-1 agreement %.1f%%\n",
               names[f], qm.rel_l2, qm.kl, 100 * qm.top1);
        assert_true(qm.kl > last_kl);
        free_result(&mm);
        /* The converter's default: dense matrices at 8 bits too. */
        run_result r = run_model(packed(names[f], 8), NULL, names[f]);
        quality q = compare(&r, ref, n, V);
        printf("  %-10s experts and dense at 8 bits: logits rel L2 %.4f, KL %.2e, top-1 agreement %.1f%%\n", names[f],
               q.rel_l2, q.kl, 100 * q.top1);
        assert_true(q.rel_l2 <= 0.08 && q.top1 >= 0.80);
        free_result(&r);
        free(ref);
    }
}

/* Σ of every dequantized element of a matrix. */
static double mat_sum(const fm_mat *w) {
    float *row = malloc((size_t)w->cols * sizeof *row);
    double sum = 0;
    for (int r = 0; r < w->rows; r++) {
        cpu_mat_row_f32(w, r, row);
        for (int c = 0; c < w->cols; c++) sum += row[c];
    }
    free(row);
    return sum;
}

/* The generator (tests/tools/make_mlx_fixture.py --check) printed these sums of
 * dequantized tensors, computed by numpy from the files: an independent check
 * of how flashmoe reads MLX's packing, scales and biases. */
static void test_mlx_layout_matches_numpy(void **state) {
    (void)state;
    static const struct {
        const char *name;
        double embed, router0, down0;
    } want[] = {{"qwen35moe_mlx4", -319.96582, -7.24450684, 28.2120361},
                {"qwen35moe_mlx8", -306.619934, -7.24450684, 22.0956268},
                {"qwen3next_mlx4", 617.37793, 14.9069977, 61.5095215}};
    for (int i = 0; i < 3; i++) {
        char dir[1100];
        fixture_dir(dir, sizeof dir, want[i].name);
        fm_model *m;
        if (fm_model_open(dir, NULL, &m) != FM_OK) fail_msg("%s", fm_last_error());
        double embed = mat_sum(&m->embed), router = mat_sum(&m->layers[0].router), down = 0;
        for (int e = 0; e < m->cfg.n_experts; e++) down += mat_sum(&m->layers[0].experts[e].down);
        printf("  %s: embed %.5f (numpy %.5f), router %.6f (%.6f), experts' down %.5f (%.5f); bits %d/%d/%d\n",
               want[i].name, embed, want[i].embed, router, want[i].router0, down, want[i].down0, m->embed.bits,
               m->layers[0].router.bits, m->layers[0].experts[0].down.bits);
        assert_true(fabs(embed - want[i].embed) <= 1e-3 * fabs(want[i].embed));
        assert_true(fabs(router - want[i].router0) <= 1e-3 * fabs(want[i].router0));
        assert_true(fabs(down - want[i].down0) <= 1e-3 * fabs(want[i].down0));
        assert_int_equal(m->layers[0].router.bits, 8);
        fm_model_close(m);
    }
}

static void test_mlx_checkpoints(void **state) {
    (void)state;
    char dir[1100];
    int n, V;
    float *ref = reference_logits("qwen35moe_mlx8", &n, &V);
    fixture_dir(dir, sizeof dir, "qwen35moe_mlx8");
    run_result r8 = run_model(dir, NULL, "qwen35moe_mlx8");
    quality q = compare(&r8, ref, n, V);
    printf("  MLX 8-bit read directly: logits rel L2 %.4f, KL %.2e, top-1 %.1f%%\n", q.rel_l2, q.kl, 100 * q.top1);
    assert_true(q.rel_l2 <= 0.08 && q.top1 >= 0.80);
    run_result p8 = run_model(packed("qwen35moe_mlx8", 8), NULL, "qwen35moe_mlx8");
    assert_identical("MLX 8-bit packed at 8 bits vs read directly", &r8, &p8);
    free_result(&r8);
    free_result(&p8);

    fixture_dir(dir, sizeof dir, "qwen35moe_mlx4");
    run_result r4 = run_model(dir, NULL, "qwen35moe_mlx4"), p4 = run_model(packed("qwen35moe_mlx4", 4), NULL,
                                                                           "qwen35moe_mlx4");
    assert_identical("MLX 4-bit packed at 4 bits vs read directly", &r4, &p4);
    q = compare(&r4, ref, n, V);
    printf("  MLX 4-bit: KL %.2e, top-1 %.1f%%\n", q.kl, 100 * q.top1);
    run_result p2 = run_model(packed("qwen35moe_mlx4", 2), NULL, "qwen35moe_mlx4");
    quality q2 = compare(&p2, ref, n, V);
    printf("  MLX 4-bit requantized to 2 bits: KL %.2e, top-1 %.1f%%\n", q2.kl, 100 * q2.top1);
    assert_true(q2.kl > q.kl);
    fixture_dir(dir, sizeof dir, "qwen3next_mlx4");
    run_result n4 = run_model(dir, NULL, "qwen3next_mlx4"), np4 = run_model(packed("qwen3next_mlx4", 4), NULL,
                                                                            "qwen3next_mlx4");
    assert_identical("Qwen3-Next MLX 4-bit packed vs read directly", &n4, &np4);
    free_result(&r4);
    free_result(&p4);
    free_result(&p2);
    free_result(&n4);
    free_result(&np4);
    free(ref);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void test_disk_full_then_resume(void **state) {
    (void)state;
    char src[1100], dst[1100], manifest[1200];
    fixture_dir(src, sizeof src, "qwen3next");
    path_in(dst, sizeof dst, "resumed");
    snprintf(manifest, sizeof manifest, "%s/%s", dst, PACK_MANIFEST);
    fm_convert_options o = {.bits = 4};
    /* Count the writes of a whole conversion, then fail near its end (in the
     * last layer's experts), at its start (config files) and in the dense file. */
    char scratch[1100];
    path_in(scratch, sizeof scratch, "count-writes");
    fm_fault_arm(FM_FAULT_WRITE, 1L << 40, ENOSPC);
    assert_int_equal(fm_convert(src, scratch, &o), FM_OK);
    const long writes = fm_fault_count(FM_FAULT_WRITE);
    fm_fault_disarm();
    const long points[] = {3, 20, writes - 3};
    for (int i = 0; i < 3; i++) {
        fm_fault_arm(FM_FAULT_WRITE, points[i], ENOSPC);
        fm_status st = fm_convert(src, dst, &o);
        fm_fault_disarm();
        printf("  write %ld of %ld fails: %s\n", points[i], writes, fm_last_error());
        assert_int_equal(st, FM_ERR_IO);
        assert_non_null(strstr(fm_last_error(), "disk full"));
        assert_int_equal(access(manifest, F_OK), -1); /* nothing that looks like a model */
        if (i == 2) assert_non_null(strstr(fm_last_error(), "experts/layer_"));
        fm_model *m;
        assert_int_not_equal(fm_model_open(dst, NULL, &m), FM_OK);
    }
    /* Other settings cannot resume this conversion. */
    fm_convert_options other = {.bits = 8};
    assert_int_equal(fm_convert(src, dst, &other), FM_ERR_ARGUMENT);
    printf("  other settings: %s\n", fm_last_error());
    assert_int_equal(fm_convert(src, dst, &o), FM_OK);
    size_t la, lb;
    char *a = slurp(manifest, &la);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", packed("qwen3next", 4), PACK_MANIFEST);
    char *b = slurp(path, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la); /* same checksums: the same bytes */
    free(a);
    free(b);
    assert_int_equal(fm_verify(dst, NULL, NULL), FM_OK);
    /* A complete model is not overwritten without force. */
    assert_int_equal(fm_convert(src, dst, &o), FM_ERR_ARGUMENT);
    o.force = 1;
    assert_int_equal(fm_convert(src, dst, &o), FM_OK);
}

static void copy_tree(const char *from, const char *to) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void expect_open_error(const char *dir, const char *needle) {
    fm_model *m = NULL;
    fm_status st = fm_model_open(dir, NULL, &m);
    printf("  open: %s\n", fm_last_error());
    assert_int_not_equal(st, FM_OK);
    assert_null(m);
    assert_non_null(strstr(fm_last_error(), needle));
}

static void poke_byte(const char *path, long offset) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static void test_corrupt_packed_models(void **state) {
    (void)state;
    const char *good = packed("qwen35moe", 4);
    char dir[1100], file[1300];
    path_in(dir, sizeof dir, "corrupt");

    copy_tree(good, dir);
    snprintf(file, sizeof file, "%s/experts/layer_003.bin", dir);
    assert_int_equal(truncate(file, 12288 * 7 + 100), 0);
    expect_open_error(dir, "truncated");
    expect_open_error(dir, "layer_003.bin");

    copy_tree(good, dir);
    unlink(file);
    expect_open_error(dir, "layer_003.bin");

    copy_tree(good, dir);
    snprintf(file, sizeof file, "%s/%s", dir, PACK_DENSE);
    assert_int_equal(truncate(file, 1000), 0);
    expect_open_error(dir, "truncated");

    copy_tree(good, dir);
    snprintf(file, sizeof file, "%s/%s", dir, PACK_MANIFEST);
    assert_int_equal(write_file(file, "{\"format\": \"flashmoe-packed\", \"version\": 1,", 42), 0);
    expect_open_error(dir, PACK_MANIFEST);
    assert_int_equal(write_file(file, "{\"format\": \"flashmoe-packed\", \"version\": 99}", 44), 0);
    expect_open_error(dir, "version 99");

    /* A flipped byte inside an expert: verify finds it; so do reads with checking on. */
    copy_tree(good, dir);
    snprintf(file, sizeof file, "%s/experts/layer_002.bin", dir);
    for (int e = 0; e < 16; e++) poke_byte(file, e * 12288L + 500);
    assert_int_equal(fm_verify(dir, NULL, NULL), FM_ERR_FORMAT);
    printf("  verify: %s\n", fm_last_error());
    assert_non_null(strstr(fm_last_error(), "checksum mismatch"));
    fm_model_options o = {.verify = 1};
    fm_model *m;
    assert_int_equal(fm_model_open(dir, &o, &m), FM_OK);
    fm_session *s;
    assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
    int32_t ids[4] = {1, 2, 3, 4};
    assert_int_equal(fm_session_eval(s, ids, 4, FM_LOGITS_NONE, NULL), FM_ERR_FORMAT);
    printf("  eval: %s\n", fm_last_error());
    assert_non_null(strstr(fm_last_error(), "layer_002.bin"));
    assert_int_equal(fm_session_position(s), 0);
    fm_session_free(s);
    fm_model_close(m);
}

static void test_read_errors(void **state) {
    (void)state;
    const char *dir = packed("qwen35moe", 4);
    run_result want = run_model(dir, NULL, "qwen35moe");
    for (int uring = 0; uring < 2; uring++)
        for (int kind = 0; kind < 4; kind++) {
            fm_model_options o = {.io_uring = uring, .cache = kind < 2 ? FM_EXPERT_CACHE_OS : FM_EXPERT_CACHE_RAM};
            fm_model *m;
            assert_int_equal(fm_model_open(dir, &o, &m), FM_OK);
            fm_session *s;
            assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
            fm_fault_arm(FM_FAULT_READ, 5, kind & 1 ? EIO : 0);
            fm_status st = fm_session_eval(s, want.ids, 8, FM_LOGITS_NONE, NULL);
            fm_fault_disarm();
            printf("  %s, %s cache, %s: %s\n", uring ? "io_uring" : "pread", kind < 2 ? "os" : "ram",
                   kind & 1 ? "EIO" : "short read", fm_last_error());
            assert_int_equal(st, FM_ERR_IO);
            assert_non_null(strstr(fm_last_error(), "experts/layer_"));
            assert_int_equal(fm_session_position(s), 0); /* reset, not half-advanced */
            /* The store works again: the same logits as an undisturbed run. */
            float *logits = malloc((size_t)want.n * want.V * sizeof *logits);
            assert_int_equal(fm_session_eval(s, want.ids, want.n / 2, FM_LOGITS_ALL, logits), FM_OK);
            assert_memory_equal(logits, want.logits, (size_t)(want.n / 2) * want.V * sizeof *logits);
            free(logits);
            fm_session_free(s);
            fm_model_close(m);
        }
    free_result(&want);
}

/* dst = src with every BF16 tensor widened to F32 (exactly), config files copied. */
static void make_f32_copy(const char *src, const char *dst) {
    char path[1300];
    mkdir(dst, 0755);
    const char *copies[] = {"config.json", "generation_config.json"};
    for (int i = 0; i < 2; i++) {
        char cmd[2800];
        snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/'", src, copies[i], dst);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    st_file *f;
    if (st_file_open(path, &f) != FM_OK) fail_msg("%s", fm_last_error());
    st_tensor *ts = calloc((size_t)f->n_tensors, sizeof *ts);
    uint64_t at = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        ts[i] = f->tensors[i];
        if (ts[i].dtype == FM_DTYPE_BF16) {
            ts[i].dtype = FM_DTYPE_F32;
            ts[i].nbytes *= 2;
        }
        ts[i].offset = at;
        at += (ts[i].nbytes + 63) / 64 * 64;
    }
    size_t head_len;
    char *head = st_header_build(ts, f->n_tensors, "test", &head_len);
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    fwrite(head, 1, head_len, out);
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        char *buf = calloc(1, (size_t)(ts[i].nbytes + 64));
        if (t->dtype == FM_DTYPE_BF16) fm_dtype_to_f32((float *)buf, t->data, t->dtype, st_tensor_numel(t));
        else memcpy(buf, t->data, t->nbytes);
        fwrite(buf, 1, (size_t)((ts[i].nbytes + 63) / 64 * 64), out);
        free(buf);
    }
    assert_int_equal(fclose(out), 0);
    free(head);
    free(ts);
    st_file_close(f);
}

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* An F32 checkpoint holding the same values as a BF16 one: the same logits,
 * and the same quantized experts. */
static void test_convert_from_f32(void **state) {
    (void)state;
    char src[1100], f32[1100], dst[1100], a[1300], b[1300];
    fixture_dir(src, sizeof src, "qwen3moe");
    path_in(f32, sizeof f32, "qwen3moe-f32");
    make_f32_copy(src, f32);
    path_in(dst, sizeof dst, "qwen3moe-f32-4");
    fm_convert_options o = {.bits = 4};
    assert_int_equal(fm_convert(f32, dst, &o), FM_OK);
    snprintf(a, sizeof a, "%s/experts/layer_001.bin", dst);
    snprintf(b, sizeof b, "%s/experts/layer_001.bin", packed("qwen3moe", 4));
    assert_true(same_file(a, b));
    run_result r16 = run_model(src, NULL, "qwen3moe"), r32 = run_model(f32, NULL, "qwen3moe");
    assert_identical("qwen3moe F32 copy vs BF16 checkpoint", &r16, &r32);
    run_result p = run_model(dst, NULL, "qwen3moe"), q = run_model(packed("qwen3moe", 4), NULL, "qwen3moe");
    assert_identical("4-bit packed from F32 vs from BF16", &p, &q);
    free_result(&r16);
    free_result(&r32);
    free_result(&p);
    free_result(&q);
}

static void test_convert_bad_input(void **state) {
    (void)state;
    char src[1100], dst[1100], bad[1100], file[2600];
    fixture_dir(src, sizeof src, "qwen3moe");
    path_in(dst, sizeof dst, "bad-out");
    fm_convert_options o = {.bits = 3};
    assert_int_equal(fm_convert(src, dst, &o), FM_ERR_ARGUMENT);
    printf("  --bits 3: %s\n", fm_last_error());
    o = (fm_convert_options){.bits = 4, .group = 48};
    assert_int_not_equal(fm_convert(src, dst, &o), FM_OK);
    printf("  --group 48: %s\n", fm_last_error());
    /* A checkpoint with a tensor of the wrong size: refused before anything is written. */
    path_in(bad, sizeof bad, "bad-src");
    copy_tree(src, bad);
    snprintf(file, sizeof file, "%s/model.safetensors", bad);
    assert_int_equal(truncate(file, 4096), 0);
    o = (fm_convert_options){.bits = 4};
    assert_int_not_equal(fm_convert(bad, dst, &o), FM_OK);
    printf("  truncated source: %s\n", fm_last_error());
    snprintf(file, sizeof file, "%s/%s", dst, PACK_MANIFEST);
    assert_int_equal(access(file, F_OK), -1);
    assert_int_equal(fm_convert(packed("qwen3moe", 16), dst, &o), FM_ERR_ARGUMENT); /* already packed */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_packed_is_the_checkpoint),
        cmocka_unit_test(test_streaming_equals_all_in_ram),
        cmocka_unit_test(test_quantized_quality),
        cmocka_unit_test(test_mlx_layout_matches_numpy),
        cmocka_unit_test(test_mlx_checkpoints),
        cmocka_unit_test(test_disk_full_then_resume),
        cmocka_unit_test(test_corrupt_packed_models),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_convert_from_f32),
        cmocka_unit_test(test_convert_bad_input),
    };
    return cmocka_run_group_tests_name("packed", tests, setup, teardown);
}

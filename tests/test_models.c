/* Whole-model tests against transformers' float32 reference for every
 * bundled fixture (tests/data/models, unpacked into build/models):
 *   - prompt logits and every layer's hidden state: relative L2 ≤ 1e-4
 *   - greedy continuation (24 tokens) identical
 *   - prompt + continuation through prefill then one-token decode steps,
 *     and through one batch, against full_logits: relative L2 ≤ 1e-4
 * qwen3next is also run from a copy re-written as three shards with an index, and
 * the shipped model (models/assistant) against the reference train/train.py wrote. */
#include "test_util.h"

#include "model/session.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-4

typedef struct {
    const char *name;
    const char *reference; /* fixture whose reference.safetensors applies */
    const char *dir;       /* model directory if not under test_models_dir() */
} fixture;

static char sharded_dir[1024];

static fixture fixtures[] = {
    {"qwen35moe", "qwen35moe", NULL},           {"qwen35moe_fused", "qwen35moe", NULL},
    {"qwen35moe_text", "qwen35moe_text", NULL}, {"qwen35moe_tok", "qwen35moe_tok", NULL},
    {"qwen3next", "qwen3next", NULL},           {"qwen3moe", "qwen3moe", NULL},
    {"mixtral", "mixtral", NULL},               {"qwen3next_sharded", "qwen3next", sharded_dir},
    /* The shipped model (trained; models/assistant): its reference was unpacked to build/models/assistant_ref. */
    {"assistant", "assistant_ref", "models/assistant"},
};

static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) fail_msg("cannot copy %s to %s", src, dst);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Re-writes `src`'s model.safetensors as three shards (tensors dealt round
 * robin, headers padded to 8 bytes) plus model.safetensors.index.json. */
static int make_sharded_copy(void **state) {
    (void)state;
    char src[1024], path[1200];
    snprintf(src, sizeof src, "%s/qwen3next", test_models_dir());
    snprintf(sharded_dir, sizeof sharded_dir, "%s/qwen3next_sharded", test_tmp_dir());
    mkdir(sharded_dir, 0755);
    const char *copies[] = {"config.json", "generation_config.json"};
    for (int i = 0; i < 2; i++) {
        char from[1200];
        snprintf(from, sizeof from, "%s/%s", src, copies[i]);
        snprintf(path, sizeof path, "%s/%s", sharded_dir, copies[i]);
        copy_file(from, path);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    st_file *f;
    if (st_file_open(path, &f) != FM_OK) fail_msg("%s", fm_last_error());
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    enum { SHARDS = 3 };
    for (int sh = 0; sh < SHARDS; sh++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", sh + 1, SHARDS);
        cJSON *hdr = cJSON_CreateObject();
        uint64_t off = 0;
        for (int i = sh; i < f->n_tensors; i += SHARDS) {
            const st_tensor *t = &f->tensors[i];
            cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
            cJSON_AddStringToObject(e, "dtype", fm_dtype_name(t->dtype));
            cJSON *shape = cJSON_AddArrayToObject(e, "shape");
            for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
            cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
            cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
            off += t->nbytes;
            cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
            cJSON_AddStringToObject(map, t->name, name);
        }
        char *text = cJSON_PrintUnformatted(hdr);
        size_t len = strlen(text), padded = (len + 7) / 8 * 8;
        snprintf(path, sizeof path, "%s/%s", sharded_dir, name);
        FILE *out = fopen(path, "wb");
        assert_non_null(out);
        unsigned char len8[8];
        for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)padded >> (8 * b));
        fwrite(len8, 1, 8, out);
        fwrite(text, 1, len, out);
        for (size_t b = len; b < padded; b++) fputc(' ', out);
        for (int i = sh; i < f->n_tensors; i += SHARDS) fwrite(f->tensors[i].data, 1, f->tensors[i].nbytes, out);
        assert_int_equal(fclose(out), 0);
        free(text);
        cJSON_Delete(hdr);
    }
    char *text = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", sharded_dir);
    assert_int_equal(write_file(path, text, strlen(text)), 0);
    free(text);
    cJSON_Delete(index);
    st_file_close(f);
    return 0;
}

static int remove_sharded_copy(void **state) {
    (void)state;
    char path[1200];
    const char *names[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                           "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", sharded_dir, names[i]);
        unlink(path);
    }
    rmdir(sharded_dir);
    rmdir(test_tmp_dir());
    return 0;
}

typedef struct {
    fm_model *model;
    st_file *ref;
    int V, H, L;
} ctx;

static void open_fixture(const fixture *fx, ctx *c) {
    char dir[1024], ref[1100];
    if (fx->dir) snprintf(dir, sizeof dir, "%s", fx->dir);
    else snprintf(dir, sizeof dir, "%s/%s", test_models_dir(), fx->name);
    snprintf(ref, sizeof ref, "%s/%s/reference.safetensors", test_models_dir(), fx->reference);
    if (fm_model_open(dir, NULL, &c->model) != FM_OK) fail_msg("open %s: %s", dir, fm_last_error());
    if (st_file_open(ref, &c->ref) != FM_OK) fail_msg("%s", fm_last_error());
    const fm_model_info *in = fm_model_get_info(c->model);
    c->V = in->vocab_size;
    c->H = in->hidden_size;
    c->L = in->n_layers;
}

static void close_fixture(ctx *c) {
    fm_model_close(c->model);
    st_file_close(c->ref);
}

/* The reference may keep only the last rows of a logits tensor (qwen35moe_tok). */
static void check_logits(const char *label, const float *got, int T, const st_tensor *want, int V) {
    int rows = (int)want->shape[0];
    assert_int_equal(want->shape[1], V);
    assert_true(rows <= T);
    const float *g = got + (size_t)(T - rows) * V;
    report(label, g, want->data, (size_t)rows * V);
    assert_true(rel_l2(g, want->data, (size_t)rows * V) <= TOL);
}

/* A cancel hook that says stop on its third call (the third layer). */
static int cancel_on_third(void *user) { return ++*(int *)user >= 3; }

static void test_prompt(void **state) {
    const fixture *fx = *state;
    ctx c;
    open_fixture(fx, &c);
    const st_tensor *ids = ref_tensor(c.ref, "input_ids");
    const int T = (int)ids->shape[0];
    float *logits = malloc((size_t)T * c.V * sizeof *logits);
    float *hidden = malloc((size_t)(c.L + 1) * T * c.H * sizeof *hidden);
    fm_session *s;
    assert_int_equal(fm_session_new(c.model, NULL, &s), FM_OK);
    /* Cancelled between layers: FM_ERR_CANCELLED, the session reset, and (below) the same
     * session then gives the reference's logits. */
    int calls = 0;
    fm_session_set_cancel(s, cancel_on_third, &calls);
    assert_int_equal(fm_session_eval(s, ids->data, T, FM_LOGITS_ALL, logits), FM_ERR_CANCELLED);
    assert_int_equal(calls, 3);
    assert_int_equal(fm_session_position(s), 0);
    fm_session_set_cancel(s, NULL, NULL);
    fm_session_capture_hidden(s, hidden);
    assert_int_equal(fm_session_eval(s, ids->data, T, FM_LOGITS_ALL, logits), FM_OK);
    printf("[%s] prompt of %d tokens (after a cancelled evaluation)\n", fx->name, T);
    const st_tensor *hs = ref_tensor(c.ref, "hidden_states");
    assert_int_equal(hs->shape[0], c.L + 1);
    for (int i = 0; i <= c.L; i++) {
        char label[64];
        snprintf(label, sizeof label, "hidden_states[%d]", i);
        const float *want = (const float *)hs->data + (size_t)i * T * c.H;
        report(label, hidden + (size_t)i * T * c.H, want, (size_t)T * c.H);
        assert_true(rel_l2(hidden + (size_t)i * T * c.H, want, (size_t)T * c.H) <= TOL);
    }
    check_logits("logits", logits, T, ref_tensor(c.ref, "logits"), c.V);
    fm_session_free(s);
    free(logits);
    free(hidden);
    close_fixture(&c);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void test_greedy_and_decode(void **state) {
    const fixture *fx = *state;
    ctx c;
    open_fixture(fx, &c);
    const st_tensor *full = ref_tensor(c.ref, "full_ids");
    const st_tensor *greedy = ref_tensor(c.ref, "greedy_tokens");
    const int T = (int)ref_tensor(c.ref, "input_ids")->shape[0], G = (int)greedy->shape[0];
    const int N = (int)full->shape[0];
    assert_int_equal(N, T + G);
    const int32_t *ids = full->data;
    float *logits = malloc((size_t)N * c.V * sizeof *logits);
    fm_session *s;
    assert_int_equal(fm_session_new(c.model, NULL, &s), FM_OK);

    /* Greedy: prefill the prompt, then feed back the argmax. */
    int32_t tok;
    assert_int_equal(fm_session_eval(s, ids, T, FM_LOGITS_LAST, logits), FM_OK);
    int mismatches = 0;
    for (int i = 0; i < G; i++) {
        tok = argmax(logits, c.V);
        if (tok != ((const int32_t *)greedy->data)[i]) mismatches++;
        assert_int_equal(fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits), FM_OK);
    }
    printf("[%s] greedy: %d of %d tokens differ\n", fx->name, mismatches, G);
    assert_int_equal(mismatches, 0);

    /* full_ids through prefill (prompt) + decode steps (continuation). */
    fm_session_reset(s);
    assert_int_equal(fm_session_eval(s, ids, T, FM_LOGITS_ALL, logits), FM_OK);
    for (int i = T; i < N; i++)
        assert_int_equal(fm_session_eval(s, ids + i, 1, FM_LOGITS_ALL, logits + (size_t)i * c.V), FM_OK);
    assert_int_equal(fm_session_position(s), N);
    check_logits("full_logits (prefill + decode)", logits, N, ref_tensor(c.ref, "full_logits"), c.V);

    /* The same in one batch, and in uneven chunks (state carried across calls). */
    fm_session_reset(s);
    assert_int_equal(fm_session_eval(s, ids, N, FM_LOGITS_ALL, logits), FM_OK);
    check_logits("full_logits (one batch)", logits, N, ref_tensor(c.ref, "full_logits"), c.V);
    fm_session_reset(s);
    for (int i = 0, step = 7; i < N; i += step)
        assert_int_equal(fm_session_eval(s, ids + i, i + step > N ? N - i : step, FM_LOGITS_ALL,
                                         logits + (size_t)i * c.V), FM_OK);
    check_logits("full_logits (chunks of 7)", logits, N, ref_tensor(c.ref, "full_logits"), c.V);

    fm_session_free(s);
    free(logits);
    close_fixture(&c);
}

int main(void) {
    enum { N = sizeof fixtures / sizeof *fixtures };
    struct CMUnitTest tests[2 * N];
    for (int i = 0; i < N; i++) {
        tests[2 * i] = (struct CMUnitTest){fixtures[i].name, test_prompt, NULL, NULL, (void *)&fixtures[i]};
        tests[2 * i + 1] = (struct CMUnitTest){fixtures[i].name, test_greedy_and_decode, NULL, NULL,
                                               (void *)&fixtures[i]};
    }
    return _cmocka_run_group_tests("models", tests, 2 * N, make_sharded_copy, remove_sharded_copy);
}

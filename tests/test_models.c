/* Whole-model tests against transformers' float32 reference for every
 * bundled fixture (tests/data/models, unpacked into build/models):
 *   - prompt logits and every layer's hidden state: relative L2 ≤ 1e-4
 *   - greedy continuation (24 tokens) identical
 *   - prompt + continuation through prefill then one-token decode steps,
 *     and through one batch, against full_logits: relative L2 ≤ 1e-4 */
#include "test_util.h"

#include "model/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

typedef struct {
    const char *name;
    const char *reference; /* fixture whose reference.safetensors applies */
} fixture;

static const fixture fixtures[] = {
    {"qwen35moe", "qwen35moe"}, {"qwen35moe_fused", "qwen35moe"}, {"qwen35moe_text", "qwen35moe_text"},
    {"qwen35moe_tok", "qwen35moe_tok"}, {"qwen3next", "qwen3next"}, {"qwen3moe", "qwen3moe"},
    {"mixtral", "mixtral"},
};

typedef struct {
    fm_model *model;
    st_file *ref;
    int V, H, L;
} ctx;

static void open_fixture(const fixture *fx, ctx *c) {
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s/%s", test_models_dir(), fx->name);
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
    fm_session_capture_hidden(s, hidden);
    assert_int_equal(fm_session_eval(s, ids->data, T, FM_LOGITS_ALL, logits), FM_OK);
    printf("[%s] prompt of %d tokens\n", fx->name, T);
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
    return _cmocka_run_group_tests("models", tests, 2 * N, NULL, NULL);
}

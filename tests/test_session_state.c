/* Session snapshots and truncation (fm_session_state_*, fm_session_truncate),
 * on the fixture models (random weights, see tests/data/README.md):
 *   - save after a prefix, go on, restore, feed the same tokens again: the
 *     logits are bit-identical to the first time (every architecture: linear
 *     attention with conv and recurrent state, full attention KV)
 *   - a snapshot restores into another session of the same model
 *   - truncation: models of only full attention go back to any prefix (same
 *     logits as a fresh run); models with linear attention refuse
 *   - bad snapshots: short buffer, wrong magic, wrong size, another model's
 *     snapshot: an error, the session still works */
#include "test_util.h"

#include "flashmoe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void random_tokens(int32_t *t, int n, int vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((rand_uniform(&seed) * 0.5f + 0.5f) * (vocab - 1));
}

static void assert_same_logits(const float *a, const float *b, size_t n, const char *what) {
    if (memcmp(a, b, n * sizeof *a)) fail_msg("%s: logits differ (rel L2 %g)", what, rel_l2(a, b, n));
}

static void check_round_trip(const char *name) {
    fm_model *m = test_open_model(name);
    const int V = fm_model_get_info(m)->vocab_size, N = 40, P = 23;
    int32_t tok[40];
    random_tokens(tok, N, V, 7);
    float *want = test_keep(malloc((size_t)V * sizeof(float))), *got = test_keep(malloc((size_t)V * sizeof(float)));
    fm_session *s = NULL, *other = NULL;
    assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
    assert_int_equal(fm_session_new(m, NULL, &other), FM_OK);
    assert_int_equal(fm_session_eval(s, tok, P, FM_LOGITS_NONE, NULL), FM_OK);
    size_t size = fm_session_state_size(s);
    void *snap = test_keep(malloc(size));
    assert_int_equal(fm_session_state_save(s, snap, size), FM_OK);
    assert_int_equal(fm_session_eval(s, tok + P, N - P, FM_LOGITS_LAST, want), FM_OK);

    /* Back to the prefix in the same session, and in another one. */
    assert_int_equal(fm_session_state_load(s, snap, size), FM_OK);
    assert_int_equal(fm_session_position(s), P);
    assert_int_equal(fm_session_eval(s, tok + P, N - P, FM_LOGITS_LAST, got), FM_OK);
    assert_same_logits(got, want, (size_t)V, name);
    assert_int_equal(fm_session_eval(other, tok, 5, FM_LOGITS_NONE, NULL), FM_OK); /* state to overwrite */
    assert_int_equal(fm_session_state_load(other, snap, size), FM_OK);
    assert_int_equal(fm_session_eval(other, tok + P, N - P, FM_LOGITS_LAST, got), FM_OK);
    assert_same_logits(got, want, (size_t)V, "another session");

    /* Bad snapshots are refused and the session goes on as it was. */
    assert_int_equal(fm_session_state_save(s, snap, size - 1), FM_ERR_ARGUMENT);
    assert_int_equal(fm_session_state_load(s, snap, 4), FM_ERR_FORMAT);
    assert_int_equal(fm_session_state_load(s, snap, size - 4), FM_ERR_FORMAT);
    assert_non_null(strstr(fm_last_error(), "expected"));
    unsigned char *bad = test_keep(malloc(size));
    memcpy(bad, snap, size);
    bad[0] ^= 1;
    assert_int_equal(fm_session_state_load(s, bad, size), FM_ERR_FORMAT);
    assert_int_equal(fm_session_position(s), N);

    /* Truncation: only all-full-attention models go back. */
    if (fm_session_can_truncate(s)) {
        assert_int_equal(fm_session_truncate(s, P), FM_OK);
        assert_int_equal(fm_session_eval(s, tok + P, N - P, FM_LOGITS_LAST, got), FM_OK);
        assert_same_logits(got, want, (size_t)V, "truncated");
    } else {
        assert_int_equal(fm_session_truncate(s, P), FM_ERR_UNSUPPORTED);
        assert_int_equal(fm_session_truncate(s, N), FM_OK); /* to where it is: nothing to rewind */
    }
    assert_int_equal(fm_session_truncate(s, N + 1), FM_ERR_ARGUMENT);
    fm_session_free(s);
    fm_session_free(other);
    fm_model_close(m);
    test_free_kept();
}

static void test_qwen35moe(void **state) { (void)state, check_round_trip("qwen35moe"); }
static void test_qwen3next(void **state) { (void)state, check_round_trip("qwen3next"); }
static void test_qwen3moe(void **state) { (void)state, check_round_trip("qwen3moe"); }
static void test_mixtral(void **state) { (void)state, check_round_trip("mixtral"); }

static void test_other_model_refused(void **state) {
    (void)state;
    fm_model *a = test_open_model("qwen35moe"), *b = test_open_model("qwen3moe");
    fm_session *sa, *sb;
    assert_int_equal(fm_session_new(a, NULL, &sa), FM_OK);
    assert_int_equal(fm_session_new(b, NULL, &sb), FM_OK);
    int32_t t[3] = {1, 2, 3};
    assert_int_equal(fm_session_eval(sa, t, 3, FM_LOGITS_NONE, NULL), FM_OK);
    size_t size = fm_session_state_size(sa);
    void *snap = malloc(size);
    assert_int_equal(fm_session_state_save(sa, snap, size), FM_OK);
    assert_int_equal(fm_session_state_load(sb, snap, size), FM_ERR_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "different model"));
    free(snap);
    fm_session_free(sa);
    fm_session_free(sb);
    fm_model_close(a);
    fm_model_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen35moe), cmocka_unit_test(test_qwen3next), cmocka_unit_test(test_qwen3moe),
        cmocka_unit_test(test_mixtral),   cmocka_unit_test(test_other_model_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

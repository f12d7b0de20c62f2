/* The server's prompt cache (app/server/prompt_cache.c) on fixture models:
 *   - find: the longest entry whose tokens all begin the prompt and are fewer
 *     than it (the last prompt token is fed again for its logits); entries that
 *     diverge are unusable with linear attention, usable up to the common part
 *     when every layer is full attention (the session is truncated)
 *   - restore: the session continues exactly as if it had prefilled the prefix
 *     (logits bit-identical)
 *   - budget: least recently used entries go first; a snapshot larger than the
 *     whole budget is not kept; the same tokens are stored once */
#include "test_util.h"

#include "flashmoe.h"
#include "server/prompt_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 30 };

static void tokens(int32_t *t, uint64_t seed, int vocab) {
    for (int i = 0; i < N; i++) t[i] = (int32_t)((rand_uniform(&seed) * 0.5f + 0.5f) * (vocab - 1));
}

/* Logits after feeding t[0, n) to a fresh session. */
static void fresh_logits(fm_model *m, const int32_t *t, int n, float *out) {
    fm_session *s;
    assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
    assert_int_equal(fm_session_eval(s, t, n, FM_LOGITS_LAST, out), FM_OK);
    fm_session_free(s);
}

static void check_model(const char *name) {
    fm_model *m = test_open_model(name);
    const int V = fm_model_get_info(m)->vocab_size;
    int32_t a[N], b[N];
    tokens(a, 1, V);
    memcpy(b, a, sizeof a);
    b[20] = (a[20] + 1) % V; /* b shares 20 tokens with a */
    fm_session *s;
    assert_int_equal(fm_session_new(m, NULL, &s), FM_OK);
    prompt_cache *c = prompt_cache_new(64u << 20);
    assert_non_null(c);
    /* Entries: a[0,10) and a[0,25). */
    assert_int_equal(fm_session_eval(s, a, 10, FM_LOGITS_NONE, NULL), FM_OK);
    assert_int_equal(prompt_cache_put(c, s, a, 10), 0);
    assert_int_equal(fm_session_eval(s, a + 10, 15, FM_LOGITS_NONE, NULL), FM_OK);
    assert_int_equal(prompt_cache_put(c, s, a, 25), 0);
    assert_int_equal(prompt_cache_put(c, s, a, 25), 0); /* the same tokens: kept once */
    prompt_cache_stats st;
    prompt_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 2);

    int len, idx = prompt_cache_find(c, s, a, N, &len);
    assert_true(idx >= 0);
    assert_int_equal(len, 25);
    assert_int_equal(prompt_cache_find(c, s, a, 25, &len) >= 0, 1);
    /* a[0,25) itself: the last token must be fed again: the longer entry cut to 24 tokens when the
     * model can truncate, else only the shorter one */
    assert_int_equal(len, fm_session_can_truncate(s) ? 24 : 10);
    idx = prompt_cache_find(c, s, b, N, &len);
    if (fm_session_can_truncate(s)) assert_int_equal(len, 20); /* cut a[0,25) back to the common 20 */
    else assert_int_equal(len, 10);                            /* only the entry that is all prefix */

    /* Restored, the session goes on as if it had prefilled the prefix itself. */
    float *want = test_keep(malloc((size_t)V * sizeof(float))), *got = test_keep(malloc((size_t)V * sizeof(float)));
    fresh_logits(m, b, N, want);
    fm_session_reset(s);
    assert_int_equal(fm_session_eval(s, b, 3, FM_LOGITS_NONE, NULL), FM_OK); /* state to overwrite */
    assert_int_equal(prompt_cache_restore(c, idx, s, len), FM_OK);
    assert_int_equal(fm_session_position(s), len);
    assert_int_equal(fm_session_eval(s, b + len, N - len, FM_LOGITS_LAST, got), FM_OK);
    if (memcmp(got, want, (size_t)V * sizeof(float))) fail_msg("%s: restored logits differ", name);

    /* Budget: room for about two snapshots of 25 tokens; the least recently used goes. */
    size_t one = fm_session_state_size(s);
    prompt_cache *small = prompt_cache_new(2 * one + one / 2);
    fm_session_reset(s);
    assert_int_equal(fm_session_eval(s, a, 25, FM_LOGITS_NONE, NULL), FM_OK);
    int32_t x[25], y[25], z[25];
    for (int i = 0; i < 25; i++) x[i] = a[i], y[i] = a[i] ^ 1, z[i] = a[i] ^ 2; /* labels; the state is the same */
    assert_int_equal(prompt_cache_put(small, s, x, 25), 0);
    assert_int_equal(prompt_cache_put(small, s, y, 25), 0);
    assert_true(prompt_cache_find(small, s, x, 26 > N ? N : 26, &len) >= 0); /* x used: y is now the oldest */
    int32_t x26[26];
    memcpy(x26, x, sizeof x);
    x26[25] = 0;
    assert_int_equal(prompt_cache_restore(small, prompt_cache_find(small, s, x26, 26, &len), s, len), FM_OK);
    assert_int_equal(prompt_cache_put(small, s, z, 25), 0);
    prompt_cache_get_stats(small, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal((int)st.evicted, 1);
    assert_true(st.bytes <= st.budget);
    int32_t y26[26];
    memcpy(y26, y, sizeof y);
    y26[25] = 0;
    assert_int_equal(prompt_cache_find(small, s, y26, 26, &len), -1); /* y went */
    assert_true(prompt_cache_find(small, s, x26, 26, &len) >= 0);
    prompt_cache *tiny = prompt_cache_new(one / 2);
    assert_int_equal(prompt_cache_put(tiny, s, x, 25), -1); /* over the whole budget */

    prompt_cache_free(tiny);
    prompt_cache_free(small);
    prompt_cache_free(c);
    fm_session_free(s);
    fm_model_close(m);
    test_free_kept();
}

static void test_linear_attention_model(void **state) { (void)state, check_model("qwen35moe"); }
static void test_full_attention_model(void **state) { (void)state, check_model("qwen3moe"); }

static void test_common_prefix(void **state) {
    (void)state;
    int32_t a[] = {1, 2, 3, 4}, b[] = {1, 2, 5};
    assert_int_equal(common_prefix(a, 4, b, 3), 2);
    assert_int_equal(common_prefix(a, 4, a, 4), 4);
    assert_int_equal(common_prefix(a, 0, b, 3), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_prefix),
        cmocka_unit_test(test_linear_attention_model),
        cmocka_unit_test(test_full_attention_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

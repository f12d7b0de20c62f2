/* The byte-level BPE tokenizer against Hugging Face `tokenizers`:
 *   - every text of the Qwen3 reference corpus encodes to exactly the
 *     reference ids and decodes back to the reference text
 *   - property: decode(encode(s)) == NFC(s) on random Unicode strings, with
 *     special tokens mixed in
 *   - special tokens inside text, streaming decode, bad input and bad files */
#include "test_util.h"

#include "flashmoe.h"
#include "text/utf8.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static fm_tokenizer *tok;

static const char *tok_dir(void) {
    const char *d = getenv("FM_TEST_TOKENIZER");
    return d && *d ? d : "build/tokenizers/qwen3";
}

static int setup(void **state) {
    (void)state;
    if (fm_tokenizer_open(tok_dir(), &tok) != FM_OK) {
        fprintf(stderr, "cannot open %s: %s\n", tok_dir(), fm_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fm_tokenizer_close(tok);
    return 0;
}

static char *decode_all(const int32_t *ids, int n, int skip_special) {
    char *text;
    size_t len;
    assert_int_equal(fm_tokenizer_decode(tok, ids, n, skip_special, &text, &len), FM_OK);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_reference_corpus(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", tok_dir());
    char *json = read_text_file(path);
    cJSON *refs = cJSON_Parse(json);
    assert_non_null(refs);
    int n_texts = 0, n_tokens = 0;
    for (const cJSON *r = refs->child; r; r = r->next, n_texts++) {
        const char *text = cJSON_GetObjectItem(r, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(r, "ids");
        int32_t *ids;
        int n;
        assert_int_equal(fm_tokenizer_encode(tok, text, strlen(text), &ids, &n), FM_OK);
        int same = n == cJSON_GetArraySize(want);
        for (int i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
        if (!same) {
            printf("text %d: %.60s...\n  got ", n_texts, text);
            for (int i = 0; i < n && i < 20; i++) printf(" %d", ids[i]);
            printf("\n  want");
            for (int i = 0; i < cJSON_GetArraySize(want) && i < 20; i++) printf(" %d", cJSON_GetArrayItem(want, i)->valueint);
            printf("\n");
            fail_msg("ids differ from Hugging Face tokenizers");
        }
        char *back = decode_all(ids, n, 0);
        assert_string_equal(back, cJSON_GetObjectItem(r, "decoded")->valuestring);
        free(back);
        free(ids);
        n_tokens += n;
    }
    printf("  %d texts, %d tokens identical to the reference\n", n_texts, n_tokens);
    assert_true(n_texts >= 30);
    cJSON_Delete(refs);
    free(json);
}

/* Appends the UTF-8 of cp. */
static size_t put_cp(char *out, uint32_t cp) { return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out); }

/* A random string drawn from a mix of scripts, marks, spaces, digits, emoji
 * and the tokenizer's special tokens. */
static size_t random_text(char *out, int n_chars, uint64_t *seed) {
    static const uint32_t ranges[][2] = {
        {0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {'\n', '\n'}, {'\t', '\r'}, {0xA0, 0x17F}, {0x300, 0x36F},
        {0x391, 0x3C9}, {0x400, 0x4FF}, {0x5D0, 0x5EA}, {0x600, 0x6FF}, {0x900, 0x97F}, {0xE00, 0xE5B},
        {0x1100, 0x11FF}, {0x2000, 0x206F}, {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF00, 0xFFEF},
        {0x1F300, 0x1F64F}, {0x1D400, 0x1D7FF}, {0x10000, 0x1007F}};
    static const char *specials[] = {"<|im_start|>", "<|im_end|>", "<think>", "</tool_call>", "<|endoftext|>"};
    size_t len = 0;
    for (int i = 0; i < n_chars; i++) {
        float u = (rand_uniform(seed) + 1) / 2;
        if (u < 0.02f) {
            const char *s = specials[(int)((rand_uniform(seed) + 1) / 2 * 4.999f)];
            memcpy(out + len, s, strlen(s));
            len += strlen(s);
            continue;
        }
        int r = (int)((rand_uniform(seed) + 1) / 2 * (sizeof ranges / sizeof *ranges - 0.001));
        uint32_t cp = ranges[r][0] + (uint32_t)((rand_uniform(seed) + 1) / 2 * (ranges[r][1] - ranges[r][0] + 0.999));
        if (!utf8proc_codepoint_valid((utf8proc_int32_t)cp)) cp = 'x';
        len += put_cp(out + len, cp);
    }
    out[len] = 0;
    return len;
}

static void test_roundtrip_random_unicode(void **state) {
    (void)state;
    uint64_t seed = 0x5eed;
    char text[4096];
    int total_ids = 0;
    for (int trial = 0; trial < 500; trial++) {
        size_t len = random_text(text, 1 + trial % 300, &seed);
        int32_t *ids;
        int n;
        assert_int_equal(fm_tokenizer_encode(tok, text, len, &ids, &n), FM_OK);
        char *back = decode_all(ids, n, 0);
        char *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)text);
        if (strcmp(back, nfc) != 0) fail_msg("trial %d: decode(encode(s)) != NFC(s) for \"%s\"", trial, text);
        /* Streaming decode gives the same text, in whole characters only. */
        fm_detokenizer *d;
        assert_int_equal(fm_detokenizer_new(tok, 0, &d), FM_OK);
        char *streamed = malloc(strlen(back) + 16);
        size_t at = 0, piece_len;
        for (int i = 0; i < n; i++) {
            const char *piece = fm_detokenizer_push(d, ids[i], &piece_len);
            assert_int_equal(utf8_validate(piece, piece_len), piece_len);
            memcpy(streamed + at, piece, piece_len);
            at += piece_len;
        }
        const char *rest = fm_detokenizer_flush(d, &piece_len);
        memcpy(streamed + at, rest, piece_len);
        at += piece_len;
        streamed[at] = 0;
        assert_string_equal(streamed, back);
        fm_detokenizer_free(d);
        free(streamed);
        free(nfc);
        free(back);
        free(ids);
        total_ids += n;
    }
    printf("  500 random strings, %d tokens: decode(encode(s)) == NFC(s), streaming identical\n", total_ids);
}

static void test_special_tokens_in_text(void **state) {
    (void)state;
    const char *text = "<|im_start|>user\nhi<|im_end|><|im_start|";
    int32_t *ids;
    int n;
    assert_int_equal(fm_tokenizer_encode(tok, text, strlen(text), &ids, &n), FM_OK);
    int32_t start = fm_tokenizer_token_id(tok, "<|im_start|>"), end = fm_tokenizer_token_id(tok, "<|im_end|>");
    assert_int_equal(start, 151644);
    assert_int_equal(end, 151645);
    assert_true(fm_tokenizer_is_special(tok, start));
    assert_false(fm_tokenizer_is_special(tok, fm_tokenizer_token_id(tok, "<think>")));
    assert_int_equal(ids[0], start);
    int ends = 0, starts = 0;
    for (int i = 0; i < n; i++) {
        ends += ids[i] == end;
        starts += ids[i] == start;
    }
    assert_int_equal(ends, 1);
    assert_int_equal(starts, 1); /* the trailing "<|im_start|" is plain text */
    char *kept = decode_all(ids, n, 0), *skipped = decode_all(ids, n, 1);
    assert_string_equal(kept, text);
    assert_string_equal(skipped, "user\nhi<|im_start|");
    free(kept);
    free(skipped);
    free(ids);
}

static void test_partial_utf8_tokens(void **state) {
    (void)state;
    /* "é" is bytes C3 A9: the two single-byte tokens decode to it together,
     * alone to U+FFFD; streaming holds the first byte back. */
    int32_t c3 = fm_tokenizer_token_id(tok, "\xC3"), a9 = fm_tokenizer_token_id(tok, "\xA9");
    assert_true(c3 >= 0 && a9 >= 0);
    int32_t both[] = {c3, a9};
    char *t = decode_all(both, 2, 0);
    assert_string_equal(t, "\xC3\xA9");
    free(t);
    t = decode_all(both, 1, 0);
    assert_string_equal(t, "\xEF\xBF\xBD");
    free(t);
    fm_detokenizer *d;
    size_t len;
    assert_int_equal(fm_detokenizer_new(tok, 0, &d), FM_OK);
    fm_detokenizer_push(d, c3, &len);
    assert_int_equal(len, 0);
    const char *s = fm_detokenizer_push(d, a9, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "\xC3\xA9", 2);
    fm_detokenizer_push(d, c3, &len);
    s = fm_detokenizer_flush(d, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "\xEF\xBF\xBD", 3);
    fm_detokenizer_free(d);
}

/* Large texts are encoded in parallel chunks: the ids must equal the
 * sequential encoding exactly. */
static void test_parallel_equals_sequential(void **state) {
    (void)state;
    uint64_t seed = 42;
    size_t cap = 3u << 20, len = 0;
    char *text = malloc(cap + 8192);
    while (len < cap) {
        len += random_text(text + len, 200, &seed);
        text[len] = "\n \n\t"[len % 4];
        len++;
        memcpy(text + len, "Line of plain text, 123 words.\n", 31);
        len += 31;
    }
    int32_t *seq, *par;
    int n_seq, n_par;
    omp_set_num_threads(1);
    assert_int_equal(fm_tokenizer_encode(tok, text, len, &seq, &n_seq), FM_OK);
    omp_set_num_threads(4);
    assert_int_equal(fm_tokenizer_encode(tok, text, len, &par, &n_par), FM_OK);
    assert_int_equal(n_seq, n_par);
    assert_memory_equal(seq, par, (size_t)n_seq * sizeof *seq);
    printf("  %zu bytes, %d tokens: parallel (4 threads) == sequential\n", len, n_seq);
    free(seq);
    free(par);
    free(text);
}

static void test_bad_input(void **state) {
    (void)state;
    int32_t *ids;
    int n;
    assert_int_equal(fm_tokenizer_encode(tok, "ok\xFF", 3, &ids, &n), FM_ERR_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "not valid UTF-8 (byte 2)"));
    assert_int_equal(fm_tokenizer_encode(tok, "", 0, &ids, &n), FM_OK);
    assert_int_equal(n, 0);
    free(ids);
    char *text;
    int32_t bad[] = {1, 999999};
    assert_int_equal(fm_tokenizer_decode(tok, bad, 2, 0, &text, NULL), FM_ERR_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "token id 999999 at position 1"));
    /* Long runs stay fast (the BPE uses a heap, not quadratic rescans). */
    size_t big = 1 << 20;
    char *spaces = malloc(big);
    memset(spaces, ' ', big);
    assert_int_equal(fm_tokenizer_encode(tok, spaces, big, &ids, &n), FM_OK);
    char *back = decode_all(ids, n, 0);
    assert_int_equal(strlen(back), big);
    free(back);
    free(ids);
    free(spaces);
}

static void expect_bad_file(const char *json, fm_status status, const char *needle) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", test_tmp_dir());
    assert_int_equal(write_file(path, json, strlen(json)), 0);
    fm_tokenizer *t = NULL;
    assert_int_equal(fm_tokenizer_open(path, &t), status);
    assert_null(t);
    if (!strstr(fm_last_error(), needle) || !strstr(fm_last_error(), path))
        fail_msg("message \"%s\" does not name the file and \"%s\"", fm_last_error(), needle);
    remove(path);
}

static void test_bad_files(void **state) {
    (void)state;
    fm_tokenizer *t = NULL;
    assert_int_equal(fm_tokenizer_open("/nonexistent/tok", &t), FM_ERR_IO);
    expect_bad_file("{\"model\": ", FM_ERR_FORMAT, "invalid JSON");
    expect_bad_file("{}", FM_ERR_FORMAT, "missing \"model\"");
    expect_bad_file("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", FM_ERR_UNSUPPORTED, "WordPiece");
    expect_bad_file("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", FM_ERR_UNSUPPORTED,
                    "no token for byte 0x00");
    expect_bad_file("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}", FM_ERR_FORMAT, "not a token id");
    expect_bad_file("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                    FM_ERR_FORMAT, "empty vocabulary");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_corpus),  cmocka_unit_test(test_roundtrip_random_unicode),
        cmocka_unit_test(test_special_tokens_in_text), cmocka_unit_test(test_partial_utf8_tokens),
        cmocka_unit_test(test_parallel_equals_sequential),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_bad_files),
    };
    int failed = cmocka_run_group_tests_name("tokenizer", tests, setup, teardown);
    rmdir(test_tmp_dir());
    return failed;
}

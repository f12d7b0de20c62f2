/* config.json parsing and model opening on bad inputs, config key styles, and
 * the session's argument checks:
 *   - fm_model_open on copies of fixture directories (under test_tmp_dir())
 *     with one thing broken in config.json or model.safetensors: the status
 *     and a message naming the file, key or tensor
 *   - fm_config_parse / fm_config_load on the key styles real checkpoints
 *     use: rope_theta top-level or in rope_parameters, layer_types or
 *     full_attention_interval, text_config or flat, eos_token_id as an int or
 *     a list (generation_config.json first), num_experts or
 *     num_local_experts, mlp_only_layers and decoder_sparse_step
 *   - fm_session_eval refusing bad token ids, empty input and context
 *     overflow with FM_ERR_ARGUMENT and the session left unchanged */
#include "test_util.h"

#include "core/error.h"
#include "core/json_file.h"
#include "load/config.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

#define assert_msg_has(s)                                                                                  \
    do {                                                                                                   \
        if (!strstr(fm_last_error(), (s))) fail_msg("message \"%s\" does not mention \"%s\"", fm_last_error(), (s)); \
    } while (0)

static void clear_error(void) { fm_error(FM_OK, "%s", ""); }

static void check_needles(va_list ap) {
    for (const char *s; (s = va_arg(ap, const char *));) assert_msg_has(s);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) fail_msg("cannot open %s", src);
    FILE *out = fopen(dst, "wb");
    if (!out) fail_msg("cannot create %s", dst);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void fixture_path(char *buf, size_t size, const char *fixture, const char *file) {
    snprintf(buf, size, "%s/%s/%s", test_models_dir(), fixture, file);
}

/* A fresh copy of a fixture directory as test_tmp_dir()/name: config.json,
 * generation_config.json and, with `weights`, model.safetensors. */
static void copy_fixture(const char *fixture, const char *name, int weights, char *dir, size_t size) {
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors"};
    snprintf(dir, size, "%s/%s", test_tmp_dir(), name);
    remove_tree(dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < (weights ? 3 : 2); i++) {
        char src[1200], dst[1200];
        fixture_path(src, sizeof src, fixture, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (access(src, F_OK) == 0) copy_file(src, dst);
    }
}

static cJSON *read_json(const char *path) {
    cJSON *root;
    if (json_file_read(path, &root) != FM_OK) fail_msg("%s", fm_last_error());
    return root;
}

static cJSON *fixture_config(const char *fixture) {
    char path[1200];
    fixture_path(path, sizeof path, fixture, "config.json");
    return read_json(path);
}

static void write_json(const char *path, const cJSON *root) {
    char *text = cJSON_Print(root);
    assert_non_null(text);
    assert_int_equal(write_file(path, text, strlen(text)), 0);
    free(text);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(write_file(path, text, strlen(text)), 0);
}

static void dir_file(char *buf, size_t size, const char *dir, const char *file) {
    snprintf(buf, size, "%s/%s", dir, file);
}

/* The object holding the text model's keys. */
static cJSON *text_of(cJSON *root) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    return cJSON_IsObject(t) ? t : root;
}

static void set_item(cJSON *obj, const char *key, cJSON *item) {
    assert_non_null(item);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    assert_true(cJSON_AddItemToObject(obj, key, item));
}

static void set_num(cJSON *obj, const char *key, double v) { set_item(obj, key, cJSON_CreateNumber(v)); }
static void set_str(cJSON *obj, const char *key, const char *v) { set_item(obj, key, cJSON_CreateString(v)); }
static void del_key(cJSON *obj, const char *key) {
    assert_non_null(cJSON_GetObjectItemCaseSensitive(obj, key));
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
}

static cJSON *int_list(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

#define LABEL "LABEL/config.json"

/* fm_config_parse on the printed tree. */
static fm_status parse_cfg(const cJSON *root, fm_config *cfg) {
    char *text = cJSON_PrintUnformatted(root);
    assert_non_null(text);
    clear_error();
    fm_status st = fm_config_parse(text, strlen(text), LABEL, cfg);
    free(text);
    return st;
}

static void parse_ok(const cJSON *root, fm_config *cfg) {
    if (parse_cfg(root, cfg) != FM_OK) fail_msg("%s", fm_last_error());
}

/* Expects `status` and a message naming LABEL and each needle (NULL-terminated). */
static void expect_parse_fails(const cJSON *root, fm_status status, ...) {
    fm_config cfg;
    fm_status st = parse_cfg(root, &cfg);
    if (st != status) {
        if (st == FM_OK) fm_config_free(&cfg);
        fail_msg("got %s (%s), expected %s", fm_status_name(st), fm_last_error(), fm_status_name(status));
    }
    assert_null(cfg.layer_full_attention); /* freed on failure */
    assert_msg_has(LABEL);
    va_list ap;
    va_start(ap, status);
    check_needles(ap);
    va_end(ap);
}

/* Expects fm_model_open(dir) to fail with `status` and a message naming each needle. */
static void expect_open_fails(const char *dir, fm_status status, ...) {
    fm_model *m = (fm_model *)0x1;
    clear_error();
    fm_status st = fm_model_open(dir, NULL, &m);
    if (st != status) {
        if (st == FM_OK) fm_model_close(m);
        fail_msg("%s: got %s (%s), expected %s", dir, fm_status_name(st), fm_last_error(), fm_status_name(status));
    }
    assert_null(m);
    va_list ap;
    va_start(ap, status);
    check_needles(ap);
    va_end(ap);
}

static void open_ok(const char *dir) {
    fm_model *m = NULL;
    if (fm_model_open(dir, NULL, &m) != FM_OK) fail_msg("%s: %s", dir, fm_last_error());
    fm_model_close(m);
}

/* Rewrites a safetensors file, dropping the tensor `name` or changing its
 * dtype and/or shape (the bytes are copied as they are, so the new dtype and
 * shape must cover the same byte count). */
typedef struct {
    const char *name;
    int drop;
    const char *dtype; /* NULL: keep */
    int n_dims;        /* 0: keep the shape */
    int64_t shape[4];
} st_edit;

static void rewrite_st(const char *src, const char *dst, const st_edit *edit) {
    st_file *f;
    if (st_file_open(src, &f) != FM_OK) fail_msg("%s", fm_last_error());
    cJSON *header = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(header, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t offset = 0;
    int edited = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        const char *dtype = fm_dtype_name(t->dtype);
        int n_dims = t->n_dims;
        const int64_t *shape = t->shape;
        if (edit && strcmp(t->name, edit->name) == 0) {
            edited = 1;
            if (edit->drop) continue;
            if (edit->dtype) dtype = edit->dtype;
            if (edit->n_dims) n_dims = edit->n_dims, shape = edit->shape;
        }
        cJSON *e = cJSON_AddObjectToObject(header, t->name);
        cJSON_AddStringToObject(e, "dtype", dtype);
        cJSON *s = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < n_dims; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(offset + t->nbytes)));
        offset += t->nbytes;
    }
    if (edit && !edited) fail_msg("rewrite_st: no tensor '%s' in %s", edit->name, src);
    char *json = cJSON_PrintUnformatted(header);
    assert_non_null(json);
    /* Pad with spaces to a multiple of 8, as safetensors writers do, so the
     * data section (and every tensor in it) stays aligned. */
    size_t hlen = (strlen(json) + 7) / 8 * 8;
    char *text = malloc(hlen + 1);
    assert_non_null(text);
    snprintf(text, hlen + 1, "%-*s", (int)hlen, json);
    free(json);
    FILE *out = fopen(dst, "wb");
    if (!out) fail_msg("cannot create %s", dst);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    assert_int_equal(fwrite(len, 1, 8, out), 8);
    assert_int_equal(fwrite(text, 1, hlen, out), hlen);
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (edit && edit->drop && strcmp(t->name, edit->name) == 0) continue;
        assert_int_equal(fwrite(t->data, 1, t->nbytes, out), t->nbytes);
    }
    assert_int_equal(fclose(out), 0);
    free(text);
    cJSON_Delete(header);
    st_file_close(f);
}

/* A copy of `fixture` as `name` whose model.safetensors has `edit` applied. */
static void fixture_with_edit(const char *fixture, const char *name, const st_edit *edit, char *dir, size_t size) {
    char src[1200], dst[1200];
    copy_fixture(fixture, name, 0, dir, size);
    fixture_path(src, sizeof src, fixture, "model.safetensors");
    dir_file(dst, sizeof dst, dir, "model.safetensors");
    rewrite_st(src, dst, edit);
}

/* A copy of `fixture` as `name` with its config.json replaced by `cfg`. */
static void fixture_with_config(const char *fixture, const char *name, const cJSON *cfg, char *dir, size_t size) {
    char path[1200];
    copy_fixture(fixture, name, 1, dir, size);
    dir_file(path, sizeof path, dir, "config.json");
    write_json(path, cfg);
}

/* ---- fm_model_open: broken config.json -------------------------------- */

static void test_model_fixture_copy_opens(void **state) {
    (void)state;
    char dir[1024];
    /* Unchanged copies, and an unedited rewrite of the weights, open: the helpers
     * themselves do not break anything. */
    copy_fixture("qwen3moe", "copy_qwen3moe", 1, dir, sizeof dir);
    open_ok(dir);
    remove_tree(dir);
    fixture_with_edit("qwen35moe", "rewrite_qwen35moe", NULL, dir, sizeof dir);
    open_ok(dir);
    remove_tree(dir);
}

static void test_model_bad_json(void **state) {
    (void)state;
    char dir[1024], path[1200];
    copy_fixture("qwen3moe", "bad_json", 1, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    /* A missing comma on line 3. */
    write_text(dir, "config.json", "{\n  \"model_type\": \"qwen3_moe\",\n  \"hidden_size\": 128 \"vocab_size\": 1024\n}\n");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "line 3", NULL);
    /* Truncated after line 5. */
    write_text(dir, "config.json", "{\n\"a\": 1,\n\"b\": 2,\n\"c\": [1,\n2,");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "line 5", NULL);
    write_text(dir, "config.json", "");
    expect_open_fails(dir, FM_ERR_FORMAT, path, NULL);
    write_text(dir, "config.json", "[1, 2]");
    expect_open_fails(dir, FM_ERR_FORMAT, path, NULL);
    remove_tree(dir);
}

static void test_model_config_missing(void **state) {
    (void)state;
    char dir[1024], path[1200];
    copy_fixture("qwen3moe", "no_config", 1, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    assert_int_equal(unlink(path), 0);
    expect_open_fails(dir, FM_ERR_IO, path, NULL);
    remove_tree(dir);
}

static void test_model_missing_key(void **state) {
    (void)state;
    static const char *const keys[] = {"hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads",
                                       "num_experts_per_tok", "moe_intermediate_size"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char dir[1024], path[1200];
        cJSON *cfg = fixture_config("qwen3moe");
        del_key(cfg, keys[i]);
        fixture_with_config("qwen3moe", "missing_key", cfg, dir, sizeof dir);
        dir_file(path, sizeof path, dir, "config.json");
        expect_open_fails(dir, FM_ERR_FORMAT, path, keys[i], "missing", NULL);
        cJSON_Delete(cfg);
        remove_tree(dir);
    }
    /* In a nested config the key is looked up under text_config. */
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen35moe");
    del_key(text_of(cfg), "hidden_size");
    fixture_with_config("qwen35moe", "missing_key_nested", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "hidden_size", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_unknown_type(void **state) {
    (void)state;
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen3moe");
    set_str(cfg, "model_type", "llama4_moe");
    fixture_with_config("qwen3moe", "unknown_type", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_UNSUPPORTED, path, "llama4_moe", NULL);
    del_key(cfg, "model_type");
    write_json(path, cfg);
    expect_open_fails(dir, FM_ERR_FORMAT, path, "model_type", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_layer_types_length(void **state) {
    (void)state;
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen35moe");
    cJSON *types = cJSON_GetObjectItemCaseSensitive(text_of(cfg), "layer_types");
    assert_int_equal(cJSON_GetArraySize(types), 6);
    cJSON_DeleteItemFromArray(types, 5);
    fixture_with_config("qwen35moe", "layer_types", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "layer_types", "6", NULL);
    /* One too many, and an unknown kind. */
    cJSON_AddItemToArray(types, cJSON_CreateString("full_attention"));
    cJSON_AddItemToArray(types, cJSON_CreateString("full_attention"));
    write_json(path, cfg);
    expect_open_fails(dir, FM_ERR_FORMAT, path, "layer_types", NULL);
    cJSON_DeleteItemFromArray(types, 6);
    cJSON_ReplaceItemInArray(types, 1, cJSON_CreateString("sliding_attention"));
    write_json(path, cfg);
    expect_open_fails(dir, FM_ERR_UNSUPPORTED, path, "layer_types[1]", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_rope_yarn(void **state) {
    (void)state;
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen3moe");
    cJSON *rope = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    set_str(rope, "rope_type", "yarn");
    set_num(rope, "factor", 4.0);
    fixture_with_config("qwen3moe", "rope_yarn", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_UNSUPPORTED, path, "yarn", NULL);
    /* The older spelling: rope_scaling with "type". */
    del_key(cfg, "rope_parameters");
    cJSON *old = cJSON_CreateObject();
    cJSON_AddStringToObject(old, "type", "yarn");
    set_item(cfg, "rope_scaling", old);
    write_json(path, cfg);
    expect_open_fails(dir, FM_ERR_UNSUPPORTED, path, "yarn", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_too_many_experts_per_token(void **state) {
    (void)state;
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen3moe");
    set_num(cfg, "num_experts_per_tok", 17); /* of 16 */
    fixture_with_config("qwen3moe", "experts_per_tok", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "num_experts_per_tok", "17", "16", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);

    cfg = fixture_config("mixtral");
    set_num(cfg, "num_experts_per_tok", 9); /* of 8 */
    fixture_with_config("mixtral", "experts_per_tok_mixtral", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "num_experts_per_tok", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_heads_not_multiple(void **state) {
    (void)state;
    char dir[1024], path[1200];
    cJSON *cfg = fixture_config("qwen3moe");
    set_num(cfg, "num_key_value_heads", 3); /* 4 heads */
    fixture_with_config("qwen3moe", "kv_heads", cfg, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "num_key_value_heads", "num_attention_heads", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

static void test_model_bad_generation_config(void **state) {
    (void)state;
    char dir[1024], path[1200];
    copy_fixture("qwen3moe", "bad_generation", 1, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "generation_config.json");
    write_text(dir, "generation_config.json", "{\n\"eos_token_id\": [1,\n}");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "line 3", NULL);
    write_text(dir, "generation_config.json", "{\"eos_token_id\": 1024}"); /* vocab_size 1024 */
    expect_open_fails(dir, FM_ERR_FORMAT, path, "eos_token_id", NULL);
    remove_tree(dir);
}

/* ---- fm_model_open: broken model.safetensors -------------------------- */

static void test_model_missing_tensor(void **state) {
    (void)state;
    static const struct { const char *fixture, *tensor; } cases[] = {
        {"qwen3moe", "model.layers.2.self_attn.k_proj.weight"},
        {"qwen3moe", "model.layers.3.mlp.experts.15.down_proj.weight"},
        {"qwen3moe", "lm_head.weight"},
        {"qwen35moe", "model.language_model.layers.1.linear_attn.in_proj_z.weight"},
        {"qwen35moe", "model.language_model.norm.weight"},
        {"mixtral", "model.layers.0.block_sparse_moe.gate.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[1024];
        st_edit edit = {.name = cases[i].tensor, .drop = 1};
        fixture_with_edit(cases[i].fixture, "missing_tensor", &edit, dir, sizeof dir);
        char quoted[256];
        snprintf(quoted, sizeof quoted, "'%s'", cases[i].tensor);
        expect_open_fails(dir, FM_ERR_FORMAT, dir, "missing tensor", quoted, NULL);
        remove_tree(dir);
    }
}

static void test_model_wrong_shape(void **state) {
    (void)state;
    char dir[1024], path[1200];
    /* Same byte count, transposed-like shape: [128, 128] → [64, 256]. */
    st_edit edit = {.name = "model.layers.1.self_attn.o_proj.weight", .n_dims = 2, .shape = {64, 256}};
    fixture_with_edit("qwen3moe", "wrong_shape", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.layers.1.self_attn.o_proj.weight'", "shape", "[64, 256]",
                      "expected [128, 128]", NULL);
    remove_tree(dir);

    /* A matrix stored as a vector. */
    edit = (st_edit){.name = "model.layers.0.self_attn.k_proj.weight", .n_dims = 1, .shape = {64 * 128}};
    fixture_with_edit("qwen3moe", "wrong_rank", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.layers.0.self_attn.k_proj.weight'", "shape",
                      "expected [64, 128]", NULL);
    remove_tree(dir);

    /* A norm vector with the wrong element count (F32 [64] holds BF16 [128]'s bytes). */
    edit = (st_edit){.name = "model.layers.0.input_layernorm.weight", .dtype = "F32", .n_dims = 1, .shape = {64}};
    fixture_with_edit("qwen3moe", "wrong_numel", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.layers.0.input_layernorm.weight'", "shape", "128", NULL);
    remove_tree(dir);

    /* Stacked experts [E, 2F, H] of a fused checkpoint. */
    edit = (st_edit){.name = "model.language_model.layers.2.mlp.experts.gate_up_proj", .n_dims = 3,
                     .shape = {16, 256, 64}};
    fixture_with_edit("qwen35moe_fused", "wrong_stacked", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.language_model.layers.2.mlp.experts.gate_up_proj'", "shape",
                      "expected [16, 128, 128]", NULL);
    remove_tree(dir);
}

static void test_model_integer_dtype(void **state) {
    (void)state;
    char dir[1024], path[1200];
    /* BF16 [1024, 128] → I32 [1024, 64]: same bytes, integer dtype. */
    st_edit edit = {.name = "model.embed_tokens.weight", .dtype = "I32", .n_dims = 2, .shape = {1024, 64}};
    fixture_with_edit("qwen3moe", "int_dtype", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.embed_tokens.weight'", "I32", NULL);
    remove_tree(dir);

    /* A small tensor converted at load (norm), I16 with the same shape. */
    edit = (st_edit){.name = "model.layers.0.input_layernorm.weight", .dtype = "I16"};
    fixture_with_edit("mixtral", "int_dtype_norm", &edit, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "model.safetensors");
    expect_open_fails(dir, FM_ERR_FORMAT, path, "'model.layers.0.input_layernorm.weight'", "I16", NULL);
    remove_tree(dir);
}

/* A config declaring a dense layer binds that layer's MLP tensors, which the
 * all-MoE fixture lacks: the message names the first one. */
static void test_model_mlp_only_layer_needs_dense_weights(void **state) {
    (void)state;
    char dir[1024];
    cJSON *cfg = fixture_config("qwen3moe");
    static const int only[] = {1};
    set_item(cfg, "mlp_only_layers", int_list(only, 1));
    fixture_with_config("qwen3moe", "mlp_only", cfg, dir, sizeof dir);
    expect_open_fails(dir, FM_ERR_FORMAT, "missing tensor", "'model.layers.1.mlp.gate_proj.weight'", NULL);
    cJSON_Delete(cfg);
    remove_tree(dir);
}

/* ---- fm_config_parse: key styles ---------------------------------------- */

static void test_cfg_rope_theta_styles(void **state) {
    (void)state;
    fm_config a, b, c, d;
    cJSON *cfg = fixture_config("qwen3moe"); /* rope_parameters.rope_theta = 1e6 */
    parse_ok(cfg, &a);
    assert_true(a.rope_theta == 1e6);
    assert_int_equal(a.rotary_dim, 32);

    del_key(cfg, "rope_parameters"); /* top level */
    set_num(cfg, "rope_theta", 1e6);
    parse_ok(cfg, &b);
    assert_true(b.rope_theta == a.rope_theta);
    assert_int_equal(b.rotary_dim, a.rotary_dim);

    set_item(cfg, "rope_scaling", cJSON_CreateNull()); /* old key, null */
    parse_ok(cfg, &c);
    assert_true(c.rope_theta == 1e6);

    del_key(cfg, "rope_theta"); /* default */
    parse_ok(cfg, &d);
    assert_true(d.rope_theta == 10000.0);
    fm_config_free(&a), fm_config_free(&b), fm_config_free(&c), fm_config_free(&d);
    cJSON_Delete(cfg);

    /* partial_rotary_factor at the top level vs in rope_parameters (head_dim 64). */
    cfg = fixture_config("qwen35moe_text");
    parse_ok(cfg, &a);
    assert_int_equal(a.rotary_dim, 16);
    assert_true(a.rope_theta == 1e7);
    cJSON *rope = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    del_key(rope, "partial_rotary_factor");
    del_key(rope, "rope_theta");
    set_num(cfg, "rope_theta", 1e7);
    parse_ok(cfg, &b);
    assert_int_equal(b.rotary_dim, 16);
    assert_true(b.rope_theta == 1e7);
    del_key(cfg, "partial_rotary_factor"); /* the architecture's default, 0.25 */
    parse_ok(cfg, &c);
    assert_int_equal(c.rotary_dim, 16);
    set_num(rope, "partial_rotary_factor", 0.5); /* rope_parameters wins over the top level */
    set_num(cfg, "partial_rotary_factor", 0.25);
    parse_ok(cfg, &d);
    assert_int_equal(d.rotary_dim, 32);
    fm_config_free(&a), fm_config_free(&b), fm_config_free(&c), fm_config_free(&d);
    cJSON_Delete(cfg);
}

static void test_cfg_layer_types_from_interval(void **state) {
    (void)state;
    fm_config c;
    cJSON *cfg = fixture_config("qwen35moe_text");
    set_num(cfg, "num_hidden_layers", 8);
    del_key(cfg, "layer_types");
    set_num(cfg, "full_attention_interval", 4);
    parse_ok(cfg, &c);
    assert_int_equal(c.n_layers, 8);
    for (int i = 0; i < 8; i++) assert_int_equal(c.layer_full_attention[i], i == 3 || i == 7);
    fm_config_free(&c);

    del_key(cfg, "full_attention_interval"); /* default interval 4 */
    parse_ok(cfg, &c);
    for (int i = 0; i < 8; i++) assert_int_equal(c.layer_full_attention[i], i == 3 || i == 7);
    fm_config_free(&c);

    set_num(cfg, "full_attention_interval", 2);
    parse_ok(cfg, &c);
    for (int i = 0; i < 8; i++) assert_int_equal(c.layer_full_attention[i], i % 2 == 1);
    fm_config_free(&c);

    set_num(cfg, "full_attention_interval", 0);
    expect_parse_fails(cfg, FM_ERR_FORMAT, "full_attention_interval", NULL);
    cJSON_Delete(cfg);

    /* Given layer_types are taken as they are. */
    cfg = fixture_config("qwen3next");
    parse_ok(cfg, &c);
    static const uint8_t want[6] = {0, 0, 1, 0, 0, 1};
    assert_memory_equal(c.layer_full_attention, want, 6);
    fm_config_free(&c);
    cJSON_Delete(cfg);
}

static void assert_cfg_same(const fm_config *a, const fm_config *b) {
    assert_ptr_equal(a->arch, b->arch);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->hidden_size, b->hidden_size);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->rotary_dim, b->rotary_dim);
    assert_true(a->rope_theta == b->rope_theta);
    assert_true(a->rms_norm_eps == b->rms_norm_eps);
    assert_int_equal(a->tie_word_embeddings, b->tie_word_embeddings);
    assert_int_equal(a->max_position_embeddings, b->max_position_embeddings);
    assert_int_equal(a->lin_n_k_heads, b->lin_n_k_heads);
    assert_int_equal(a->lin_n_v_heads, b->lin_n_v_heads);
    assert_int_equal(a->lin_k_dim, b->lin_k_dim);
    assert_int_equal(a->lin_v_dim, b->lin_v_dim);
    assert_int_equal(a->lin_conv_kernel, b->lin_conv_kernel);
    assert_int_equal(a->n_experts, b->n_experts);
    assert_int_equal(a->n_experts_used, b->n_experts_used);
    assert_int_equal(a->expert_ffn, b->expert_ffn);
    assert_int_equal(a->shared_ffn, b->shared_ffn);
    assert_int_equal(a->norm_zero_centred, b->norm_zero_centred);
    assert_int_equal(a->has_shared_expert, b->has_shared_expert);
    assert_memory_equal(a->layer_full_attention, b->layer_full_attention, (size_t)a->n_layers);
    assert_memory_equal(a->layer_moe, b->layer_moe, (size_t)a->n_layers);
    assert_int_equal(a->n_eos, b->n_eos);
}

static void test_cfg_text_config_vs_flat(void **state) {
    (void)state;
    fm_config nested, flat, text;
    cJSON *cfg = fixture_config("qwen35moe");
    parse_ok(cfg, &nested);
    assert_string_equal(nested.model_type, "qwen3_5_moe");
    assert_int_equal(nested.hidden_size, 128);
    assert_int_equal(nested.n_layers, 6);
    assert_int_equal(nested.n_experts, 16);

    /* The same keys hoisted to the top level (model_type kept). */
    cJSON *tc = cJSON_DetachItemFromObjectCaseSensitive(cfg, "text_config");
    for (cJSON *it = tc->child; it; it = it->next)
        if (strcmp(it->string, "model_type") != 0) set_item(cfg, it->string, cJSON_Duplicate(it, 1));
    parse_ok(cfg, &flat);
    assert_cfg_same(&nested, &flat);
    cJSON_Delete(tc);
    cJSON_Delete(cfg);

    /* And the text-only fixture's own flat config. */
    cfg = fixture_config("qwen35moe_text");
    parse_ok(cfg, &text);
    assert_string_equal(text.model_type, "qwen3_5_moe_text");
    assert_cfg_same(&nested, &text);
    cJSON_Delete(cfg);
    fm_config_free(&nested), fm_config_free(&flat), fm_config_free(&text);

    /* tie_word_embeddings kept at the top level only. */
    cfg = fixture_config("qwen35moe");
    del_key(text_of(cfg), "tie_word_embeddings");
    set_item(cfg, "tie_word_embeddings", cJSON_CreateTrue());
    parse_ok(cfg, &nested);
    assert_int_equal(nested.tie_word_embeddings, 1);
    fm_config_free(&nested);

    set_item(cfg, "text_config", cJSON_CreateString("qwen"));
    expect_parse_fails(cfg, FM_ERR_FORMAT, "text_config", NULL);
    cJSON_Delete(cfg);
}

static void test_cfg_eos_styles(void **state) {
    (void)state;
    fm_config c;
    cJSON *cfg = fixture_config("qwen3moe"); /* eos_token_id null */
    parse_ok(cfg, &c);
    assert_int_equal(c.n_eos, 0);
    fm_config_free(&c);

    set_num(cfg, "eos_token_id", 5);
    parse_ok(cfg, &c);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos[0], 5);
    fm_config_free(&c);

    static const int two[] = {5, 7};
    set_item(cfg, "eos_token_id", int_list(two, 2));
    parse_ok(cfg, &c);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos[0], 5);
    assert_int_equal(c.eos[1], 7);
    fm_config_free(&c);

    set_num(cfg, "eos_token_id", 1024); /* vocab_size 1024 */
    expect_parse_fails(cfg, FM_ERR_FORMAT, "eos_token_id", NULL);
    set_str(cfg, "eos_token_id", "</s>");
    expect_parse_fails(cfg, FM_ERR_FORMAT, "eos_token_id", NULL);

    /* fm_config_load: generation_config.json's ids take precedence. */
    char dir[1024], path[1200];
    set_num(cfg, "eos_token_id", 5);
    copy_fixture("qwen3moe", "eos", 0, dir, sizeof dir);
    dir_file(path, sizeof path, dir, "config.json");
    write_json(path, cfg);
    write_text(dir, "generation_config.json", "{\"eos_token_id\": [7, 9]}");
    assert_int_equal(fm_config_load(dir, &c), FM_OK);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos[0], 7);
    assert_int_equal(c.eos[1], 9);
    fm_config_free(&c);
    write_text(dir, "generation_config.json", "{\"eos_token_id\": 11}");
    assert_int_equal(fm_config_load(dir, &c), FM_OK);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos[0], 11);
    fm_config_free(&c);
    write_text(dir, "generation_config.json", "{\"bos_token_id\": 1}"); /* no eos: config.json's stays */
    assert_int_equal(fm_config_load(dir, &c), FM_OK);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos[0], 5);
    fm_config_free(&c);
    dir_file(path, sizeof path, dir, "generation_config.json");
    assert_int_equal(unlink(path), 0); /* no generation_config.json at all */
    assert_int_equal(fm_config_load(dir, &c), FM_OK);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos[0], 5);
    fm_config_free(&c);
    remove_tree(dir);
    cJSON_Delete(cfg);

    /* The tokenizer fixture's real list. */
    char fx[1200];
    snprintf(fx, sizeof fx, "%s/qwen35moe_tok", test_models_dir());
    assert_int_equal(fm_config_load(fx, &c), FM_OK);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos[0], 151645);
    assert_int_equal(c.eos[1], 151643);
    fm_config_free(&c);
}

static void test_cfg_qwen3moe_expert_keys(void **state) {
    (void)state;
    fm_config a, b;
    cJSON *cfg = fixture_config("qwen3moe"); /* num_local_experts 16 */
    parse_ok(cfg, &a);
    assert_int_equal(a.n_experts, 16);
    del_key(cfg, "num_local_experts");
    set_num(cfg, "num_experts", 16);
    parse_ok(cfg, &b);
    assert_int_equal(b.n_experts, 16);
    assert_cfg_same(&a, &b);
    fm_config_free(&a), fm_config_free(&b);
    del_key(cfg, "num_experts");
    expect_parse_fails(cfg, FM_ERR_FORMAT, "num_local_experts", NULL);
    cJSON_Delete(cfg);
}

static void test_cfg_dense_layers(void **state) {
    (void)state;
    fm_config c;
    cJSON *cfg = fixture_config("qwen3moe"); /* 4 layers, intermediate_size 256 */
    parse_ok(cfg, &c);
    for (int i = 0; i < 4; i++) assert_int_equal(c.layer_moe[i], 1);
    fm_config_free(&c);

    static const int only[] = {1};
    set_item(cfg, "mlp_only_layers", int_list(only, 1));
    parse_ok(cfg, &c);
    static const uint8_t want_only[4] = {1, 0, 1, 1};
    assert_memory_equal(c.layer_moe, want_only, 4);
    assert_int_equal(c.dense_ffn, 256);
    fm_config_free(&c);

    set_item(cfg, "mlp_only_layers", cJSON_CreateArray());
    set_num(cfg, "decoder_sparse_step", 2);
    parse_ok(cfg, &c);
    static const uint8_t want_step[4] = {0, 1, 0, 1};
    assert_memory_equal(c.layer_moe, want_step, 4);
    fm_config_free(&c);

    set_num(cfg, "decoder_sparse_step", 1);
    del_key(cfg, "intermediate_size"); /* a dense layer needs its width */
    set_item(cfg, "mlp_only_layers", int_list(only, 1));
    expect_parse_fails(cfg, FM_ERR_FORMAT, "intermediate_size", "layer 1", NULL);
    static const int out_of_range[] = {4};
    set_num(cfg, "intermediate_size", 256);
    set_item(cfg, "mlp_only_layers", int_list(out_of_range, 1));
    expect_parse_fails(cfg, FM_ERR_FORMAT, "mlp_only_layers", NULL);
    set_num(cfg, "mlp_only_layers", 1);
    expect_parse_fails(cfg, FM_ERR_FORMAT, "mlp_only_layers", NULL);
    cJSON_Delete(cfg);

    /* Qwen3-Next reads the same keys. */
    cfg = fixture_config("qwen3next");
    static const int two[] = {0, 5};
    set_item(cfg, "mlp_only_layers", int_list(two, 2));
    parse_ok(cfg, &c);
    static const uint8_t want_next[6] = {0, 1, 1, 1, 1, 0};
    assert_memory_equal(c.layer_moe, want_next, 6);
    fm_config_free(&c);
    cJSON_Delete(cfg);
}

/* ---- fm_config_parse: other bad values ---------------------------------- */

static void test_cfg_bad_values(void **state) {
    (void)state;
    static const struct {
        const char *key;
        const char *json; /* replacement value */
        fm_status status;
        const char *needle;
    } cases[] = {
        {"vocab_size", "\"1024\"", FM_ERR_FORMAT, "vocab_size"},
        {"vocab_size", "1024.5", FM_ERR_FORMAT, "vocab_size"},
        {"hidden_size", "0", FM_ERR_FORMAT, "hidden_size"},
        {"hidden_size", "-128", FM_ERR_FORMAT, "hidden_size"},
        {"num_hidden_layers", "1e12", FM_ERR_FORMAT, "num_hidden_layers"},
        {"num_experts_per_tok", "0", FM_ERR_FORMAT, "num_experts_per_tok"},
        {"head_dim", "true", FM_ERR_FORMAT, "head_dim"},
        {"rms_norm_eps", "0", FM_ERR_FORMAT, "rms_norm_eps"},
        {"rms_norm_eps", "\"1e-6\"", FM_ERR_FORMAT, "rms_norm_eps"},
        {"tie_word_embeddings", "1", FM_ERR_FORMAT, "tie_word_embeddings"},
        {"hidden_act", "\"gelu\"", FM_ERR_UNSUPPORTED, "hidden_act"},
        {"use_sliding_window", "true", FM_ERR_UNSUPPORTED, "use_sliding_window"},
        {"rope_parameters", "[1]", FM_ERR_FORMAT, "rope_parameters"},
        {"rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": -1}", FM_ERR_FORMAT, "rope_theta"},
        {"rope_parameters", "{\"rope_type\": \"linear\", \"factor\": 2}", FM_ERR_UNSUPPORTED, "linear"},
        {"rope_parameters", "{\"rope_type\": 3}", FM_ERR_UNSUPPORTED, "rope_type"},
        {"partial_rotary_factor", "0", FM_ERR_FORMAT, "partial_rotary_factor"},
        {"partial_rotary_factor", "1.5", FM_ERR_FORMAT, "partial_rotary_factor"},
        {"partial_rotary_factor", "0.01", FM_ERR_FORMAT, "partial_rotary_factor"},
        {"model_type", "7", FM_ERR_FORMAT, "model_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *cfg = fixture_config("qwen3moe");
        cJSON *v = cJSON_Parse(cases[i].json);
        set_item(cfg, cases[i].key, v);
        fm_config c;
        fm_status st = parse_cfg(cfg, &c);
        if (st == FM_OK) fm_config_free(&c);
        if (st != cases[i].status || !strstr(fm_last_error(), cases[i].needle) || !strstr(fm_last_error(), LABEL))
            fail_msg("%s = %s: got %s (%s), expected %s naming %s", cases[i].key, cases[i].json, fm_status_name(st),
                     fm_last_error(), fm_status_name(cases[i].status), cases[i].needle);
        cJSON_Delete(cfg);
    }
    /* Not an object; invalid JSON with a line number. */
    cJSON *arr = cJSON_CreateArray();
    expect_parse_fails(arr, FM_ERR_FORMAT, NULL);
    cJSON_Delete(arr);
    fm_config c;
    static const char bad[] = "{\n\"model_type\": \"qwen3_moe\",\n\"vocab_size\": 10,\n\"hidden_size\": }";
    clear_error();
    assert_int_equal(fm_config_parse(bad, sizeof bad - 1, LABEL, &c), FM_ERR_FORMAT);
    assert_msg_has(LABEL);
    assert_msg_has("line 4");
    /* Linear-attention head counts must divide. */
    cJSON *cfg = fixture_config("qwen3next");
    set_num(cfg, "linear_num_value_heads", 3);
    expect_parse_fails(cfg, FM_ERR_FORMAT, "linear_num_value_heads", NULL);
    cJSON_Delete(cfg);
}

/* ---- session arguments -------------------------------------------------- */

static fm_model *session_model;

static int setup_session_model(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/qwen3moe", test_models_dir());
    if (fm_model_open(dir, NULL, &session_model) != FM_OK) {
        fprintf(stderr, "open %s: %s\n", dir, fm_last_error());
        return -1;
    }
    return 0;
}

static int teardown_session_model(void **state) {
    (void)state;
    fm_model_close(session_model);
    session_model = NULL;
    return 0;
}

static void test_session_bad_token_ids(void **state) {
    (void)state;
    const int V = fm_model_get_info(session_model)->vocab_size; /* 1024 */
    float *logits = malloc((size_t)4 * V * sizeof *logits);
    fm_session *s;
    assert_int_equal(fm_session_new(session_model, NULL, &s), FM_OK);
    const int32_t good[2] = {1, 2};
    assert_int_equal(fm_session_eval(s, good, 2, FM_LOGITS_LAST, logits), FM_OK);
    assert_int_equal(fm_session_position(s), 2);

    const int32_t too_big[3] = {3, V, 4};
    clear_error();
    assert_int_equal(fm_session_eval(s, too_big, 3, FM_LOGITS_ALL, logits), FM_ERR_ARGUMENT);
    assert_msg_has("1024");
    assert_msg_has("position 1");
    assert_int_equal(fm_session_position(s), 2);

    const int32_t negative[1] = {-1};
    clear_error();
    assert_int_equal(fm_session_eval(s, negative, 1, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_msg_has("-1");
    assert_int_equal(fm_session_position(s), 2);

    const int32_t most_negative[2] = {5, INT32_MIN};
    clear_error();
    assert_int_equal(fm_session_eval(s, most_negative, 2, FM_LOGITS_NONE, NULL), FM_ERR_ARGUMENT);
    assert_msg_has("-2147483648");
    assert_int_equal(fm_session_position(s), 2);

    /* The failures left the state alone: the next token's logits equal those of
     * a fresh session fed the same three tokens. */
    const int32_t next = 3;
    assert_int_equal(fm_session_eval(s, &next, 1, FM_LOGITS_LAST, logits), FM_OK);
    assert_int_equal(fm_session_position(s), 3);
    fm_session *fresh;
    assert_int_equal(fm_session_new(session_model, NULL, &fresh), FM_OK);
    const int32_t all[3] = {1, 2, 3};
    float *want = malloc((size_t)V * sizeof *want);
    assert_int_equal(fm_session_eval(fresh, all, 3, FM_LOGITS_LAST, want), FM_OK);
    assert_true(rel_l2(logits, want, (size_t)V) <= 1e-5);
    fm_session_free(fresh);
    free(want);
    fm_session_free(s);
    free(logits);
}

static void test_session_empty_and_null(void **state) {
    (void)state;
    const int V = fm_model_get_info(session_model)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    fm_session *s;
    assert_int_equal(fm_session_new(session_model, NULL, &s), FM_OK);
    const int32_t tok[1] = {1};
    clear_error();
    assert_int_equal(fm_session_eval(s, tok, 0, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_string_not_equal(fm_last_error(), "no error");
    clear_error();
    assert_int_equal(fm_session_eval(s, tok, -3, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_string_not_equal(fm_last_error(), "no error");
    assert_int_equal(fm_session_eval(s, NULL, 1, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_int_equal(fm_session_eval(s, tok, 1, FM_LOGITS_LAST, NULL), FM_ERR_ARGUMENT);
    assert_int_equal(fm_session_eval(s, tok, 1, FM_LOGITS_ALL, NULL), FM_ERR_ARGUMENT);
    assert_int_equal(fm_session_position(s), 0);
    assert_int_equal(fm_session_eval(s, tok, 1, FM_LOGITS_NONE, NULL), FM_OK); /* no logits wanted: no buffer */
    assert_int_equal(fm_session_position(s), 1);
    fm_session_free(s);
    free(logits);
}

static void test_session_max_context(void **state) {
    (void)state;
    const int V = fm_model_get_info(session_model)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    fm_session *s;
    fm_session_options opt = {.max_context = 8};
    assert_int_equal(fm_session_new(session_model, &opt, &s), FM_OK);
    const int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    clear_error();
    assert_int_equal(fm_session_eval(s, toks, 9, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_msg_has("8");
    assert_int_equal(fm_session_position(s), 0);

    assert_int_equal(fm_session_eval(s, toks, 5, FM_LOGITS_LAST, logits), FM_OK);
    clear_error();
    assert_int_equal(fm_session_eval(s, toks + 5, 4, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_msg_has("8");
    assert_int_equal(fm_session_position(s), 5);
    assert_int_equal(fm_session_eval(s, toks + 5, 3, FM_LOGITS_LAST, logits), FM_OK);
    assert_int_equal(fm_session_position(s), 8);
    assert_int_equal(fm_session_eval(s, toks + 8, 1, FM_LOGITS_LAST, logits), FM_ERR_ARGUMENT);
    assert_int_equal(fm_session_position(s), 8);

    fm_session_reset(s); /* the limit is per conversation */
    assert_int_equal(fm_session_position(s), 0);
    assert_int_equal(fm_session_eval(s, toks, 8, FM_LOGITS_NONE, NULL), FM_OK);
    assert_int_equal(fm_session_position(s), 8);
    fm_session_free(s);
    free(logits);
}

int main(void) {
    const struct CMUnitTest model_tests[] = {
        cmocka_unit_test(test_model_fixture_copy_opens),
        cmocka_unit_test(test_model_bad_json),
        cmocka_unit_test(test_model_config_missing),
        cmocka_unit_test(test_model_missing_key),
        cmocka_unit_test(test_model_unknown_type),
        cmocka_unit_test(test_model_layer_types_length),
        cmocka_unit_test(test_model_rope_yarn),
        cmocka_unit_test(test_model_too_many_experts_per_token),
        cmocka_unit_test(test_model_heads_not_multiple),
        cmocka_unit_test(test_model_bad_generation_config),
        cmocka_unit_test(test_model_missing_tensor),
        cmocka_unit_test(test_model_wrong_shape),
        cmocka_unit_test(test_model_integer_dtype),
        cmocka_unit_test(test_model_mlp_only_layer_needs_dense_weights),
    };
    const struct CMUnitTest config_tests[] = {
        cmocka_unit_test(test_cfg_rope_theta_styles),
        cmocka_unit_test(test_cfg_layer_types_from_interval),
        cmocka_unit_test(test_cfg_text_config_vs_flat),
        cmocka_unit_test(test_cfg_eos_styles),
        cmocka_unit_test(test_cfg_qwen3moe_expert_keys),
        cmocka_unit_test(test_cfg_dense_layers),
        cmocka_unit_test(test_cfg_bad_values),
    };
    const struct CMUnitTest session_tests[] = {
        cmocka_unit_test(test_session_bad_token_ids),
        cmocka_unit_test(test_session_empty_and_null),
        cmocka_unit_test(test_session_max_context),
    };
    int failed = cmocka_run_group_tests_name("model_open", model_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("config", config_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("session", session_tests, setup_session_model, teardown_session_model);
    remove_tree(test_tmp_dir()); /* everything the tests wrote, also after a failure */
    return failed;
}

/* See synth_common.h. */
#include "synth_common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    synth_tensor *t;
    int n, cap;
} list;

static void add(list *l, const char *name, int n_dims, int64_t a, int64_t b, int64_t c, float scale, int expert) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->t = realloc(l->t, (size_t)l->cap * sizeof *l->t);
        if (!l->t) {
            fprintf(stderr, "synth: out of memory\n");
            exit(1);
        }
    }
    synth_tensor *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c;
    t->scale = scale;
    t->expert = expert;
}

static void add_linear(list *l, const char *name, int64_t out, int64_t in) {
    add(l, name, 2, out, in, 0, sqrtf(3.0f / (float)in), 0);
}

synth_tensor *synth_tensors(const synth_config *c, int *n) {
    const int H = c->hidden, E = c->experts, F = c->expert_ffn, V = c->vocab;
    const int key_dim = SYNTH_NK * SYNTH_DK, value_dim = SYNTH_NV * SYNTH_DV, conv_dim = 2 * key_dim + value_dim;
    const int nv = SYNTH_NV, hd = SYNTH_HD;
    list l = {0};
    char name[160];
    add_linear(&l, "model.embed_tokens.weight", V, H);
    l.t[0].scale = 1.0f;
    add(&l, "model.norm.weight", 1, H, 0, 0, -1, 0);
    add_linear(&l, "lm_head.weight", V, H);
    for (int i = 0; i < c->layers; i++) {
#define N(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, i), name)
        add(&l, N("input_layernorm.weight"), 1, H, 0, 0, -1, 0);
        add(&l, N("post_attention_layernorm.weight"), 1, H, 0, 0, -1, 0);
        if ((i + 1) % c->interval == 0) {
            add_linear(&l, N("self_attn.q_proj.weight"), 2 * SYNTH_NH * hd, H);
            add_linear(&l, N("self_attn.k_proj.weight"), SYNTH_NKV * hd, H);
            add_linear(&l, N("self_attn.v_proj.weight"), SYNTH_NKV * hd, H);
            add_linear(&l, N("self_attn.o_proj.weight"), H, SYNTH_NH * hd);
            add(&l, N("self_attn.q_norm.weight"), 1, hd, 0, 0, -1, 0);
            add(&l, N("self_attn.k_norm.weight"), 1, hd, 0, 0, -1, 0);
        } else {
            add_linear(&l, N("linear_attn.in_proj_qkv.weight"), conv_dim, H);
            add_linear(&l, N("linear_attn.in_proj_z.weight"), value_dim, H);
            add_linear(&l, N("linear_attn.in_proj_b.weight"), nv, H);
            add_linear(&l, N("linear_attn.in_proj_a.weight"), nv, H);
            add(&l, N("linear_attn.conv1d.weight"), 3, conv_dim, 1, SYNTH_CONV_K, 0.5f, 0);
            add(&l, N("linear_attn.dt_bias"), 1, nv, 0, 0, 0.5f, 0);
            add(&l, N("linear_attn.A_log"), 1, nv, 0, 0, 1.0f, 0);
            add(&l, N("linear_attn.norm.weight"), 1, SYNTH_DV, 0, 0, -1, 0);
            add_linear(&l, N("linear_attn.out_proj.weight"), H, value_dim);
        }
        add(&l, N("mlp.gate.weight"), 2, E, H, 0, 3 * sqrtf(3.0f / (float)H), 0);
        add(&l, N("mlp.experts.gate_up_proj"), 3, E, 2 * F, H, sqrtf(3.0f / (float)H), 1);
        add(&l, N("mlp.experts.down_proj"), 3, E, H, F, sqrtf(3.0f / (float)F), 1);
        add_linear(&l, N("mlp.shared_expert.gate_proj.weight"), F, H);
        add_linear(&l, N("mlp.shared_expert.up_proj.weight"), F, H);
        add_linear(&l, N("mlp.shared_expert.down_proj.weight"), H, F);
        add_linear(&l, N("mlp.shared_expert_gate.weight"), 1, H);
#undef N
    }
    *n = l.n;
    return l.t;
}

uint64_t synth_numel(const synth_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= (uint64_t)t->shape[i];
    return n;
}

int synth_write_text(const char *dir, const char *name, const char *text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "synth: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int synth_write_config(const char *dir, const synth_config *c) {
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "model_type", "qwen3_5_moe_text");
    cJSON *arch = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen3_5MoeForCausalLM"));
    const struct { const char *k; double v; } keys[] = {
        {"vocab_size", c->vocab}, {"hidden_size", c->hidden}, {"num_hidden_layers", c->layers},
        {"num_attention_heads", SYNTH_NH}, {"num_key_value_heads", SYNTH_NKV}, {"head_dim", SYNTH_HD},
        {"linear_num_key_heads", SYNTH_NK}, {"linear_num_value_heads", SYNTH_NV}, {"linear_key_head_dim", SYNTH_DK},
        {"linear_value_head_dim", SYNTH_DV}, {"linear_conv_kernel_dim", SYNTH_CONV_K}, {"num_experts", c->experts},
        {"num_experts_per_tok", c->top_k}, {"moe_intermediate_size", c->expert_ffn},
        {"shared_expert_intermediate_size", c->expert_ffn}, {"full_attention_interval", c->interval},
        {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 262144},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) cJSON_AddNumberToObject(cfg, keys[i].k, keys[i].v);
    cJSON_AddBoolToObject(cfg, "tie_word_embeddings", 0);
    cJSON *rope = cJSON_AddObjectToObject(cfg, "rope_parameters");
    cJSON_AddStringToObject(rope, "rope_type", "default");
    cJSON_AddNumberToObject(rope, "rope_theta", 1e7);
    cJSON_AddNumberToObject(rope, "partial_rotary_factor", 0.25);
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    int rc = text ? synth_write_text(dir, "config.json", text) : 1;
    free(text);
    return rc;
}

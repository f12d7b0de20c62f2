/* Writes a random-weight Qwen3.5-MoE checkpoint (config.json +
 * model.safetensors, bf16) with chosen shapes, for benchmarks at real layer
 * sizes. Defaults are Qwen3.5-397B-A17B's layer shapes with fewer layers and
 * experts. Weights ~ U(-a, a) with a = sqrt(3/fan_in), so activations stay O(1).
 *   synth_model OUT_DIR [--layers 4] [--experts 32] [--top-k 10] [--vocab 151936]
 *                       [--hidden 4096] [--expert-ffn 1024] [--interval 4]
 * Files are written under temporary names and renamed when complete. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char name[160];
    int n_dims;
    int64_t shape[3];
    float scale; /* uniform half-width; < 0: norm weight around 0 (zero-centred) */
} tensor;

static tensor *tensors;
static int n_tensors, cap_tensors;

static void add(const char *name, int n_dims, int64_t a, int64_t b, int64_t c, float scale) {
    if (n_tensors == cap_tensors) {
        cap_tensors = cap_tensors ? 2 * cap_tensors : 256;
        tensors = realloc(tensors, (size_t)cap_tensors * sizeof *tensors);
        if (!tensors) exit(1);
    }
    tensor *t = &tensors[n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c;
    t->scale = scale;
}

static void add_linear(const char *name, int64_t out, int64_t in) { add(name, 2, out, in, 0, sqrtf(3.0f / (float)in)); }

static uint64_t numel(const tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static uint16_t to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: synth_model OUT_DIR [--layers N] [--experts N] [--top-k N] [--vocab N] "
                        "[--hidden N] [--expert-ffn N] [--interval N]\n");
        return 1;
    }
    const char *dir = argv[1];
    int L = 4, E = 32, K = 10, V = 151936, H = 4096, F = 1024, interval = 4;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) L = v;
        else if (!strcmp(argv[i], "--experts")) E = v;
        else if (!strcmp(argv[i], "--top-k")) K = v;
        else if (!strcmp(argv[i], "--vocab")) V = v;
        else if (!strcmp(argv[i], "--hidden")) H = v;
        else if (!strcmp(argv[i], "--expert-ffn")) F = v;
        else if (!strcmp(argv[i], "--interval")) interval = v;
        else {
            fprintf(stderr, "synth_model: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (K > E) K = E;
    const int nh = 32, nkv = 2, hd = 256, nk = 16, nv = 64, dk = 128, dv = 128, conv_k = 4;
    const int key_dim = nk * dk, value_dim = nv * dv, conv_dim = 2 * key_dim + value_dim;
    char name[160];
    add_linear("model.embed_tokens.weight", V, H);
    tensors[0].scale = 1.0f;
    add("model.norm.weight", 1, H, 0, 0, -1);
    add_linear("lm_head.weight", V, H);
    for (int i = 0; i < L; i++) {
#define N(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, i), name)
        add(N("input_layernorm.weight"), 1, H, 0, 0, -1);
        add(N("post_attention_layernorm.weight"), 1, H, 0, 0, -1);
        if ((i + 1) % interval == 0) {
            add_linear(N("self_attn.q_proj.weight"), 2 * nh * hd, H);
            add_linear(N("self_attn.k_proj.weight"), nkv * hd, H);
            add_linear(N("self_attn.v_proj.weight"), nkv * hd, H);
            add_linear(N("self_attn.o_proj.weight"), H, nh * hd);
            add(N("self_attn.q_norm.weight"), 1, hd, 0, 0, -1);
            add(N("self_attn.k_norm.weight"), 1, hd, 0, 0, -1);
        } else {
            add_linear(N("linear_attn.in_proj_qkv.weight"), conv_dim, H);
            add_linear(N("linear_attn.in_proj_z.weight"), value_dim, H);
            add_linear(N("linear_attn.in_proj_b.weight"), nv, H);
            add_linear(N("linear_attn.in_proj_a.weight"), nv, H);
            add(N("linear_attn.conv1d.weight"), 3, conv_dim, 1, conv_k, 0.5f);
            add(N("linear_attn.dt_bias"), 1, nv, 0, 0, 0.5f);
            add(N("linear_attn.A_log"), 1, nv, 0, 0, 1.0f);
            add(N("linear_attn.norm.weight"), 1, dv, 0, 0, -1);
            add_linear(N("linear_attn.out_proj.weight"), H, value_dim);
        }
        add(N("mlp.gate.weight"), 2, E, H, 0, 3 * sqrtf(3.0f / (float)H));
        add(N("mlp.experts.gate_up_proj"), 3, E, 2 * F, H, sqrtf(3.0f / (float)H));
        add(N("mlp.experts.down_proj"), 3, E, H, F, sqrtf(3.0f / (float)F));
        add_linear(N("mlp.shared_expert.gate_proj.weight"), F, H);
        add_linear(N("mlp.shared_expert.up_proj.weight"), F, H);
        add_linear(N("mlp.shared_expert.down_proj.weight"), H, F);
        add_linear(N("mlp.shared_expert_gate.weight"), 1, H);
#undef N
    }

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "synth_model: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    /* config.json */
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "model_type", "qwen3_5_moe_text");
    cJSON *arch = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen3_5MoeForCausalLM"));
    const struct { const char *k; double v; } keys[] = {
        {"vocab_size", V}, {"hidden_size", H}, {"num_hidden_layers", L}, {"num_attention_heads", nh},
        {"num_key_value_heads", nkv}, {"head_dim", hd}, {"linear_num_key_heads", nk},
        {"linear_num_value_heads", nv}, {"linear_key_head_dim", dk}, {"linear_value_head_dim", dv},
        {"linear_conv_kernel_dim", conv_k}, {"num_experts", E}, {"num_experts_per_tok", K},
        {"moe_intermediate_size", F}, {"shared_expert_intermediate_size", F}, {"full_attention_interval", interval},
        {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 262144},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) cJSON_AddNumberToObject(cfg, keys[i].k, keys[i].v);
    cJSON_AddBoolToObject(cfg, "tie_word_embeddings", 0);
    cJSON *rope = cJSON_AddObjectToObject(cfg, "rope_parameters");
    cJSON_AddStringToObject(rope, "rope_type", "default");
    cJSON_AddNumberToObject(rope, "rope_theta", 1e7);
    cJSON_AddNumberToObject(rope, "partial_rotary_factor", 0.25);
    char *text = cJSON_Print(cfg);
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "synth_model: cannot write %s\n", path);
        return 1;
    }
    free(text);
    cJSON_Delete(cfg);

    /* safetensors header */
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < n_tensors; i++) {
        cJSON *e = cJSON_AddObjectToObject(hdr, tensors[i].name);
        cJSON_AddStringToObject(e, "dtype", "BF16");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < tensors[i].n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += numel(&tensors[i]) * 2;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *h = cJSON_PrintUnformatted(hdr);
    uint64_t hlen = strlen(h), padded = (hlen + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "synth_model: cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h, 1, hlen, f) == hlen;
    for (uint64_t i = hlen; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    enum { CHUNK = 1 << 20 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    fprintf(stderr, "writing %s: %.2f GB\n", path, off / 1e9);
    for (int i = 0; i < n_tensors && ok; i++) {
        uint64_t n = numel(&tensors[i]);
        float s = tensors[i].scale;
        while (n && ok) {
            size_t c = n < CHUNK ? (size_t)n : CHUNK;
            for (size_t j = 0; j < c; j++) buf[j] = to_bf16(s < 0 ? 0.2f * uniform() : s * uniform());
            ok = fwrite(buf, 2, c, f) == c;
            n -= c;
        }
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "synth_model: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    free(buf);
    free(h);
    cJSON_Delete(hdr);
    free(tensors);
    printf("%s: %d layers, %d experts (top %d), hidden %d, vocab %d, %.2f GB\n", dir, L, E, K, H, V, off / 1e9);
    return 0;
}

/* config.json (+ generation_config.json) → fm_config. Accepts flat configs and
 * multimodal ones whose text model sits under "text_config"; older and newer
 * key styles (rope_theta at the top level or in rope_parameters; layer_types
 * given or derived from full_attention_interval). Architecture-specific keys
 * are read by the architecture's own file (model/arch/). */
#ifndef FM_LOAD_CONFIG_H
#define FM_LOAD_CONFIG_H

#include "flashmoe.h"

#include <cjson/cJSON.h>
#include <stdint.h>

struct fm_arch;

#define FM_MAX_EOS 8

typedef struct {
    const struct fm_arch *arch;
    char model_type[64];
    int vocab_size, hidden_size, n_layers;
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    double rope_theta;
    float rms_norm_eps;
    int tie_word_embeddings;
    int max_position_embeddings;
    int sliding_window; /* 0 = none */

    /* Per-architecture behaviour, set by the arch's read_config. */
    int norm_zero_centred;  /* RMSNorm multiplies by (1 + w) */
    int attn_output_gate;   /* q_proj holds a per-head gate: o *= sigmoid(gate) */
    int attn_qk_norm;       /* per-head RMSNorm on q and k */
    int router_renormalize; /* top-k probabilities renormalised to sum 1 */
    int has_shared_expert;  /* sigmoid-gated shared expert */

    /* Linear attention (GatedDeltaNet). */
    int lin_n_k_heads, lin_n_v_heads, lin_k_dim, lin_v_dim, lin_conv_kernel;

    /* Experts. */
    int n_experts, n_experts_used, expert_ffn, shared_ffn, dense_ffn;

    uint8_t *layer_full_attention; /* [n_layers] 1 = full attention, 0 = linear */
    uint8_t *layer_moe;            /* [n_layers] 1 = sparse MoE, 0 = dense MLP */

    int n_eos;
    int32_t eos[FM_MAX_EOS];
    /* generation_config.json sampling defaults; negative = not given. */
    float gen_temperature, gen_top_p, gen_min_p, gen_repetition_penalty;
    int gen_top_k;
} fm_config;

/* Channels of the linear-attention conv: q | k | v. */
static inline int fm_config_conv_dim(const fm_config *c) {
    return 2 * c->lin_n_k_heads * c->lin_k_dim + c->lin_n_v_heads * c->lin_v_dim;
}

/* Key lookup with messages that name the file and key. */
typedef struct {
    const cJSON *root; /* text config object */
    const char *path;  /* config.json path, for messages */
} cfg_reader;

enum { CFG_REQUIRED = 1, CFG_OPTIONAL = 0 };

/* Positive integer (or ≥ 0 when min is 0). Absent or null → `fallback` if optional. */
fm_status cfg_int(const cfg_reader *r, const char *key, int required, int fallback, int min, int *out);
fm_status cfg_double(const cfg_reader *r, const char *key, int required, double fallback, double *out);
fm_status cfg_bool(const cfg_reader *r, const char *key, int fallback, int *out);
/* layer_types if given, else full attention every `interval` layers (i+1) % interval == 0. */
fm_status cfg_layer_types(const cfg_reader *r, fm_config *cfg, int default_interval);
/* decoder_sparse_step, mlp_only_layers and the dense layers' intermediate_size
 * (Qwen3-MoE, Qwen3-Next); n_experts must be read first. */
fm_status cfg_sparse_layers(const cfg_reader *r, fm_config *cfg);
/* The GatedDeltaNet keys (linear_*), shared by Qwen3.5 and Qwen3-Next. */
fm_status cfg_linear_attention(const cfg_reader *r, fm_config *cfg);

/* Reads DIR/config.json and DIR/generation_config.json. */
fm_status fm_config_load(const char *dir, fm_config *cfg);
/* Parses config text (no generation_config); used by the fuzz target. */
fm_status fm_config_parse(const char *text, size_t len, const char *label, fm_config *cfg);
void fm_config_free(fm_config *cfg);

#endif

/* Qwen3.5-MoE (model_type qwen3_5_moe, text model qwen3_5_moe_text):
 * hybrid GatedDeltaNet + gated full attention, zero-centred RMSNorm, partial
 * RoPE, routed experts (always renormalised) plus a sigmoid-gated shared
 * expert. Multimodal checkpoints prefix the text model with
 * model.language_model. (vision tower and MTP head are not loaded). */
#include "model/arch.h"
#include "model/layer_load.h"

static fm_status qwen35moe_read_config(const cfg_reader *r, fm_config *c, double *default_partial) {
    fm_status st;
    *default_partial = 0.25;
    c->norm_zero_centred = c->attn_output_gate = c->attn_qk_norm = 1;
    c->router_renormalize = c->has_shared_expert = 1;
    if ((st = cfg_linear_attention(r, c)) ||
        (st = cfg_int(r, "num_experts", CFG_REQUIRED, 0, 1, &c->n_experts)) ||
        (st = cfg_int(r, "moe_intermediate_size", CFG_REQUIRED, 0, 1, &c->expert_ffn)) ||
        (st = cfg_int(r, "shared_expert_intermediate_size", CFG_REQUIRED, 0, 1, &c->shared_ffn)))
        return st;
    return cfg_layer_types(r, c, 4);
}

static fm_status qwen35moe_load_layer(fm_model *m, int i) {
    fm_status st;
    if ((st = load_layer_norms(m, i))) return st;
    st = m->cfg.layer_full_attention[i] ? load_attention(m, i) : load_deltanet_split(m, i);
    if (st == FM_OK) st = load_experts(m, i, "mlp", "gate_proj", "up_proj", "down_proj");
    if (st == FM_OK) st = load_shared_expert(m, i);
    return st;
}

const fm_arch fm_arch_qwen35moe = {
    .name = "Qwen3.5-MoE",
    .model_types = {"qwen3_5_moe", "qwen3_5_moe_text"},
    .read_config = qwen35moe_read_config,
    .load_layer = qwen35moe_load_layer,
    .prefixes = {"model.language_model.", "model.", "language_model.model."},
};

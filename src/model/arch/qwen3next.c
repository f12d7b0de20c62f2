/* Qwen3-Next (model_type qwen3_next): the Qwen3.5 layer design with the
 * linear-attention input projections fused and grouped per key head
 * (in_proj_qkvz, in_proj_ba), norm_topk_prob from the config, and optional
 * dense-MLP layers (decoder_sparse_step, mlp_only_layers). */
#include "model/arch.h"
#include "model/layer_load.h"

static fm_status qwen3next_read_config(const cfg_reader *r, fm_config *c, double *default_partial) {
    fm_status st;
    *default_partial = 0.25;
    c->norm_zero_centred = c->attn_output_gate = c->attn_qk_norm = c->has_shared_expert = 1;
    if ((st = cfg_linear_attention(r, c)) ||
        (st = cfg_int(r, "num_experts", CFG_REQUIRED, 0, 1, &c->n_experts)) ||
        (st = cfg_int(r, "moe_intermediate_size", CFG_REQUIRED, 0, 1, &c->expert_ffn)) ||
        (st = cfg_int(r, "shared_expert_intermediate_size", CFG_REQUIRED, 0, 1, &c->shared_ffn)) ||
        (st = cfg_bool(r, "norm_topk_prob", 1, &c->router_renormalize)) || (st = cfg_layer_types(r, c, 4)))
        return st;
    return cfg_sparse_layers(r, c);
}

static fm_status qwen3next_load_layer(fm_model *m, int i) {
    fm_status st;
    if ((st = load_layer_norms(m, i))) return st;
    st = m->cfg.layer_full_attention[i] ? load_attention(m, i) : load_deltanet_grouped(m, i);
    if (st != FM_OK) return st;
    if (!m->cfg.layer_moe[i]) return load_dense_mlp(m, i);
    if ((st = load_experts(m, i, "mlp", "gate_proj", "up_proj", "down_proj"))) return st;
    return load_shared_expert(m, i);
}

const fm_arch fm_arch_qwen3next = {
    .name = "Qwen3-Next",
    .model_types = {"qwen3_next"},
    .read_config = qwen3next_read_config,
    .load_layer = qwen3next_load_layer,
    .prefixes = {"model."},
};

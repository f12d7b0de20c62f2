/* Qwen3-MoE (model_type qwen3_moe): full attention with per-head q/k
 * RMSNorm, plain RMSNorm, full RoPE, routed experts (renormalised iff
 * norm_topk_prob), no shared expert, optional dense-MLP layers. */
#include "model/arch.h"
#include "model/layer_load.h"

static fm_status qwen3moe_read_config(const cfg_reader *r, fm_config *c, double *default_partial) {
    fm_status st;
    int sliding;
    *default_partial = 1.0;
    c->attn_qk_norm = 1;
    /* transformers 5 writes num_local_experts; older configs num_experts. */
    if ((st = cfg_int(r, "num_experts", CFG_OPTIONAL, 0, 0, &c->n_experts)) ||
        (!c->n_experts && (st = cfg_int(r, "num_local_experts", CFG_REQUIRED, 0, 1, &c->n_experts))) ||
        (st = cfg_int(r, "moe_intermediate_size", CFG_REQUIRED, 0, 1, &c->expert_ffn)) ||
        (st = cfg_bool(r, "norm_topk_prob", 0, &c->router_renormalize)) ||
        (st = cfg_bool(r, "use_sliding_window", 0, &sliding)))
        return st;
    if (sliding) return fm_error(FM_ERR_UNSUPPORTED, "%s: use_sliding_window is not supported", r->path);
    return cfg_sparse_layers(r, c);
}

static fm_status qwen3moe_load_layer(fm_model *m, int i) {
    fm_status st;
    if ((st = load_layer_norms(m, i)) || (st = load_attention(m, i))) return st;
    if (!m->cfg.layer_moe[i]) return load_dense_mlp(m, i);
    return load_experts(m, i, "mlp", "gate_proj", "up_proj", "down_proj");
}

const fm_arch fm_arch_qwen3moe = {
    .name = "Qwen3-MoE",
    .model_types = {"qwen3_moe"},
    .read_config = qwen3moe_read_config,
    .load_layer = qwen3moe_load_layer,
    .prefixes = {"model."},
};

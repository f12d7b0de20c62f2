/* Mixtral (model_type mixtral): full attention (optionally a sliding
 * window), plain RMSNorm, full RoPE, experts w1 (gate), w3 (up), w2 (down)
 * under block_sparse_moe; softmax → top-k → renormalise. */
#include "model/arch.h"
#include "model/layer_load.h"

static fm_status mixtral_read_config(const cfg_reader *r, fm_config *c, double *default_partial) {
    fm_status st;
    *default_partial = 1.0;
    c->router_renormalize = 1;
    if ((st = cfg_int(r, "num_local_experts", CFG_REQUIRED, 0, 1, &c->n_experts)) ||
        (st = cfg_int(r, "intermediate_size", CFG_REQUIRED, 0, 1, &c->expert_ffn)) ||
        (st = cfg_int(r, "sliding_window", CFG_OPTIONAL, 0, 0, &c->sliding_window)))
        return st;
    return FM_OK;
}

static fm_status mixtral_load_layer(fm_model *m, int i) {
    fm_status st;
    if ((st = load_layer_norms(m, i)) || (st = load_attention(m, i))) return st;
    return load_experts(m, i, "block_sparse_moe", "w1", "w3", "w2");
}

const fm_arch fm_arch_mixtral = {
    .name = "Mixtral",
    .model_types = {"mixtral"},
    .read_config = mixtral_read_config,
    .load_layer = mixtral_load_layer,
    .prefixes = {"model."},
};

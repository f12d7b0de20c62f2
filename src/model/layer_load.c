/* Shared block loaders (see layer_load.h). */
#include "model/layer_load.h"

#include <math.h>
#include <stdlib.h>

fm_status load_layer_norms(fm_model *m, int i) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    float add = m->norm_add;
    fm_status st = weights_f32(m, &l->input_norm, c->hidden_size, add, "layers.%d.input_layernorm.weight", i);
    if (st == FM_OK)
        st = weights_f32(m, &l->post_norm, c->hidden_size, add, "layers.%d.post_attention_layernorm.weight", i);
    return st;
}

fm_status load_attention(fm_model *m, int i) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    int H = c->hidden_size, q_rows = c->n_heads * c->head_dim * (c->attn_output_gate ? 2 : 1);
    int kv_rows = c->n_kv_heads * c->head_dim;
    float add = m->norm_add;
    fm_status st;
    if ((st = weights_mat(m, &l->q, q_rows, H, 0, "layers.%d.self_attn.q_proj.weight", i)) ||
        (st = weights_mat(m, &l->k, kv_rows, H, 0, "layers.%d.self_attn.k_proj.weight", i)) ||
        (st = weights_mat(m, &l->v, kv_rows, H, 0, "layers.%d.self_attn.v_proj.weight", i)) ||
        (st = weights_mat(m, &l->o, H, c->n_heads * c->head_dim, 0, "layers.%d.self_attn.o_proj.weight", i)))
        return st;
    if (c->attn_qk_norm &&
        ((st = weights_f32(m, &l->q_norm, c->head_dim, add, "layers.%d.self_attn.q_norm.weight", i)) ||
         (st = weights_f32(m, &l->k_norm, c->head_dim, add, "layers.%d.self_attn.k_norm.weight", i))))
        return st;
    return FM_OK;
}

static fm_status load_deltanet_common(fm_model *m, int i) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    int nv = c->lin_n_v_heads, conv_dim = fm_config_conv_dim(c);
    fm_status st;
    if ((st = weights_f32(m, &l->conv, (int64_t)conv_dim * c->lin_conv_kernel, 0,
                          "layers.%d.linear_attn.conv1d.weight", i)) ||
        (st = weights_f32(m, &l->neg_exp_a, nv, 0, "layers.%d.linear_attn.A_log", i)) ||
        (st = weights_f32(m, &l->dt_bias, nv, 0, "layers.%d.linear_attn.dt_bias", i)) ||
        (st = weights_f32(m, &l->lin_norm, c->lin_v_dim, 0, "layers.%d.linear_attn.norm.weight", i)) ||
        (st = weights_mat(m, &l->out_proj, c->hidden_size, nv * c->lin_v_dim, 0,
                          "layers.%d.linear_attn.out_proj.weight", i)))
        return st;
    for (int h = 0; h < nv; h++) l->neg_exp_a[h] = -expf(l->neg_exp_a[h]); /* as torch: -A_log.float().exp() */
    return FM_OK;
}

fm_status load_deltanet_split(fm_model *m, int i) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    int H = c->hidden_size, nv = c->lin_n_v_heads, vd = nv * c->lin_v_dim, conv_dim = fm_config_conv_dim(c);
    fm_status st;
    if ((st = weights_mat(m, &l->in_qkv, conv_dim, H, 0, "layers.%d.linear_attn.in_proj_qkv.weight", i)) ||
        (st = weights_mat(m, &l->in_z, vd, H, 0, "layers.%d.linear_attn.in_proj_z.weight", i)) ||
        (st = weights_mat(m, &l->in_b, nv, H, 0, "layers.%d.linear_attn.in_proj_b.weight", i)) ||
        (st = weights_mat(m, &l->in_a, nv, H, 0, "layers.%d.linear_attn.in_proj_a.weight", i)))
        return st;
    return load_deltanet_common(m, i);
}

fm_status load_deltanet_grouped(fm_model *m, int i) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    int H = c->hidden_size, nv = c->lin_n_v_heads;
    int rows = 2 * c->lin_n_k_heads * c->lin_k_dim + 2 * nv * c->lin_v_dim;
    fm_status st;
    if ((st = weights_mat(m, &l->in_qkvz, rows, H, 0, "layers.%d.linear_attn.in_proj_qkvz.weight", i)) ||
        (st = weights_mat(m, &l->in_ba, 2 * nv, H, 0, "layers.%d.linear_attn.in_proj_ba.weight", i)))
        return st;
    return load_deltanet_common(m, i);
}

fm_status load_experts(fm_model *m, int i, const char *moe, const char *gate_name, const char *up_name,
                       const char *down_name) {
    const fm_config *c = &m->cfg;
    fm_layer *l = &m->layers[i];
    int H = c->hidden_size, E = c->n_experts, F = c->expert_ffn;
    fm_status st = weights_mat(m, &l->router, E, H, 0, "layers.%d.%s.gate.weight", i, moe);
    if (st != FM_OK) return st;
    if (m->pack) return FM_OK; /* routed experts come from the expert store */
    if (!(l->experts = calloc((size_t)E, sizeof *l->experts))) return fm_error(FM_ERR_NOMEM, "out of memory");
    if (weights_has(m, "layers.%d.%s.switch_mlp.gate_proj.weight", i, moe)) { /* MLX: stacked per projection */
        size_t stride = sizeof(fm_ffn);
        if ((st = weights_stacked(m, &l->experts[0].gate, stride, E, F, H, 0, F,
                                  "layers.%d.%s.switch_mlp.gate_proj.weight", i, moe)) ||
            (st = weights_stacked(m, &l->experts[0].up, stride, E, F, H, 0, F, "layers.%d.%s.switch_mlp.up_proj.weight",
                                  i, moe)) ||
            (st = weights_stacked(m, &l->experts[0].down, stride, E, H, F, 0, H,
                                  "layers.%d.%s.switch_mlp.down_proj.weight", i, moe)))
            return st;
        return FM_OK;
    }
    if (weights_has(m, "layers.%d.%s.experts.gate_up_proj", i, moe)) {
        size_t stride = sizeof(fm_ffn);
        if ((st = weights_stacked(m, &l->experts[0].gate, stride, E, 2 * F, H, 0, F,
                                  "layers.%d.%s.experts.gate_up_proj", i, moe)) ||
            (st = weights_stacked(m, &l->experts[0].up, stride, E, 2 * F, H, F, F,
                                  "layers.%d.%s.experts.gate_up_proj", i, moe)) ||
            (st = weights_stacked(m, &l->experts[0].down, stride, E, H, F, 0, H, "layers.%d.%s.experts.down_proj",
                                  i, moe)))
            return st;
        return FM_OK;
    }
    for (int e = 0; e < E; e++) {
        fm_ffn *x = &l->experts[e];
        if ((st = weights_mat(m, &x->gate, F, H, W_EXPERT, "layers.%d.%s.experts.%d.%s.weight", i, moe, e,
                              gate_name)) ||
            (st = weights_mat(m, &x->up, F, H, W_EXPERT, "layers.%d.%s.experts.%d.%s.weight", i, moe, e,
                              up_name)) ||
            (st = weights_mat(m, &x->down, H, F, W_EXPERT, "layers.%d.%s.experts.%d.%s.weight", i, moe, e,
                              down_name)))
            return st;
    }
    return FM_OK;
}

static fm_status load_ffn(fm_model *m, fm_ffn *f, int F, const char *what, int i) {
    int H = m->cfg.hidden_size;
    fm_status st;
    if ((st = weights_mat(m, &f->gate, F, H, 0, "layers.%d.mlp.%s.gate_proj.weight", i, what)) ||
        (st = weights_mat(m, &f->up, F, H, 0, "layers.%d.mlp.%s.up_proj.weight", i, what)) ||
        (st = weights_mat(m, &f->down, H, F, 0, "layers.%d.mlp.%s.down_proj.weight", i, what)))
        return st;
    return FM_OK;
}

fm_status load_shared_expert(fm_model *m, int i) {
    fm_layer *l = &m->layers[i];
    fm_status st = load_ffn(m, &l->shared, m->cfg.shared_ffn, "shared_expert", i);
    if (st == FM_OK)
        st = weights_mat(m, &l->shared_gate, 1, m->cfg.hidden_size, 0, "layers.%d.mlp.shared_expert_gate.weight", i);
    return st;
}

fm_status load_dense_mlp(fm_model *m, int i) {
    fm_layer *l = &m->layers[i];
    int H = m->cfg.hidden_size, F = m->cfg.dense_ffn;
    fm_status st;
    if ((st = weights_mat(m, &l->dense.gate, F, H, 0, "layers.%d.mlp.gate_proj.weight", i)) ||
        (st = weights_mat(m, &l->dense.up, F, H, 0, "layers.%d.mlp.up_proj.weight", i)) ||
        (st = weights_mat(m, &l->dense.down, H, F, 0, "layers.%d.mlp.down_proj.weight", i)))
        return st;
    return FM_OK;
}

/* Loaders for the building blocks the architectures share. An arch's
 * load_layer composes these with its own tensor names. `L` is the layer's
 * name prefix, e.g. "layers.3". */
#ifndef FM_MODEL_LAYER_LOAD_H
#define FM_MODEL_LAYER_LOAD_H

#include "model/weights.h"

fm_status load_layer_norms(fm_model *m, int layer);
fm_status load_attention(fm_model *m, int layer);
/* Qwen3.5 layout: in_proj_qkv, in_proj_z, in_proj_b, in_proj_a. */
fm_status load_deltanet_split(fm_model *m, int layer);
/* Qwen3-Next layout: in_proj_qkvz and in_proj_ba grouped per key head. */
fm_status load_deltanet_grouped(fm_model *m, int layer);
/* Router `gate_name` [E, H] and experts under `moe` ("mlp", "block_sparse_moe"):
 * per expert `moe.experts.N.{gate,up,down}.weight` with the given names, or
 * fused `moe.experts.gate_up_proj` [E, 2F, H] + `moe.experts.down_proj` [E, H, F]. */
fm_status load_experts(fm_model *m, int layer, const char *moe, const char *gate_name, const char *up_name,
                       const char *down_name);
fm_status load_shared_expert(fm_model *m, int layer);
fm_status load_dense_mlp(fm_model *m, int layer);

#endif

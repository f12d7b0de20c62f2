/* The model in memory: config, weights (views into the mapped safetensors),
 * and the per-layer structure the forward pass walks. Read this file first.
 *
 * Legend: H = hidden size, V = vocab, nh/nkv = query/KV heads, hd = head dim,
 * nk/nv = linear-attention key/value heads, dk/dv = their dims, E = experts,
 * F = expert FFN width, Fs = shared-expert width, Fd = dense-MLP width. */
#ifndef FM_MODEL_MODEL_H
#define FM_MODEL_MODEL_H

#include "core/dtype.h"
#include "flashmoe.h"
#include "load/checkpoint.h"
#include "load/config.h"

/* A row-major weight matrix [rows, cols] used as y = W·x; data points into
 * the mapped checkpoint or an expert buffer (never copied).
 * Plain: rows×cols elements of dtype (F32, F16, BF16).
 * Quantized (bits 2, 4 or 8): MLX affine layout (quant/affine.h): data holds
 * the packed uint32 codes [rows, cols·bits/32], dtype is U32, and scales and
 * biases are bf16 [rows, cols/group]. */
typedef struct {
    const void *data;
    fm_dtype dtype;
    int rows, cols;
    int bits, group; /* 0 when plain */
    const uint16_t *scales, *biases;
} fm_mat;

/* SwiGLU feed-forward: down · (silu(gate·x) * (up·x)). */
typedef struct {
    fm_mat gate; /* [F, H] */
    fm_mat up;   /* [F, H] */
    fm_mat down; /* [H, F] */
} fm_ffn;

typedef struct {
    float *input_norm; /* [H] multiplier (1 + w for zero-centred norms) */
    float *post_norm;  /* [H] */

    /* Full attention (layer_full_attention). */
    fm_mat q;         /* [nh*hd*(gate ? 2 : 1), H]; with a gate, per head: hd query rows then hd gate rows */
    fm_mat k, v;      /* [nkv*hd, H] */
    fm_mat o;         /* [H, nh*hd] */
    float *q_norm;    /* [hd] or NULL */
    float *k_norm;    /* [hd] or NULL */

    /* Linear attention (GatedDeltaNet). */
    fm_mat in_qkv;      /* [2*nk*dk + nv*dv, H] (Qwen3.5) */
    fm_mat in_z;        /* [nv*dv, H] */
    fm_mat in_b, in_a;  /* [nv, H] */
    fm_mat in_qkvz;     /* [2*nk*dk + 2*nv*dv, H] grouped per key head (Qwen3-Next); data NULL if absent */
    fm_mat in_ba;       /* [2*nv, H] grouped per key head (Qwen3-Next) */
    float *conv;        /* [conv_dim, kernel] */
    float *neg_exp_a;   /* [nv] -exp(A_log) */
    float *dt_bias;     /* [nv] */
    float *lin_norm;    /* [dv] plain multiplier of the gated RMSNorm */
    fm_mat out_proj;    /* [H, nv*dv] */

    /* Sparse MoE (layer_moe) or dense MLP. */
    fm_mat router;      /* [E, H] */
    fm_ffn *experts;    /* [E] */
    fm_ffn shared;      /* [Fs] (has_shared_expert) */
    fm_mat shared_gate; /* [1, H] */
    fm_ffn dense;       /* [Fd] when !layer_moe */
} fm_layer;

struct fm_model {
    fm_config cfg;
    struct ckpt *ckpt;
    fm_model_info info;
    fm_mat embed;   /* [V, H] */
    fm_mat lm_head; /* [V, H] (the embedding when tied) */
    float *final_norm; /* [H] */
    float *rope_inv_freq; /* [rotary_dim / 2] */
    fm_layer *layers;  /* [n_layers] */
    /* Added to zero-centred norm weights at load: 1, or 0 for checkpoints
     * written by MLX, which stores them with the 1 already added. */
    float norm_add;
    /* Packed models: the manifest and the store the routed experts come from
     * (the layers' `experts` are then NULL). */
    struct pack_manifest *pack;
    struct fm_store *store;
    int n_experts_default; /* the config's experts per token (cfg holds the one run) */
    struct weights_record *record; /* set by the converter while loading */
    struct cuda_model *gpu; /* the CUDA backend's copy of the weights, when the model runs there */
    void **owned;      /* float arrays converted at load, freed on close */
    int n_owned, cap_owned;
};

/* fm_model_open that lists the non-expert tensors it binds into `rec`. */
fm_status model_open_recording(const char *dir, const fm_model_options *opt, struct weights_record *rec,
                               fm_model **out);

#endif

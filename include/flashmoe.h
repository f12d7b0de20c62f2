/* flashmoe: Mixture-of-Experts inference from Hugging Face checkpoints.
 *
 * The public API. A model is opened from a directory (config.json +
 * safetensors); a session owns the per-conversation state (KV cache of the
 * full-attention layers, conv and recurrent state of the linear-attention
 * layers) and turns tokens into logits. Every call that can fail returns an
 * fm_status; fm_last_error() then names the file or tensor and the problem. */
#ifndef FLASHMOE_H
#define FLASHMOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FM_OK = 0,
    FM_ERR_IO,          /* a file could not be opened, read or written */
    FM_ERR_FORMAT,      /* a file is malformed: bad JSON, corrupt safetensors, wrong shapes */
    FM_ERR_UNSUPPORTED, /* well-formed, but not something flashmoe runs (model_type, rope_type) */
    FM_ERR_ARGUMENT,    /* a caller's value is out of range (token id, context length) */
    FM_ERR_NOMEM,
} fm_status;

/* The message recorded by the last failing call on this thread. */
const char *fm_last_error(void);
const char *fm_status_name(fm_status status);

/* ---- model ------------------------------------------------------------ */

typedef struct fm_model fm_model;

typedef struct {
    int n_threads; /* worker threads for compute; 0 = one per core */
} fm_model_options;

typedef enum { FM_LAYER_LINEAR_ATTENTION, FM_LAYER_FULL_ATTENTION } fm_layer_kind;

typedef struct {
    const char *model_type;   /* config.json's model_type, e.g. "qwen3_5_moe" */
    const char *architecture; /* human name, e.g. "Qwen3.5-MoE" */
    int vocab_size, hidden_size, n_layers;
    int n_heads, n_kv_heads, head_dim, rotary_dim;
    double rope_theta;
    int linear_n_key_heads, linear_n_value_heads, linear_key_dim, linear_value_dim, linear_conv_kernel;
    int n_experts, n_experts_per_token, expert_ffn, shared_expert_ffn, dense_ffn;
    int max_position_embeddings;
    int n_eos;
    int32_t eos_ids[8];
    /* Counts over the text model's tensors (vision tower and MTP head excluded). */
    uint64_t params_total, params_experts, params_dense, params_active;
    uint64_t bytes_total, bytes_experts, bytes_dense, bytes_active;
    /* Weight bytes one decode step reads: active bytes, with the embedding
     * table counted as one row unless it is also the LM head. */
    uint64_t bytes_per_token;
} fm_model_info;

fm_status fm_model_open(const char *dir, const fm_model_options *options, fm_model **out);
void fm_model_close(fm_model *model); /* accepts NULL */
const fm_model_info *fm_model_get_info(const fm_model *model);
fm_layer_kind fm_model_layer_kind(const fm_model *model, int layer);
int fm_model_layer_is_moe(const fm_model *model, int layer);

/* ---- session ---------------------------------------------------------- */

typedef struct fm_session fm_session;

typedef struct {
    int max_context; /* tokens; 0 = the model's max_position_embeddings */
} fm_session_options;

typedef enum {
    FM_LOGITS_NONE, /* only advance the state */
    FM_LOGITS_LAST, /* logits of the last token: [vocab_size] */
    FM_LOGITS_ALL,  /* logits of every token: [n_tokens, vocab_size] */
} fm_logits_mode;

fm_status fm_session_new(fm_model *model, const fm_session_options *options, fm_session **out);
void fm_session_free(fm_session *session); /* accepts NULL */
void fm_session_reset(fm_session *session);
int fm_session_position(const fm_session *session); /* tokens consumed so far */

/* Feeds n_tokens tokens after those already consumed and writes logits as
 * `mode` asks. On error the session is unchanged. */
fm_status fm_session_eval(fm_session *session, const int32_t *tokens, int n_tokens,
                          fm_logits_mode mode, float *logits);

#ifdef __cplusplus
}
#endif
#endif

/* The session: per-conversation state and scratch. Internal; the public view
 * is fm_session in flashmoe.h.
 *
 * State per layer: full attention keeps K and V for every past position;
 * linear attention keeps the last (kernel-1) conv inputs per channel and the
 * recurrent matrix S per value head. */
#ifndef FM_MODEL_SESSION_H
#define FM_MODEL_SESSION_H

#include "model/model.h"
#include "store/expert_store.h"

/* Tokens per forward micro-batch by default: the weights are read once per
 * micro-batch; with streamed experts (packed models) a larger one, since
 * every micro-batch of a prompt reads most of each layer's experts. */
#define FM_UBATCH 64
#define FM_UBATCH_STREAMED 256

typedef struct {
    float *x;      /* [ub, H] residual stream */
    float *xn;     /* [ub, H] normalised input of a block */
    float *out;    /* [ub, H] block output */
    float *big[6]; /* per-block temporaries, each [ub, widest projection] */
    float *router; /* [ub, E] */
    int *sel;      /* [ub, K] chosen experts */
    float *sel_w;  /* [ub, K] their weights */
    /* The micro-batch's (token, expert) pairs grouped by expert (moe.c). */
    int *expert_count;     /* [E] */
    int *expert_ids;       /* [E] experts used, ascending */
    int *expert_first;     /* [E + 1] start of each expert's entries */
    int *expert_rows;      /* [ub * K] token of each entry */
    float *expert_weight;  /* [ub * K] router weight of each entry */
    float *expert_out;     /* [ub * K, H] expert output of each entry */
} fm_scratch;

struct fm_session {
    fm_model *model;
    struct cuda_session *gpu;   /* the CUDA backend's state, when the model runs there */
    int pos, max_context, kv_capacity;
    int ubatch;                 /* tokens per micro-batch */
    float **k_cache, **v_cache; /* [n_layers] → [kv_capacity, nkv*hd] (full-attention layers) */
    float **conv_state;         /* [n_layers] → [conv_dim, kernel-1] (linear layers) */
    float **recurrent;          /* [n_layers] → [nv, dk, dv] */
    fm_scratch scratch;
    float *scores;              /* [threads, kv_capacity] attention scores */
    int score_threads;
    size_t big_size;            /* floats in each scratch.big[i] */
    /* Test hook: when set, eval writes [n_layers+1, n_tokens, H] hidden states
     * as transformers' output_hidden_states does (the last after the final norm). */
    float *capture_hidden;
    fm_layer_timing *timing;    /* [n_layers] */
    double eval_s, head_s;
    uint64_t tokens, evals;
    store_stats store_base;     /* store counters when timing was reset */
    int (*cancelled)(void *user); /* fm_session_set_cancel */
    void *cancel_user;
};

/* Between layers: FM_ERR_CANCELLED (with a message) when the caller's hook says stop. */
fm_status session_check_cancel(const fm_session *s);

/* Floats of one linear-attention layer's conv state and recurrent state. */
size_t session_conv_state_floats(const fm_config *c);
size_t session_recurrent_floats(const fm_config *c);
/* The KV capacity to grow to from `capacity` to hold `needed` positions: at least doubled
 * (from 256), at most the session's context limit. */
int session_kv_grown(const fm_session *s, int capacity, int needed);

/* Grows the KV caches (host or device) to hold `needed` positions. */
fm_status session_reserve_kv(fm_session *s, int needed);

/* Widest per-token temporary any block needs (floats). */
int session_widest_row(const fm_config *c);

/* Runs one micro-batch (n ≤ FM_UBATCH) at s->pos; writes the normalised final
 * hidden state of the rows in [logit_row0, n) and their logits into `logits`. */
fm_status forward_ubatch(fm_session *s, const int32_t *tokens, int n, int logit_row0, float *logits,
                         int capture_offset, int capture_total);

void attention_forward(fm_session *s, int layer, int n);
void deltanet_forward(fm_session *s, int layer, int n);
/* Fails only when a packed model's expert cannot be read. */
fm_status moe_forward(fm_session *s, int layer, int n);

/* Groups the (token, expert) pairs of n tokens (sel, sel_w [n, K]) by expert:
 * ids[0..n_ids) ascending; expert ids[j] owns entries [first[j], first[j+1])
 * of rows (its tokens, ascending) and weight. count [E] is scratch. Returns n_ids. */
int moe_group(const int *sel, const float *sel_w, int n, int E, int K, int *count, int *ids, int *first, int *rows,
              float *weight);

/* Bytes of a session's scratch at `ubatch` tokens per micro-batch (the memory budget counts them). */
size_t session_scratch_bytes(const fm_config *c, int ubatch);

/* Test hook (see capture_hidden). */
void fm_session_capture_hidden(fm_session *s, float *dst);

#endif

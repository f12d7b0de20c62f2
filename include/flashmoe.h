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
    FM_ERR_CANCELLED, /* the caller's cancel hook stopped an evaluation (fm_session_set_cancel) */
} fm_status;

/* The message recorded by the last failing call on this thread. */
const char *fm_last_error(void);
const char *fm_status_name(fm_status status);

/* ---- model ------------------------------------------------------------ */

typedef struct fm_model fm_model;

typedef enum {
    FM_EXPERT_CACHE_DEFAULT, /* FM_EXPERT_CACHE_RAM */
    FM_EXPERT_CACHE_OS,      /* trust the OS page cache: buffered reads into a few buffers */
    FM_EXPERT_CACHE_RAM,     /* flashmoe's own cache of experts (recency + frequency), O_DIRECT misses */
} fm_expert_cache;

typedef enum {
    FM_BACKEND_AUTO, /* CUDA when flashmoe was built with it and a GPU is present, else the CPU */
    FM_BACKEND_CPU,
    FM_BACKEND_CUDA, /* fails at open when there is no usable GPU */
} fm_backend;

typedef struct {
    int n_threads;           /* worker threads for compute; 0 = one per core */
    int n_experts_per_token; /* routed experts run per token; 0 = the model's own */
    /* Packed models (flashmoe convert) stream their routed experts from disk: */
    int io_uring;            /* 1: io_uring; 0: a pool of threads issuing pread */
    int io_threads;          /* pread pool size; 0 = default */
    int direct_io;           /* O_DIRECT reads with the OS cache policy too */
    fm_expert_cache cache;
    uint64_t cache_bytes;    /* RAM cache budget; 0 = from memory_budget, else half the available
                                memory (MemAvailable), at most all experts */
    uint64_t memory_budget;  /* bytes the whole engine may use (dense weights, cache, buffers); 0 = none */
    int preload;             /* read every expert into the RAM cache at open (all in RAM; the cache
                                is sized for all of them unless a size or budget is given) */
    int verify;              /* check the checksum of every expert read */
    fm_backend backend;
    int gpu_device;          /* CUDA device index */
    /* CUDA, packed models: VRAM budget of the expert cache (the tier above the RAM cache);
       0 = what is free after the dense weights, less a reserve for sessions. Checkpoints
       (not packed) keep all their experts in VRAM. */
    uint64_t vram_cache_bytes;
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
    /* Sampling defaults from generation_config.json; negative when it names none
     * (temperature 0 when it says do_sample false). */
    float default_temperature, default_top_p, default_min_p, default_repetition_penalty;
    int default_top_k;
    /* Counts over the text model's tensors (vision tower and MTP head excluded). */
    uint64_t params_total, params_experts, params_dense, params_active;
    uint64_t bytes_total, bytes_experts, bytes_dense, bytes_active;
    /* Weight bytes one decode step reads: active bytes, with the embedding
     * table counted as one row unless it is also the LM head. */
    uint64_t bytes_per_token;
    /* Packed models: bits of the routed experts (16 = bf16) and bytes of one
     * expert on disk; 0 for Hugging Face checkpoints. */
    int expert_bits;
    uint64_t expert_bytes;
    int n_experts_run;        /* routed experts run per token (n_experts_per_token or the option) */
    const char *backend;      /* "cpu" or "cuda" */
    const char *device_name;  /* the GPU's name with CUDA, else the CPU path in use */
    uint64_t vram_dense_bytes, vram_cache_bytes; /* CUDA: resident weights; expert cache budget */
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
    int batch;       /* tokens per prefill micro-batch; 0 = 64, or 256 for packed models (each
                        micro-batch reads the experts it routes to once) */
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
 * `mode` asks. On an argument error the session is unchanged; if a packed
 * model's expert cannot be read midway, the session is reset (its layers would
 * hold half a batch) and the error says so. Sessions of one packed model share
 * its expert store: evaluate them one at a time. */
fm_status fm_session_eval(fm_session *session, const int32_t *tokens, int n_tokens,
                          fm_logits_mode mode, float *logits);
/* A hook fm_session_eval calls between layers (NULL: none). When it returns
 * nonzero the evaluation stops within a layer's time, the session is reset
 * (position 0: its layers would hold part of a batch) and FM_ERR_CANCELLED is
 * returned. For prompts long enough that one evaluation takes seconds. */
void fm_session_set_cancel(fm_session *session, int (*cancelled)(void *user), void *user);

/* Snapshots: the session's state (position, KV cache up to it, linear-attention
 * state) as bytes in host memory, to return to a conversation's prefix later
 * without prefilling it again (prompt caches). A snapshot restores only into a
 * session of the same model; its size grows with the position. */
size_t fm_session_state_size(const fm_session *session);
fm_status fm_session_state_save(const fm_session *session, void *buf, size_t size);
fm_status fm_session_state_load(fm_session *session, const void *buf, size_t size);
/* Keeps the first n_tokens tokens and forgets the rest. Only models whose layers
 * are all full attention can go back (a KV cache is cut; linear-attention state
 * cannot be rewound): FM_ERR_UNSUPPORTED otherwise, unless n_tokens is the position. */
int fm_session_can_truncate(const fm_session *session);
fm_status fm_session_truncate(fm_session *session, int n_tokens);

/* Where the time of fm_session_eval calls went, per layer and in total,
 * since the session was created or fm_session_reset_timing was called. */
typedef struct {
    double attention_s;      /* full or linear attention block */
    double routing_s;        /* router projection, softmax, top-k */
    double expert_io_wait_s; /* blocked waiting for expert reads */
    double expert_compute_s; /* routed and shared experts, dense MLP, combine */
    double other_s;          /* norms, residual adds */
} fm_layer_timing;

typedef struct {
    int n_layers;
    const fm_layer_timing *layers; /* [n_layers], valid until the next eval or reset */
    double eval_s, head_s;         /* wall time in eval; embedding + final norm + LM head */
    uint64_t tokens, evals;        /* tokens fed; eval calls */
    uint64_t experts_fetched, cache_hits, bytes_read; /* packed models */
    double read_s;                 /* time with at least one expert read in flight */
    /* CUDA: routed experts the GPU needed (experts_fetched counts only those not in VRAM),
       those found in VRAM, and the bytes copied to it. */
    uint64_t vram_lookups, vram_hits, bytes_copied;
    double copy_s;                 /* time with at least one host→device copy in flight */
    /* CPU compute threads, and those taking work now (fewer while other
       processes keep CPUs busy). */
    int threads, threads_active;
} fm_timing;

void fm_session_get_timing(const fm_session *session, fm_timing *out);
void fm_session_reset_timing(fm_session *session);

/* ---- converting ------------------------------------------------------- */

typedef struct {
    int bits;        /* routed experts: 2, 4, 8, or 16 (bf16, unquantized); 0 = 4 */
    int group;       /* quantization group; 0 = 64 */
    int dense_bits;  /* dense matrices: 16 = as they are, 8 or 4 = quantized (routers keep 8);
                        0 = 8, or 16 when bits is 16 */
    int range_search; /* experts' group ranges: 1 searched for the least squared error, -1 MLX's
                         min/max; 0 = searched at 2 bits only */
    int force;       /* replace an existing complete packed model at dst */
    int n_threads;   /* quantizing threads; 0 = one per core */
    /* Called now and then with bytes written of the total (may be NULL). */
    void (*progress)(void *user, uint64_t done, uint64_t total, const char *what);
    void *user;
} fm_convert_options;

/* Converts the checkpoint at src (Hugging Face or MLX) into flashmoe's packed
 * model at dst (docs/FORMAT.md). Streams; writes through temporary names;
 * an interrupted conversion resumes where it stopped when run again. */
fm_status fm_convert(const char *src, const char *dst, const fm_convert_options *options);
/* Recomputes every checksum of a packed model: FM_OK or the first mismatch. */
fm_status fm_verify(const char *dir, void (*progress)(void *user, uint64_t done, uint64_t total, const char *what),
                    void *user);

/* ---- tokenizer --------------------------------------------------------- */

/* A Hugging Face tokenizer.json (byte-level BPE as Qwen2/Qwen3/Qwen3.5 and
 * GPT-2 use), with tokenizer_config.json from the same directory when present
 * (chat template, special tokens). */
typedef struct fm_tokenizer fm_tokenizer;

/* `path`: a tokenizer.json file or a directory holding one. */
fm_status fm_tokenizer_open(const char *path, fm_tokenizer **out);
void fm_tokenizer_close(fm_tokenizer *tok); /* accepts NULL */
int fm_tokenizer_vocab_size(const fm_tokenizer *tok); /* highest id + 1 */
/* Encodes UTF-8 text. Added and special tokens written in the text are
 * matched as tokens. *ids is allocated with malloc; the caller frees it. */
fm_status fm_tokenizer_encode(fm_tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n_ids);
/* Decodes ids to UTF-8 text (malloc'd, NUL-terminated; *len excludes the NUL).
 * Invalid UTF-8 from partial byte tokens becomes U+FFFD, as Hugging Face does. */
fm_status fm_tokenizer_decode(const fm_tokenizer *tok, const int32_t *ids, int n_ids, int skip_special, char **text,
                              size_t *len);
/* The id of a token given by its text as decoded bytes (e.g. "<|im_end|>", " the"), or -1. */
int32_t fm_tokenizer_token_id(const fm_tokenizer *tok, const char *token);
int fm_tokenizer_is_special(const fm_tokenizer *tok, int32_t id);
/* tokenizer_config.json's chat_template, or NULL. */
const char *fm_tokenizer_chat_template(const fm_tokenizer *tok);

/* Incremental decoding for streaming: bytes are released only when they form
 * complete UTF-8 characters. */
typedef struct fm_detokenizer fm_detokenizer;
fm_status fm_detokenizer_new(const fm_tokenizer *tok, int skip_special, fm_detokenizer **out);
void fm_detokenizer_free(fm_detokenizer *d);
/* Appends the text of `id`; returns the newly completed text (valid until the
 * next call; *len bytes, NUL-terminated). */
const char *fm_detokenizer_push(fm_detokenizer *d, int32_t id, size_t *len);
/* Whatever is still held back (an incomplete sequence becomes U+FFFD). */
const char *fm_detokenizer_flush(fm_detokenizer *d, size_t *len);

/* ---- chat template ----------------------------------------------------- */

/* The model's jinja chat_template, run by flashmoe's own interpreter of the
 * subset of Jinja that chat templates use. */
typedef struct fm_chat_template fm_chat_template;

typedef struct {
    int add_generation_prompt;
    int enable_thinking;       /* -1: leave undefined (the template's default), 0 or 1 */
    const char *bos_token;     /* may be NULL */
    const char *eos_token;     /* may be NULL */
} fm_chat_options;

fm_status fm_chat_template_new(const char *source, fm_chat_template **out);
void fm_chat_template_free(fm_chat_template *t);
/* messages_json: a JSON array of {role, content, ...} messages (OpenAI shape,
 * tool_calls and reasoning_content included); tools_json: a JSON array of
 * tool definitions or NULL. *out is malloc'd text. */
fm_status fm_chat_template_render(const fm_chat_template *t, const char *messages_json, const char *tools_json,
                                  const fm_chat_options *options, char **out);

/* ---- sampling ---------------------------------------------------------- */

typedef struct {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off; divides positive / multiplies negative logits of seen tokens */
    float presence_penalty;   /* 0: off; subtracted once from the logit of every seen token */
    float frequency_penalty;  /* 0: off; subtracted per occurrence */
    int penalty_last_n;       /* how many recent tokens count as seen; 0: all */
    uint64_t seed;
} fm_sampler_params;

/* Greedy defaults: temperature 0, filters off, penalties off, seed 0. */
fm_sampler_params fm_sampler_default_params(void);

typedef struct fm_sampler fm_sampler;
/* params NULL: fm_sampler_default_params() (greedy). */
fm_status fm_sampler_new(const fm_sampler_params *params, int vocab_size, fm_sampler **out);
void fm_sampler_free(fm_sampler *s);
/* Picks a token from `logits` [vocab_size] (modified in place: penalties applied). */
int32_t fm_sampler_sample(fm_sampler *s, float *logits);
/* Records a token of the context (prompt or generated) for the penalties. */
void fm_sampler_accept(fm_sampler *s, int32_t token);
void fm_sampler_reset(fm_sampler *s); /* forgets the history; keeps the RNG stream */

#ifdef __cplusplus
}
#endif
#endif

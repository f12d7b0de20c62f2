/* Shared by the synthetic model writers (synth_model: a Hugging Face bf16
 * checkpoint; synth_packed: flashmoe's packed format): the Qwen3.5-MoE shapes,
 * config.json, the tensor list and the random numbers. */
#ifndef BENCH_SYNTH_COMMON_H
#define BENCH_SYNTH_COMMON_H

#include <stdint.h>
#include <string.h>

typedef struct {
    int layers, experts, top_k, vocab, hidden, expert_ffn, interval;
} synth_config;

/* Qwen3.5-397B-A17B's fixed head shapes. */
enum { SYNTH_NH = 32, SYNTH_NKV = 2, SYNTH_HD = 256, SYNTH_NK = 16, SYNTH_NV = 64, SYNTH_DK = 128, SYNTH_DV = 128,
       SYNTH_CONV_K = 4 };

typedef struct {
    char name[160];
    int n_dims;
    int64_t shape[3];
    float scale; /* uniform half-width; < 0: norm weight around 0 (zero-centred) */
    int expert;  /* 1: a stacked routed-expert tensor (mlp.experts.*) */
} synth_tensor;

/* Every tensor of the model in file order (embedding, final norm, LM head,
 * then each layer's), routed experts as transformers stacks them. malloc'd. */
synth_tensor *synth_tensors(const synth_config *c, int *n);
uint64_t synth_numel(const synth_tensor *t);
/* DIR/config.json (model_type qwen3_5_moe_text); 0 on success, else prints why. */
int synth_write_config(const char *dir, const synth_config *c);
/* Writes `text` to DIR/NAME through NAME.tmp and a rename; 0 on success. */
int synth_write_text(const char *dir, const char *name, const char *text);

/* xorshift64: one stream per thread, never seeded with 0. */
static inline uint64_t synth_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
/* Uniform in [-1, 1). */
static inline float synth_uniform(uint64_t *s) {
    return (float)((synth_next(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static inline uint16_t synth_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

#endif

/* Internal to src/backend/cuda: the device copy of a model and of a session. */
#ifndef FM_BACKEND_CUDA_INTERNAL_H
#define FM_BACKEND_CUDA_INTERNAL_H

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_kernels.h"
#include "model/session.h"
#include "pack/pack_format.h"
#include "store/expert_cache.h"

#include <cuda_runtime_api.h>

/* The model on the device. Weights live in one allocation (`arena`); the
 * layers are copies of the host fm_layer structs whose pointers point there. */
typedef struct cuda_model {
    int device;
    char name[400];
    void *arena;
    size_t arena_bytes;
    fm_mat embed, lm_head;
    float *final_norm, *rope_inv_freq;
    fm_layer *layers; /* [n_layers]; .experts [E] (device views) for checkpoints, NULL for packed models */

    /* Packed models: the VRAM tier of the expert store. Slot `slot_bytes`
     * holds one expert extent (pack layout); keys are layer * E + expert. */
    void *slab;
    size_t slot_bytes;
    int n_slots;
    expert_cache *vram;
    /* Counters over the model's life (sessions keep their own bases). */
    uint64_t vram_fetches, vram_hits, bytes_copied;
    double copy_s;
} cuda_model;

#define CUDA_STAGES 4

/* One session's device state and scratch. */
typedef struct cuda_session {
    cudaStream_t stream; /* compute */
    cudaStream_t copy;   /* expert uploads */
    cudaEvent_t copy_end;
    /* Packed models: misses are copied (by all threads) into pinned staging buffers,
     * then DMA'd to their VRAM slot; stage_done[k] tells when buffer k is free again. */
    void *stage[CUDA_STAGES];
    cudaEvent_t stage_done[CUDA_STAGES];
    int stage_next, pageable; /* pageable: copy from the store's memory directly (FM_CUDA_PAGEABLE=1) */
    cudaEvent_t *copy_events;  /* [2 * n_layers]: first copy of a layer starts, last one ends */
    unsigned char *copied;     /* [n_layers]: the layer copied experts in this micro-batch */
    int ubatch, kv_capacity;
    float **k_cache, **v_cache;      /* [n_layers] → device [kv_capacity, nkv*hd] */
    float **conv_state, **recurrent; /* [n_layers] → device, as on the CPU */
    /* Device scratch ([U] = micro-batch rows). */
    float *x, *xn, *out;           /* [U, H] */
    float *big[6];                 /* [U, widest] */
    float *router;                 /* [U, E] */
    int *sel;                      /* [U, K] */
    float *sel_w;                  /* [U, K] */
    float *expert_out;             /* [U*K, H] */
    float *h_buf;                  /* [max(U*K, U), widest FFN] */
    float *shared_y, *shared_logit; /* [U, H], [U] */
    float *logits;                 /* [U, V] */
    int32_t *ids;                  /* [U] */
    int *rows, *entry;             /* [U*K] */
    float *weight;                 /* [U*K] */
    cuk_ffn_job *jobs;             /* [2 * (E + 1) + n_layers]: hits, misses, one per layer */
    /* Pinned host mirrors. */
    int32_t *h_ids;
    int *h_sel, *h_rows, *h_entry;
    float *h_sel_w, *h_weight;
    cuk_ffn_job *h_jobs;
    /* Host grouping (model/moe.c's moe_group) and per-layer bookkeeping. */
    int *count, *expert_ids, *first, *fill; /* [E], [E], [E + 1], [U] */
    int *miss;                               /* [E] positions in expert_ids of VRAM misses */
    int max_count;                           /* tokens of the layer's busiest expert (run_jobs) */
    cache_entry **pinned;                    /* [E] VRAM entries pinned for the layer */
    /* Timing: events on the compute stream, 6 per layer, read after each micro-batch. */
    cudaEvent_t *events;
    double *host_s; /* [n_layers] host time of routing in the current micro-batch */
    uint64_t base_fetches, base_hits, base_copied;
    double base_copy_s;
} cuda_session;

/* Records a failed CUDA call: FM_ERR_NOMEM for out-of-memory, FM_ERR_IO otherwise, the message
 * naming what was being done. */
fm_status cuda_fail(cudaError_t err, const char *what);
#define CUDA_TRY(call, what)                                                                                           \
    do {                                                                                                               \
        cudaError_t err_ = (call);                                                                                     \
        if (err_ != cudaSuccess) return cuda_fail(err_, what);                                                         \
    } while (0)

#endif

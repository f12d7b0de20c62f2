/* The CUDA backend as the model and session code see it. Plain C, no CUDA
 * types: built from the .c and .cu files of src/backend/cuda when flashmoe
 * is built with CUDA, from src/backend/cuda_stub.c otherwise.
 *
 * With CUDA the whole forward pass runs on the GPU: dense weights are copied
 * to VRAM at open; a checkpoint's experts too; a packed model's experts go
 * through a VRAM cache (a tier above the RAM cache of the expert store),
 * misses copied from host memory on their own stream while the shared expert
 * and the hits compute. Sessions keep their KV caches, conv and recurrent
 * state in VRAM. */
#ifndef FM_BACKEND_CUDA_BACKEND_H
#define FM_BACKEND_CUDA_BACKEND_H

#include "flashmoe.h"

#include <stddef.h>

struct fm_session;

/* 1 when this flashmoe was built with CUDA. */
int cuda_built(void);
/* Usable CUDA devices; 0 with the reason in why (no driver, no device, driver too old). */
int cuda_device_count(char *why, size_t why_size);

/* Uploads the model's weights to device opt->gpu_device and sets m->gpu.
 * FM_ERR_NOMEM when they do not fit (the message gives the sizes). */
fm_status cuda_model_open(fm_model *m, const fm_model_options *opt);
void cuda_model_close(fm_model *m); /* accepts m->gpu == NULL */
const char *cuda_model_device_name(const fm_model *m);
/* Bytes of VRAM the resident weights take, and the expert cache's budget. */
void cuda_model_vram(const fm_model *m, uint64_t *dense_bytes, uint64_t *cache_bytes);

fm_status cuda_session_init(struct fm_session *s);
void cuda_session_free(struct fm_session *s);
void cuda_session_reset(struct fm_session *s);
/* Grows the device KV caches to hold `needed` positions. */
fm_status cuda_session_reserve(struct fm_session *s, int needed);
/* The device address of a layer's state: which 0 = K cache or conv state, 1 = V cache or
 * recurrent state (for snapshots, model/session_state.c). */
void *cuda_session_state(struct fm_session *s, int layer, int which);
/* Copies bytes between host memory and the session's device memory (to_device: host → device). */
fm_status cuda_session_copy(struct fm_session *s, void *dst, const void *src, size_t bytes, int to_device);
/* forward_ubatch on the GPU (same contract, see model/session.h). */
fm_status cuda_forward_ubatch(struct fm_session *s, const int32_t *tokens, int n, int logit_row0, float *logits,
                              int capture_offset, int capture_total);
/* Adds the VRAM tier's counters since the session's last timing reset. */
void cuda_session_timing(const struct fm_session *s, fm_timing *out);
void cuda_session_reset_timing(struct fm_session *s);

#endif

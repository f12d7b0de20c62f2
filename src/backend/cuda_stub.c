/* The CUDA backend of a build without CUDA (nvcc was not found, or CUDA=0):
 * every entry point says so. */
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

#include <stdio.h>

int cuda_built(void) { return 0; }

int cuda_device_count(char *why, size_t why_size) {
    snprintf(why, why_size, "this flashmoe was built without CUDA (nvcc was not found at build time, or CUDA=0)");
    return 0;
}

fm_status cuda_model_open(fm_model *m, const fm_model_options *opt) {
    (void)m;
    (void)opt;
    return fm_error(FM_ERR_UNSUPPORTED,
                    "the cuda backend is not available: this flashmoe was built without CUDA (nvcc was not found at "
                    "build time, or CUDA=0)");
}

void cuda_model_close(fm_model *m) { (void)m; }
const char *cuda_model_device_name(const fm_model *m) {
    (void)m;
    return "";
}
void cuda_model_vram(const fm_model *m, uint64_t *dense_bytes, uint64_t *cache_bytes) {
    (void)m;
    *dense_bytes = *cache_bytes = 0;
}
fm_status cuda_session_init(struct fm_session *s) {
    (void)s;
    return fm_error(FM_ERR_UNSUPPORTED, "this flashmoe was built without CUDA");
}
void cuda_session_free(struct fm_session *s) { (void)s; }
void cuda_session_reset(struct fm_session *s) { (void)s; }
fm_status cuda_session_reserve(struct fm_session *s, int needed) {
    (void)s;
    (void)needed;
    return fm_error(FM_ERR_UNSUPPORTED, "this flashmoe was built without CUDA");
}
fm_status cuda_forward_ubatch(struct fm_session *s, const int32_t *tokens, int n, int logit_row0, float *logits,
                              int capture_offset, int capture_total) {
    (void)s, (void)tokens, (void)n, (void)logit_row0, (void)logits, (void)capture_offset, (void)capture_total;
    return fm_error(FM_ERR_UNSUPPORTED, "this flashmoe was built without CUDA");
}
void *cuda_session_state(struct fm_session *s, int layer, int which) {
    (void)s, (void)layer, (void)which;
    return NULL;
}
fm_status cuda_session_copy(struct fm_session *s, void *dst, const void *src, size_t bytes, int to_device) {
    (void)s, (void)dst, (void)src, (void)bytes, (void)to_device;
    return fm_error(FM_ERR_UNSUPPORTED, "this flashmoe was built without CUDA");
}
void cuda_session_timing(const struct fm_session *s, fm_timing *out) { (void)s, (void)out; }
void cuda_session_reset_timing(struct fm_session *s) { (void)s; }

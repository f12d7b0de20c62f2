/* A session on the GPU: device state (KV caches, conv and recurrent state),
 * scratch, pinned host mirrors, streams and timing events. */
#include "backend/cuda/cuda_internal.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define EVENTS_PER_LAYER 6

static int max_int(int a, int b) { return a > b ? a : b; }

static fm_status dev_alloc(void *ptr, size_t bytes, const char *what) {
    CUDA_TRY(cudaMalloc((void **)ptr, bytes ? bytes : 1), what);
    return FM_OK;
}
static fm_status host_alloc(void *ptr, size_t bytes) {
    CUDA_TRY(cudaMallocHost((void **)ptr, bytes ? bytes : 1), "allocating pinned host memory");
    return FM_OK;
}

fm_status cuda_session_init(fm_session *s) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    cuda_session *q = s->gpu = calloc(1, sizeof *q);
    if (!q) return fm_error(FM_ERR_NOMEM, "out of memory");
    CUDA_TRY(cudaSetDevice(m->gpu->device), "selecting the GPU");
    const int L = c->n_layers, H = c->hidden_size, U = q->ubatch = s->ubatch;
    const size_t E = (size_t)max_int(c->n_experts, 1), K = (size_t)max_int(c->n_experts_used, 1);
    const size_t pairs = (size_t)U * K, widest = (size_t)session_widest_row(c);
    const size_t n_jobs = 2 * (E + 1) + (size_t)L; /* see cuda_forward.c's layer_slot */
    const size_t ffn = (size_t)max_int(c->expert_ffn, max_int(c->shared_ffn, c->dense_ffn));
    fm_status st;

    CUDA_TRY(cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking), "creating a stream");
    CUDA_TRY(cudaStreamCreateWithFlags(&q->copy, cudaStreamNonBlocking), "creating a stream");
    CUDA_TRY(cudaEventCreate(&q->copy_end), "creating an event");
    if (!(q->events = calloc((size_t)L * EVENTS_PER_LAYER, sizeof *q->events)) ||
        !(q->copy_events = calloc(2 * (size_t)L, sizeof *q->copy_events)) || !(q->copied = calloc((size_t)L, 1)))
        return fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L * EVENTS_PER_LAYER; i++) CUDA_TRY(cudaEventCreate(&q->events[i]), "creating an event");
    for (int i = 0; i < 2 * L; i++) CUDA_TRY(cudaEventCreate(&q->copy_events[i]), "creating an event");
    if (m->pack) {
        const char *env = getenv("FM_CUDA_PAGEABLE");
        q->pageable = env && !strcmp(env, "1");
        for (int k = 0; k < CUDA_STAGES && !q->pageable; k++) {
            CUDA_TRY(cudaEventCreateWithFlags(&q->stage_done[k], cudaEventDisableTiming), "creating an event");
            if ((st = host_alloc(&q->stage[k], m->pack->layout.expert_bytes))) return st;
        }
    }

    q->k_cache = calloc((size_t)L, sizeof *q->k_cache);
    q->v_cache = calloc((size_t)L, sizeof *q->v_cache);
    q->conv_state = calloc((size_t)L, sizeof *q->conv_state);
    q->recurrent = calloc((size_t)L, sizeof *q->recurrent);
    q->count = malloc(E * sizeof(int));
    q->expert_ids = malloc(E * sizeof(int));
    q->first = malloc((E + 1) * sizeof(int));
    q->fill = malloc((size_t)U * sizeof(int));
    q->miss = malloc(E * sizeof(int));
    q->pinned = malloc(E * sizeof *q->pinned);
    q->host_s = malloc((size_t)L * sizeof *q->host_s);
    if (!q->k_cache || !q->v_cache || !q->conv_state || !q->recurrent || !q->count || !q->expert_ids || !q->first ||
        !q->fill || !q->miss || !q->pinned || !q->host_s)
        return fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L; i++) {
        if (c->layer_full_attention[i]) continue;
        if ((st = dev_alloc(&q->conv_state[i], session_conv_state_floats(c) * sizeof(float), "allocating conv state")) ||
            (st = dev_alloc(&q->recurrent[i], session_recurrent_floats(c) * sizeof(float), "allocating recurrent state")))
            return st;
    }
    const char *what = "allocating session scratch";
    if ((st = dev_alloc(&q->x, (size_t)U * H * sizeof(float), what)) ||
        (st = dev_alloc(&q->xn, (size_t)U * H * sizeof(float), what)) ||
        (st = dev_alloc(&q->out, (size_t)U * H * sizeof(float), what)) ||
        (st = dev_alloc(&q->router, (size_t)U * E * sizeof(float), what)) ||
        (st = dev_alloc(&q->sel, pairs * sizeof(int), what)) ||
        (st = dev_alloc(&q->sel_w, pairs * sizeof(float), what)) ||
        (st = dev_alloc(&q->expert_out, pairs * H * sizeof(float), what)) ||
        (st = dev_alloc(&q->h_buf, (pairs > (size_t)U ? pairs : (size_t)U) * ffn * sizeof(float), what)) ||
        (st = dev_alloc(&q->shared_y, (size_t)U * H * sizeof(float), what)) ||
        (st = dev_alloc(&q->shared_logit, (size_t)U * sizeof(float), what)) ||
        (st = dev_alloc(&q->logits, (size_t)U * c->vocab_size * sizeof(float), what)) ||
        (st = dev_alloc(&q->ids, (size_t)U * sizeof(int32_t), what)) ||
        (st = dev_alloc(&q->rows, pairs * sizeof(int), what)) ||
        (st = dev_alloc(&q->entry, pairs * sizeof(int), what)) ||
        (st = dev_alloc(&q->weight, pairs * sizeof(float), what)) ||
        (st = dev_alloc(&q->jobs, n_jobs * sizeof(cuk_ffn_job), what)))
        return st;
    for (int i = 0; i < 6; i++)
        if ((st = dev_alloc(&q->big[i], (size_t)U * widest * sizeof(float), what))) return st;
    if ((st = host_alloc(&q->h_ids, (size_t)U * sizeof(int32_t))) || (st = host_alloc(&q->h_sel, pairs * sizeof(int))) ||
        (st = host_alloc(&q->h_rows, pairs * sizeof(int))) || (st = host_alloc(&q->h_entry, pairs * sizeof(int))) ||
        (st = host_alloc(&q->h_sel_w, pairs * sizeof(float))) ||
        (st = host_alloc(&q->h_weight, pairs * sizeof(float))) ||
        (st = host_alloc(&q->h_jobs, n_jobs * sizeof(cuk_ffn_job))))
        return st;
    cuda_session_reset(s);
    cuda_session_reset_timing(s);
    return FM_OK;
}

void cuda_session_free(fm_session *s) {
    cuda_session *q = s->gpu;
    if (!q) return;
    const fm_config *c = &s->model->cfg;
    cudaSetDevice(s->model->gpu->device);
    if (q->stream) cudaStreamSynchronize(q->stream);
    if (q->copy) cudaStreamSynchronize(q->copy);
    for (int i = 0; i < c->n_layers; i++) {
        if (q->k_cache) cudaFree(q->k_cache[i]);
        if (q->v_cache) cudaFree(q->v_cache[i]);
        if (q->conv_state) cudaFree(q->conv_state[i]);
        if (q->recurrent) cudaFree(q->recurrent[i]);
    }
    free(q->k_cache);
    free(q->v_cache);
    free(q->conv_state);
    free(q->recurrent);
    void *dev[] = {q->x,   q->xn,      q->out,          q->router, q->sel,    q->sel_w, q->expert_out, q->h_buf,
                   q->shared_y, q->shared_logit, q->logits, q->ids, q->rows, q->entry, q->weight, q->jobs,
                   q->big[0], q->big[1], q->big[2], q->big[3], q->big[4], q->big[5]};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) cudaFree(dev[i]);
    void *host[] = {q->h_ids, q->h_sel, q->h_rows, q->h_entry, q->h_sel_w, q->h_weight, q->h_jobs};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) cudaFreeHost(host[i]);
    for (int i = 0; q->events && i < c->n_layers * EVENTS_PER_LAYER; i++)
        if (q->events[i]) cudaEventDestroy(q->events[i]);
    for (int i = 0; q->copy_events && i < 2 * c->n_layers; i++)
        if (q->copy_events[i]) cudaEventDestroy(q->copy_events[i]);
    for (int k = 0; k < CUDA_STAGES; k++) {
        cudaFreeHost(q->stage[k]);
        if (q->stage_done[k]) cudaEventDestroy(q->stage_done[k]);
    }
    free(q->events);
    free(q->copy_events);
    free(q->copied);
    if (q->copy_end) cudaEventDestroy(q->copy_end);
    if (q->stream) cudaStreamDestroy(q->stream);
    if (q->copy) cudaStreamDestroy(q->copy);
    free(q->count);
    free(q->expert_ids);
    free(q->first);
    free(q->fill);
    free(q->miss);
    free(q->pinned);
    free(q->host_s);
    free(q);
    s->gpu = NULL;
}

void cuda_session_reset(fm_session *s) {
    cuda_session *q = s->gpu;
    const fm_config *c = &s->model->cfg;
    cudaSetDevice(s->model->gpu->device);
    for (int i = 0; i < c->n_layers; i++) {
        if (c->layer_full_attention[i]) continue;
        cudaMemsetAsync(q->conv_state[i], 0, session_conv_state_floats(c) * sizeof(float), q->stream);
        cudaMemsetAsync(q->recurrent[i], 0, session_recurrent_floats(c) * sizeof(float), q->stream);
    }
    cudaStreamSynchronize(q->stream);
}

void *cuda_session_state(fm_session *s, int layer, int which) {
    cuda_session *q = s->gpu;
    if (s->model->cfg.layer_full_attention[layer]) return which ? q->v_cache[layer] : q->k_cache[layer];
    return which ? q->recurrent[layer] : q->conv_state[layer];
}

fm_status cuda_session_copy(fm_session *s, void *dst, const void *src, size_t bytes, int to_device) {
    CUDA_TRY(cudaSetDevice(s->model->gpu->device), "selecting the GPU");
    CUDA_TRY(cudaStreamSynchronize(s->gpu->stream), "waiting for the GPU");
    CUDA_TRY(cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost),
             "copying session state");
    return FM_OK;
}

fm_status cuda_session_reserve(fm_session *s, int needed) {
    cuda_session *q = s->gpu;
    const fm_config *c = &s->model->cfg;
    if (needed <= q->kv_capacity) return FM_OK;
    const int cap = session_kv_grown(s, q->kv_capacity, needed);
    const size_t row = (size_t)c->n_kv_heads * c->head_dim * sizeof(float);
    CUDA_TRY(cudaSetDevice(s->model->gpu->device), "selecting the GPU");
    CUDA_TRY(cudaStreamSynchronize(q->stream), "waiting for the GPU");
    for (int i = 0; i < c->n_layers; i++) {
        if (!c->layer_full_attention[i]) continue;
        float **caches[2] = {&q->k_cache[i], &q->v_cache[i]};
        for (int j = 0; j < 2; j++) {
            float *grown;
            cudaError_t err = cudaMalloc((void **)&grown, (size_t)cap * row);
            if (err != cudaSuccess) {
                cudaGetLastError();
                return fm_error(err == cudaErrorMemoryAllocation ? FM_ERR_NOMEM : FM_ERR_IO,
                                "CUDA: cannot grow the KV cache to %d tokens (%.2f GB per layer): %s", cap,
                                2.0 * cap * row / 1e9, cudaGetErrorString(err));
            }
            if (*caches[j]) {
                CUDA_TRY(cudaMemcpy(grown, *caches[j], (size_t)q->kv_capacity * row, cudaMemcpyDeviceToDevice),
                         "growing the KV cache");
                cudaFree(*caches[j]);
            }
            *caches[j] = grown;
        }
    }
    q->kv_capacity = cap;
    return FM_OK;
}

void cuda_session_timing(const fm_session *s, fm_timing *out) {
    const cuda_session *q = s->gpu;
    const cuda_model *g = s->model->gpu;
    out->vram_lookups = g->vram_fetches - q->base_fetches;
    out->vram_hits = g->vram_hits - q->base_hits;
    out->bytes_copied = g->bytes_copied - q->base_copied;
    out->copy_s = g->copy_s - q->base_copy_s;
}

void cuda_session_reset_timing(fm_session *s) {
    cuda_session *q = s->gpu;
    const cuda_model *g = s->model->gpu;
    q->base_fetches = g->vram_fetches;
    q->base_hits = g->vram_hits;
    q->base_copied = g->bytes_copied;
    q->base_copy_s = g->copy_s;
}

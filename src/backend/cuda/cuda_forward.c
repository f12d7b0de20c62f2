/* One micro-batch through the model on the GPU: model/forward.c's residual
 * loop with the blocks of attention.c, deltanet.c and moe.c, each step a
 * kernel on the session's compute stream.
 *
 * The host takes part once per MoE layer: it needs the router's choice to
 * find the experts. The shared expert is enqueued before the host waits, so
 * it runs while the host groups the tokens by expert and looks the experts
 * up. Packed models: experts found in the VRAM tier compute at once; misses
 * come from the expert store (RAM cache or SSD), are copied to VRAM slots on
 * the copy stream, and compute when their copies are done. When a layer's
 * misses outnumber the free slots, they run in rounds. */
#include "backend/cuda/cuda_internal.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/pool.h"
#include "store/expert_store.h"

#include <math.h>
#include <string.h>

enum { EV_START, EV_NORMED, EV_MIXED, EV_POSTNORM, EV_ROUTED, EV_DONE, EV_COUNT };

static void record(cuda_session *q, int layer, int k) { cudaEventRecord(q->events[layer * EV_COUNT + k], q->stream); }

static double elapsed(cuda_session *q, int layer, int from, int to) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, q->events[layer * EV_COUNT + from], q->events[layer * EV_COUNT + to]) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return ms / 1e3;
}

static void attention(fm_session *s, int layer, int n) {
    const fm_config *c = &s->model->cfg;
    const fm_layer *d = &s->model->gpu->layers[layer];
    cuda_session *q = s->gpu;
    cudaStream_t st = q->stream;
    const int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, q_width = nh * hd, kv_width = nkv * hd;
    const float *inv_freq = s->model->gpu->rope_inv_freq;
    float *qg = q->big[0], *qh = q->big[1], *gate = q->big[2], *att = q->big[3];
    float *kc = q->k_cache[layer] + (size_t)s->pos * kv_width, *vc = q->v_cache[layer] + (size_t)s->pos * kv_width;
    cuk_matmul(st, qg, q->xn, n, &d->q);
    cuk_matmul(st, kc, q->xn, n, &d->k); /* new keys and values go straight into the cache */
    cuk_matmul(st, vc, q->xn, n, &d->v);
    cuk_split_q_gate(st, qh, gate, qg, n, nh, hd, c->attn_output_gate);
    cuk_norm_rope(st, qh, n, nh, q_width, hd, d->q_norm, c->rms_norm_eps, c->rotary_dim / 2, inv_freq, s->pos);
    cuk_norm_rope(st, kc, n, nkv, kv_width, hd, d->k_norm, c->rms_norm_eps, c->rotary_dim / 2, inv_freq, s->pos);
    cuk_attention(st, att, qh, c->attn_output_gate ? gate : NULL, q->k_cache[layer], q->v_cache[layer], n, s->pos, nh,
                  nkv, hd, c->sliding_window, 1.0f / sqrtf((float)hd));
    cuk_matmul(st, q->out, att, n, &d->o);
}

static void deltanet(fm_session *s, int layer, int n) {
    const fm_config *c = &s->model->cfg;
    const fm_layer *d = &s->model->gpu->layers[layer];
    cuda_session *q = s->gpu;
    cudaStream_t st = q->stream;
    const int nk = c->lin_n_k_heads, nv = c->lin_n_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const int conv_dim = fm_config_conv_dim(c);
    float *mixed = q->big[0], *z = q->big[1], *conv = q->big[2], *core = q->big[3], *b = q->big[4], *a = q->big[5];
    if (d->in_qkvz.data) {
        float *p = conv, *ba = core; /* free until the conv and the recurrence run */
        cuk_matmul(st, p, q->xn, n, &d->in_qkvz);
        cuk_matmul(st, ba, q->xn, n, &d->in_ba);
        cuk_regroup_qkvz(st, mixed, z, b, a, p, ba, n, nk, nv, dk, dv);
    } else {
        cuk_matmul(st, mixed, q->xn, n, &d->in_qkv);
        cuk_matmul(st, z, q->xn, n, &d->in_z);
        cuk_matmul(st, b, q->xn, n, &d->in_b);
        cuk_matmul(st, a, q->xn, n, &d->in_a);
    }
    cuk_conv_silu(st, conv, mixed, q->conv_state[layer], d->conv, n, conv_dim, c->lin_conv_kernel);
    cuk_deltanet_prep(st, conv, b, a, d->neg_exp_a, d->dt_bias, n, nk, nv, dk, conv_dim);
    cuk_deltanet_recurrence(st, core, conv, b, a, q->recurrent[layer], n, nk, nv, dk, dv, conv_dim);
    cuk_gated_rmsnorm(st, core, z, d->lin_norm, n, nv, dv, c->rms_norm_eps);
    cuk_matmul(st, q->out, core, n, &d->out_proj);
}

/* Enqueues the jobs h_jobs[at .. at + n_jobs) (copied to the device first). max_count bounds
 * their counts and sets the kernels' token tile, which decides their rounding: the routed experts
 * of a layer are launched with the layer's largest count however they are split between launches
 * (hits, rounds of misses), so the split does not change the result. */
static void run_jobs(cuda_session *q, float *y, const float *x, const int *rows, int at, int n_jobs, int max_count,
                     int F, int H) {
    if (!n_jobs || !max_count) return;
    cudaMemcpyAsync(q->jobs + at, q->h_jobs + at, (size_t)n_jobs * sizeof *q->jobs, cudaMemcpyHostToDevice, q->stream);
    cuk_ffn_grouped(q->stream, y, q->h_buf, x, rows, q->jobs + at, n_jobs, max_count, F, H);
}

static cuk_ffn_job job(const fm_ffn *f, int first, int count) {
    return (cuk_ffn_job){.gate = f->gate, .up = f->up, .down = f->down, .first = first, .count = count};
}

/* Per-layer job slots: [0, E] hits, [E+1, 2E+1] misses, then one per layer
 * (dense or shared FFN), so no pinned slot is rewritten before its copy ran. */
static int layer_slot(const fm_config *c, int layer) { return 2 * (c->n_experts + 1) + layer; }

static void unpin(cuda_session *q, int *n_pinned) {
    for (int i = 0; i < *n_pinned; i++) q->pinned[i]->pins--;
    *n_pinned = 0;
}

/* Copies one expert from the store's memory (valid until the next store_next) to its VRAM slot on
 * the copy stream. By default through a pinned staging buffer filled by all threads, so the DMA runs
 * at pinned speed and the store's memory is free on return; with FM_CUDA_PAGEABLE=1 straight from
 * pageable memory (the driver stages it, and also returns once it has). */
static cudaError_t copy_expert(cuda_session *q, void *dst, const void *src, size_t bytes) {
    if (q->pageable) return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, q->copy);
    const int k = q->stage_next;
    q->stage_next = (k + 1) % CUDA_STAGES;
    cudaError_t err = cudaEventSynchronize(q->stage_done[k]); /* its last DMA is done */
    if (err != cudaSuccess) return err;
    char *stage = q->stage[k];
    const char *from = src;
    const size_t chunk = 256 << 10;
    const long n_chunks = (long)((bytes + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) num_threads(pool_threads()) /* -t, on whichever thread this runs */
    for (long i = 0; i < n_chunks; i++) {
        size_t at = (size_t)i * chunk, len = bytes - at < chunk ? bytes - at : chunk;
        memcpy(stage + at, from + at, len);
    }
    if ((err = cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, q->copy)) != cudaSuccess) return err;
    return cudaEventRecord(q->stage_done[k], q->copy);
}

/* Routed experts of a packed model through the VRAM tier. */
static fm_status packed_experts(fm_session *s, int layer, int n_ids) {
    fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    cuda_model *g = m->gpu;
    cuda_session *q = s->gpu;
    const pack_expert_layout *lay = &m->pack->layout;
    const int E = c->n_experts, F = c->expert_ffn, H = c->hidden_size, miss_at = E + 1;
    int n_hit = 0, n_miss = 0, n_pinned = 0;
    fm_ffn f;
    for (int j = 0; j < n_ids; j++) {
        const int count = q->first[j + 1] - q->first[j];
        cache_entry *e = cache_find(g->vram, layer * E + q->expert_ids[j]);
        g->vram_fetches++;
        if (!e) {
            q->miss[n_miss++] = j;
            continue;
        }
        g->vram_hits++;
        cache_touch(g->vram, e);
        e->pins++;
        q->pinned[n_pinned++] = e;
        pack_expert_view(lay, e->data, &f);
        q->h_jobs[n_hit++] = job(&f, q->first[j], count);
    }
    run_jobs(q, q->expert_out, q->xn, q->rows, 0, n_hit, q->max_count, F, H); /* overlaps with the copies below */
    if (!n_miss) {
        unpin(q, &n_pinned);
        return FM_OK;
    }

    int *miss_ids = q->count; /* free after grouping */
    for (int k = 0; k < n_miss; k++) miss_ids[k] = q->expert_ids[q->miss[k]];
    fm_status st = store_begin(m->store, layer, miss_ids, n_miss);
    int round = 0;
    for (; st == FM_OK;) {
        int slot;
        const void *data;
        if ((st = store_next(m->store, &slot, &data)) != FM_OK || slot < 0) break;
        cache_entry *e = cache_acquire(g->vram);
        if (!e) { /* every slot holds an expert of this layer: run this round, then reuse them */
            cudaEventRecord(q->copy_end, q->copy);
            cudaStreamWaitEvent(q->stream, q->copy_end, 0);
            run_jobs(q, q->expert_out, q->xn, q->rows, miss_at, round, q->max_count, F, H);
            round = 0;
            CUDA_TRY(cudaStreamSynchronize(q->stream), "running experts");
            unpin(q, &n_pinned);
            if (!(e = cache_acquire(g->vram))) {
                st = fm_error(FM_ERR_NOMEM, "the VRAM expert cache has no free slot");
                break;
            }
        }
        if (!q->copied[layer]) {
            q->copied[layer] = 1;
            cudaEventRecord(q->copy_events[2 * layer], q->copy);
        }
        cudaError_t err = copy_expert(q, e->data, data, lay->expert_bytes);
        if (err != cudaSuccess) {
            cache_discard(g->vram, e);
            st = cuda_fail(err, "copying an expert to the GPU");
            break;
        }
        g->bytes_copied += lay->expert_bytes;
        const int j = q->miss[slot];
        cache_insert(g->vram, e, layer * E + q->expert_ids[j]);
        q->pinned[n_pinned++] = e;
        pack_expert_view(lay, e->data, &f);
        q->h_jobs[miss_at + round++] = job(&f, q->first[j], q->first[j + 1] - q->first[j]);
    }
    if (q->copied[layer]) cudaEventRecord(q->copy_events[2 * layer + 1], q->copy);
    if (st == FM_OK) {
        cudaEventRecord(q->copy_end, q->copy);
        cudaStreamWaitEvent(q->stream, q->copy_end, 0);
        run_jobs(q, q->expert_out, q->xn, q->rows, miss_at, round, q->max_count, F, H);
    } else {
        cudaStreamSynchronize(q->copy);
    }
    unpin(q, &n_pinned);
    return st;
}

static fm_status moe(fm_session *s, int layer, int n, double *host_s) {
    fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *d = &m->gpu->layers[layer];
    cuda_session *q = s->gpu;
    cudaStream_t st = q->stream;
    const int H = c->hidden_size, E = c->n_experts, K = c->n_experts_used;
    const int own = layer_slot(c, layer);
    if (!c->layer_moe[layer]) {
        record(q, layer, EV_ROUTED);
        q->h_jobs[own] = job(&d->dense, 0, n);
        run_jobs(q, q->out, q->xn, NULL, own, 1, n, c->dense_ffn, H);
        return FM_OK;
    }
    cuk_matmul(st, q->router, q->xn, n, &d->router);
    cuk_route(st, q->sel, q->sel_w, q->router, n, E, K, c->router_renormalize);
    cudaMemcpyAsync(q->h_sel, q->sel, (size_t)n * K * sizeof(int), cudaMemcpyDeviceToHost, st);
    cudaMemcpyAsync(q->h_sel_w, q->sel_w, (size_t)n * K * sizeof(float), cudaMemcpyDeviceToHost, st);
    record(q, layer, EV_ROUTED);
    if (c->has_shared_expert) { /* runs while the host waits and groups */
        q->h_jobs[own] = job(&d->shared, 0, n);
        run_jobs(q, q->shared_y, q->xn, NULL, own, 1, n, c->shared_ffn, H);
        cuk_matmul(st, q->shared_logit, q->xn, n, &d->shared_gate);
    }
    CUDA_TRY(cudaEventSynchronize(q->events[layer * EV_COUNT + EV_ROUTED]), "routing");
    double t0 = fm_seconds();
    const int n_ids = moe_group(q->h_sel, q->h_sel_w, n, E, K, q->count, q->expert_ids, q->first, q->h_rows,
                                q->h_weight);
    /* Each token's entries in expert index order: the combine sums them as the CPU does. */
    memset(q->fill, 0, (size_t)n * sizeof *q->fill);
    q->max_count = 0;
    for (int j = 0; j < n_ids; j++)
        if (q->first[j + 1] - q->first[j] > q->max_count) q->max_count = q->first[j + 1] - q->first[j];
    for (int j = 0; j < n_ids; j++)
        for (int i = q->first[j]; i < q->first[j + 1]; i++) {
            const int t = q->h_rows[i];
            q->h_entry[t * K + q->fill[t]++] = i;
        }
    const size_t pairs = (size_t)n * K;
    cudaMemcpyAsync(q->rows, q->h_rows, pairs * sizeof(int), cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(q->entry, q->h_entry, pairs * sizeof(int), cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(q->weight, q->h_weight, pairs * sizeof(float), cudaMemcpyHostToDevice, st);
    *host_s += fm_seconds() - t0;

    if (m->pack) {
        fm_status status = packed_experts(s, layer, n_ids);
        if (status != FM_OK) return status;
    } else {
        for (int j = 0; j < n_ids; j++)
            q->h_jobs[j] = job(&d->experts[q->expert_ids[j]], q->first[j], q->first[j + 1] - q->first[j]);
        run_jobs(q, q->expert_out, q->xn, q->rows, 0, n_ids, q->max_count, c->expert_ffn, H);
    }
    const int shared = c->has_shared_expert;
    cuk_moe_combine(st, q->out, q->expert_out, q->entry, q->weight, n, K, H, shared ? q->shared_y : NULL,
                    shared ? q->shared_logit : NULL);
    return FM_OK;
}

static fm_status capture(fm_session *s, int index, const float *x, int n, int offset, int total) {
    if (!s->capture_hidden) return FM_OK;
    const int H = s->model->cfg.hidden_size;
    CUDA_TRY(cudaMemcpyAsync(s->capture_hidden + ((size_t)index * total + offset) * H, x, (size_t)n * H * sizeof *x,
                             cudaMemcpyDeviceToHost, s->gpu->stream),
             "copying hidden states");
    CUDA_TRY(cudaStreamSynchronize(s->gpu->stream), "copying hidden states");
    return FM_OK;
}

fm_status cuda_forward_ubatch(fm_session *s, const int32_t *tokens, int n, int logit_row0, float *logits,
                              int capture_offset, int capture_total) {
    fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    cuda_model *g = m->gpu;
    cuda_session *q = s->gpu;
    cudaStream_t st = q->stream;
    const int H = c->hidden_size;
    const float eps = c->rms_norm_eps;
    fm_status status = FM_OK;
    CUDA_TRY(cudaSetDevice(g->device), "selecting the GPU");

    double t0 = fm_seconds();
    memcpy(q->h_ids, tokens, (size_t)n * sizeof *tokens);
    cudaMemcpyAsync(q->ids, q->h_ids, (size_t)n * sizeof *tokens, cudaMemcpyHostToDevice, st);
    cuk_mat_rows(st, q->x, &g->embed, q->ids, n);
    if ((status = capture(s, 0, q->x, n, capture_offset, capture_total))) return status;
    s->head_s += fm_seconds() - t0;

    double *host_s = q->host_s;
    memset(host_s, 0, (size_t)c->n_layers * sizeof *host_s);
    memset(q->copied, 0, (size_t)c->n_layers);
    for (int i = 0; i < c->n_layers && status == FM_OK; i++) {
        if ((status = session_check_cancel(s))) break;
        const fm_layer *d = &g->layers[i];
        double wait0 = m->store ? store_get_stats(m->store).io_wait_s : 0;
        record(q, i, EV_START);
        cuk_rmsnorm(st, q->xn, q->x, d->input_norm, n, H, eps);
        record(q, i, EV_NORMED);
        if (c->layer_full_attention[i])
            attention(s, i, n);
        else
            deltanet(s, i, n);
        record(q, i, EV_MIXED);
        cuk_add(st, q->x, q->out, (size_t)n * H);
        cuk_rmsnorm(st, q->xn, q->x, d->post_norm, n, H, eps);
        record(q, i, EV_POSTNORM);
        status = moe(s, i, n, &host_s[i]);
        cuk_add(st, q->x, q->out, (size_t)n * H);
        record(q, i, EV_DONE);
        if (m->store) s->timing[i].expert_io_wait_s += store_get_stats(m->store).io_wait_s - wait0;
        if (status == FM_OK && i + 1 < c->n_layers) status = capture(s, i + 1, q->x, n, capture_offset, capture_total);
    }
    if (status == FM_OK) {
        t0 = fm_seconds();
        /* Final norm over the rows that need logits (all rows when capturing). */
        const int first = s->capture_hidden ? 0 : logit_row0;
        if (first < n)
            cuk_rmsnorm(st, q->xn + (size_t)first * H, q->x + (size_t)first * H, g->final_norm, n - first, H, eps);
        status = capture(s, c->n_layers, q->xn, n, capture_offset, capture_total);
        if (status == FM_OK && logits && logit_row0 < n) {
            cuk_matmul(st, q->logits, q->xn + (size_t)logit_row0 * H, n - logit_row0, &g->lm_head);
            cudaError_t err = cudaMemcpyAsync(logits, q->logits, (size_t)(n - logit_row0) * c->vocab_size * sizeof(float),
                                              cudaMemcpyDeviceToHost, st);
            if (err != cudaSuccess) status = cuda_fail(err, "copying logits");
        }
    }
    cudaError_t err = cudaStreamSynchronize(st);
    if (err == cudaSuccess) err = cudaGetLastError();
    if (status == FM_OK && err != cudaSuccess) status = cuda_fail(err, "running the forward pass");
    if (status == FM_OK) {
        s->head_s += fm_seconds() - t0;
        for (int i = 0; i < c->n_layers; i++) {
            fm_layer_timing *tm = &s->timing[i];
            tm->other_s += elapsed(q, i, EV_START, EV_NORMED) + elapsed(q, i, EV_MIXED, EV_POSTNORM);
            tm->attention_s += elapsed(q, i, EV_NORMED, EV_MIXED);
            tm->routing_s += elapsed(q, i, EV_POSTNORM, EV_ROUTED) + host_s[i];
            tm->expert_compute_s += elapsed(q, i, EV_ROUTED, EV_DONE);
            float ms = 0;
            if (q->copied[i] && cudaEventElapsedTime(&ms, q->copy_events[2 * i], q->copy_events[2 * i + 1]) == cudaSuccess)
                g->copy_s += ms / 1e3;
        }
        s->pos += n;
    }
    return status;
}

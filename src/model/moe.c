/* The sparse MoE block: router softmax → top-k (→ renormalise) → each chosen
 * expert once on the micro-batch's tokens that picked it → weighted sum in
 * expert index order (as transformers accumulates), plus the sigmoid-gated
 * shared expert; or the dense SwiGLU MLP on non-MoE layers.
 * Reads scratch.xn [n, H], writes scratch.out [n, H].
 *
 * Routed experts come from the layer's views into the checkpoint, or, for a
 * packed model, from the expert store: all reads of the layer are issued at
 * once, the shared expert is computed while they are in flight, and each
 * routed expert is computed as its read completes. Outputs are combined in
 * expert index order afterwards, so results do not depend on read order. */
#include "backend/cpu/kernels.h"
#include "core/clock.h"
#include "model/session.h"
#include "pack/pack_format.h"
#include "store/expert_store.h"

#include <string.h>

/* out[n, H] = down · (silu(gate·x) * (up·x)); g and u are [n, F] scratch. */
static void ffn_forward(const fm_ffn *f, const float *x, int n, float *g, float *u, float *out) {
    const int F = f->gate.rows;
    cpu_matmul(g, x, n, &f->gate);
    cpu_matmul(u, x, n, &f->up);
    for (size_t i = 0; i < (size_t)n * F; i++) g[i] = cpu_silu(g[i]) * u[i];
    cpu_matmul(out, g, n, &f->down);
}

/* Indices of the k largest probabilities, largest first; ties go to the lower index. */
static void top_k(const float *p, int E, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= idx[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        idx[j] = best;
    }
}

static void route(fm_session *s, const fm_layer *l, int n) {
    const fm_config *c = &s->model->cfg;
    fm_scratch *w = &s->scratch;
    const int E = c->n_experts, K = c->n_experts_used;
    cpu_matmul(w->router, w->xn, n, &l->router);
    for (int t = 0; t < n; t++) {
        float *p = w->router + (size_t)t * E;
        int *sel = w->sel + (size_t)t * K;
        float *sw = w->sel_w + (size_t)t * K, sum = 0.0f;
        cpu_softmax(p, E);
        top_k(p, E, K, sel);
        for (int j = 0; j < K; j++) sum += (sw[j] = p[sel[j]]);
        if (c->router_renormalize)
            for (int j = 0; j < K; j++) sw[j] /= sum;
    }
}

int moe_group(const int *sel, const float *sel_w, int n, int E, int K, int *count, int *ids, int *first, int *rows,
              float *weight) {
    memset(count, 0, (size_t)E * sizeof *count);
    for (int i = 0; i < n * K; i++) count[sel[i]]++;
    int n_ids = 0, at = 0;
    for (int e = 0; e < E; e++) {
        if (!count[e]) continue;
        ids[n_ids] = e;
        first[n_ids++] = at;
        at += count[e];
        count[e] = first[n_ids - 1]; /* reused as the fill position */
    }
    first[n_ids] = at;
    for (int t = 0; t < n; t++) /* tokens ascending within each expert */
        for (int j = 0; j < K; j++) {
            int e = sel[t * K + j], pos = count[e]++;
            rows[pos] = t;
            weight[pos] = sel_w[t * K + j];
        }
    return n_ids;
}

static int group_by_expert(fm_session *s, int n) {
    const fm_config *c = &s->model->cfg;
    fm_scratch *w = &s->scratch;
    return moe_group(w->sel, w->sel_w, n, c->n_experts, c->n_experts_used, w->expert_count, w->expert_ids,
                     w->expert_first, w->expert_rows, w->expert_weight);
}

/* Runs expert j of the grouping on its rows; output into expert_out. */
static void run_expert(fm_session *s, const fm_ffn *f, int j) {
    fm_scratch *w = &s->scratch;
    const int H = s->model->cfg.hidden_size;
    const int first = w->expert_first[j], ne = w->expert_first[j + 1] - first;
    float *xe = w->big[0];
    for (int i = 0; i < ne; i++)
        memcpy(xe + (size_t)i * H, w->xn + (size_t)w->expert_rows[first + i] * H, (size_t)H * sizeof *xe);
    ffn_forward(f, xe, ne, w->big[1], w->big[2], w->expert_out + (size_t)first * H);
}

static fm_status run_streamed(fm_session *s, int layer, int n, int n_ids) {
    const fm_model *m = s->model;
    fm_scratch *w = &s->scratch;
    fm_status st = store_begin(m->store, layer, w->expert_ids, n_ids);
    if (st != FM_OK) return st;
    if (m->cfg.has_shared_expert) /* overlaps with the reads just issued */
        ffn_forward(&m->layers[layer].shared, w->xn, n, w->big[1], w->big[2], w->big[3]);
    for (;;) {
        int slot;
        const void *data;
        if ((st = store_next(m->store, &slot, &data)) != FM_OK) return st;
        if (slot < 0) return FM_OK;
        fm_ffn f;
        pack_expert_view(&m->pack->layout, data, &f);
        run_expert(s, &f, slot);
    }
}

/* ---- one token: all experts of the layer in two passes ---------------------- */

#define MAX_FUSED 64 /* FFNs (routed + shared) of one fused pass */

/* The FFNs f[0..nf) on the token xn in two passes over the pool: every gate
 * and up projection (one quantization of xn shared by all), SwiGLU, then every
 * down projection into out[j] (cpu_matmul_many; the same arithmetic as
 * ffn_forward on each). g and u hold the concatenated hidden rows. */
static void ffns_one_token(const fm_ffn *const *f, int nf, const float *xn, float *g, float *u, float *const *out) {
    cpu_product p[2 * MAX_FUSED] = {{0}}; /* zeroed: GCC -O2 cannot see that nf ≥ 1 fills what is read */
    if (nf < 1 || nf > MAX_FUSED) return;
    size_t at = 0;
    for (int j = 0; j < nf; j++) {
        p[2 * j] = (cpu_product){g + at, xn, &f[j]->gate, 1};
        p[2 * j + 1] = (cpu_product){u + at, xn, &f[j]->up, 1};
        at += (size_t)f[j]->gate.rows;
    }
    cpu_matmul_many(p, 2 * nf);
    for (size_t i = 0; i < at; i++) g[i] = cpu_silu(g[i]) * u[i];
    at = 0;
    for (int j = 0; j < nf; j++) {
        p[j] = (cpu_product){out[j], g + at, &f[j]->down, 1};
        at += (size_t)f[j]->gate.rows;
    }
    cpu_matmul_many(p, nf);
}

/* Hidden width of the layer's routed experts. */
static size_t expert_width(const fm_model *m, const fm_layer *l) {
    return m->pack ? (size_t)m->pack->layout.ffn : (size_t)l->experts[0].gate.rows;
}

/* Whether the fused pass fits this layer's experts (count and scratch). */
static int fused_fits(const fm_session *s, const fm_layer *l, int n_ids) {
    const fm_model *m = s->model;
    if (n_ids + 1 > MAX_FUSED || (m->store && n_ids > store_hold_max(m->store))) return 0;
    const size_t F = expert_width(m, l);
    const size_t Fs = m->cfg.has_shared_expert ? (size_t)l->shared.gate.rows : 0;
    return (size_t)n_ids * F + Fs <= s->big_size;
}

/* One token: the routed experts (and the shared one) through ffns_one_token.
 * With the store, when every expert was in the RAM cache, all are computed in
 * the same two passes (the batch is held, so every expert's memory stays
 * valid together); when reads are in flight, the shared expert runs first and
 * each routed expert as its read completes, so compute overlaps the disk. */
static fm_status moe_one_token(fm_session *s, int layer, int n_ids) {
    const fm_model *m = s->model;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int H = m->cfg.hidden_size, shared = m->cfg.has_shared_expert;
    fm_ffn views[MAX_FUSED];
    const fm_ffn *f[MAX_FUSED];
    float *out[MAX_FUSED];
    int nf = 0;
    if (shared) f[nf] = &l->shared, out[nf++] = w->big[3];
    if (m->store) {
        fm_status st = store_begin_held(m->store, layer, w->expert_ids, n_ids);
        if (st != FM_OK) return st;
        const int stream = !store_batch_all_hits(m->store);
        if (stream && nf) { /* overlaps with the reads just issued */
            ffns_one_token(f, nf, w->xn, w->big[1], w->big[2], out);
            nf = 0;
        }
        for (int k = 0; k < n_ids; k++) {
            int slot;
            const void *data;
            if ((st = store_next(m->store, &slot, &data)) != FM_OK) return st;
            pack_expert_view(&m->pack->layout, data, &views[slot]);
            if (stream) {
                const fm_ffn *fe = &views[slot];
                float *oe = w->expert_out + (size_t)slot * H;
                ffns_one_token(&fe, 1, w->xn, w->big[1], w->big[2], &oe);
            }
        }
        if (stream) return FM_OK;
        for (int j = 0; j < n_ids; j++) f[nf] = &views[j], out[nf++] = w->expert_out + (size_t)j * H;
    } else {
        for (int j = 0; j < n_ids; j++) f[nf] = &l->experts[w->expert_ids[j]], out[nf++] = w->expert_out + (size_t)j * H;
    }
    ffns_one_token(f, nf, w->xn, w->big[1], w->big[2], out);
    return FM_OK;
}

/* ---- several tokens, every expert at hand: waves of fused passes -------------- */

/* The routed experts of a micro-batch when all are at hand (a checkpoint's,
 * or all in the RAM cache): in waves of experts whose gathered tokens fit the
 * scratch, each wave's gate and up projections in one pass over the pool,
 * SwiGLU, and its down projections in another (cpu_matmul_many), instead of
 * three passes per expert. Same products as run_expert, so the same results.
 * With the store each wave is held (at most store_hold_max experts). */
static fm_status moe_tokens_fused(fm_session *s, int layer, int n_ids) {
    const fm_model *m = s->model;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int H = m->cfg.hidden_size;
    const size_t F = expert_width(m, l);
    const int max_wave = m->store ? (store_hold_max(m->store) < MAX_FUSED ? store_hold_max(m->store) : MAX_FUSED) : MAX_FUSED;
    fm_ffn views[MAX_FUSED];
    cpu_product p[2 * MAX_FUSED];
    for (int j0 = 0; j0 < n_ids;) {
        /* The wave: experts j0..j1 whose entries fit big[0] (inputs) and big[1], big[2] (hidden). */
        int j1 = j0;
        while (j1 < n_ids && j1 - j0 < max_wave) {
            const size_t rows = (size_t)(w->expert_first[j1 + 1] - w->expert_first[j0]);
            if (rows * (size_t)H > s->big_size || rows * F > s->big_size) break;
            j1++;
        }
        if (j1 == j0) return FM_ERR_NOMEM; /* one expert's tokens exceed the scratch: the caller's path instead */
        const int base = w->expert_first[j0];
        if (m->store) {
            fm_status st = store_begin_held(m->store, layer, w->expert_ids + j0, j1 - j0);
            for (int k = j0; k < j1 && st == FM_OK; k++) {
                int slot;
                const void *data;
                if ((st = store_next(m->store, &slot, &data)) == FM_OK)
                    pack_expert_view(&m->pack->layout, data, &views[slot]);
            }
            if (st != FM_OK) return st;
        }
        float *xe = w->big[0], *g = w->big[1], *u = w->big[2];
        for (int i = base; i < w->expert_first[j1]; i++)
            memcpy(xe + (size_t)(i - base) * H, w->xn + (size_t)w->expert_rows[i] * H, (size_t)H * sizeof *xe);
        const int nw = j1 - j0;
        for (int j = j0; j < j1; j++) {
            const fm_ffn *f = m->store ? &views[j - j0] : &l->experts[w->expert_ids[j]];
            const size_t at = (size_t)(w->expert_first[j] - base);
            const int ne = w->expert_first[j + 1] - w->expert_first[j];
            p[j - j0] = (cpu_product){g + at * F, xe + at * H, &f->gate, ne};
            p[nw + j - j0] = (cpu_product){u + at * F, xe + at * H, &f->up, ne};
        }
        cpu_matmul_many(p, 2 * nw);
        const size_t hidden = (size_t)(w->expert_first[j1] - base) * F;
        for (size_t i = 0; i < hidden; i++) g[i] = cpu_silu(g[i]) * u[i];
        for (int j = j0; j < j1; j++) {
            const fm_ffn *f = m->store ? &views[j - j0] : &l->experts[w->expert_ids[j]];
            const size_t at = (size_t)(w->expert_first[j] - base);
            p[j - j0] = (cpu_product){w->expert_out + (size_t)w->expert_first[j] * H, g + at * F, &f->down,
                                      w->expert_first[j + 1] - w->expert_first[j]};
        }
        cpu_matmul_many(p, nw);
        j0 = j1;
    }
    return FM_OK;
}

fm_status moe_forward(fm_session *s, int layer, int n) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    fm_layer_timing *tm = &s->timing[layer];
    const int H = c->hidden_size;
    double t0 = fm_seconds();

    if (!c->layer_moe[layer]) {
        ffn_forward(&l->dense, w->xn, n, w->big[1], w->big[2], w->out);
        tm->expert_compute_s += fm_seconds() - t0;
        return FM_OK;
    }
    route(s, l, n);
    int n_ids = group_by_expert(s, n);
    double t1 = fm_seconds();
    tm->routing_s += t1 - t0;

    if (n == 1 && fused_fits(s, l, n_ids)) {
        double wait0 = m->store ? store_get_stats(m->store).io_wait_s : 0.0;
        fm_status st = moe_one_token(s, layer, n_ids);
        double wait = m->store ? store_get_stats(m->store).io_wait_s - wait0 : 0.0;
        tm->expert_io_wait_s += wait;
        tm->expert_compute_s -= wait;
        if (st != FM_OK) return st;
    } else if (!m->store || store_all_cached(m->store, layer, w->expert_ids, n_ids)) {
        if (c->has_shared_expert) ffn_forward(&l->shared, w->xn, n, w->big[1], w->big[2], w->big[3]);
        fm_status st = moe_tokens_fused(s, layer, n_ids);
        if (st == FM_ERR_NOMEM && !m->store) { /* an expert's tokens did not fit the fused scratch */
            for (int j = 0; j < n_ids; j++) run_expert(s, &l->experts[w->expert_ids[j]], j);
            st = FM_OK;
        } else if (st == FM_ERR_NOMEM) {
            st = run_streamed(s, layer, n, n_ids);
        }
        if (st != FM_OK) return st;
    } else {
        double wait0 = store_get_stats(m->store).io_wait_s;
        fm_status st = run_streamed(s, layer, n, n_ids);
        double wait = store_get_stats(m->store).io_wait_s - wait0;
        tm->expert_io_wait_s += wait;
        tm->expert_compute_s -= wait;
        if (st != FM_OK) return st;
    }

    memset(w->out, 0, (size_t)n * H * sizeof *w->out);
    for (int j = 0; j < n_ids; j++)
        for (int i = w->expert_first[j]; i < w->expert_first[j + 1]; i++) {
            float *o = w->out + (size_t)w->expert_rows[i] * H;
            const float *y = w->expert_out + (size_t)i * H;
            const float weight = w->expert_weight[i];
            for (int d = 0; d < H; d++) o[d] += y[d] * weight;
        }
    if (c->has_shared_expert) {
        for (int t = 0; t < n; t++) {
            float gate = cpu_sigmoid(cpu_dot_row(&l->shared_gate, 0, w->xn + (size_t)t * H));
            float *o = w->out + (size_t)t * H;
            const float *y = w->big[3] + (size_t)t * H;
            for (int d = 0; d < H; d++) o[d] += gate * y[d];
        }
    }
    tm->expert_compute_s += fm_seconds() - t1;
    return FM_OK;
}

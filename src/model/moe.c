/* Sparse MoE block for a micro-batch: router softmax → top-k (→ renormalise),
 * each chosen expert runs once on all the tokens that picked it (so its
 * weights are read once per micro-batch), plus the sigmoid-gated shared
 * expert; or the dense SwiGLU MLP on non-MoE layers.
 * Reads scratch.xn [n, H], writes scratch.out [n, H]. */
#include "backend/cpu/kernels.h"
#include "model/session.h"

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

void moe_forward(fm_session *s, int layer, int n) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int H = c->hidden_size, E = c->n_experts, K = c->n_experts_used;
    float *xe = w->big[0], *g = w->big[1], *u = w->big[2], *ye = w->big[3];

    if (!c->layer_moe[layer]) {
        ffn_forward(&l->dense, w->xn, n, g, u, w->out);
        return;
    }
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

    memset(w->out, 0, (size_t)n * H * sizeof *w->out);
    /* Experts in index order, as transformers accumulates them. */
    int rows[FM_UBATCH];
    float weight[FM_UBATCH];
    for (int e = 0; e < E; e++) {
        int ne = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < K; j++)
                if (w->sel[t * K + j] == e) {
                    rows[ne] = t;
                    weight[ne++] = w->sel_w[t * K + j];
                }
        if (!ne) continue;
        for (int i = 0; i < ne; i++) memcpy(xe + (size_t)i * H, w->xn + (size_t)rows[i] * H, (size_t)H * sizeof *xe);
        ffn_forward(&l->experts[e], xe, ne, g, u, ye);
        for (int i = 0; i < ne; i++) {
            float *o = w->out + (size_t)rows[i] * H;
            const float *y = ye + (size_t)i * H;
            for (int d = 0; d < H; d++) o[d] += y[d] * weight[i];
        }
    }

    if (c->has_shared_expert) {
        ffn_forward(&l->shared, w->xn, n, g, u, ye);
        for (int t = 0; t < n; t++) {
            float gate = cpu_sigmoid(cpu_dot_row(&l->shared_gate, 0, w->xn + (size_t)t * H));
            float *o = w->out + (size_t)t * H;
            const float *y = ye + (size_t)t * H;
            for (int d = 0; d < H; d++) o[d] += gate * y[d];
        }
    }
}

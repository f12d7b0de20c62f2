/* Full (softmax) attention for a micro-batch: q/k/v projections, optional
 * per-head q/k RMSNorm, partial rotate-half RoPE, causal GQA attention over
 * the KV cache, optional sigmoid output gate (Qwen3.5 / Qwen3-Next), output
 * projection. Reads scratch.xn [n, H], writes scratch.out [n, H]. */
#include "backend/cpu/kernels.h"
#include "core/pool.h"
#include "model/session.h"

#include <string.h>

typedef struct {
    const fm_session *s;
    const fm_config *c;
    int layer;
    const float *q, *gate;
    float *att;
} attend_job;

/* Token t = item / heads, head h = item % heads: softmax(q·K/√d)·V over the causal window, gated. */
static void item_attend(void *arg, int item, int thread) {
    const attend_job *j = arg;
    const fm_session *s = j->s;
    const fm_config *c = j->c;
    const int nh = c->n_heads, hd = c->head_dim, group = nh / c->n_kv_heads;
    const int q_width = nh * hd, kv_width = c->n_kv_heads * hd;
    const int t = item / nh, h = item % nh;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *keys = s->k_cache[j->layer], *values = s->v_cache[j->layer];
    float *scores = s->scores + (size_t)thread * s->kv_capacity;
    const int p = s->pos + t, kvh = h / group;
    const int first = c->sliding_window > 0 && p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0;
    const float *qh = j->q + (size_t)t * q_width + (size_t)h * hd;
    for (int k = first; k <= p; k++) scores[k - first] = cpu_dot(qh, keys + (size_t)k * kv_width + (size_t)kvh * hd, hd) * scale;
    cpu_softmax(scores, p - first + 1);
    float *o = j->att + (size_t)t * q_width + (size_t)h * hd;
    memset(o, 0, (size_t)hd * sizeof *o);
    for (int k = first; k <= p; k++) {
        const float *vk = values + (size_t)k * kv_width + (size_t)kvh * hd, pk = scores[k - first];
        for (int d = 0; d < hd; d++) o[d] += pk * vk[d];
    }
    if (c->attn_output_gate) {
        const float *g = j->gate + (size_t)t * q_width + (size_t)h * hd;
        for (int d = 0; d < hd; d++) o[d] *= cpu_sigmoid(g[d]);
    }
}

void attention_forward(fm_session *s, int layer, int n) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int q_width = nh * hd, kv_width = nkv * hd, half = c->rotary_dim / 2;
    float *qg = w->big[0];   /* [n, q rows]: queries (and gates) as projected */
    float *q = w->big[1];    /* [n, nh*hd] */
    float *gate = w->big[2]; /* [n, nh*hd] */
    float *att = w->big[3];  /* [n, nh*hd] */
    float *kc = s->k_cache[layer] + (size_t)s->pos * kv_width;
    float *vc = s->v_cache[layer] + (size_t)s->pos * kv_width;

    const cpu_product proj[3] = {{qg, w->xn, &l->q, n},
                                 {kc, w->xn, &l->k, n}, /* new keys and values go straight into the cache */
                                 {vc, w->xn, &l->v, n}};
    cpu_matmul_many(proj, 3);

    for (int t = 0; t < n; t++) {
        /* With a gate, q_proj rows are per head: hd query rows then hd gate rows. */
        for (int h = 0; h < nh; h++) {
            const float *src = qg + (size_t)t * l->q.rows + (size_t)h * hd * (c->attn_output_gate ? 2 : 1);
            memcpy(q + (size_t)t * q_width + (size_t)h * hd, src, (size_t)hd * sizeof *q);
            if (c->attn_output_gate)
                memcpy(gate + (size_t)t * q_width + (size_t)h * hd, src + hd, (size_t)hd * sizeof *q);
        }
        float cos_t[512], sin_t[512];
        for (int i = 0; i < half; i++) {
            float theta = (float)(s->pos + t) * m->rope_inv_freq[i];
            cos_t[i] = cosf(theta);
            sin_t[i] = sinf(theta);
        }
        for (int h = 0; h < nh; h++) {
            float *qh = q + (size_t)t * q_width + (size_t)h * hd;
            if (l->q_norm) cpu_rmsnorm(qh, qh, l->q_norm, hd, c->rms_norm_eps);
            cpu_rope(qh, half, cos_t, sin_t);
        }
        for (int h = 0; h < nkv; h++) {
            float *kh = kc + (size_t)t * kv_width + (size_t)h * hd;
            if (l->k_norm) cpu_rmsnorm(kh, kh, l->k_norm, hd, c->rms_norm_eps);
            cpu_rope(kh, half, cos_t, sin_t);
        }
    }

    attend_job j = {.s = s, .c = c, .layer = layer, .q = q, .gate = gate, .att = att};
    pool_run(n * nh, item_attend, &j);
    cpu_matmul(w->out, att, n, &l->o);
}

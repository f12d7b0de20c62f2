/* Gated DeltaNet (linear attention) for a micro-batch: input projections
 * (split Qwen3.5 layout or grouped Qwen3-Next layout), causal depthwise conv
 * + SiLU with carried state, L2-normalised q/k, decay g and β, the recurrent
 * delta rule per value head (exactly equal to transformers' chunked prefill in
 * exact arithmetic), gated RMSNorm, output projection.
 * Reads scratch.xn [n, H], writes scratch.out [n, H]. */
#include "backend/cpu/kernels.h"
#include "core/pool.h"
#include "model/session.h"

#include <stdlib.h>
#include <string.h>

/* Qwen3-Next: per key head g, the fused projection holds [q_g | k_g | v_g | z_g]
 * (v and z for the r value heads of g) and in_proj_ba holds [b_g | a_g]. */
static void regroup_qkvz(const fm_config *c, const float *p, const float *ba, int n, float *mixed, float *z,
                         float *b, float *a) {
    const int nk = c->lin_n_k_heads, dk = c->lin_k_dim, r = c->lin_n_v_heads / nk, rdv = r * c->lin_v_dim;
    const int key_dim = nk * dk, group = 2 * dk + 2 * rdv, conv_dim = fm_config_conv_dim(c);
    for (int t = 0; t < n; t++) {
        const float *pt = p + (size_t)t * nk * group;
        float *mt = mixed + (size_t)t * conv_dim, *zt = z + (size_t)t * nk * rdv;
        for (int g = 0; g < nk; g++) {
            const float *pg = pt + (size_t)g * group;
            memcpy(mt + g * dk, pg, (size_t)dk * sizeof *mt);
            memcpy(mt + key_dim + g * dk, pg + dk, (size_t)dk * sizeof *mt);
            memcpy(mt + 2 * key_dim + g * rdv, pg + 2 * dk, (size_t)rdv * sizeof *mt);
            memcpy(zt + g * rdv, pg + 2 * dk + rdv, (size_t)rdv * sizeof *zt);
            for (int j = 0; j < r; j++) {
                b[(size_t)t * nk * r + g * r + j] = ba[(size_t)t * 2 * nk * r + g * 2 * r + j];
                a[(size_t)t * nk * r + g * r + j] = ba[(size_t)t * 2 * nk * r + g * 2 * r + r + j];
            }
        }
    }
}

#define CONV_CHANNELS 256 /* channels per work item of the conv */

typedef struct {
    const fm_layer *l;
    float *state;
    const float *mixed;
    float *conv;
    int n, K, conv_dim;
} conv_job;

/* Causal depthwise conv of a block of channels: w[c, K-1] multiplies the
 * current input; the state holds the previous K-1 pre-activation inputs. */
static void item_conv(void *arg, int item, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const int K = j->K, conv_dim = j->conv_dim;
    const int c0 = item * CONV_CHANNELS, c1 = c0 + CONV_CHANNELS < conv_dim ? c0 + CONV_CHANNELS : conv_dim;
    for (int ch = c0; ch < c1; ch++) {
        float hist[16];
        const float *wc = j->l->conv + (size_t)ch * K;
        memcpy(hist, j->state + (size_t)ch * (K - 1), (size_t)(K - 1) * sizeof *hist);
        for (int t = 0; t < j->n; t++) {
            float in = j->mixed[(size_t)t * conv_dim + ch], sum = wc[K - 1] * in;
            for (int k = 0; k < K - 1; k++) sum += wc[k] * hist[k];
            j->conv[(size_t)t * conv_dim + ch] = cpu_silu(sum);
            memmove(hist, hist + 1, (size_t)(K - 2) * sizeof *hist);
            hist[K - 2] = in;
        }
        memcpy(j->state + (size_t)ch * (K - 1), hist, (size_t)(K - 1) * sizeof *hist);
    }
}

typedef struct {
    const fm_config *c;
    float *recurrent;
    const float *conv, *a, *b;
    float *core;
    int n;
} delta_job;

/* The delta rule of value head h over the micro-batch's tokens. */
static void item_delta_head(void *arg, int h, int thread) {
    (void)thread;
    const delta_job *j = arg;
    const fm_config *c = j->c;
    const int nk = c->lin_n_k_heads, nv = c->lin_n_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const int key_dim = nk * dk, value_dim = nv * dv, conv_dim = fm_config_conv_dim(c);
    float *S = j->recurrent + (size_t)h * dk * dv; /* [dk, dv] */
    float delta[1024];
    const int kh = h / (nv / nk);
    for (int t = 0; t < j->n; t++) {
        const float *ct = j->conv + (size_t)t * conv_dim;
        const float *q = ct + kh * dk, *k = ct + key_dim + kh * dk, *v = ct + 2 * key_dim + h * dv;
        const float decay = expf(j->a[(size_t)t * nv + h]), beta = j->b[(size_t)t * nv + h];
        for (int i = 0; i < dk * dv; i++) S[i] *= decay;
        for (int i = 0; i < dv; i++) delta[i] = 0.0f;
        for (int i = 0; i < dk; i++)
            for (int d = 0; d < dv; d++) delta[d] += S[i * dv + d] * k[i];
        for (int d = 0; d < dv; d++) delta[d] = beta * (v[d] - delta[d]);
        float *o = j->core + (size_t)t * value_dim + h * dv;
        for (int d = 0; d < dv; d++) o[d] = 0.0f;
        for (int i = 0; i < dk; i++) {
            float *Si = S + i * dv;
            for (int d = 0; d < dv; d++) {
                Si[d] += k[i] * delta[d];
                o[d] += Si[d] * q[i];
            }
        }
    }
}

void deltanet_forward(fm_session *s, int layer, int n) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int nk = c->lin_n_k_heads, nv = c->lin_n_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const int key_dim = nk * dk, value_dim = nv * dv, conv_dim = fm_config_conv_dim(c);
    const int K = c->lin_conv_kernel;
    float *mixed = w->big[0]; /* [n, conv_dim] pre-conv q|k|v */
    float *z = w->big[1];     /* [n, value_dim] */
    float *conv = w->big[2];  /* [n, conv_dim] post-conv q|k|v */
    float *core = w->big[3];  /* [n, value_dim] */
    float *b = w->big[4];     /* [n, nv] → β */
    float *a = w->big[5];     /* [n, nv] → g */

    if (l->in_qkvz.data) {
        float *p = conv, *ba = core; /* free until the conv and the recurrence run */
        const cpu_product proj[2] = {{p, w->xn, &l->in_qkvz, n}, {ba, w->xn, &l->in_ba, n}};
        cpu_matmul_many(proj, 2);
        regroup_qkvz(c, p, ba, n, mixed, z, b, a);
    } else {
        const cpu_product proj[4] = {
            {mixed, w->xn, &l->in_qkv, n}, {z, w->xn, &l->in_z, n}, {b, w->xn, &l->in_b, n}, {a, w->xn, &l->in_a, n}};
        cpu_matmul_many(proj, 4);
    }

    /* Causal depthwise conv: w[c, K-1] multiplies the current input. The state
     * holds the previous K-1 pre-activation inputs of each channel. */
    conv_job cj = {.l = l, .state = s->conv_state[layer], .mixed = mixed, .conv = conv, .n = n, .K = K,
                   .conv_dim = conv_dim};
    pool_run((conv_dim + CONV_CHANNELS - 1) / CONV_CHANNELS, item_conv, &cj);

    const float q_scale = 1.0f / sqrtf((float)dk);
    for (int t = 0; t < n; t++) {
        float *ct = conv + (size_t)t * conv_dim;
        for (int h = 0; h < nk; h++) {
            float *qh = ct + h * dk, *kh = ct + key_dim + h * dk;
            float q_inv = 1.0f / sqrtf(cpu_dot(qh, qh, dk) + 1e-6f);
            float k_inv = 1.0f / sqrtf(cpu_dot(kh, kh, dk) + 1e-6f);
            for (int i = 0; i < dk; i++) {
                qh[i] = qh[i] * q_inv * q_scale;
                kh[i] *= k_inv;
            }
        }
        for (int h = 0; h < nv; h++) {
            b[(size_t)t * nv + h] = cpu_sigmoid(b[(size_t)t * nv + h]);
            a[(size_t)t * nv + h] = l->neg_exp_a[h] * cpu_softplus(a[(size_t)t * nv + h] + l->dt_bias[h]);
        }
    }

    /* Delta rule, value head h reads key head h / r: S ← e^g S; S += k ⊗ β(v − Sᵀk); o = Sᵀq. */
    delta_job dj = {.c = c, .recurrent = s->recurrent[layer], .conv = conv, .a = a, .b = b, .core = core, .n = n};
    pool_run(nv, item_delta_head, &dj);

    /* Gated RMSNorm per value head: norm(o) * w * silu(z). */
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nv; h++) {
            float *o = core + (size_t)t * value_dim + h * dv;
            const float *zh = z + (size_t)t * value_dim + h * dv;
            cpu_rmsnorm(o, o, l->lin_norm, dv, c->rms_norm_eps);
            for (int j = 0; j < dv; j++) o[j] *= cpu_silu(zh[j]);
        }
    cpu_matmul(w->out, core, n, &l->out_proj);
}

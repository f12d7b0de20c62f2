/* Gated DeltaNet (linear attention) for a micro-batch: input projections
 * (split Qwen3.5 layout or grouped Qwen3-Next layout), causal depthwise conv
 * + SiLU with carried state, L2-normalised q/k, decay g and β, the recurrent
 * delta rule per value head (exactly equal to transformers' chunked prefill in
 * exact arithmetic), gated RMSNorm, output projection.
 * Reads scratch.xn [n, H], writes scratch.out [n, H]. */
#include "backend/cpu/kernels.h"
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

void deltanet_forward(fm_session *s, int layer, int n) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const fm_layer *l = &m->layers[layer];
    fm_scratch *w = &s->scratch;
    const int nk = c->lin_n_k_heads, nv = c->lin_n_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const int r = nv / nk, key_dim = nk * dk, value_dim = nv * dv, conv_dim = fm_config_conv_dim(c);
    const int K = c->lin_conv_kernel;
    float *mixed = w->big[0]; /* [n, conv_dim] pre-conv q|k|v */
    float *z = w->big[1];     /* [n, value_dim] */
    float *conv = w->big[2];  /* [n, conv_dim] post-conv q|k|v */
    float *core = w->big[3];  /* [n, value_dim] */
    float *b = w->big[4];     /* [n, nv] → β */
    float *a = w->big[5];     /* [n, nv] → g */

    if (l->in_qkvz.data) {
        float *p = conv, *ba = core; /* free until the conv and the recurrence run */
        cpu_matmul(p, w->xn, n, &l->in_qkvz);
        cpu_matmul(ba, w->xn, n, &l->in_ba);
        regroup_qkvz(c, p, ba, n, mixed, z, b, a);
    } else {
        cpu_matmul(mixed, w->xn, n, &l->in_qkv);
        cpu_matmul(z, w->xn, n, &l->in_z);
        cpu_matmul(b, w->xn, n, &l->in_b);
        cpu_matmul(a, w->xn, n, &l->in_a);
    }

    /* Causal depthwise conv: w[c, K-1] multiplies the current input. The state
     * holds the previous K-1 pre-activation inputs of each channel. */
    float *state = s->conv_state[layer];
#pragma omp parallel for schedule(static) if (conv_dim >= 256)
    for (int ch = 0; ch < conv_dim; ch++) {
        float hist[16];
        const float *wc = l->conv + (size_t)ch * K;
        memcpy(hist, state + (size_t)ch * (K - 1), (size_t)(K - 1) * sizeof *hist);
        for (int t = 0; t < n; t++) {
            float in = mixed[(size_t)t * conv_dim + ch], sum = wc[K - 1] * in;
            for (int j = 0; j < K - 1; j++) sum += wc[j] * hist[j];
            conv[(size_t)t * conv_dim + ch] = cpu_silu(sum);
            memmove(hist, hist + 1, (size_t)(K - 2) * sizeof *hist);
            hist[K - 2] = in;
        }
        memcpy(state + (size_t)ch * (K - 1), hist, (size_t)(K - 1) * sizeof *hist);
    }

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
#pragma omp parallel for schedule(static)
    for (int h = 0; h < nv; h++) {
        float *S = s->recurrent[layer] + (size_t)h * dk * dv; /* [dk, dv] */
        float delta[1024];
        const int kh = h / r;
        for (int t = 0; t < n; t++) {
            const float *ct = conv + (size_t)t * conv_dim;
            const float *q = ct + kh * dk, *k = ct + key_dim + kh * dk, *v = ct + 2 * key_dim + h * dv;
            const float decay = expf(a[(size_t)t * nv + h]), beta = b[(size_t)t * nv + h];
            for (int i = 0; i < dk * dv; i++) S[i] *= decay;
            for (int j = 0; j < dv; j++) delta[j] = 0.0f;
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dv; j++) delta[j] += S[i * dv + j] * k[i];
            for (int j = 0; j < dv; j++) delta[j] = beta * (v[j] - delta[j]);
            float *o = core + (size_t)t * value_dim + h * dv;
            for (int j = 0; j < dv; j++) o[j] = 0.0f;
            for (int i = 0; i < dk; i++) {
                float *Si = S + i * dv;
                for (int j = 0; j < dv; j++) {
                    Si[j] += k[i] * delta[j];
                    o[j] += Si[j] * q[i];
                }
            }
        }
    }

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

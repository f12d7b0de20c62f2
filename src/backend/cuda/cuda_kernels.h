/* CUDA kernels of the forward pass, as C-callable launchers. Each launcher
 * enqueues work on `stream` and returns at once (no synchronisation, no
 * allocation). Every pointer is device memory unless said otherwise; fm_mat
 * structs themselves are passed by host pointer (their fields are copied into
 * the launch), but their data/scales/biases point to device memory.
 *
 * Numerics: activations and accumulators float32; weights widened (F16/BF16)
 * or dequantized (MLX affine, w = scale·q + bias per group, see quant/affine.h)
 * on the fly. Results equal the CPU backend's up to float32 rounding order.
 *
 * Layout conventions: matrices row-major; a "row" of activations is one token.
 * Launchers check nothing: the caller (cuda_forward.c) passes valid shapes. */
#ifndef FM_BACKEND_CUDA_KERNELS_H
#define FM_BACKEND_CUDA_KERNELS_H

#include "model/model.h"

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products ---------------------------------------------------- */

/* y[T, W.rows] = x[T, W.cols] · Wᵀ. W: F32, F16, BF16, or quantized (bits 2, 4,
 * 8; group 32, 64 or 128; U32 codes LSB-first, bf16 scales and biases). */
void cuk_matmul(cudaStream_t stream, float *y, const float *x, int T, const fm_mat *W);

/* out[n, W.cols] = rows ids[0..n) of W in float32 (embedding lookup); ids is device memory. */
void cuk_mat_rows(cudaStream_t stream, float *out, const fm_mat *W, const int32_t *ids, int n);

/* One SwiGLU FFN job of a grouped launch: the rows `rows[first .. first+count)`
 * of x go through ffn (all three matrices same format across the jobs of one
 * launch), outputs to y rows [first, first+count). */
typedef struct {
    fm_mat gate, up, down; /* device data */
    int first, count;
} cuk_ffn_job;

/* All jobs at once (e.g. every routed expert of a layer, or one job for a
 * shared/dense FFN): for each job j and entry i in [first, first+count):
 *   h = silu(gate · x[rows[i]]) * (up · x[rows[i]])      (h: [F] in `h_buf` row i)
 *   y[i] = down · h                                         (y: [H])
 * jobs is device memory [n_jobs]; rows is device memory (NULL: row i of x is
 * entry i). h_buf is [total entries, F] scratch; F = gate.rows, H = down.rows,
 * the same for all jobs (max_F / H passed for launch geometry).
 * max_count: the largest count of any job (launch geometry). */
void cuk_ffn_grouped(cudaStream_t stream, float *y, float *h_buf, const float *x, const int *rows,
                     const cuk_ffn_job *jobs, int n_jobs, int max_count, int F, int H);

/* ---- element-wise and norms --------------------------------------------- */

/* y[r] = x[r] / sqrt(mean(x[r]²) + eps) * w for rows r < n_rows of `dim`
 * (w NULL: no weight). y == x allowed. */
void cuk_rmsnorm(cudaStream_t stream, float *y, const float *x, const float *w, int n_rows, int dim, float eps);
/* x[i] += y[i], i < n. */
void cuk_add(cudaStream_t stream, float *x, const float *y, size_t n);

/* ---- full attention ----------------------------------------------------- */

/* Splits q_proj's output qg [n, nh*hd*(gated ? 2 : 1)] (with a gate, per head:
 * hd query rows then hd gate rows) into q [n, nh*hd] and, if gated, gate [n, nh*hd]. */
void cuk_split_q_gate(cudaStream_t stream, float *q, float *gate, const float *qg, int n, int nh, int hd, int gated);
/* For each token t < n and head h < n_heads of x [n, row_stride] (head h at
 * column h*hd): optional per-head RMSNorm with weight norm_w [hd] (NULL: none),
 * then rotate-half RoPE on the first 2*half dims (pairs i, i+half) at position
 * pos0 + t: theta = (pos0 + t) * inv_freq[i] (float32, cosf/sinf). In place. */
void cuk_norm_rope(cudaStream_t stream, float *x, int n, int n_heads, int row_stride, int hd, const float *norm_w,
                   float eps, int half, const float *inv_freq, int pos0);
/* Causal GQA attention of n new tokens at positions pos0..pos0+n-1 whose keys
 * and values are already in the caches (k_cache/v_cache [capacity, nkv*hd],
 * position p at row p). Token t, head h attends positions
 * [max(0, p - window + 1) (window > 0) or 0, p], p = pos0 + t, with kv head
 * h / (nh / nkv); softmax(q·k * scale) · v. If gate != NULL the result is
 * multiplied by sigmoid(gate) element-wise. out [n, nh*hd]. Any context length
 * (online softmax; no score buffer). */
void cuk_attention(cudaStream_t stream, float *out, const float *q, const float *gate, const float *k_cache,
                   const float *v_cache, int n, int pos0, int nh, int nkv, int hd, int window, float scale);

/* ---- Gated DeltaNet ----------------------------------------------------- */

/* Qwen3-Next's grouped projections → Qwen3.5's split layout. p [n, nk*(2dk + 2r*dv)]
 * holds per key head g [q_g (dk) | k_g (dk) | v_g (r*dv) | z_g (r*dv)], ba [n, 2*nv]
 * holds per key head g [b_g (r) | a_g (r)], r = nv/nk. Writes mixed [n, conv_dim]
 * = [q (nk*dk) | k (nk*dk) | v (nv*dv)], z [n, nv*dv], b [n, nv], a [n, nv]. */
void cuk_regroup_qkvz(cudaStream_t stream, float *mixed, float *z, float *b, float *a, const float *p, const float *ba,
                      int n, int nk, int nv, int dk, int dv);
/* Causal depthwise conv + SiLU over n tokens with carried state:
 * out[t, c] = silu(w[c, K-1]*in[t, c] + Σ_{j<K-1} w[c, j]*hist_j) where hist is
 * the previous K-1 inputs of channel c (oldest first), starting from state
 * [channels, K-1] and updated to the last K-1 inputs. K ≤ 16. */
void cuk_conv_silu(cudaStream_t stream, float *out, const float *in, float *state, const float *w, int n, int channels,
                   int K);
/* Per token: q and k heads of conv [n, conv_dim] L2-normalised in place
 * (x / sqrt(Σx² + 1e-6)), q also scaled by 1/sqrt(dk); b[t,h] = sigmoid(b);
 * a[t,h] = neg_exp_a[h] * softplus(a + dt_bias[h]) (softplus: x > 20 ? x : log1p(exp x)). */
void cuk_deltanet_prep(cudaStream_t stream, float *conv, float *b, float *a, const float *neg_exp_a,
                       const float *dt_bias, int n, int nk, int nv, int dk, int conv_dim);
/* The delta rule over n tokens, value head h (key head h / (nv/nk)), state
 * S [nv, dk, dv] in place: S ← exp(a[t,h])·S; δ = b[t,h]·(v − Sᵀk); S += k ⊗ δ;
 * o = Sᵀq. q, k, v read from conv [n, conv_dim] (q at kh*dk, k at nk*dk + kh*dk,
 * v at 2*nk*dk + h*dv); o written to core [n, nv*dv] at h*dv. dv ≤ 1024. */
void cuk_deltanet_recurrence(cudaStream_t stream, float *core, const float *conv, const float *b, const float *a,
                             float *S, int n, int nk, int nv, int dk, int dv, int conv_dim);
/* Per token and value head: o = rmsnorm(o) * w * silu(z); core, z [n, nv*dv], w [dv]. */
void cuk_gated_rmsnorm(cudaStream_t stream, float *core, const float *z, const float *w, int n, int nv, int dv,
                       float eps);

/* ---- mixture of experts ------------------------------------------------- */

/* Router: logits [n, E] → softmax → top-k (largest first; ties to the lower
 * index) → sel [n, K] (int), sel_w [n, K] (probabilities, divided by their sum
 * if renormalize). logits are overwritten with the probabilities. E ≤ 1024. */
void cuk_route(cudaStream_t stream, int *sel, float *sel_w, float *logits, int n, int E, int K, int renormalize);
/* out[t, :] = Σ_{j < K} weight[entry[t*K+j]] * y[entry[t*K+j], :], in j order,
 * then, if shared != NULL, += sigmoid(shared_logit[t]) * shared[t, :]
 * (shared_logit NULL: weight 1). out, shared [n, H]; y [entries, H]. */
void cuk_moe_combine(cudaStream_t stream, float *out, const float *y, const int *entry, const float *weight, int n,
                     int K, int H, const float *shared, const float *shared_logit);

#ifdef __cplusplus
}
#endif

#endif

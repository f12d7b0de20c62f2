/* One micro-batch through the whole model (embedding → layers → final norm →
 * LM head). The pre-norm residual loop is the same for every architecture:
 *   h += mixer(norm(h));  h += mlp(norm(h))
 * where the mixer is full or linear attention and the mlp sparse MoE or dense. */
#include "backend/cpu/kernels.h"
#include "core/clock.h"
#include "model/session.h"

#include <string.h>

static void capture(fm_session *s, int index, const float *x, int n, int offset, int total) {
    if (!s->capture_hidden) return;
    const int H = s->model->cfg.hidden_size;
    memcpy(s->capture_hidden + ((size_t)index * total + offset) * H, x, (size_t)n * H * sizeof *x);
}

fm_status forward_ubatch(fm_session *s, const int32_t *tokens, int n, int logit_row0, float *logits,
                         int capture_offset, int capture_total) {
    const fm_model *m = s->model;
    const fm_config *c = &m->cfg;
    const int H = c->hidden_size;
    fm_scratch *w = &s->scratch;

    double t0 = fm_seconds();
    for (int t = 0; t < n; t++) cpu_mat_row_f32(&m->embed, tokens[t], w->x + (size_t)t * H);
    capture(s, 0, w->x, n, capture_offset, capture_total);
    s->head_s += fm_seconds() - t0;

    for (int i = 0; i < c->n_layers; i++) {
        const fm_layer *l = &m->layers[i];
        fm_layer_timing *tm = &s->timing[i];
        fm_status cs = session_check_cancel(s);
        if (cs != FM_OK) return cs;
        double a = fm_seconds();
        for (int t = 0; t < n; t++)
            cpu_rmsnorm(w->xn + (size_t)t * H, w->x + (size_t)t * H, l->input_norm, H, c->rms_norm_eps);
        double b = fm_seconds();
        if (c->layer_full_attention[i])
            attention_forward(s, i, n);
        else
            deltanet_forward(s, i, n);
        double d = fm_seconds();
        tm->attention_s += d - b;
        for (size_t j = 0; j < (size_t)n * H; j++) w->x[j] += w->out[j];
        for (int t = 0; t < n; t++)
            cpu_rmsnorm(w->xn + (size_t)t * H, w->x + (size_t)t * H, l->post_norm, H, c->rms_norm_eps);
        tm->other_s += (b - a) + (fm_seconds() - d);
        fm_status st = moe_forward(s, i, n);
        if (st != FM_OK) return st;
        d = fm_seconds();
        for (size_t j = 0; j < (size_t)n * H; j++) w->x[j] += w->out[j];
        if (i + 1 < c->n_layers) capture(s, i + 1, w->x, n, capture_offset, capture_total);
        tm->other_s += fm_seconds() - d;
    }
    t0 = fm_seconds();

    /* Final norm over the rows that need logits (all rows when capturing). */
    int first = s->capture_hidden ? 0 : logit_row0;
    for (int t = first; t < n; t++)
        cpu_rmsnorm(w->xn + (size_t)t * H, w->x + (size_t)t * H, m->final_norm, H, c->rms_norm_eps);
    capture(s, c->n_layers, w->xn, n, capture_offset, capture_total);
    if (logits && logit_row0 < n)
        cpu_matmul(logits, w->xn + (size_t)logit_row0 * H, n - logit_row0, &m->lm_head);
    s->pos += n;
    s->head_s += fm_seconds() - t0;
    return FM_OK;
}

/* Session lifecycle and fm_session_eval (see session.h). */
#include "model/session.h"

#include "backend/cuda/cuda_backend.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int max_int(int a, int b) { return a > b ? a : b; }

size_t session_conv_state_floats(const fm_config *c) {
    return (size_t)fm_config_conv_dim(c) * (c->lin_conv_kernel - 1);
}
size_t session_recurrent_floats(const fm_config *c) {
    return (size_t)c->lin_n_v_heads * c->lin_k_dim * c->lin_v_dim;
}

int session_kv_grown(const fm_session *s, int capacity, int needed) {
    int cap = max_int(needed, max_int(256, capacity * 2));
    return cap > s->max_context ? s->max_context : cap;
}

int session_widest_row(const fm_config *c) {
    const int key_dim = c->lin_n_k_heads * c->lin_k_dim, value_dim = c->lin_n_v_heads * c->lin_v_dim;
    int widest = max_int(c->hidden_size, c->n_heads * c->head_dim * 2);
    widest = max_int(widest, 2 * key_dim + 2 * value_dim);
    widest = max_int(widest, max_int(c->expert_ffn, max_int(c->shared_ffn, c->dense_ffn)));
    return max_int(widest, 2 * c->lin_n_v_heads);
}

size_t session_scratch_bytes(const fm_config *c, int ubatch) {
    const size_t K = (size_t)max_int(c->n_experts_used, 1), H = (size_t)c->hidden_size;
    size_t per_token = 3 * H + 6 * (size_t)session_widest_row(c) + (size_t)c->n_experts + K * (2 + H) + K;
    return (size_t)ubatch * per_token * sizeof(float);
}

fm_status fm_session_new(fm_model *m, const fm_session_options *opt, fm_session **out) {
    *out = NULL;
    const fm_config *c = &m->cfg;
    fm_session *s = calloc(1, sizeof *s);
    if (!s) return fm_error(FM_ERR_NOMEM, "out of memory");
    s->model = m;
    s->max_context = opt && opt->max_context > 0 ? opt->max_context : c->max_position_embeddings;
    if (opt && (opt->batch < 0 || opt->batch > 4096)) {
        free(s);
        return fm_error(FM_ERR_ARGUMENT, "micro-batch of %d tokens (1..4096)", opt->batch);
    }
    /* Streamed experts are read once per micro-batch: larger ones read less per token. */
    const int U = s->ubatch = opt && opt->batch ? opt->batch : m->store ? FM_UBATCH_STREAMED : FM_UBATCH;
    const int L = c->n_layers, H = c->hidden_size;
    if (!(s->timing = calloc((size_t)L, sizeof *s->timing))) goto nomem;
    if (m->store) s->store_base = store_get_stats(m->store);
    if (m->gpu) { /* the state lives on the device */
        fm_status st = cuda_session_init(s);
        if (st != FM_OK) {
            fm_session_free(s);
            return st;
        }
        *out = s;
        return FM_OK;
    }
    s->k_cache = calloc((size_t)L, sizeof *s->k_cache);
    s->v_cache = calloc((size_t)L, sizeof *s->v_cache);
    s->conv_state = calloc((size_t)L, sizeof *s->conv_state);
    s->recurrent = calloc((size_t)L, sizeof *s->recurrent);
    if (!s->k_cache || !s->v_cache || !s->conv_state || !s->recurrent) goto nomem;
    for (int i = 0; i < L; i++) {
        if (c->layer_full_attention[i]) continue;
        s->conv_state[i] = calloc(session_conv_state_floats(c), sizeof(float));
        s->recurrent[i] = calloc(session_recurrent_floats(c), sizeof(float));
        if (!s->conv_state[i] || !s->recurrent[i]) goto nomem;
    }

    s->big_size = (size_t)U * session_widest_row(c);
    fm_scratch *w = &s->scratch;
    w->x = malloc((size_t)U * H * sizeof(float));
    w->xn = malloc((size_t)U * H * sizeof(float));
    w->out = malloc((size_t)U * H * sizeof(float));
    w->router = malloc((size_t)U * max_int(c->n_experts, 1) * sizeof(float));
    w->sel = malloc((size_t)U * max_int(c->n_experts_used, 1) * sizeof(int));
    w->sel_w = malloc((size_t)U * max_int(c->n_experts_used, 1) * sizeof(float));
    const size_t E = (size_t)max_int(c->n_experts, 1), pairs = (size_t)U * max_int(c->n_experts_used, 1);
    w->expert_count = malloc(E * sizeof(int));
    w->expert_ids = malloc(E * sizeof(int));
    w->expert_first = malloc((E + 1) * sizeof(int));
    w->expert_rows = malloc(pairs * sizeof(int));
    w->expert_weight = malloc(pairs * sizeof(float));
    w->expert_out = malloc(pairs * H * sizeof(float));
    if (!w->x || !w->xn || !w->out || !w->router || !w->sel || !w->sel_w || !w->expert_count || !w->expert_ids ||
        !w->expert_first || !w->expert_rows || !w->expert_weight || !w->expert_out)
        goto nomem;
    for (int i = 0; i < 6; i++)
        if (!(w->big[i] = malloc(s->big_size * sizeof(float)))) goto nomem;
    *out = s;
    return FM_OK;
nomem:
    fm_session_free(s);
    return fm_error(FM_ERR_NOMEM, "out of memory creating a session");
}

void fm_session_free(fm_session *s) {
    if (!s) return;
    if (s->gpu) cuda_session_free(s);
    for (int i = 0; s->k_cache && i < s->model->cfg.n_layers; i++) {
        free(s->k_cache[i]);
        free(s->v_cache[i]);
        free(s->conv_state[i]);
        free(s->recurrent[i]);
    }
    free(s->k_cache);
    free(s->v_cache);
    free(s->conv_state);
    free(s->recurrent);
    free(s->scores);
    fm_scratch *w = &s->scratch;
    free(w->x);
    free(w->xn);
    free(w->out);
    free(w->router);
    free(w->sel);
    free(w->sel_w);
    for (int i = 0; i < 6; i++) free(w->big[i]);
    free(w->expert_count);
    free(w->expert_ids);
    free(w->expert_first);
    free(w->expert_rows);
    free(w->expert_weight);
    free(w->expert_out);
    free(s->timing);
    free(s);
}

void fm_session_reset(fm_session *s) {
    const fm_config *c = &s->model->cfg;
    s->pos = 0;
    if (s->gpu) {
        cuda_session_reset(s);
        return;
    }
    for (int i = 0; i < c->n_layers; i++) {
        if (c->layer_full_attention[i]) continue;
        memset(s->conv_state[i], 0, session_conv_state_floats(c) * sizeof(float));
        memset(s->recurrent[i], 0, session_recurrent_floats(c) * sizeof(float));
    }
}

int fm_session_position(const fm_session *s) { return s->pos; }

void fm_session_capture_hidden(fm_session *s, float *dst) { s->capture_hidden = dst; }

/* Grows every full-attention layer's KV cache to hold `needed` positions, and
 * the per-thread attention score rows with it. */
fm_status session_reserve_kv(fm_session *s, int needed) {
    const fm_config *c = &s->model->cfg;
    if (s->gpu) return cuda_session_reserve(s, needed);
    if (needed > s->kv_capacity) {
        const int cap = session_kv_grown(s, s->kv_capacity, needed);
        size_t row = (size_t)c->n_kv_heads * c->head_dim * sizeof(float);
        for (int i = 0; i < c->n_layers; i++) {
            if (!c->layer_full_attention[i]) continue;
            float *k = realloc(s->k_cache[i], (size_t)cap * row);
            if (k) s->k_cache[i] = k;
            float *v = realloc(s->v_cache[i], (size_t)cap * row);
            if (v) s->v_cache[i] = v;
            if (!k || !v) return fm_error(FM_ERR_NOMEM, "out of memory growing the KV cache to %d tokens", cap);
        }
        s->kv_capacity = cap;
        s->score_threads = 0; /* rows are kv_capacity long: reallocate below */
    }
    int threads = pool_threads();
    if (s->score_threads < threads) {
        float *scores = realloc(s->scores, (size_t)threads * s->kv_capacity * sizeof *scores);
        if (!scores) return fm_error(FM_ERR_NOMEM, "out of memory for attention scores (%d tokens)", s->kv_capacity);
        s->scores = scores;
        s->score_threads = threads;
    }
    return FM_OK;
}

void fm_session_set_cancel(fm_session *s, int (*cancelled)(void *user), void *user) {
    s->cancelled = cancelled;
    s->cancel_user = user;
}

fm_status session_check_cancel(const fm_session *s) {
    if (s->cancelled && s->cancelled(s->cancel_user)) return fm_error(FM_ERR_CANCELLED, "evaluation cancelled");
    return FM_OK;
}

fm_status fm_session_eval(fm_session *s, const int32_t *tokens, int n, fm_logits_mode mode, float *logits) {
    const fm_config *c = &s->model->cfg;
    if (n <= 0) return fm_error(FM_ERR_ARGUMENT, "no tokens to evaluate");
    if (!tokens || (mode != FM_LOGITS_NONE && !logits)) return fm_error(FM_ERR_ARGUMENT, "NULL buffer");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return fm_error(FM_ERR_ARGUMENT, "token id %d at position %d is outside the vocabulary [0, %d)",
                            tokens[i], i, c->vocab_size);
    if (n > s->max_context - s->pos)
        return fm_error(FM_ERR_ARGUMENT, "%d tokens after %d exceed the context limit of %d tokens", n, s->pos,
                        s->max_context);
    fm_status st = session_reserve_kv(s, s->pos + n);
    if (st != FM_OK) return st;

    const size_t V = (size_t)c->vocab_size;
    const double t0 = fm_seconds();
    for (int done = 0; done < n;) {
        int ub = n - done < s->ubatch ? n - done : s->ubatch;
        int last = done + ub == n;
        int row0 = ub;      /* rows of this micro-batch that need logits */
        float *dst = NULL;
        if (mode == FM_LOGITS_ALL) {
            row0 = 0;
            dst = logits + (size_t)done * V;
        } else if (mode == FM_LOGITS_LAST && last) {
            row0 = ub - 1;
            dst = logits;
        }
        st = s->gpu ? cuda_forward_ubatch(s, tokens + done, ub, row0, dst, done, n)
                    : forward_ubatch(s, tokens + done, ub, row0, dst, done, n);
        if (st != FM_OK) {
            /* A read failed (or the caller cancelled) midway: the layers before
             * it hold this batch's state, the others do not. Start over rather
             * than go on wrong. */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", fm_last_error());
            fm_session_reset(s);
            return fm_error(st, "%s (the session was reset)", msg);
        }
        done += ub;
    }
    s->eval_s += fm_seconds() - t0;
    s->tokens += (uint64_t)n;
    s->evals++;
    return FM_OK;
}

void fm_session_get_timing(const fm_session *s, fm_timing *out) {
    memset(out, 0, sizeof *out);
    out->n_layers = s->model->cfg.n_layers;
    out->layers = s->timing;
    out->eval_s = s->eval_s;
    out->head_s = s->head_s;
    out->tokens = s->tokens;
    out->evals = s->evals;
    out->threads = pool_threads();
    out->threads_active = pool_active_threads();
    if (s->model->store) {
        store_stats now = store_get_stats(s->model->store);
        out->experts_fetched = now.fetches - s->store_base.fetches;
        out->cache_hits = now.hits - s->store_base.hits;
        out->bytes_read = now.bytes_read - s->store_base.bytes_read;
        out->read_s = now.read_s - s->store_base.read_s;
    }
    if (s->gpu) cuda_session_timing(s, out);
}

void fm_session_reset_timing(fm_session *s) {
    memset(s->timing, 0, (size_t)s->model->cfg.n_layers * sizeof *s->timing);
    s->eval_s = s->head_s = 0;
    s->tokens = s->evals = 0;
    if (s->model->store) s->store_base = store_get_stats(s->model->store);
    if (s->gpu) cuda_session_reset_timing(s);
}

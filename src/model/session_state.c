/* Session snapshots (fm_session_state_*) and truncation: what a prompt cache
 * needs to return to a conversation's prefix without prefilling it again.
 *
 * A snapshot is a header and, layer by layer, the K and V rows of the first
 * `pos` positions (full attention) or the conv and recurrent state (linear
 * attention). The header records the shapes so a snapshot is never restored
 * into a session of a model it does not fit. */
#include "model/session.h"

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

#include <string.h>

#define STATE_MAGIC 0x31544d46u /* "FMT1" */

typedef struct {
    uint32_t magic, n_layers, kv_row_floats, conv_floats, recurrent_floats, vocab_size;
    int32_t pos, reserved;
} state_header;

static state_header header_of(const fm_session *s) {
    const fm_config *c = &s->model->cfg;
    state_header h = {STATE_MAGIC,
                      (uint32_t)c->n_layers,
                      (uint32_t)(c->n_kv_heads * c->head_dim),
                      (uint32_t)session_conv_state_floats(c),
                      (uint32_t)session_recurrent_floats(c),
                      (uint32_t)c->vocab_size,
                      s->pos,
                      0};
    return h;
}

/* Bytes of a layer's state at position pos. */
static size_t layer_bytes(const fm_config *c, int layer, int pos) {
    if (c->layer_full_attention[layer]) return 2 * (size_t)pos * c->n_kv_heads * c->head_dim * sizeof(float);
    return (session_conv_state_floats(c) + session_recurrent_floats(c)) * sizeof(float);
}

size_t fm_session_state_size(const fm_session *s) {
    const fm_config *c = &s->model->cfg;
    size_t n = sizeof(state_header);
    for (int i = 0; i < c->n_layers; i++) n += layer_bytes(c, i, s->pos);
    return n;
}

/* The layer's state regions: K and V (full attention) or conv and recurrent state. */
static void layer_regions(fm_session *s, int layer, void *region[2], size_t bytes[2]) {
    const fm_config *c = &s->model->cfg;
    if (c->layer_full_attention[layer]) {
        bytes[0] = bytes[1] = (size_t)s->pos * c->n_kv_heads * c->head_dim * sizeof(float);
    } else {
        bytes[0] = session_conv_state_floats(c) * sizeof(float);
        bytes[1] = session_recurrent_floats(c) * sizeof(float);
    }
    for (int k = 0; k < 2; k++) {
        if (s->gpu) region[k] = cuda_session_state(s, layer, k);
        else if (c->layer_full_attention[layer]) region[k] = k ? s->v_cache[layer] : s->k_cache[layer];
        else region[k] = k ? (void *)s->recurrent[layer] : (void *)s->conv_state[layer];
    }
}

/* Copies between a snapshot and the session's state (device memory with CUDA). */
static fm_status copy_region(fm_session *s, void *dst, const void *src, size_t bytes, int to_session) {
    if (!bytes) return FM_OK;
    if (s->gpu) return cuda_session_copy(s, dst, src, bytes, to_session);
    memcpy(dst, src, bytes);
    return FM_OK;
}

fm_status fm_session_state_save(const fm_session *session, void *buf, size_t size) {
    fm_session *s = (fm_session *)session; /* only read; the regions are shared with load */
    if (!buf || size < fm_session_state_size(s))
        return fm_error(FM_ERR_ARGUMENT, "snapshot buffer of %zu bytes; the session's state needs %zu", size,
                        fm_session_state_size(s));
    state_header h = header_of(s);
    memcpy(buf, &h, sizeof h);
    unsigned char *p = (unsigned char *)buf + sizeof h;
    for (int i = 0; i < s->model->cfg.n_layers; i++) {
        void *region[2];
        size_t bytes[2];
        layer_regions(s, i, region, bytes);
        for (int k = 0; k < 2; k++) {
            fm_status st = copy_region(s, p, region[k], bytes[k], 0);
            if (st != FM_OK) return st;
            p += bytes[k];
        }
    }
    return FM_OK;
}

fm_status fm_session_state_load(fm_session *s, const void *buf, size_t size) {
    state_header h, mine = header_of(s);
    if (!buf || size < sizeof h) return fm_error(FM_ERR_FORMAT, "session snapshot: %zu bytes, too short", size);
    memcpy(&h, buf, sizeof h);
    if (h.magic != STATE_MAGIC) return fm_error(FM_ERR_FORMAT, "session snapshot: not a flashmoe snapshot");
    if (h.n_layers != mine.n_layers || h.kv_row_floats != mine.kv_row_floats || h.conv_floats != mine.conv_floats ||
        h.recurrent_floats != mine.recurrent_floats || h.vocab_size != mine.vocab_size)
        return fm_error(FM_ERR_ARGUMENT, "session snapshot: taken from a different model (layers %u, KV row %u; "
                        "this one: %u, %u)", h.n_layers, h.kv_row_floats, mine.n_layers, mine.kv_row_floats);
    if (h.pos < 0 || h.pos > s->max_context)
        return fm_error(FM_ERR_ARGUMENT, "session snapshot: %d tokens, over the session's context limit of %d",
                        (int)h.pos, s->max_context);
    const fm_config *c = &s->model->cfg;
    size_t need = sizeof h;
    for (int i = 0; i < c->n_layers; i++) need += layer_bytes(c, i, h.pos);
    if (size != need) return fm_error(FM_ERR_FORMAT, "session snapshot: %zu bytes, expected %zu", size, need);
    fm_status st = session_reserve_kv(s, h.pos);
    if (st != FM_OK) return st;
    s->pos = h.pos;
    const unsigned char *p = (const unsigned char *)buf + sizeof h;
    for (int i = 0; i < c->n_layers; i++) {
        void *region[2];
        size_t bytes[2];
        layer_regions(s, i, region, bytes);
        for (int k = 0; k < 2; k++) {
            if ((st = copy_region(s, region[k], p, bytes[k], 1)) != FM_OK) {
                fm_session_reset(s); /* half restored: start clean rather than wrong */
                return st;
            }
            p += bytes[k];
        }
    }
    return FM_OK;
}

int fm_session_can_truncate(const fm_session *s) {
    const fm_config *c = &s->model->cfg;
    for (int i = 0; i < c->n_layers; i++)
        if (!c->layer_full_attention[i]) return 0;
    return 1;
}

fm_status fm_session_truncate(fm_session *s, int n_tokens) {
    if (n_tokens < 0 || n_tokens > s->pos)
        return fm_error(FM_ERR_ARGUMENT, "cannot truncate a session of %d tokens to %d", s->pos, n_tokens);
    if (n_tokens == s->pos) return FM_OK;
    if (!fm_session_can_truncate(s))
        return fm_error(FM_ERR_UNSUPPORTED, "linear-attention state cannot be rewound: restore a snapshot instead");
    s->pos = n_tokens; /* K and V rows past the position are overwritten by the next eval */
    return FM_OK;
}

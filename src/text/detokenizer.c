/* Incremental decoding for streaming output: token bytes accumulate and are
 * released only as complete UTF-8 characters, so a terminal never shows half
 * a character. Ill-formed sequences become U+FFFD as in fm_tokenizer_decode. */
#include "text/tokenizer.h"

#include "core/error.h"
#include "text/utf8.h"

#include <stdlib.h>
#include <string.h>

struct fm_detokenizer {
    const fm_tokenizer *tok;
    int skip_special;
    char pending[8]; /* an incomplete character (at most 3 bytes) */
    int n_pending;
    char *out;
    size_t cap;
};

fm_status fm_detokenizer_new(const fm_tokenizer *tok, int skip_special, fm_detokenizer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return fm_error(FM_ERR_NOMEM, "out of memory");
    (*out)->tok = tok;
    (*out)->skip_special = skip_special;
    return FM_OK;
}

void fm_detokenizer_free(fm_detokenizer *d) {
    if (!d) return;
    free(d->out);
    free(d);
}

const char *fm_detokenizer_push(fm_detokenizer *d, int32_t id, size_t *len) {
    *len = 0;
    const fm_tokenizer *tok = d->tok;
    if (id < 0 || id >= tok->n_ids || !tok->entries[id].present || (d->skip_special && tok->entries[id].special))
        return "";
    const tok_entry *e = &tok->entries[id];
    size_t n = (size_t)d->n_pending + e->len;
    if (3 * n + 1 > d->cap) {
        char *o = realloc(d->out, 3 * n + 1 + 64);
        if (!o) return "";
        d->out = o;
        d->cap = 3 * n + 1 + 64;
    }
    /* Work in the tail of the output buffer: pending bytes, then the token's. */
    char *raw = d->out + 2 * n + 1;
    memcpy(raw, d->pending, (size_t)d->n_pending);
    memcpy(raw + d->n_pending, tok->pool + e->offset, e->len);
    size_t i = 0, o = 0;
    d->n_pending = 0;
    while (i < n) {
        int ill, truncated, k = utf8_sequence((const unsigned char *)raw + i, n - i, &ill, &truncated);
        if (k) {
            memmove(d->out + o, raw + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (truncated) { /* wait for the rest of the character */
            memcpy(d->pending, raw + i, n - i);
            d->n_pending = (int)(n - i);
            break;
        } else {
            memcpy(d->out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)ill;
        }
    }
    d->out[o] = 0;
    *len = o;
    return d->out;
}

const char *fm_detokenizer_flush(fm_detokenizer *d, size_t *len) {
    *len = 0;
    if (!d->n_pending) return "";
    if (d->cap < 4) {
        char *o = realloc(d->out, 64);
        if (!o) return "";
        d->out = o;
        d->cap = 64;
    }
    d->n_pending = 0;
    memcpy(d->out, "\xEF\xBF\xBD", 4);
    *len = 3;
    return d->out;
}

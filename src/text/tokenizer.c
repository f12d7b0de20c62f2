/* fm_tokenizer: open, encode, decode (see tokenizer.h for the pipeline). */
#include "text/tokenizer.h"

#include "core/error.h"
#include "core/pool.h"
#include "text/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <sys/stat.h>
#include <utf8proc.h>

#define CACHE_SLOTS (1u << 16)

static fm_status tokenizer_new(fm_tokenizer **tok) {
    *tok = calloc(1, sizeof **tok);
    if (!*tok) return fm_error(FM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&(*tok)->cache_lock, NULL);
    return FM_OK;
}

/* Adds the piece cache to a loaded tokenizer and hands it out, or frees it after a failure. */
static fm_status tokenizer_finish(fm_tokenizer *tok, fm_status st, size_t cache_slots, fm_tokenizer **out) {
    if (st == FM_OK) st = tok_cache_init(&tok->cache, cache_slots, &tok->cache_lock);
    if (st != FM_OK) {
        fm_tokenizer_close(tok);
        return st;
    }
    *out = tok;
    return FM_OK;
}

fm_status fm_tokenizer_open(const char *path, fm_tokenizer **out) {
    *out = NULL;
    char json[4096], config[4096];
    struct stat sb;
    if (stat(path, &sb) != 0) return fm_error(FM_ERR_IO, "%s: no such tokenizer file or directory", path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(json, sizeof json, "%s/tokenizer.json", path);
        snprintf(config, sizeof config, "%s/tokenizer_config.json", path);
    } else {
        snprintf(json, sizeof json, "%s", path);
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        snprintf(config, sizeof config, "%.*s/tokenizer_config.json", dir_len, slash ? path : ".");
    }
    fm_tokenizer *tok;
    fm_status st = tokenizer_new(&tok);
    if (st == FM_OK) st = tokenizer_load_json(tok, json);
    if (st == FM_OK && stat(config, &sb) == 0) st = tokenizer_load_config(tok, config);
    return tokenizer_finish(tok, st, CACHE_SLOTS, out);
}

fm_status tokenizer_from_text(const char *text, size_t len, const char *label, fm_tokenizer **out) {
    *out = NULL;
    fm_tokenizer *tok;
    fm_status st = tokenizer_new(&tok);
    if (st == FM_OK) st = tokenizer_load_json_text(tok, text, len, label);
    return tokenizer_finish(tok, st, 1u << 10, out);
}

void fm_tokenizer_close(fm_tokenizer *tok) {
    if (!tok) return;
    tok_cache_free(&tok->cache);
    for (int i = 0; i < tok->n_split; i++) pcre2_code_free(tok->split[i]);
    free(tok->split);
    free(tok->entries);
    free(tok->pool);
    free(tok->vocab.slots);
    free(tok->merges.keys);
    free(tok->merges.rank);
    free(tok->merges.merged);
    free(tok->added);
    free(tok->chat_template);
    free(tok->bos_token);
    free(tok->eos_token);
    pthread_mutex_destroy(&tok->cache_lock);
    free(tok);
}

int fm_tokenizer_vocab_size(const fm_tokenizer *tok) { return tok->n_ids; }
const char *fm_tokenizer_chat_template(const fm_tokenizer *tok) { return tok->chat_template; }

int fm_tokenizer_is_special(const fm_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && tok->entries[id].special;
}

int32_t fm_tokenizer_token_id(const fm_tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    for (int i = 0; i < tok->n_added; i++) {
        const tok_entry *e = &tok->entries[tok->added[i]];
        if (e->len == len && memcmp(tok->pool + e->offset, token, len) == 0) return tok->added[i];
    }
    return tokenizer_vocab_find(tok, token, len);
}

/* ---- encode ------------------------------------------------------------ */

typedef struct {
    const fm_tokenizer *tok;
    tok_cache *cache;
    pcre2_match_data **match; /* one per split level */
    tok_ids *out;
} encoder;

/* Pre-tokenizes s[0, len) with split level `level` ("Isolated": every match and
 * every gap between matches is a piece) and encodes the pieces. */
static fm_status split_and_encode(encoder *enc, int level, const char *s, size_t len) {
    if (level == enc->tok->n_split) return bpe_encode_piece(enc->tok, enc->cache, s, len, enc->out);
    pcre2_code *re = enc->tok->split[level];
    pcre2_match_data *md = enc->match[level];
    size_t pos = 0, gap = 0;
    fm_status st = FM_OK;
    while (pos < len && st == FM_OK) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return fm_error(FM_ERR_ARGUMENT, "pre-tokenizer regex failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t start = ov[0], end = ov[1];
        if (end == start) { /* an empty match: step over one character */
            pos = end + 1;
            while (pos < len && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (start > gap) st = split_and_encode(enc, level + 1, s + gap, start - gap);
        if (st == FM_OK) st = split_and_encode(enc, level + 1, s + start, end - start);
        pos = gap = end;
    }
    if (st == FM_OK && gap < len) st = split_and_encode(enc, level + 1, s + gap, len - gap);
    return st;
}

/* Normalises then pre-tokenizes and encodes a segment that holds no added token. */
static fm_status encode_segment(encoder *enc, const char *s, size_t len) {
    if (!len) return FM_OK;
    const fm_tokenizer *tok = enc->tok;
    int ascii = 1;
    for (size_t i = 0; i < len && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
    if (tok->normalizer == NORM_NONE || ascii) return split_and_encode(enc, 0, s, len);
    static const int options[] = {
        [NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
        [NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
        [NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
        [NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
    };
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &norm,
                                      (utf8proc_option_t)options[tok->normalizer]);
    if (n < 0) return fm_error(FM_ERR_ARGUMENT, "text normalisation failed: %s", utf8proc_errmsg(n));
    fm_status st = split_and_encode(enc, 0, (const char *)norm, (size_t)n);
    free(norm);
    return st;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* The added token starting at text[i], longest first; -1 if none. */
static int32_t added_at(const fm_tokenizer *tok, const char *text, size_t len, size_t i) {
    if (!tok->added_first[(unsigned char)text[i]]) return -1;
    for (int k = 0; k < tok->n_added; k++) {
        const tok_entry *e = &tok->entries[tok->added[k]];
        if (e->len <= len - i && memcmp(tok->pool + e->offset, text + i, e->len) == 0) return tok->added[k];
    }
    return -1;
}

/* Encodes text[0, len) (valid UTF-8) into *out. */
static fm_status encode_range(const fm_tokenizer *tok, tok_cache *cache, const char *text, size_t len, tok_ids *out) {
    encoder enc = {tok, cache, calloc((size_t)tok->n_split + 1, sizeof(pcre2_match_data *)), out};
    fm_status st = enc.match ? FM_OK : fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < tok->n_split && st == FM_OK; i++)
        if (!(enc.match[i] = pcre2_match_data_create_from_pattern(tok->split[i], NULL)))
            st = fm_error(FM_ERR_NOMEM, "out of memory");
    /* Added tokens are split out of the raw text first; the text between them
     * is normalised and pre-tokenized on its own. */
    size_t seg = 0;
    for (size_t i = 0; i < len && st == FM_OK;) {
        int32_t id = added_at(tok, text, len, i);
        if (id < 0) {
            i++;
            continue;
        }
        const tok_entry *e = &tok->entries[id];
        size_t seg_end = i, next = i + e->len;
        if (e->lstrip)
            while (seg_end > seg && is_space(text[seg_end - 1])) seg_end--;
        if (e->rstrip)
            while (next < len && is_space(text[next])) next++;
        st = encode_segment(&enc, text + seg, seg_end - seg);
        if (st == FM_OK && tok_ids_push(out, id)) st = fm_error(FM_ERR_NOMEM, "out of memory");
        i = seg = next;
    }
    if (st == FM_OK) st = encode_segment(&enc, text + seg, len - seg);
    for (int i = 0; enc.match && i < tok->n_split; i++) pcre2_match_data_free(enc.match[i]);
    free(enc.match);
    return st;
}

/* Large texts are cut into chunks encoded in parallel. A cut goes after a
 * line break and before a printable ASCII character: no pre-tokenizer piece,
 * added token or normalisation spans such a point. */
#define PARALLEL_MIN (256u << 10)

static size_t next_cut(const char *text, size_t len, size_t from) {
    for (size_t i = from; i < len; i++)
        if (text[i - 1] == '\n' && (unsigned char)text[i] > ' ' && (unsigned char)text[i] < 0x7f) return i;
    return len;
}

/* OpenMP's team size is per thread (a server's worker would get every CPU): the
 * process-wide compute thread count (-t) instead. */
static int encode_threads(void) { return pool_threads(); }

static fm_status encode_parallel(const fm_tokenizer *tok, const char *text, size_t len, tok_ids *out) {
    const int threads = encode_threads();
    size_t target = len / ((size_t)threads * 4);
    if (target < (64u << 10)) target = 64u << 10;
    size_t n_cuts = len / target + 2, n_chunks = 0;
    size_t *cut = malloc(n_cuts * sizeof *cut);
    if (!cut) return fm_error(FM_ERR_NOMEM, "out of memory");
    cut[0] = 0;
    for (size_t at = 0; at < len && n_chunks + 1 < n_cuts;) {
        at = next_cut(text, len, at + target < len ? at + target : len);
        cut[++n_chunks] = at;
    }
    if (cut[n_chunks] != len) cut[++n_chunks] = len;
    tok_ids *parts = calloc(n_chunks, sizeof *parts);
    fm_status st = parts ? FM_OK : fm_error(FM_ERR_NOMEM, "out of memory");
#pragma omp parallel num_threads(threads) if (st == FM_OK)
    {
        tok_cache cache;
        fm_status mine = tok_cache_init(&cache, 1u << 14, NULL);
#pragma omp for schedule(dynamic, 1)
        for (size_t c = 0; c < n_chunks; c++)
            if (mine == FM_OK) mine = encode_range(tok, &cache, text + cut[c], cut[c + 1] - cut[c], &parts[c]);
        tok_cache_free(&cache);
        if (mine != FM_OK) {
#pragma omp critical
            st = mine;
        }
    }
    for (size_t c = 0; c < n_chunks && parts; c++) {
        for (int i = 0; i < parts[c].n && st == FM_OK; i++)
            if (tok_ids_push(out, parts[c].ids[i])) st = fm_error(FM_ERR_NOMEM, "out of memory");
        free(parts[c].ids);
    }
    free(parts);
    free(cut);
    return st;
}

fm_status fm_tokenizer_encode(fm_tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    size_t bad = utf8_validate(text, len);
    if (bad < len) return fm_error(FM_ERR_ARGUMENT, "text is not valid UTF-8 (byte %zu)", bad);
    if (len > (size_t)1 << 31) return fm_error(FM_ERR_ARGUMENT, "text of %zu bytes is too long to encode at once", len);
    tok_ids out = {0};
    /* An lstrip token could absorb the line break before a cut: encode those sequentially. */
    fm_status st = len >= PARALLEL_MIN && encode_threads() > 1 && !tok->any_lstrip
                       ? encode_parallel(tok, text, len, &out)
                       : encode_range(tok, &tok->cache, text, len, &out);
    if (st != FM_OK) {
        free(out.ids);
        return st;
    }
    *ids = out.ids ? out.ids : malloc(sizeof(int32_t)); /* a valid pointer even for no ids */
    *n_ids = out.n;
    return *ids ? FM_OK : fm_error(FM_ERR_NOMEM, "out of memory");
}

/* ---- decode ------------------------------------------------------------ */

fm_status fm_tokenizer_decode(const fm_tokenizer *tok, const int32_t *ids, int n_ids, int skip_special, char **text,
                              size_t *len) {
    *text = NULL;
    size_t raw_len = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->entries[ids[i]].present)
            return fm_error(FM_ERR_ARGUMENT, "token id %d at position %d is not in the vocabulary [0, %d)", ids[i], i,
                            tok->n_ids);
        raw_len += tok->entries[ids[i]].len;
    }
    char *raw = malloc(raw_len + 1), *out = malloc(3 * raw_len + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; i < n_ids; i++) {
        const tok_entry *e = &tok->entries[ids[i]];
        if (skip_special && e->special) continue;
        memcpy(raw + n, tok->pool + e->offset, e->len);
        n += e->len;
    }
    size_t m = utf8_lossy(raw, n, out);
    out[m] = 0;
    free(raw);
    *text = out;
    if (len) *len = m;
    return FM_OK;
}

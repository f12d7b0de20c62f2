/* Reading tokenizer.json and tokenizer_config.json into fm_tokenizer.
 * Supported: model BPE (byte-level, no byte_fallback, no subword prefixes),
 * normalizer NFC/NFD/NFKC/NFKD or none (also inside a Sequence), pre-tokenizer
 * Split (regex, behavior Isolated) and ByteLevel (with or without its GPT-2
 * regex), decoder ByteLevel. Anything else is refused with a message naming it. */
#include "text/tokenizer.h"

#include "core/error.h"
#include "core/json_file.h"
#include "text/byte_level.h"

#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenizer pattern, used by ByteLevel when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

static fm_status tokenizer_load_root(fm_tokenizer *tok, const cJSON *root, const char *path);

int32_t tokenizer_vocab_find(const fm_tokenizer *tok, const char *bytes, size_t len) {
    size_t i = hash_bytes(bytes, len) & tok->vocab.mask;
    for (uint32_t slot; (slot = tok->vocab.slots[i]); i = (i + 1) & tok->vocab.mask) {
        const tok_entry *e = &tok->entries[slot - 1];
        if (e->len == len && memcmp(tok->pool + e->offset, bytes, len) == 0) return (int32_t)(slot - 1);
    }
    return -1;
}

static size_t table_size(size_t n) {
    size_t size = 16;
    while (size < 2 * n) size *= 2;
    return size;
}

/* Appends bytes to the pool; returns the offset. */
static int pool_add(fm_tokenizer *tok, const void *bytes, size_t len, size_t *cap, uint32_t *offset) {
    if (!tok->pool || tok->pool_len + len > *cap) {
        size_t c = *cap ? *cap : 1 << 20;
        while (c < tok->pool_len + len) c *= 2;
        char *p = realloc(tok->pool, c);
        if (!p) return -1;
        tok->pool = p;
        *cap = c;
    }
    memcpy(tok->pool + tok->pool_len, bytes, len);
    *offset = (uint32_t)tok->pool_len;
    tok->pool_len += len;
    return 0;
}

static fm_status read_vocab(fm_tokenizer *tok, const cJSON *vocab, const cJSON *added, const char *path) {
    int max_id = -1;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8)
            return fm_error(FM_ERR_FORMAT, "%s: model.vocab entry '%s' is not a token id", path, it->string);
        if ((int)it->valuedouble > max_id) max_id = (int)it->valuedouble;
    }
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8)
            return fm_error(FM_ERR_FORMAT, "%s: added_tokens entry without a valid id", path);
        if ((int)id->valuedouble > max_id) max_id = (int)id->valuedouble;
    }
    if (max_id < 0) return fm_error(FM_ERR_FORMAT, "%s: empty vocabulary", path);
    tok->n_ids = max_id + 1;
    tok->entries = calloc((size_t)tok->n_ids, sizeof *tok->entries);
    size_t n_slots = table_size((size_t)tok->n_ids);
    tok->vocab.slots = calloc(n_slots, sizeof *tok->vocab.slots);
    tok->vocab.mask = n_slots - 1;
    if (!tok->entries || !tok->vocab.slots) return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);

    size_t cap = 0;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    fm_status st = FM_OK;
    for (const cJSON *it = vocab->child; it && st == FM_OK; it = it->next) {
        size_t slen = strlen(it->string);
        if (slen > buf_cap) {
            buf_cap = slen * 2 + 16;
            uint8_t *b = realloc(buf, buf_cap);
            if (!b) {
                st = fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = b;
        }
        long n = byte_level_to_bytes(it->string, slen, buf);
        if (n == 0) {
            st = fm_error(FM_ERR_FORMAT, "%s: model.vocab holds an empty token", path);
            break;
        }
        if (n < 0) {
            st = fm_error(FM_ERR_UNSUPPORTED, "%s: vocab token '%s' is not in the byte-level alphabet "
                          "(only byte-level BPE tokenizers are supported)", path, it->string);
            break;
        }
        int id = (int)it->valuedouble;
        tok_entry *e = &tok->entries[id];
        if (e->present) {
            st = fm_error(FM_ERR_FORMAT, "%s: token id %d appears twice in model.vocab", path, id);
            break;
        }
        if (pool_add(tok, buf, (size_t)n, &cap, &e->offset)) {
            st = fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        e->len = (uint32_t)n;
        e->present = 1;
        if (tokenizer_vocab_find(tok, tok->pool + e->offset, e->len) >= 0) {
            st = fm_error(FM_ERR_FORMAT, "%s: token '%s' appears twice in model.vocab", path, it->string);
            break;
        }
        size_t i = hash_bytes(tok->pool + e->offset, e->len) & tok->vocab.mask;
        while (tok->vocab.slots[i]) i = (i + 1) & tok->vocab.mask;
        tok->vocab.slots[i] = (uint32_t)id + 1;
        if (n == 1) tok->byte_id[buf[0]] = id;
    }
    free(buf);
    if (st != FM_OK) return st;

    /* Added tokens: raw UTF-8 content, matched before normalisation and BPE. */
    int n_added = added ? cJSON_GetArraySize(added) : 0;
    tok->added = calloc(n_added ? (size_t)n_added : 1, sizeof *tok->added);
    if (!tok->added) return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return fm_error(FM_ERR_FORMAT, "%s: added_tokens entry without content", path);
        int id = (int)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        tok_entry *e = &tok->entries[id];
        size_t len = strlen(content->valuestring);
        /* An added token may also be in the BPE vocab with the same text; the added entry wins. */
        if (e->present && (e->len != len || memcmp(tok->pool + e->offset, content->valuestring, len) != 0))
            return fm_error(FM_ERR_FORMAT, "%s: added token '%s' reuses id %d of another token", path,
                            content->valuestring, id);
        if (!e->present && pool_add(tok, content->valuestring, len, &cap, &e->offset))
            return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
        e->len = (uint32_t)len;
        e->present = e->added = 1;
        e->special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
        e->lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "lstrip"));
        tok->any_lstrip |= e->lstrip;
        e->rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "rstrip"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "single_word")))
            return fm_error(FM_ERR_UNSUPPORTED, "%s: added token '%s': single_word is not supported", path,
                            content->valuestring);
        int dup = 0;
        for (int k = 0; k < tok->n_added; k++) dup |= tok->added[k] == id;
        if (!dup) tok->added[tok->n_added++] = id;
        tok->added_first[(unsigned char)content->valuestring[0]] = 1;
    }
    /* Longest first, so that the longest match wins at a position. */
    for (int a = 1; a < tok->n_added; a++)
        for (int b = a; b > 0 && tok->entries[tok->added[b]].len > tok->entries[tok->added[b - 1]].len; b--) {
            int32_t t = tok->added[b];
            tok->added[b] = tok->added[b - 1];
            tok->added[b - 1] = t;
        }
    return FM_OK;
}

/* Merges are "a b" strings (older files) or ["a", "b"] pairs (newer files). */
static fm_status read_merges(fm_tokenizer *tok, const cJSON *merges, const char *path) {
    int n = merges ? cJSON_GetArraySize(merges) : 0;
    size_t n_slots = table_size((size_t)n);
    tok->merges.keys = malloc(n_slots * sizeof *tok->merges.keys);
    tok->merges.rank = malloc(n_slots * sizeof *tok->merges.rank);
    tok->merges.merged = malloc(n_slots * sizeof *tok->merges.merged);
    tok->merges.mask = n_slots - 1;
    if (!tok->merges.keys || !tok->merges.rank || !tok->merges.merged)
        return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
    memset(tok->merges.keys, 0xff, n_slots * sizeof *tok->merges.keys);
    char *tmp = NULL;
    uint8_t *bytes = NULL;
    size_t tmp_cap = 0;
    fm_status st = FM_OK;
    int rank = 0;
    for (const cJSON *it = merges ? merges->child : NULL; it; it = it->next, rank++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp) {
                st = fm_error(FM_ERR_FORMAT, "%s: merge %d '%s' is not two tokens", path, rank, it->valuestring);
                break;
            }
            a = it->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            la = strlen(a);
            b = it->child->next->valuestring;
            lb = strlen(b);
        } else {
            st = fm_error(FM_ERR_FORMAT, "%s: merge %d is not a pair of tokens", path, rank);
            break;
        }
        if (la + lb > tmp_cap) {
            tmp_cap = 2 * (la + lb) + 16;
            char *t = realloc(tmp, tmp_cap);
            uint8_t *u = realloc(bytes, tmp_cap);
            if (t) tmp = t;
            if (u) bytes = u;
            if (!t || !u) {
                st = fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
        }
        long nb_a = byte_level_to_bytes(a, la, bytes);
        long nb_b = nb_a < 0 ? -1 : byte_level_to_bytes(b, lb, bytes + nb_a);
        int32_t left = -1, right = -1, merged = -1;
        if (nb_a >= 0 && nb_b >= 0) {
            left = tokenizer_vocab_find(tok, (char *)bytes, (size_t)nb_a);
            right = tokenizer_vocab_find(tok, (char *)bytes + nb_a, (size_t)nb_b);
            merged = tokenizer_vocab_find(tok, (char *)bytes, (size_t)(nb_a + nb_b));
        }
        if (left < 0 || right < 0 || merged < 0) {
            memcpy(tmp, a, la);
            tmp[la] = 0;
            st = fm_error(FM_ERR_FORMAT, "%s: merge %d ('%s' + '%.*s') names a token missing from the vocab", path,
                          rank, tmp, (int)lb, b);
            break;
        }
        uint64_t key = (uint64_t)left << 32 | (uint32_t)right;
        size_t i = hash_pair(key) & tok->merges.mask;
        while (tok->merges.keys[i] != UINT64_MAX && tok->merges.keys[i] != key) i = (i + 1) & tok->merges.mask;
        if (tok->merges.keys[i] == key) continue; /* a repeated merge keeps its first (best) rank */
        tok->merges.keys[i] = key;
        tok->merges.rank[i] = (uint32_t)rank;
        tok->merges.merged[i] = (uint32_t)merged;
    }
    free(tmp);
    free(bytes);
    return st;
}

static fm_status read_normalizer(fm_tokenizer *tok, const cJSON *n, const char *path) {
    if (!n || cJSON_IsNull(n)) return FM_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "?";
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next) {
            fm_status st = read_normalizer(tok, it, path);
            if (st != FM_OK) return st;
        }
        return FM_OK;
    }
    static const struct { const char *name; tok_normalizer kind; } kinds[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(t, kinds[i].name)) {
            if (tok->normalizer != NORM_NONE)
                return fm_error(FM_ERR_UNSUPPORTED, "%s: more than one Unicode normalizer", path);
            tok->normalizer = kinds[i].kind;
            return FM_OK;
        }
    return fm_error(FM_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (NFC, NFD, NFKC, NFKD)", path, t);
}

static fm_status add_split(fm_tokenizer *tok, const char *pattern, size_t len, int literal, const char *path) {
    int err;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0),
                                   &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return fm_error(FM_ERR_UNSUPPORTED, "%s: pre-tokenizer regex does not compile at offset %zu: %s", path,
                        (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    pcre2_code **split = realloc(tok->split, (size_t)(tok->n_split + 1) * sizeof *split);
    if (!split) {
        pcre2_code_free(re);
        return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
    }
    tok->split = split;
    tok->split[tok->n_split++] = re;
    return FM_OK;
}

static fm_status read_pre_tokenizer(fm_tokenizer *tok, const cJSON *p, const char *path) {
    if (!p || cJSON_IsNull(p)) return FM_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "?";
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next) {
            fm_status st = read_pre_tokenizer(tok, it, path);
            if (st != FM_OK) return st;
        }
        return FM_OK;
    }
    if (!strcmp(t, "ByteLevel")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space")))
            return fm_error(FM_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", path);
        const cJSON *use_regex = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if (!use_regex || cJSON_IsTrue(use_regex)) return add_split(tok, gpt2_pattern, sizeof gpt2_pattern - 1, 0, path);
        return FM_OK;
    }
    if (!strcmp(t, "Split")) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *behavior = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pattern, "Regex");
        const cJSON *string = cJSON_GetObjectItemCaseSensitive(pattern, "String");
        if (!cJSON_IsString(behavior) || strcmp(behavior->valuestring, "Isolated") != 0 ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "invert")))
            return fm_error(FM_ERR_UNSUPPORTED, "%s: Split pre-tokenizer: only behavior \"Isolated\" without invert "
                            "is supported", path);
        if (cJSON_IsString(regex)) return add_split(tok, regex->valuestring, strlen(regex->valuestring), 0, path);
        if (cJSON_IsString(string)) return add_split(tok, string->valuestring, strlen(string->valuestring), 1, path);
        return fm_error(FM_ERR_FORMAT, "%s: Split pre-tokenizer without a pattern", path);
    }
    return fm_error(FM_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported (Split, ByteLevel)", path, t);
}

fm_status tokenizer_load_json(fm_tokenizer *tok, const char *path) {
    cJSON *root;
    fm_status st = json_file_read(path, &root);
    if (st != FM_OK) return st;
    st = tokenizer_load_root(tok, root, path);
    cJSON_Delete(root);
    return st;
}

fm_status tokenizer_load_json_text(fm_tokenizer *tok, const char *text, size_t len, const char *label) {
    cJSON *root;
    fm_status st = json_parse_text(text, len, label, &root);
    if (st != FM_OK) return st;
    st = tokenizer_load_root(tok, root, label);
    cJSON_Delete(root);
    return st;
}

static fm_status tokenizer_load_root(fm_tokenizer *tok, const cJSON *root, const char *path) {
    fm_status st = FM_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(decoder, "type");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
    if (!cJSON_IsObject(model))
        st = fm_error(FM_ERR_FORMAT, "%s: missing \"model\" with a \"vocab\" object", path);
    else if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)
        st = fm_error(FM_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", path,
                      cJSON_IsString(type) ? type->valuestring : "?");
    else if (!cJSON_IsObject(vocab))
        st = fm_error(FM_ERR_FORMAT, "%s: missing \"model\" with a \"vocab\" object", path);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
             (cJSON_IsString(prefix) && prefix->valuestring[0]) || (cJSON_IsString(suffix) && suffix->valuestring[0]))
        st = fm_error(FM_ERR_UNSUPPORTED, "%s: BPE with byte_fallback or subword prefixes/suffixes is not supported",
                      path);
    else if (decoder && !cJSON_IsNull(decoder) && (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "ByteLevel")))
        st = fm_error(FM_ERR_UNSUPPORTED, "%s: decoder '%s' is not supported (only ByteLevel)", path,
                      cJSON_IsString(dtype) ? dtype->valuestring : "?");
    else if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        st = fm_error(FM_ERR_FORMAT, "%s: \"added_tokens\" must be a list", path);
    if (st == FM_OK) {
        tok->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        if ((st = read_vocab(tok, vocab, cJSON_IsArray(added) ? added : NULL, path)) == FM_OK &&
            (st = read_merges(tok, cJSON_IsArray(merges) ? merges : NULL, path)) == FM_OK &&
            (st = read_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path)) == FM_OK)
            st = read_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path);
    }
    for (int b = 0; b < 256 && st == FM_OK; b++)
        if (tok->byte_id[b] < 0)
            st = fm_error(FM_ERR_UNSUPPORTED, "%s: the vocab has no token for byte 0x%02x (not a byte-level BPE)", path, b);
    return st;
}

/* A special token in tokenizer_config.json: a string or {"content": ...}. */
static char *token_text(const cJSON *t) {
    if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
}

fm_status tokenizer_load_config(fm_tokenizer *tok, const char *path) {
    cJSON *root;
    fm_status st = json_file_read(path, &root);
    if (st != FM_OK) return st;
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    /* Some files carry a list of named templates; the one named "default" is the chat template. */
    if (cJSON_IsArray(tmpl)) {
        const cJSON *found = NULL;
        for (const cJSON *it = tmpl->child; it; it = it->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default"))
                found = cJSON_GetObjectItemCaseSensitive(it, "template");
        }
        tmpl = found;
    }
    if (cJSON_IsString(tmpl) && !(tok->chat_template = strdup(tmpl->valuestring)))
        st = fm_error(FM_ERR_NOMEM, "out of memory");
    tok->bos_token = token_text(cJSON_GetObjectItemCaseSensitive(root, "bos_token"));
    tok->eos_token = token_text(cJSON_GetObjectItemCaseSensitive(root, "eos_token"));
    cJSON_Delete(root);
    return st;
}

/* The tokenizer in memory (internal; the public view is fm_tokenizer in
 * flashmoe.h). Pipeline of encode, as tokenizer.json describes it:
 *   added/special tokens split out first → normalizer (NFC) → pre-tokenizer
 *   (Split regex, PCRE2 with UTF+UCP, JIT) → byte-level BPE per piece (cached)
 * Tokens are stored as raw bytes; the byte-level alphabet only exists in the file. */
#ifndef FM_TEXT_TOKENIZER_H
#define FM_TEXT_TOKENIZER_H

#include "flashmoe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>

typedef enum { NORM_NONE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD } tok_normalizer;

typedef struct {
    uint32_t offset, len; /* bytes of the token in tok->pool */
    uint8_t added;        /* an added token: matched in raw text, never produced by BPE */
    uint8_t special;
    uint8_t lstrip, rstrip;
    uint8_t present;      /* id is used */
} tok_entry;

/* Open-addressing hash tables. */
typedef struct {
    uint32_t *slots; /* id + 1, 0 = empty */
    size_t mask;
} tok_vocab_index;

typedef struct {
    uint64_t *keys; /* left << 32 | right, UINT64_MAX = empty */
    uint32_t *rank, *merged;
    size_t mask;
} tok_merge_index;

typedef struct {
    char *key; /* piece bytes */
    uint32_t key_len;
    int32_t *ids;
    int n_ids;
} tok_cache_slot;

/* Direct-mapped piece → ids cache. The tokenizer's own one is shared (lock);
 * parallel encoding gives each thread a private one (lock NULL). */
typedef struct {
    tok_cache_slot *slots;
    size_t mask;
    pthread_mutex_t *lock;
} tok_cache;

struct fm_tokenizer {
    tok_entry *entries; /* [n_ids] */
    int n_ids;
    char *pool;
    size_t pool_len;
    tok_vocab_index vocab;   /* BPE vocab bytes → id */
    tok_merge_index merges;
    int32_t byte_id[256];    /* id of each single byte; -1 if the vocab lacks it */
    int ignore_merges;       /* a piece found whole in the vocab is one token */

    int32_t *added;          /* ids of added tokens, longest content first */
    int n_added;
    uint8_t added_first[256]; /* 1 if an added token starts with this byte */
    int any_lstrip;           /* an added token absorbs the whitespace before it */

    tok_normalizer normalizer;
    pcre2_code **split;      /* pre-tokenizer regexes applied in sequence */
    int n_split;

    tok_cache cache;
    pthread_mutex_t cache_lock;

    char *chat_template;
    char *bos_token, *eos_token;
};

/* tokenizer_load.c */
fm_status tokenizer_load_json(fm_tokenizer *tok, const char *path);
/* The same from text in memory (`label` names it in messages); used by the fuzz target. */
fm_status tokenizer_load_json_text(fm_tokenizer *tok, const char *text, size_t len, const char *label);
/* A tokenizer from tokenizer.json text alone (no tokenizer_config.json). */
fm_status tokenizer_from_text(const char *text, size_t len, const char *label, fm_tokenizer **out);
fm_status tokenizer_load_config(fm_tokenizer *tok, const char *path);
int32_t tokenizer_vocab_find(const fm_tokenizer *tok, const char *bytes, size_t len);

/* bpe.c: the ids of one pre-tokenized piece (raw bytes), appended to *out. */
typedef struct {
    int32_t *ids;
    int n, cap;
} tok_ids;
int tok_ids_push(tok_ids *v, int32_t id);
fm_status bpe_encode_piece(const fm_tokenizer *tok, tok_cache *cache, const char *piece, size_t len, tok_ids *out);
fm_status tok_cache_init(tok_cache *cache, size_t slots, pthread_mutex_t *lock);
void tok_cache_free(tok_cache *cache);

#endif

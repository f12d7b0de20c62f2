/* Tokenizer benchmark: encodes a mixed corpus of at least 10 MB (English prose
 * and C code from this repository, interleaved with seeded random text in
 * many scripts) and reports MB/s, single-threaded and with all threads.
 *   bench_tokenizer --tokenizer PATH [--size MB] [--write-corpus F] [--ids-out F] [--corpus F]
 * --write-corpus saves the corpus so that another tokenizer (bench/hf_tokenizer_bench.py)
 * can encode the very same bytes; --ids-out writes the ids as int32 little-endian. */
#include "bench_common.h"
#include "flashmoe.h"

#include <glob.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

static uint64_t rng = 0x1234567;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static size_t put_utf8(char *o, uint32_t cp) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)o);
}

/* Words of random letters from one script, separated by spaces and punctuation. */
static size_t random_paragraph(char *o) {
    static const uint32_t scripts[][2] = {{'a', 'z'}, {0xE0, 0xFF}, {0x3B1, 0x3C9}, {0x430, 0x44F}, {0x5D0, 0x5EA},
                                          {0x627, 0x64A}, {0x905, 0x939}, {0x3041, 0x3093}, {0x4E00, 0x4FFF},
                                          {0xAC00, 0xAE00}, {0x1F600, 0x1F64F}};
    const uint32_t *s = scripts[next_u32() % (sizeof scripts / sizeof *scripts)];
    size_t n = 0;
    int words = 20 + next_u32() % 60;
    for (int w = 0; w < words; w++) {
        int letters = 1 + next_u32() % 8;
        for (int l = 0; l < letters; l++) n += put_utf8(o + n, s[0] + next_u32() % (s[1] - s[0] + 1));
        if (next_u32() % 10 == 0) n += (size_t)sprintf(o + n, " %u", next_u32() % 100000);
        o[n++] = next_u32() % 12 == 0 ? ',' : ' ';
    }
    o[n++] = '.';
    o[n++] = '\n';
    return n;
}

static char *build_corpus(size_t target, size_t *len) {
    char *buf = malloc(target + (1 << 20));
    size_t n = 0;
    glob_t g;
    const char *patterns[] = {"README.md", "docs/*.md", "src/*/*.c", "src/*/*.h", "app/*.c", "tests/*.c"};
    memset(&g, 0, sizeof g);
    for (size_t p = 0; p < sizeof patterns / sizeof *patterns; p++) glob(patterns[p], p ? GLOB_APPEND : 0, NULL, &g);
    while (n < target) {
        for (size_t i = 0; i < g.gl_pathc && n < target; i++) {
            FILE *f = fopen(g.gl_pathv[i], "rb");
            if (!f) continue;
            size_t got = fread(buf + n, 1, target - n < (512u << 10) ? target - n : (512u << 10), f);
            fclose(f);
            /* cut at a line end so no UTF-8 character is split */
            while (got && buf[n + got - 1] != '\n') got--;
            n += got;
            for (int k = 0; k < 8 && n < target; k++) n += random_paragraph(buf + n);
        }
        if (!g.gl_pathc)
            for (int k = 0; k < 1000; k++) n += random_paragraph(buf + n);
    }
    globfree(&g);
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    const char *tok_path = NULL, *write_corpus = NULL, *ids_out = NULL, *corpus_path = NULL;
    double size_mb = 12;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokenizer")) tok_path = argv[i + 1];
        else if (!strcmp(argv[i], "--size")) size_mb = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--write-corpus")) write_corpus = argv[i + 1];
        else if (!strcmp(argv[i], "--ids-out")) ids_out = argv[i + 1];
        else if (!strcmp(argv[i], "--corpus")) corpus_path = argv[i + 1];
    }
    if (!tok_path) {
        fprintf(stderr, "usage: bench_tokenizer --tokenizer PATH [--size MB] [--write-corpus F] [--ids-out F] [--corpus F]\n");
        return 1;
    }
    fm_tokenizer *tok;
    if (fm_tokenizer_open(tok_path, &tok) != FM_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", fm_last_error());
        return 1;
    }
    size_t len;
    char *text = corpus_path ? read_file(corpus_path, &len) : build_corpus((size_t)(size_mb * 1e6), &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", corpus_path);
        return 1;
    }
    if (write_corpus) {
        FILE *f = fopen(write_corpus, "wb");
        if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", write_corpus);
            return 1;
        }
    }
    int threads = omp_get_max_threads();
    printf("corpus         %.2f MB\n", len / 1e6);
    int32_t *ids = NULL;
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        int t = pass == 0 ? 1 : threads;
        omp_set_num_threads(t);
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            free(ids);
            double t0 = fm_seconds();
            if (fm_tokenizer_encode(tok, text, len, &ids, &n) != FM_OK) {
                fprintf(stderr, "bench_tokenizer: %s\n", fm_last_error());
                return 1;
            }
            double dt = fm_seconds() - t0;
            if (dt < best) best = dt;
        }
        printf("flashmoe       %2d thread%s  %8.2f MB/s  (%d tokens, best of 3: %.3f s)\n", t, t > 1 ? "s" : " ",
               len / 1e6 / best, n, best);
        if (threads == 1) break;
    }
    if (ids_out) {
        FILE *f = fopen(ids_out, "wb");
        if (!f || fwrite(ids, sizeof *ids, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", ids_out);
            return 1;
        }
    }
    free(ids);
    free(text);
    fm_tokenizer_close(tok);
    return 0;
}

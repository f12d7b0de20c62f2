/* Writes a random-weight Qwen3.5-MoE checkpoint (config.json +
 * model.safetensors, bf16) with chosen shapes, for benchmarks at real layer
 * sizes. Defaults are Qwen3.5-397B-A17B's layer shapes with fewer layers and
 * experts. Weights ~ U(-a, a) with a = sqrt(3/fan_in), so activations stay O(1).
 *   synth_model OUT_DIR [--layers 4] [--experts 32] [--top-k 10] [--vocab 151936]
 *                       [--hidden 4096] [--expert-ffn 1024] [--interval 4]
 * Files are written under temporary names and renamed when complete. */
#include "synth_common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: synth_model OUT_DIR [--layers N] [--experts N] [--top-k N] [--vocab N] "
                        "[--hidden N] [--expert-ffn N] [--interval N]\n");
        return 1;
    }
    const char *dir = argv[1];
    int L = 4, E = 32, K = 10, V = 151936, H = 4096, F = 1024, interval = 4;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) L = v;
        else if (!strcmp(argv[i], "--experts")) E = v;
        else if (!strcmp(argv[i], "--top-k")) K = v;
        else if (!strcmp(argv[i], "--vocab")) V = v;
        else if (!strcmp(argv[i], "--hidden")) H = v;
        else if (!strcmp(argv[i], "--expert-ffn")) F = v;
        else if (!strcmp(argv[i], "--interval")) interval = v;
        else {
            fprintf(stderr, "synth_model: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (K > E) K = E;
    synth_config sc = {.layers = L, .experts = E, .top_k = K, .vocab = V, .hidden = H, .expert_ffn = F,
                       .interval = interval};
    int n_tensors;
    synth_tensor *tensors = synth_tensors(&sc, &n_tensors);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "synth_model: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (synth_write_config(dir, &sc)) return 1;
    char path[4096], tmp[4200];
    uint64_t rng = 0x9E3779B97F4A7C15ull;

    /* safetensors header */
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < n_tensors; i++) {
        cJSON *e = cJSON_AddObjectToObject(hdr, tensors[i].name);
        cJSON_AddStringToObject(e, "dtype", "BF16");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < tensors[i].n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += synth_numel(&tensors[i]) * 2;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *h = cJSON_PrintUnformatted(hdr);
    uint64_t hlen = strlen(h), padded = (hlen + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "synth_model: cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h, 1, hlen, f) == hlen;
    for (uint64_t i = hlen; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    enum { CHUNK = 1 << 20 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    fprintf(stderr, "writing %s: %.2f GB\n", path, off / 1e9);
    for (int i = 0; i < n_tensors && ok; i++) {
        uint64_t n = synth_numel(&tensors[i]);
        float s = tensors[i].scale;
        while (n && ok) {
            size_t c = n < CHUNK ? (size_t)n : CHUNK;
            for (size_t j = 0; j < c; j++) buf[j] = synth_bf16(s < 0 ? 0.2f * synth_uniform(&rng) : s * synth_uniform(&rng));
            ok = fwrite(buf, 2, c, f) == c;
            n -= c;
        }
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "synth_model: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    free(buf);
    free(h);
    cJSON_Delete(hdr);
    free(tensors);
    printf("%s: %d layers, %d experts (top %d), hidden %d, vocab %d, %.2f GB\n", dir, L, E, K, H, V, off / 1e9);
    return 0;
}

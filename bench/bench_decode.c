/* Decode benchmark: tokens per second on one model, and the weight bandwidth
 * that implies, against this machine's memory read bandwidth measured in the
 * same run (all threads summing a 1 GiB buffer, best of 5).
 *   bench_decode [-m DIR] [-n TOKENS] [-p PROMPT_TOKENS] [-t THREADS]
 * Caches: every safetensors file of the model is read once before timing
 * (warm page cache) and 8 untimed tokens run first; page faults during the
 * timed run are reported. A model that fits the CPU caches can exceed 1x. */
#include "bench_common.h"
#include "flashmoe.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>


/* Reads every *.safetensors file of `dir` so the timed run finds it in the page cache. */
static void warm_page_cache(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    static char buf[1 << 20];
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        while (read(fd, buf, sizeof buf) > 0) {}
        close(fd);
    }
    closedir(d);
}

static void faults(long *minor, long *major) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *minor = ru.ru_minflt;
    *major = ru.ru_majflt;
}

int main(int argc, char **argv) {
    const char *dir = "build/models/qwen35moe_tok";
    int n_decode = 256, n_prompt = 32, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "-n")) n_decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-p")) n_prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
    }
    if (n_decode < 1 || n_prompt < 1) {
        fprintf(stderr, "usage: bench_decode [-m DIR] [-n TOKENS] [-p PROMPT_TOKENS] [-t THREADS]\n");
        return 1;
    }
    if (threads > 0) omp_set_num_threads(threads);
    fm_model *m;
    fm_session *s;
    fm_model_options mo = {.n_threads = threads};
    if (fm_model_open(dir, &mo, &m) != FM_OK || fm_session_new(m, NULL, &s) != FM_OK) {
        fprintf(stderr, "bench_decode: %s\n", fm_last_error());
        return 1;
    }
    const fm_model_info *in = fm_model_get_info(m);
    fm_sampler *greedy; /* default parameters: the most likely token */
    if (fm_sampler_new(NULL, in->vocab_size, &greedy) != FM_OK) {
        fprintf(stderr, "bench_decode: %s\n", fm_last_error());
        return 1;
    }
    float *logits = malloc((size_t)in->vocab_size * sizeof *logits);
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 7919 + 13) % in->vocab_size);

    printf("flashmoe decode benchmark\n");
    printf("threads        %d\n", omp_get_max_threads());
    double bw = bench_memory_read_gbps();
    printf("memory read    %.1f GB/s (1 GiB buffer, all threads, best of 5)\n", bw);
    printf("model          %s (%s), %.2f M params, %.1f MiB weights\n", dir, in->architecture,
           in->params_total / 1e6, in->bytes_total / 1048576.0);
    printf("per token      %.2f MiB of weights read per decode step\n", in->bytes_per_token / 1048576.0);

    warm_page_cache(dir);
    fm_session_eval(s, prompt, n_prompt, FM_LOGITS_LAST, logits);
    for (int i = 0; i < 8; i++) {
        int32_t tok = fm_sampler_sample(greedy, logits);
        fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits);
    }
    fm_session_reset(s);
    long minor0, major0, minor1, major1;
    faults(&minor0, &major0);
    double t0 = fm_seconds();
    if (fm_session_eval(s, prompt, n_prompt, FM_LOGITS_LAST, logits) != FM_OK) {
        fprintf(stderr, "bench_decode: %s\n", fm_last_error());
        return 1;
    }
    double t1 = fm_seconds();
    for (int i = 0; i < n_decode; i++) {
        int32_t tok = fm_sampler_sample(greedy, logits);
        if (fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits) != FM_OK) {
            fprintf(stderr, "bench_decode: %s\n", fm_last_error());
            return 1;
        }
    }
    double t2 = fm_seconds();
    faults(&minor1, &major1);
    double tps = n_decode / (t2 - t1), gbps = tps * (double)in->bytes_per_token / 1e9;
    printf("prefill        %d tokens in %.3f s: %.1f tok/s\n", n_prompt, t1 - t0, n_prompt / (t1 - t0));
    printf("decode         %d tokens in %.3f s: %.1f tok/s\n", n_decode, t2 - t1, tps);
    printf("bandwidth      %.2f GB/s of weights = %.2f x measured memory read bandwidth\n", gbps, gbps / bw);
    printf("page faults    %ld minor, %ld major during the timed run\n", minor1 - minor0, major1 - major0);
    fm_sampler_free(greedy);
    free(prompt);
    free(logits);
    fm_session_free(s);
    fm_model_close(m);
    return 0;
}

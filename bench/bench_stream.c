/* End-to-end decode with routed experts streamed from the disk, against the
 * bound measured in the same run.
 *   bench_stream -m DIR [-n TOKENS (32)] [-p PROMPT_TOKENS (16)] [--cache os|ram]
 *                [--memory-budget SIZE] [--cache-size SIZE] [--io pread|uring] [--io-threads N]
 *                [--direct] [--experts K] [--preload] [-t THREADS] [--raw-gb GB (4)] [--seed N]
 *                [--no-drop] [--backend cpu|cuda|auto] [--vram-cache SIZE] [--gpu N]
 * DIR is a packed model (flashmoe convert, or bench/synth_packed).
 *  1. raw disk bandwidth: 8 threads (the store's readers) each reading a slice
 *     of a layer file sequentially with O_DIRECT in 8 MiB blocks (up to --raw-gb
 *     GB in all; one reader alone gets half or less of what the disk gives to
 *     the store's parallel reads on the dev VM); again after the decode on
 *     another layer file, the bound uses the mean of the two (a virtio disk drifts);
 *  2. every experts/layer_NNN.bin is dropped from the page cache (posix_fadvise
 *     DONTNEED; mincore says how much was cached before and after) so the run
 *     starts cold (--no-drop keeps it);
 *  3. the model is opened through the public API with the given options,
 *     PROMPT_TOKENS random ids are prefilled, the timing reset, and TOKENS
 *     tokens decoded one at a time greedily;
 *  4. from fm_session_get_timing: decode tok/s, bytes read from disk per token,
 *     cache hit rate, expert I/O wait and compute (eval time - I/O wait) per
 *     token. The bound is 1 / (bytes read per token / raw bandwidth + compute
 *     per token): the disk moving exactly what this run read, with no overlap
 *     of reading and computing. The no-cache bound reads all K experts of
 *     every MoE layer each token. Peak RSS is VmHWM against --memory-budget.
 * With the CUDA backend (--backend cuda, or auto on a machine with a GPU;
 * --vram-cache is the VRAM budget of the expert cache, the tier above the RAM
 * cache), also: the host→device bandwidth from pinned memory (8 MiB copies of
 * a 512 MiB buffer, best of 5, before the model opens); where each expert the
 * GPU needed (vram_lookups) came from: VRAM (vram_hits), the RAM cache
 * (cache_hits) or the disk (the rest of experts_fetched, which counts VRAM
 * misses only); the bytes copied to the device and the time copies were in
 * flight; and the transfer bound 1 / (bytes copied per token / host→device
 * bandwidth + bytes read per token / disk bandwidth). */
#include "bench_common.h"
#include "flashmoe.h"

#ifdef FM_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK ((size_t)8 << 20)

/* 8G, 512M, 1.5GiB, 1e9 → bytes; 0 if not a size. */
static uint64_t parse_size(const char *text) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || !(v > 0)) return 0;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1e3; end++; break;
    case 'm': case 'M': mult = 1e6; end++; break;
    case 'g': case 'G': mult = 1e9; end++; break;
    case 't': case 'T': mult = 1e12; end++; break;
    default: break;
    }
    if (*end == 'i' && mult > 1) {
        mult = mult == 1e3 ? 1024.0 : mult == 1e6 ? 1048576.0 : mult == 1e9 ? 1073741824.0 : 1099511627776.0;
        end++;
    }
    if (*end == 'B' || *end == 'b') end++;
    return *end ? 0 : (uint64_t)(v * mult);
}

/* ---- the model's expert files ---- */

static char **files;
static int n_files;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_expert_files(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/experts", dir);
    DIR *d = opendir(path);
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".bin") != 0) continue;
        files = realloc(files, (size_t)(n_files + 1) * sizeof *files);
        size_t n = strlen(path) + len + 2;
        files[n_files] = malloc(n);
        snprintf(files[n_files++], n, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(files, (size_t)n_files, sizeof *files, cmp_str);
    return n_files;
}

/* Bytes of the file now in the page cache (mincore over a mapping). */
static uint64_t cached_bytes(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size == 0) {
        if (fd >= 0) close(fd);
        return 0;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return 0;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)sb.st_size + page - 1) / page;
    unsigned char *vec = malloc(pages);
    uint64_t n = 0;
    if (vec && mincore(map, (size_t)sb.st_size, vec) == 0)
        for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
    free(vec);
    munmap(map, (size_t)sb.st_size);
    return n * page;
}

static uint64_t cached_all(void) {
    uint64_t n = 0;
    for (int i = 0; i < n_files; i++) n += cached_bytes(files[i]);
    return n;
}

static void drop_all(void) {
    for (int i = 0; i < n_files; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* The disk's bandwidth at the store's parallelism: RAW_READERS threads, each
 * reading its own slice of `path` sequentially with O_DIRECT in 8 MiB blocks,
 * up to `limit` bytes in all. GB/s (0 on failure). */
#define RAW_READERS 8
typedef struct {
    int fd;
    uint64_t from, to, done;
} raw_slice;

static void *raw_reader(void *arg) {
    raw_slice *s = arg;
    void *buf;
    if (posix_memalign(&buf, 4096, BLOCK) != 0) return NULL;
    for (uint64_t at = s->from; at < s->to;) {
        ssize_t r = pread(s->fd, buf, BLOCK, (off_t)at);
        if (r <= 0) break;
        at += (uint64_t)r;
        s->done += (uint64_t)r;
        if ((size_t)r < BLOCK) break;
    }
    free(buf);
    return NULL;
}

static double raw_read_gbps(const char *path, uint64_t limit, uint64_t *bytes) {
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "bench_stream: %s: O_DIRECT: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return 0;
    }
    if ((uint64_t)st.st_size < limit) limit = (uint64_t)st.st_size;
    const uint64_t per = (limit / RAW_READERS + BLOCK - 1) / BLOCK * BLOCK;
    raw_slice sl[RAW_READERS];
    pthread_t th[RAW_READERS];
    double t0 = fm_seconds();
    for (int i = 0; i < RAW_READERS; i++) {
        sl[i] = (raw_slice){.fd = fd, .from = i * per, .to = (i + 1) * per < limit ? (i + 1) * per : limit};
        if (pthread_create(&th[i], NULL, raw_reader, &sl[i]) != 0) sl[i].to = 0, th[i] = 0;
    }
    uint64_t done = 0;
    for (int i = 0; i < RAW_READERS; i++) {
        if (sl[i].to) pthread_join(th[i], NULL);
        done += sl[i].done;
    }
    double dt = fm_seconds() - t0;
    close(fd);
    *bytes = done;
    return dt > 0 ? done / dt / 1e9 : 0;
}

/* kB value of a /proc/self/status line, in bytes. */
/* A "Key: N kB" line of /proc/self/status (or of `file`) in bytes, 0 if absent. */
static uint64_t proc_value(const char *file, const char *key) {
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            v = strtoull(line + k + 1, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

static uint64_t proc_status(const char *key) { return proc_value("/proc/self/status", key); }

static long major_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_majflt;
}

typedef struct {
    fm_layer_timing sum;
    double eval_s, head_s, read_s, copy_s;
    uint64_t tokens, fetched, hits, bytes, vram_lookups, vram_hits, copied;
} totals;

static totals get_totals(const fm_session *s) {
    fm_timing t;
    fm_session_get_timing(s, &t);
    totals r = {.eval_s = t.eval_s, .head_s = t.head_s, .read_s = t.read_s, .tokens = t.tokens,
                .fetched = t.experts_fetched, .hits = t.cache_hits, .bytes = t.bytes_read,
                .vram_lookups = t.vram_lookups, .vram_hits = t.vram_hits, .copied = t.bytes_copied, .copy_s = t.copy_s};
    for (int i = 0; i < t.n_layers; i++) {
        r.sum.attention_s += t.layers[i].attention_s;
        r.sum.routing_s += t.layers[i].routing_s;
        r.sum.expert_io_wait_s += t.layers[i].expert_io_wait_s;
        r.sum.expert_compute_s += t.layers[i].expert_compute_s;
        r.sum.other_s += t.layers[i].other_s;
    }
    return r;
}

/* Host→device copy bandwidth from pinned memory in GB/s (8 MiB copies, the
 * size of an expert, of a 512 MiB buffer; best of 5); 0 without CUDA or a device. */
static double h2d_gbps(int device) {
#ifdef FM_WITH_CUDA
    const size_t n = (size_t)512 << 20, chunk = (size_t)8 << 20;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device || cudaSetDevice(device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    void *host = NULL, *dev = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = 0;
    if (cudaMallocHost(&host, n) == cudaSuccess && cudaMalloc(&dev, n) == cudaSuccess &&
        cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
        cudaEventCreate(&e1) == cudaSuccess) {
        memset(host, 1, n);
        for (int rep = 0; rep < 6; rep++) {
            cudaEventRecord(e0, st);
            for (size_t off = 0; off < n; off += chunk)
                cudaMemcpyAsync((char *)dev + off, (char *)host + off, chunk, cudaMemcpyHostToDevice, st);
            cudaEventRecord(e1, st);
            float ms = 0;
            if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) break;
            double gbps = n / (ms / 1e3) / 1e9;
            if (rep > 0 && gbps > best) best = gbps; /* the first is a warm-up */
        }
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (st) cudaStreamDestroy(st);
    if (dev) cudaFree(dev);
    if (host) cudaFreeHost(host);
    (void)cudaGetLastError();
    return best;
#else
    (void)device;
    return 0;
#endif
}

static int usage(void) {
    fprintf(stderr, "usage: bench_stream -m DIR [-n TOKENS] [-p PROMPT_TOKENS] [--cache os|ram] [--memory-budget SIZE]\n"
                    "                    [--cache-size SIZE] [--io pread|uring] [--io-threads N] [--direct]\n"
                    "                    [--experts K] [--preload] [-t THREADS] [--raw-gb GB] [--seed N] [--no-drop]\n"
                    "                    [--backend cpu|cuda|auto] [--vram-cache SIZE] [--gpu N]\n");
    return 1;
}

static void fail(const char *what) {
    fprintf(stderr, "bench_stream: %s: %s\n", what, fm_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int n_decode = 32, n_prompt = 16, threads = 0, drop = 1;
    double raw_gb = 4;
    uint64_t seed = 1;
    fm_model_options mo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--direct")) { mo.direct_io = 1; continue; }
        if (!strcmp(a, "--preload")) { mo.preload = 1; mo.cache = FM_EXPERT_CACHE_RAM; continue; }
        if (!strcmp(a, "--no-drop")) { drop = 0; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage();
        if (i + 1 >= argc) return usage();
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) dir = v;
        else if (!strcmp(a, "-n")) n_decode = atoi(v);
        else if (!strcmp(a, "-p")) n_prompt = atoi(v);
        else if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "--experts")) mo.n_experts_per_token = atoi(v);
        else if (!strcmp(a, "--io-threads")) mo.io_threads = atoi(v);
        else if (!strcmp(a, "--raw-gb")) raw_gb = atof(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--gpu")) mo.gpu_device = atoi(v);
        else if (!strcmp(a, "--backend")) {
            if (!strcmp(v, "cpu")) mo.backend = FM_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) mo.backend = FM_BACKEND_CUDA;
            else if (!strcmp(v, "auto")) mo.backend = FM_BACKEND_AUTO;
            else return usage();
        } else if (!strcmp(a, "--io")) {
            if (strcmp(v, "pread") && strcmp(v, "uring")) return usage();
            mo.io_uring = !strcmp(v, "uring");
        } else if (!strcmp(a, "--cache")) {
            if (strcmp(v, "os") && strcmp(v, "ram")) return usage();
            mo.cache = !strcmp(v, "ram") ? FM_EXPERT_CACHE_RAM : FM_EXPERT_CACHE_OS;
        } else if (!strcmp(a, "--memory-budget") || !strcmp(a, "--cache-size") || !strcmp(a, "--vram-cache")) {
            uint64_t n = parse_size(v);
            if (!n) {
                fprintf(stderr, "bench_stream: %s: '%s' is not a size (e.g. 8G, 512M)\n", a, v);
                return 1;
            }
            if (!strcmp(a, "--cache-size")) mo.cache_bytes = n;
            else if (!strcmp(a, "--vram-cache")) mo.vram_cache_bytes = n;
            else mo.memory_budget = n;
        } else {
            fprintf(stderr, "bench_stream: unknown option %s\n", a);
            return usage();
        }
    }
    if (!dir || n_decode < 1 || n_prompt < 1 || raw_gb <= 0) return usage();
    if (threads > 0) omp_set_num_threads(threads);
    mo.n_threads = threads;
    if (!list_expert_files(dir)) {
        fprintf(stderr, "bench_stream: %s/experts holds no layer files: not a packed model\n", dir);
        return 1;
    }
    const char *cache_name = mo.cache != FM_EXPERT_CACHE_OS ? (mo.preload ? "ram, preloaded" : "ram (O_DIRECT misses)")
                                                             : (mo.direct_io ? "os, O_DIRECT" : "os (page cache)");
    printf("flashmoe streamed-expert decode benchmark\n");
    printf("  %-26s %s\n", "model", dir);
    printf("  %-26s %s, io %s, %d threads\n", "expert cache", cache_name, mo.io_uring ? "io_uring" : "pread pool",
           omp_get_max_threads());

    /* 1. raw disk bandwidth (the last layer file: the run starts at the first). */
    const char *raw_file = files[n_files - 1];
    uint64_t raw_bytes1 = 0, raw_bytes2 = 0;
    double raw1 = raw_read_gbps(raw_file, (uint64_t)(raw_gb * 1e9), &raw_bytes1);
    if (raw1 <= 0) return 1;
    printf("  %-26s %.3f GB/s (O_DIRECT, 8 MiB reads, 8 threads, %.2f GB of %s)\n", "raw disk read (before)", raw1,
           raw_bytes1 / 1e9, strrchr(raw_file, '/') + 1);

    /* 2. cold start */
    uint64_t cached0 = cached_all();
    if (drop) drop_all();
    uint64_t cached1 = cached_all();
    printf("  %-26s %.2f GB cached before, %.2f GB after %s (%d files)\n", "expert files in page cache", cached0 / 1e9,
           cached1 / 1e9, drop ? "dropping" : "(--no-drop)", n_files);

    /* Host→device bandwidth, before the model takes the device's memory. */
    const double h2d = mo.backend != FM_BACKEND_CPU ? h2d_gbps(mo.gpu_device) : 0;

    /* 3. open, prefill, decode */
    fm_model *m;
    fm_session *s;
    double t_open = fm_seconds();
    if (fm_model_open(dir, &mo, &m) != FM_OK) fail("open");
    t_open = fm_seconds() - t_open;
    const fm_model_info *in = fm_model_get_info(m);
    int n_moe = 0;
    for (int i = 0; i < in->n_layers; i++) n_moe += fm_model_layer_is_moe(m, i);
    fm_session_options so = {.max_context = n_prompt + n_decode + 1};
    if (fm_session_new(m, &so, &s) != FM_OK) fail("session");
    fm_sampler *greedy;
    if (fm_sampler_new(NULL, in->vocab_size, &greedy) != FM_OK) fail("sampler");
    const double expert_gb = (double)in->n_experts * n_moe * in->expert_bytes / 1e9;
    printf("  %-26s %d layers (%d MoE), %d experts of %.2f MB at %d bits = %.2f GB; dense %.2f GB\n", "model size",
           in->n_layers, n_moe, in->n_experts, in->expert_bytes / 1e6, in->expert_bits, expert_gb,
           in->bytes_dense / 1e9);
    printf("  %-26s %d routed (model: %d) + shared; open %.2f s%s\n", "experts per token", in->n_experts_run,
           in->n_experts_per_token, t_open, mo.preload ? " (preload)" : "");
    const int cuda = in->backend && !strcmp(in->backend, "cuda");
    printf("  %-26s %s (%s)\n", "backend", in->backend ? in->backend : "cpu", in->device_name ? in->device_name : "");
    if (cuda)
        printf("  %-26s dense weights %.2f GB; expert cache budget %.2f GB = %.1f%% of the experts%s; host->device "
               "%.2f GB/s (pinned, 8 MiB copies)\n",
               "VRAM", in->vram_dense_bytes / 1e9, in->vram_cache_bytes / 1e9,
               expert_gb > 0 ? 100.0 * in->vram_cache_bytes / 1e9 / expert_gb : 0,
               mo.vram_cache_bytes ? "" : " (default: what is free)", h2d);

    float *logits = malloc((size_t)in->vocab_size * sizeof *logits);
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    uint64_t r = seed * 0x9E3779B97F4A7C15ull | 1;
    for (int i = 0; i < n_prompt; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        prompt[i] = (int32_t)(r % (uint64_t)in->vocab_size);
    }
    double t0 = fm_seconds();
    if (fm_session_eval(s, prompt, n_prompt, FM_LOGITS_LAST, logits) != FM_OK) fail("prefill");
    double prefill_s = fm_seconds() - t0;
    totals pre = get_totals(s);
    for (int i = 0; i < n_prompt; i++) fm_sampler_accept(greedy, prompt[i]);

    fm_session_reset_timing(s);
    long maj0 = major_faults();
    t0 = fm_seconds();
    for (int i = 0; i < n_decode; i++) {
        int32_t tok = fm_sampler_sample(greedy, logits);
        fm_sampler_accept(greedy, tok);
        if (fm_session_eval(s, &tok, 1, FM_LOGITS_LAST, logits) != FM_OK) fail("decode");
    }
    double decode_s = fm_seconds() - t0;
    long maj = major_faults() - maj0;
    totals d = get_totals(s);
    uint64_t hwm = proc_status("VmHWM"), rss = proc_status("VmRSS");
    const uint64_t huge = proc_value("/proc/self/smaps_rollup", "AnonHugePages");
    /* Another file than before: a virtio host may still cache what was just read. */
    double raw2 = raw_read_gbps(files[n_files > 1 ? n_files - 2 : 0], (uint64_t)(raw_gb * 1e9), &raw_bytes2);
    double raw = raw2 > 0 ? (raw1 + raw2) / 2 : raw1;

    /* 4. against the bound */
    const double N = n_decode;
    const double tps = N / decode_s;
    const double bytes_tok = d.bytes / N;
    const double io_tok = d.sum.expert_io_wait_s / N;
    const double compute_tok = (d.eval_s - d.sum.expert_io_wait_s) / N;
    const double hit = d.fetched ? 100.0 * d.hits / d.fetched : 0;
    const double bound = 1.0 / (bytes_tok / (raw * 1e9) + compute_tok);
    const double nocache_bytes = (double)in->n_experts_run * n_moe * in->expert_bytes;
    const double nocache_bound = 1.0 / (nocache_bytes / (raw * 1e9) + compute_tok);

    printf("\n  %-26s %.3f GB/s (before %.3f, after %.3f)\n", "raw disk read (mean)", raw, raw1, raw2);
    printf("  %-26s %d tokens in %.2f s: %.2f tok/s (%.3f GB read, hit rate %.1f%%)\n", "prefill", n_prompt, prefill_s,
           n_prompt / prefill_s, pre.bytes / 1e9, pre.fetched ? 100.0 * pre.hits / pre.fetched : 0);
    printf("  %-26s %d tokens in %.2f s: %.3f tok/s (%.1f ms/token)\n", "decode", n_decode, decode_s, tps,
           1e3 * decode_s / N);
    printf("  %-26s %.3f GB/token (%.2f experts of %llu fetched/token missed)\n", "read from disk", bytes_tok / 1e9,
           (d.fetched - d.hits) / N, (unsigned long long)(d.fetched / (uint64_t)N));
    printf("  %-26s %.1f%%\n", "cache hit rate", hit);
    printf("  %-26s %.1f ms/token; reads in flight %.1f ms/token (%.2f GB/s while reading)\n", "expert I/O wait",
           1e3 * io_tok, 1e3 * d.read_s / N, d.read_s > 0 ? d.bytes / d.read_s / 1e9 : 0);
    printf("  %-26s %.1f ms/token = attention %.1f + routing %.1f + experts %.1f + other %.1f + head %.1f\n",
           "compute (eval - I/O wait)", 1e3 * compute_tok, 1e3 * d.sum.attention_s / N, 1e3 * d.sum.routing_s / N,
           1e3 * d.sum.expert_compute_s / N, 1e3 * d.sum.other_s / N, 1e3 * d.head_s / N);
    printf("  %-26s %ld during decode\n", "major page faults", maj);
    /* CUDA: where each needed expert came from. experts_fetched counts VRAM misses only. */
    const double needed = d.vram_lookups ? (double)d.vram_lookups : (double)d.vram_hits + d.fetched;
    const double vram_rate = needed > 0 ? 100.0 * d.vram_hits / needed : 0,
                 ram_rate = needed > 0 ? 100.0 * d.hits / needed : 0,
                 ssd_rate = needed > 0 ? 100.0 * (d.fetched - d.hits) / needed : 0;
    const double copied_tok = d.copied / N;
    double xfer_bound = 0;
    if (cuda) {
        printf("  %-26s VRAM %.1f%%, RAM %.1f%%, SSD %.1f%% of %.1f experts needed/token\n", "expert hits (decode)",
               vram_rate, ram_rate, ssd_rate, needed / N);
        printf("  %-26s %.3f GB/token, copies in flight %.1f ms/token (%.2f GB/s while copying; %.2f GB/s "
               "measured)\n",
               "host->device copies", copied_tok / 1e9, 1e3 * d.copy_s / N, d.copy_s > 0 ? d.copied / d.copy_s / 1e9 : 0,
               h2d);
        const double xfer_s = (h2d > 0 ? copied_tok / (h2d * 1e9) : 0) + bytes_tok / (raw * 1e9);
        xfer_bound = xfer_s > 0 ? 1.0 / xfer_s : 0;
    }
    if (mo.memory_budget)
        printf("  %-26s %.2f GB (now %.2f GB) of a %.2f GB budget: %.0f%%\n", "peak RSS (VmHWM)", hwm / 1e9, rss / 1e9,
               mo.memory_budget / 1e9, 100.0 * hwm / mo.memory_budget);
    else
        printf("  %-26s %.2f GB (now %.2f GB)\n", "peak RSS (VmHWM)", hwm / 1e9, rss / 1e9);
    printf("  %-26s %.2f GB of anonymous memory in 2 MB pages (AnonHugePages)\n", "huge pages", huge / 1e9);
    printf("\n  %-26s %8s\n", "", "tok/s");
    printf("  %-26s %8.3f   1 / (%.3f GB / %.3f GB/s + %.1f ms)\n", "bound (this run's reads)", bound, bytes_tok / 1e9,
           raw, 1e3 * compute_tok);
    printf("  %-26s %8.3f   %.2fx bound\n", "measured", tps, tps / bound);
    printf("  %-26s %8.3f   1 / (%d x %d x %.2f MB / %.3f GB/s + %.1f ms)\n", "no-cache bound", nocache_bound,
           in->n_experts_run, n_moe, in->expert_bytes / 1e6, raw, 1e3 * compute_tok);
    printf("  %-26s %8.3f   1 / compute\n", "all-in-RAM bound", 1.0 / compute_tok);
    /* Compute against memory: the weight bytes a token reads at this run's memory bandwidth. */
    const double mem_bw = cuda ? 0.0 : bench_memory_read_gbps();
    const double mem_tok = mem_bw > 0 ? in->bytes_per_token / (mem_bw * 1e9) : 0.0;
    if (mem_bw > 0)
        printf("  %-26s %8.3f   1 / (%.3f GB / %.1f GB/s memory read): compute %.1f ms = %.2fx its time %.1f ms\n",
               "memory bound", 1.0 / mem_tok, in->bytes_per_token / 1e9, mem_bw, 1e3 * compute_tok,
               compute_tok / mem_tok, 1e3 * mem_tok);
    if (cuda && xfer_bound > 0)
        printf("  %-26s %8.3f   1 / (%.3f GB / %.2f GB/s host->device + %.3f GB / %.3f GB/s disk): measured %.2fx\n",
               "transfer bound (CUDA)", xfer_bound, copied_tok / 1e9, h2d, bytes_tok / 1e9, raw, tps / xfer_bound);
    else if (cuda)
        printf("  %-26s %8s   nothing copied or read during decode\n", "transfer bound (CUDA)", "-");
    printf("\nsummary: %s, K=%d, %d MoE layers: decode %.3f tok/s = %.2fx bound %.3f (disk %.2f GB/s, %.3f GB/token, "
           "hit %.1f%%, io wait %.0f ms + compute %.0f ms per token); no-cache bound %.3f; prefill %.2f tok/s; "
           "peak RSS %.2f GB%s; compute %.2fx memory time (%.1f GB/s)\n",
           cache_name, in->n_experts_run, n_moe, tps, tps / bound, bound, raw, bytes_tok / 1e9, hit, 1e3 * io_tok,
           1e3 * compute_tok, nocache_bound, n_prompt / prefill_s, hwm / 1e9,
           mo.memory_budget ? " (budget given)" : "", mem_tok > 0 ? compute_tok / mem_tok : 0.0, mem_bw);
    if (cuda)
        printf("summary-cuda: %s, vram budget %.2f GB (%.1f%% of experts): decode %.3f tok/s; hits VRAM %.1f%% RAM %.1f%% "
               "SSD %.1f%%; copied %.3f GB/token (copies in flight %.1f ms/token), host->device %.2f GB/s, disk %.2f "
               "GB/s; transfer bound %.3f tok/s (%.2fx)\n",
               in->device_name ? in->device_name : "cuda", in->vram_cache_bytes / 1e9,
               expert_gb > 0 ? 100.0 * in->vram_cache_bytes / 1e9 / expert_gb : 0, tps, vram_rate, ram_rate, ssd_rate,
               copied_tok / 1e9, 1e3 * d.copy_s / N, h2d, raw, xfer_bound, xfer_bound > 0 ? tps / xfer_bound : 0);
    free(prompt);
    free(logits);
    fm_sampler_free(greedy);
    fm_session_free(s);
    fm_model_close(m);
    for (int i = 0; i < n_files; i++) free(files[i]);
    free(files);
    return 0;
}

/* Expert fetch benchmark: how close the expert store comes to the disk.
 *   bench_expert_fetch [--file PATH] [--gb N] [--seconds S] [--k K] [--only MODE]
 * (--only runs one mode of the table, counting from 0)
 * Uses (or creates, filled with pseudo-random bytes) one layer file of experts
 * of Qwen3.5-397B-A17B's 4-bit size: 7,077,888 bytes each, stride the same
 * (already a multiple of 4096); by default ~3 GB in /tmp, removed afterwards
 * unless --file named it. Then, in the same run:
 *   raw      one thread reading the file sequentially with O_DIRECT in 8 MiB
 *            blocks: the bound (`fio --direct=1 --rw=read --bs=8M` on the same
 *            file is the independent check of that number);
 *   modes    the store fetching batches of K=10 distinct random experts (fixed
 *            seed) for a few seconds each: pread pool buffered (the file
 *            dropped from the page cache with posix_fadvise DONTNEED before each
 *            batch, outside the timing), pread pool O_DIRECT, io_uring O_DIRECT,
 *            and the RAM cache (O_DIRECT misses, budget a quarter of the file)
 *            under both engines.
 * Prints expert GB/s (10^9 bytes of expert data returned per second) and the
 * ratio to the raw O_DIRECT bandwidth. A virtio disk's bandwidth drifts by tens
 * of percent from second to second, so the raw reader also runs for a third of
 * the mode's time right before each mode, and the ratio is to that adjacent
 * bound (the first raw figure is over the whole --seconds). */
#include "bench_common.h"
#include "flashmoe.h"
#include "store/expert_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPERT_BYTES ((size_t)7077888)
#define BLOCK ((size_t)8 << 20)

static uint64_t rng;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int create_file(const char *path, int n_experts) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint64_t *buf = malloc(BLOCK);
    if (!buf) return -1;
    uint64_t total = (uint64_t)n_experts * EXPERT_BYTES, done = 0;
    rng = 0x2545F4914F6CDD1Dull;
    while (done < total) {
        for (size_t i = 0; i < BLOCK / 8; i++) buf[i] = next_rand();
        size_t n = total - done < BLOCK ? (size_t)(total - done) : BLOCK;
        ssize_t w = write(fd, buf, n);
        if (w <= 0) {
            fprintf(stderr, "%s: write failed: %s\n", path, w < 0 ? strerror(errno) : "disk full");
            free(buf);
            close(fd);
            return -1;
        }
        done += (uint64_t)w;
    }
    free(buf);
    if (fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* Sequential O_DIRECT read of the whole file (at most `seconds`), 8 MiB blocks. */
static double raw_bandwidth(const char *path, uint64_t size, double seconds) {
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "%s: O_DIRECT open failed: %s\n", path, strerror(errno));
        return 0;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, BLOCK) != 0) return 0;
    uint64_t off = 0, bytes = 0;
    double t0 = fm_seconds();
    while (fm_seconds() - t0 < seconds) {
        if (off + BLOCK > size) off = 0; /* whole blocks only */
        ssize_t r = pread(fd, buf, BLOCK, (off_t)off);
        if (r <= 0) {
            fprintf(stderr, "%s: read failed: %s\n", path, r < 0 ? strerror(errno) : "end of file");
            break;
        }
        bytes += (uint64_t)r;
        off += BLOCK;
    }
    double t = fm_seconds() - t0;
    free(buf);
    close(fd);
    return (double)bytes / t / 1e9;
}

typedef struct {
    const char *name;
    fm_io_engine engine;
    fm_cache_policy cache;
    int direct;
    int drop; /* drop the page cache before each batch */
} mode;

int main(int argc, char **argv) {
    const char *file = NULL;
    double gb = 3.0, seconds = 4.0;
    int k = 10, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--gb") && i + 1 < argc) gb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--file PATH] [--gb N] [--seconds S] [--k K] [--only MODE]\n", argv[0]);
            return 2;
        }
    }
    int n_experts = (int)(gb * 1e9 / (double)EXPERT_BYTES);
    if (n_experts < k || k < 1) {
        fprintf(stderr, "need at least K=%d experts (--gb %.2f gives %d)\n", k, gb, n_experts);
        return 2;
    }
    char tmp[64];
    int remove_after = 0;
    if (!file) {
        snprintf(tmp, sizeof tmp, "/tmp/fm-bench-experts-%d", (int)getpid());
        file = tmp;
        remove_after = 1;
    }
    struct stat st;
    uint64_t want = (uint64_t)n_experts * EXPERT_BYTES;
    if (stat(file, &st) == 0 && (uint64_t)st.st_size >= want) {
        n_experts = (int)((uint64_t)st.st_size / EXPERT_BYTES);
        printf("reusing %s: %d experts\n", file, n_experts);
    } else {
        printf("writing %s: %d experts of %zu bytes (%.2f GB)\n", file, n_experts, EXPERT_BYTES, want / 1e9);
        fflush(stdout);
        if (create_file(file, n_experts) != 0) return 1;
    }
    uint64_t size = (uint64_t)n_experts * EXPERT_BYTES;
    drop_cache(file);

    double raw = raw_bandwidth(file, size, seconds);
    printf("raw O_DIRECT sequential read, 8 MiB blocks, 1 thread: %.3f GB/s\n", raw);
    printf("(independent check: fio --name=seq --filename=%s --rw=read --bs=8M --direct=1 --ioengine=psync)\n\n",
           file);

    const mode modes[] = {
        {"pread pool, buffered (cold)", FM_IO_PREAD, FM_CACHE_OS, 0, 1},
        {"pread pool, O_DIRECT", FM_IO_PREAD, FM_CACHE_OS, 1, 0},
        {"io_uring, O_DIRECT", FM_IO_URING, FM_CACHE_OS, 1, 0},
        {"RAM cache 25%, pread misses", FM_IO_PREAD, FM_CACHE_RAM, 1, 0},
        {"RAM cache 25%, io_uring misses", FM_IO_URING, FM_CACHE_RAM, 1, 0},
    };
    printf("K=%d random distinct experts per batch, %.1f s per mode, %d experts of %zu bytes\n", k, seconds,
           n_experts, EXPERT_BYTES);
    printf("%-32s %9s %9s %9s %8s %8s %10s\n", "mode", "GB/s", "raw GB/s", "vs raw", "hits", "batches", "io_wait");
    int *ids = malloc((size_t)k * sizeof *ids);
    int *perm = malloc((size_t)n_experts * sizeof *perm);
    if (!ids || !perm) return 1;
    const char *paths[1] = {file};
    int status = 0;
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        if (only >= 0 && (size_t)only != m) continue;
        store_layout L = {.n_layers = 1, .paths = paths, .n_experts = n_experts, .expert_bytes = EXPERT_BYTES,
                          .stride = EXPERT_BYTES};
        store_options o = {.engine = modes[m].engine, .direct = modes[m].direct, .cache = modes[m].cache,
                           .cache_bytes = size / 4};
        fm_store *s = NULL;
        if (store_open(&L, &o, &s) != FM_OK) {
            fprintf(stderr, "%s: %s\n", modes[m].name, fm_last_error());
            status = 1;
            continue;
        }
        double bound = raw_bandwidth(file, size, seconds / 3);
        drop_cache(file);
        rng = 0x9E3779B97F4A7C15ull; /* the same batches for every mode */
        for (int i = 0; i < n_experts; i++) perm[i] = i;
        double busy = 0, t_end = fm_seconds() + seconds;
        uint64_t experts = 0, batches = 0;
        while (fm_seconds() < t_end) {
            for (int i = 0; i < k; i++) { /* partial Fisher-Yates: k distinct ids */
                int j = i + (int)(next_rand() % (uint64_t)(n_experts - i));
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
                ids[i] = perm[i];
            }
            if (modes[m].drop) drop_cache(file);
            double t0 = fm_seconds();
            fm_status r = store_begin(s, 0, ids, k);
            int slot = 0;
            const void *data;
            volatile unsigned char sink = 0;
            while (r == FM_OK && (r = store_next(s, &slot, &data)) == FM_OK && slot >= 0) {
                sink ^= ((const unsigned char *)data)[EXPERT_BYTES - 1]; /* touch it */
                experts++;
            }
            (void)sink;
            busy += fm_seconds() - t0;
            batches++;
            if (r != FM_OK) {
                fprintf(stderr, "%s: %s\n", modes[m].name, fm_last_error());
                status = 1;
                break;
            }
        }
        store_stats stt = store_get_stats(s);
        double gbs = (double)experts * EXPERT_BYTES / busy / 1e9;
        printf("%-32s %9.3f %9.3f %8.2fx %7.1f%% %8llu %9.2fs%s\n", modes[m].name, gbs, bound,
               bound > 0 ? gbs / bound : 0,
               stt.fetches ? 100.0 * (double)stt.hits / (double)stt.fetches : 0.0, (unsigned long long)batches,
               stt.io_wait_s, stt.direct_fallback ? "  (O_DIRECT refused: buffered)" : "");
        store_close(s);
    }
    free(ids);
    free(perm);
    if (remove_after) unlink(file);
    return status;
}

#include "test_util.h"

#include "flashmoe.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

const char *test_models_dir(void) {
    const char *d = getenv("FM_TEST_MODELS");
    return d && *d ? d : "build/models";
}

static char tmp_dir[512];
static pid_t tmp_owner;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* The test's directory goes when the test ends, whatever it left there (not
 * when a forked child exits). */
static void remove_tmp_dir(void) {
    if (getpid() == tmp_owner) nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_tmp_dir(void) {
    if (!tmp_dir[0]) {
        const char *base = getenv("FM_TEST_TMP");
        snprintf(tmp_dir, sizeof tmp_dir, "%s/fmtest-%d", base && *base ? base : "/tmp", (int)getpid());
        if (mkdir(tmp_dir, 0755) == 0) tmp_owner = getpid(), atexit(remove_tmp_dir);
    }
    return tmp_dir;
}

double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || isnan(d)) m = d;
    }
    return m;
}

void report(const char *label, const float *got, const float *want, size_t n) {
    printf("  %-40s rel_l2 %.3e  max|diff| %.3e  first:", label, rel_l2(got, want, n), max_abs_diff(got, want, n));
    for (size_t i = 0; i < n && i < 3; i++) printf(" %.5f/%.5f", got[i], want[i]);
    printf("\n");
}

float rand_uniform(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

void fill_random(float *x, size_t n, uint64_t *seed) {
    for (size_t i = 0; i < n; i++) x[i] = rand_uniform(seed);
}

const st_tensor *ref_tensor(const st_file *f, const char *name) {
    const st_tensor *t = st_file_find(f, name);
    if (!t) fail_msg("reference tensor '%s' missing in %s", name, f->path);
    return t;
}

int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (run the tests from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = 0;
    fclose(f);
    return text;
}

static void *kept[4096];
static int n_kept;

void *test_keep(void *p) {
    if (!p) fail_msg("out of memory");
    if (n_kept == (int)(sizeof kept / sizeof *kept)) fail_msg("too many allocations");
    kept[n_kept++] = p;
    return p;
}

void test_free_kept(void) {
    while (n_kept) free(kept[--n_kept]);
}

fm_model *test_open_model(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", test_models_dir(), name);
    fm_model *m = NULL;
    if (fm_model_open(dir, NULL, &m) != FM_OK) fail_msg("open %s: %s", dir, fm_last_error());
    return m;
}

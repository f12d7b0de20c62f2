/* Helpers shared by the test programs: fixture paths, reference tensors,
 * error metrics, deterministic random data. */
#ifndef FM_TESTS_TEST_UTIL_H
#define FM_TESTS_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "load/safetensors.h"

/* SANITIZED: 1 in AddressSanitizer builds, where every load is checked (tests run fewer or
 * untimed iterations there). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Directory holding the unpacked fixture models (FM_TEST_MODELS, default build/models). */
const char *test_models_dir(void);
/* A scratch directory for files a test writes (FM_TEST_TMP or /tmp), unique per process. */
const char *test_tmp_dir(void);

/* sqrt(Σ(a-b)²) / sqrt(Σb²), accumulated in double. */
double rel_l2(const float *a, const float *b, size_t n);
double max_abs_diff(const float *a, const float *b, size_t n);
/* Prints the first few pairs and the errors, like a check_tensor report. */
void report(const char *label, const float *got, const float *want, size_t n);

/* Uniform in [-1, 1), deterministic per seed (xorshift). */
void fill_random(float *x, size_t n, uint64_t *seed);
float rand_uniform(uint64_t *seed);

/* Opens fixture model `name` (under test_models_dir()) with default options; fails the test if it cannot. */
struct fm_model *test_open_model(const char *name);

/* Reference tensor by name from an open safetensors file; fails the test if absent. */
const st_tensor *ref_tensor(const st_file *f, const char *name);

/* Keeps p (failing the test if NULL) to be freed by test_free_kept(): a test's
 * scratch allocations, released together when it ends. */
void *test_keep(void *p);
void test_free_kept(void);

int write_file(const char *path, const void *data, size_t len);
/* A whole file as a NUL-terminated string (malloc'd); fails the test if unreadable. */
char *read_text_file(const char *path);

#endif

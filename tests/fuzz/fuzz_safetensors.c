/* libFuzzer target: the input is a whole safetensors file image. The first 8
 * bytes are the little-endian header length; the header is parsed against the
 * rest as st_file_open does after mapping the file (same bounds checks first).
 * On success the parsed entries must satisfy what safetensors.h promises:
 * offsets inside the data section, byte counts matching shape × dtype, no
 * overlaps; a violation aborts, so the fuzzer reports it. */
#include "load/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_HEADER (256u << 20) /* as st_file_open */

static int by_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void check(const st_file *f, uint64_t data_size) {
    const st_tensor **sorted = malloc((f->n_tensors ? (size_t)f->n_tensors : 1) * sizeof *sorted);
    if (!sorted) abort();
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (!t->name || t->data || t->n_dims < 0 || t->n_dims > ST_MAX_DIMS) abort();
        if ((unsigned)t->dtype >= FM_DTYPE_COUNT) abort();
        if (t->offset > data_size || t->nbytes > data_size - t->offset) abort();
        if (st_tensor_numel(t) * fm_dtype_size(t->dtype) != t->nbytes) abort();
        if (strcmp(t->name, "__metadata__") == 0) abort();
        if (st_file_find(f, t->name) == NULL) abort();
        sorted[i] = t;
    }
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, by_offset);
    for (int i = 1; i < f->n_tensors; i++)
        if (sorted[i]->offset < sorted[i - 1]->offset + sorted[i - 1]->nbytes) abort();
    free(sorted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | data[i];
    if (header_len > size - 8 || header_len > FUZZ_MAX_HEADER) return 0;
    /* Copy the header to its own allocation so ASan catches any read past it. */
    char *header = malloc(header_len ? (size_t)header_len : 1);
    if (!header) return 0;
    memcpy(header, data + 8, (size_t)header_len);
    st_file *f = calloc(1, sizeof *f);
    if (!f) abort();
    uint64_t data_size = size - 8 - header_len;
    if (st_parse_header(header, (size_t)header_len, data_size, "fuzz.safetensors", f) == FM_OK)
        check(f, data_size);
    else if (f->tensors || f->n_tensors)
        abort(); /* a failed parse leaves nothing behind */
    st_file_close(f); /* frees the tensors; no mapping, no path */
    free(header);
    return 0;
}

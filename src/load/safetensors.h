/* safetensors files: an 8-byte little-endian header length, a JSON header
 * mapping names to {dtype, shape, data_offsets}, then the tensor bytes.
 * The file is mapped read-only; tensors point into the mapping (never copied).
 * Every header entry is validated: known dtype, byte count matching the shape,
 * offsets inside the data and not overlapping. */
#ifndef FM_LOAD_SAFETENSORS_H
#define FM_LOAD_SAFETENSORS_H

#include "core/dtype.h"
#include "flashmoe.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    fm_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t offset, nbytes; /* relative to the start of the data section */
    const void *data;        /* into the mapping; NULL when parsed from memory */
} st_tensor;

typedef struct {
    char *path;
    st_tensor *tensors; /* [n_tensors], in header order */
    int n_tensors;
    void *map;
    size_t map_size;
} st_file;

/* Parses a header (the JSON text, `len` bytes) against a data section of
 * `data_size` bytes. `label` names the file in messages. Pure: no I/O, used
 * by the fuzz target. On success fills tensors/n_tensors of `out`. */
fm_status st_parse_header(const char *json, size_t len, uint64_t data_size, const char *label,
                          st_file *out);

/* ST_MAP_FILE maps the file (pages come and go with the page cache);
 * ST_COPY_TO_RAM reads it into anonymous memory in 2 MB pages where the
 * kernel allows (weights read every token: fewer TLB misses), dropping the
 * page cache's copy. */
typedef enum { ST_MAP_FILE, ST_COPY_TO_RAM } st_load_mode;

fm_status st_file_open(const char *path, st_file **out); /* ST_MAP_FILE */
fm_status st_file_open_mode(const char *path, st_load_mode mode, st_file **out);
void st_file_close(st_file *file); /* accepts NULL and half-built files */

const st_tensor *st_file_find(const st_file *file, const char *name);

/* The head of a safetensors file holding `tensors` (their name, dtype, shape,
 * offset and nbytes; data is not used), with "__metadata__": {"format":
 * format}: the 8-byte length and the JSON, padded with spaces so that the data
 * starts 64-byte aligned. malloc'd (*len bytes); NULL when out of memory. */
char *st_header_build(const st_tensor *tensors, int n, const char *format, size_t *len);
uint64_t st_tensor_numel(const st_tensor *t);

#endif

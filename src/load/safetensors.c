/* safetensors reader (see safetensors.h). JSON is parsed with cJSON. */
#include "load/safetensors.h"

#include "core/error.h"
#include "core/huge_map.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Headers of real checkpoints are at most a few MB; refuse absurd lengths
 * before allocating. */
#define ST_MAX_HEADER (256u << 20)

uint64_t st_tensor_numel(const st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static void free_tensors(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

static int compare_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* A JSON number that is a non-negative integer below 2^53 (exactly representable). */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static fm_status parse_entry(const cJSON *item, uint64_t data_size, const char *label, st_tensor *t) {
    const char *name = item->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsObject(item) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': header entry needs dtype, shape and data_offsets",
                        label, name);
    int d = fm_dtype_from_name(dtype->valuestring);
    if (d < 0)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, dtype->valuestring);
    t->dtype = (fm_dtype)d;
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > ST_MAX_DIMS)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d supported)", label, name,
                        n_dims, ST_MAX_DIMS);
    t->n_dims = n_dims;
    uint64_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        uint64_t dim;
        if (!json_uint(cJSON_GetArrayItem(shape, i), &dim) || dim > (1ull << 40))
            return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': invalid shape entry %d", label, name, i);
        t->shape[i] = (int64_t)dim;
        if (dim && numel > UINT64_MAX / dim / 8)
            return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': shape too large", label, name);
        numel *= dim;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offsets) != 2 || !json_uint(cJSON_GetArrayItem(offsets, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offsets, 1), &end))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': data_offsets must be two non-negative integers",
                        label, name);
    if (begin > end || end > data_size)
        return fm_error(FM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] out of range (data section is %llu bytes; truncated file?)",
                        label, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)data_size);
    uint64_t expected = numel * fm_dtype_size(t->dtype);
    if (end - begin != expected)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': %llu bytes stored but shape and dtype %s need %llu",
                        label, name, (unsigned long long)(end - begin), fm_dtype_name(t->dtype),
                        (unsigned long long)expected);
    t->offset = begin;
    t->nbytes = end - begin;
    t->name = strdup(name);
    return t->name ? FM_OK : fm_error(FM_ERR_NOMEM, "%s: out of memory", label);
}

fm_status st_parse_header(const char *json, size_t len, uint64_t data_size, const char *label, st_file *out) {
    out->tensors = NULL;
    out->n_tensors = 0;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: safetensors header is not a JSON object", label);
    }
    int n = 0;
    for (cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__") != 0) n++;
    fm_status st = FM_OK;
    out->tensors = calloc(n ? (size_t)n : 1, sizeof(st_tensor));
    st_tensor **sorted = calloc(n ? (size_t)n : 1, sizeof(st_tensor *));
    if (!out->tensors || !sorted) {
        st = fm_error(FM_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    for (cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        st_tensor *t = &out->tensors[out->n_tensors];
        if ((st = parse_entry(it, data_size, label, t)) != FM_OK) goto done;
        sorted[out->n_tensors++] = t;
    }
    /* Overlapping tensors mean a corrupt or hostile file. */
    qsort(sorted, (size_t)n, sizeof *sorted, compare_offset);
    for (int i = 1; i < n; i++) {
        if (sorted[i]->offset < sorted[i - 1]->offset + sorted[i - 1]->nbytes) {
            st = fm_error(FM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", label, sorted[i - 1]->name,
                          sorted[i]->name);
            goto done;
        }
    }
done:
    free(sorted);
    cJSON_Delete(root);
    if (st != FM_OK) free_tensors(out);
    return st;
}

/* The whole file read into anonymous memory, 2 MB-aligned and marked
 * MADV_HUGEPAGE (so that where transparent huge pages are on, even as
 * "madvise", weights read every token sit in 2 MB pages rather than a file
 * mapping's 4 KB ones: fewer TLB misses). The page cache's copy is dropped
 * afterwards. Sets f->map, f->map_size. */
static fm_status copy_to_ram(st_file *f, int fd, uint64_t size, const char *path) {
    const size_t len = fm_huge_round((size_t)size);
    char *p = fm_huge_map(len);
    if (!p) return fm_error(FM_ERR_NOMEM, "%s: out of memory for the %.2f GB of weights", path, (double)size / 1e9);
    f->map = p;
    f->map_size = len;
    for (uint64_t off = 0; off < size;) {
        const size_t want = size - off < ((uint64_t)64 << 20) ? (size_t)(size - off) : (size_t)64 << 20;
        const ssize_t got = pread(fd, p + off, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fm_error(FM_ERR_IO, "%s: read failed at offset %llu: %s", path, (unsigned long long)off, strerror(errno));
        if (got == 0)
            return fm_error(FM_ERR_IO, "%s: the file ended at %llu bytes while being read (%llu expected)", path,
                            (unsigned long long)off, (unsigned long long)size);
        off += (uint64_t)got;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    return FM_OK;
}

fm_status st_file_open(const char *path, st_file **out) { return st_file_open_mode(path, ST_MAP_FILE, out); }

fm_status st_file_open_mode(const char *path, st_load_mode mode, st_file **out) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return fm_error(FM_ERR_NOMEM, "%s: out of memory", path);
    }
    fm_status st = FM_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = fm_error(FM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = fm_error(FM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = fm_error(FM_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = fm_error(FM_ERR_FORMAT, "%s: file is %llu bytes, too short for a safetensors header", path,
                      (unsigned long long)size);
        goto fail;
    }
    if (mode == ST_COPY_TO_RAM) {
        if ((st = copy_to_ram(f, fd, size, path)) != FM_OK) goto fail;
    } else {
        f->map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            st = fm_error(FM_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
            goto fail;
        }
        f->map_size = size;
    }
    const unsigned char *p = f->map;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | p[i];
    if (header_len > size - 8 || header_len > ST_MAX_HEADER) {
        st = fm_error(FM_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                      (unsigned long long)header_len, (unsigned long long)size);
        goto fail;
    }
    st_file parsed;
    st = st_parse_header((const char *)p + 8, header_len, size - 8 - header_len, path, &parsed);
    if (st != FM_OK) goto fail;
    f->tensors = parsed.tensors;
    f->n_tensors = parsed.n_tensors;
    const unsigned char *data = p + 8 + header_len;
    for (int i = 0; i < f->n_tensors; i++) {
        st_tensor *t = &f->tensors[i];
        /* Writers pad the header to 8 bytes; kernels read elements in place. */
        if ((8 + header_len + t->offset) % fm_dtype_size(t->dtype)) {
            st = fm_error(FM_ERR_FORMAT, "%s: tensor '%s' is not aligned to its %zu-byte elements (header not padded)",
                          path, t->name, fm_dtype_size(t->dtype));
            goto fail;
        }
        t->data = data + t->offset;
    }
    close(fd);
    *out = f;
    return FM_OK;
fail:
    if (fd >= 0) close(fd);
    st_file_close(f);
    return st;
}

void st_file_close(st_file *f) {
    if (!f) return;
    free_tensors(f);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

const st_tensor *st_file_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

char *st_header_build(const st_tensor *tensors, int n, const char *format, size_t *len) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", format);
    cJSON_AddItemToObject(root, "__metadata__", meta);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &tensors[i];
        cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "dtype", fm_dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(o, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)t->offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(t->offset + t->nbytes)));
        cJSON_AddItemToObject(o, "data_offsets", offs);
        cJSON_AddItemToObject(root, t->name, o);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t n_json = strlen(json), padded = (8 + n_json + 63) / 64 * 64 - 8;
    char *buf = malloc(8 + padded);
    if (buf) {
        for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)padded >> (8 * i));
        memcpy(buf + 8, json, n_json);
        memset(buf + 8 + n_json, ' ', padded - n_json);
        *len = 8 + padded;
    }
    free(json);
    return buf;
}

/* Tensor binding (see weights.h). */
#include "model/weights.h"

#include "model/arch.h"
#include "quant/affine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ckpt_entry *find(fm_model *m, int flags, const char *name, char *full, size_t full_size) {
    if (flags & W_ROOT) { /* MLX's sanitised Qwen3.5 names it language_model.lm_head */
        snprintf(full, full_size, "language_model.%s", name);
        const ckpt_entry *e = ckpt_find(m->ckpt, full);
        if (e) return e;
        snprintf(full, full_size, "%s", name);
        return ckpt_find(m->ckpt, name);
    }
    const fm_arch *arch = m->cfg.arch;
    for (int i = 0; i < 3 && arch->prefixes[i]; i++) {
        snprintf(full, full_size, "%s%s", arch->prefixes[i], name);
        const ckpt_entry *e = ckpt_find(m->ckpt, full);
        if (e) return e;
    }
    snprintf(full, full_size, "%s%s", arch->prefixes[0], name); /* name it as the first prefix would */
    return NULL;
}

static void shape_string(const st_tensor *t, char *buf, size_t size) {
    int n = snprintf(buf, size, "[");
    for (int i = 0; i < t->n_dims && n < (int)size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < (int)size) snprintf(buf + n, size - (size_t)n, "]");
}

static void account(fm_model *m, int flags, uint64_t params, uint64_t bytes) {
    if (flags & W_EXPERT) {
        m->info.params_experts += params;
        m->info.bytes_experts += bytes;
    } else {
        m->info.params_dense += params;
        m->info.bytes_dense += bytes;
    }
}

static void record(fm_model *m, const st_tensor *t, int matrix, int cols, int flags) {
    weights_record *r = m->record;
    if (!r || (flags & W_EXPERT)) return;
    for (int i = 0; i < r->n; i++)
        if (r->items[i].tensor == t) return;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 256;
        weights_used *items = realloc(r->items, (size_t)cap * sizeof *items);
        if (!items) return; /* the converter checks the count against the tensors it needs */
        r->items = items;
        r->cap = cap;
    }
    r->items[r->n++] = (weights_used){t, matrix, cols};
}

static fm_status lookup(fm_model *m, int flags, const char *fmt, va_list ap, const ckpt_entry **out, char *full,
                        size_t full_size) {
    char name[512];
    vsnprintf(name, sizeof name, fmt, ap);
    *out = find(m, flags, name, full, full_size);
    if (!*out) return fm_error(FM_ERR_FORMAT, "%s: missing tensor '%s'", m->ckpt->dir, full);
    const fm_dtype dt = (*out)->tensor->dtype;
    if (!fm_dtype_is_weight(dt) && dt != FM_DTYPE_U32)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or quantized U32",
                        (*out)->file->path, full, fm_dtype_name(dt));
    return FM_OK;
}

static fm_status wrong_shape(const ckpt_entry *e, const char *full, const char *expected) {
    char got[128];
    shape_string(e->tensor, got, sizeof got);
    return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", e->file->path, full, got, expected);
}

/* 1 if t is [E, rows, cols] (E > 0) or [rows, cols] (E == 0). */
static int has_shape(const st_tensor *t, int E, int rows, int64_t cols) {
    int d = E > 0;
    if (t->n_dims != 2 + d || (d && t->shape[0] != E)) return 0;
    return t->shape[d] == rows && t->shape[d + 1] == cols;
}

static fm_status expect_shape(const ckpt_entry *e, const char *full, int E, int rows, int64_t cols) {
    if (has_shape(e->tensor, E, rows, cols)) return FM_OK;
    char expected[96];
    if (E > 0)
        snprintf(expected, sizeof expected, "[%d, %d, %lld]", E, rows, (long long)cols);
    else
        snprintf(expected, sizeof expected, "[%d, %lld]", rows, (long long)cols);
    return wrong_shape(e, full, expected);
}

/* The scales or biases of quantized weight `full` (NAME.weight → NAME.<what>). */
static fm_status quant_sibling(fm_model *m, const char *full, const char *what, int E, int rows,
                               const ckpt_entry **out) {
    size_t n = strlen(full);
    char name[640];
    if (n < 7 || strcmp(full + n - 7, ".weight") != 0)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' is U32 (quantized) but not named NAME.weight", m->ckpt->dir,
                        full);
    snprintf(name, sizeof name, "%.*s.%s", (int)(n - 7), full, what);
    const ckpt_entry *e = ckpt_find(m->ckpt, name);
    if (!e) return fm_error(FM_ERR_FORMAT, "%s: quantized tensor '%s' has no '%s'", m->ckpt->dir, full, name);
    const st_tensor *t = e->tensor;
    if (t->dtype != FM_DTYPE_BF16)
        return fm_error(FM_ERR_FORMAT, "%s: '%s' has dtype %s; quantization scales and biases must be BF16",
                        e->file->path, name, fm_dtype_name(t->dtype));
    if (t->n_dims != 2 + (E > 0) || (E > 0 && t->shape[0] != E) || t->shape[E > 0] != rows)
        return wrong_shape(e, name, E > 0 ? "[experts, rows, groups]" : "[rows, groups]");
    *out = e;
    return FM_OK;
}

/* Views a matrix tensor of logical shape [E, rows, cols] (or [rows, cols]
 * when E == 0), plain or quantized (MLX: NAME.weight U32 [.., rows,
 * cols·bits/32] with NAME.scales and NAME.biases BF16 [.., rows, cols/group]),
 * into out[x * stride] for each x, taking rows [row0, row0 + n_rows). */
static fm_status bind(fm_model *m, const ckpt_entry *e, const char *full, int E, int rows, int cols, int row0,
                      int n_rows, int flags, fm_mat *out, size_t stride) {
    const st_tensor *t = e->tensor;
    const int n_mats = E > 0 ? E : 1;
    uint64_t bytes = t->nbytes;
    if (t->dtype != FM_DTYPE_U32) {
        fm_status st = expect_shape(e, full, E, rows, cols);
        if (st != FM_OK) return st;
        size_t elt = fm_dtype_size(t->dtype);
        for (int x = 0; x < n_mats; x++)
            *(fm_mat *)((char *)out + (size_t)x * stride) = (fm_mat){
                .data = (const char *)t->data + ((size_t)x * rows + (size_t)row0) * cols * elt,
                .dtype = t->dtype, .rows = n_rows, .cols = cols};
    } else {
        const ckpt_entry *se, *be;
        fm_status st;
        if ((st = quant_sibling(m, full, "scales", E, rows, &se)) || (st = quant_sibling(m, full, "biases", E, rows, &be)))
            return st;
        int64_t words = t->shape[t->n_dims - 1], groups = se->tensor->shape[se->tensor->n_dims - 1];
        int bits = words * 32 % cols == 0 ? (int)(words * 32 / cols) : 0;
        int group = groups > 0 && cols % groups == 0 ? (int)(cols / groups) : 0;
        if ((st = expect_shape(e, full, E, rows, words))) return st;
        if (!has_shape(be->tensor, E, rows, groups)) return wrong_shape(be, be->tensor->name, "the shape of the scales");
        if (!fm_quant_supported(bits, group, cols))
            return fm_error(FM_ERR_UNSUPPORTED,
                            "%s: tensor '%s' is quantized with %lld words and %lld groups per row of %d values "
                            "(%s); flashmoe runs 2, 4 and 8 bits with groups of 32, 64 or 128",
                            e->file->path, full, (long long)words, (long long)groups, cols,
                            bits && group ? "unsupported bits/group" : "not a whole number of bits or groups");
        for (int x = 0; x < n_mats; x++) {
            size_t row = (size_t)x * rows + (size_t)row0;
            *(fm_mat *)((char *)out + (size_t)x * stride) = (fm_mat){
                .data = (const uint32_t *)t->data + row * (size_t)words,
                .dtype = FM_DTYPE_U32, .rows = n_rows, .cols = cols, .bits = bits, .group = group,
                .scales = (const uint16_t *)se->tensor->data + row * (size_t)groups,
                .biases = (const uint16_t *)be->tensor->data + row * (size_t)groups};
        }
        bytes += se->tensor->nbytes + be->tensor->nbytes;
    }
    if (row0 == 0) account(m, flags, (uint64_t)n_mats * rows * cols, bytes);
    record(m, t, E == 0, cols, flags);
    if (t->dtype == FM_DTYPE_U32) { /* and its scales and biases, found again by name */
        char name[640];
        size_t n = strlen(full) - 7;
        snprintf(name, sizeof name, "%.*s.scales", (int)n, full);
        record(m, ckpt_find(m->ckpt, name)->tensor, 0, 0, flags);
        snprintf(name, sizeof name, "%.*s.biases", (int)n, full);
        record(m, ckpt_find(m->ckpt, name)->tensor, 0, 0, flags);
    }
    return FM_OK;
}

fm_status weights_mat(fm_model *m, fm_mat *out, int rows, int cols, int flags, const char *fmt, ...) {
    const ckpt_entry *e;
    char full[600];
    va_list ap;
    va_start(ap, fmt);
    fm_status st = lookup(m, flags, fmt, ap, &e, full, sizeof full);
    va_end(ap);
    if (st != FM_OK) return st;
    return bind(m, e, full, 0, rows, cols, 0, rows, flags, out, 0);
}

fm_status weights_f32(fm_model *m, float **out, int64_t n, float add, const char *fmt, ...) {
    const ckpt_entry *e;
    char full[600];
    va_list ap;
    va_start(ap, fmt);
    fm_status st = lookup(m, 0, fmt, ap, &e, full, sizeof full);
    va_end(ap);
    if (st != FM_OK) return st;
    if (!fm_dtype_is_weight(e->tensor->dtype))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", e->file->path, full,
                        fm_dtype_name(e->tensor->dtype));
    if ((int64_t)st_tensor_numel(e->tensor) != n) {
        char expected[64];
        snprintf(expected, sizeof expected, "%lld elements", (long long)n);
        return wrong_shape(e, full, expected);
    }
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **owned = realloc(m->owned, (size_t)cap * sizeof *owned);
        if (!owned) return fm_error(FM_ERR_NOMEM, "out of memory");
        m->owned = owned;
        m->cap_owned = cap;
    }
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return fm_error(FM_ERR_NOMEM, "out of memory loading '%s'", full);
    m->owned[m->n_owned++] = v;
    fm_dtype_to_f32(v, e->tensor->data, e->tensor->dtype, (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] += add;
    account(m, 0, st_tensor_numel(e->tensor), e->tensor->nbytes);
    record(m, e->tensor, 0, 0, 0);
    *out = v;
    return FM_OK;
}

fm_status weights_stacked(fm_model *m, fm_mat *out, size_t stride, int E, int rows, int cols, int row0,
                          int n_rows, const char *fmt, ...) {
    const ckpt_entry *e;
    char full[600];
    va_list ap;
    va_start(ap, fmt);
    fm_status st = lookup(m, W_EXPERT, fmt, ap, &e, full, sizeof full);
    va_end(ap);
    if (st != FM_OK) return st;
    return bind(m, e, full, E, rows, cols, row0, n_rows, W_EXPERT, out, stride);
}

int weights_has(fm_model *m, const char *fmt, ...) {
    char name[512], full[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return find(m, 0, name, full, sizeof full) != NULL;
}

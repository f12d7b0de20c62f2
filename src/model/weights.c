/* Tensor binding (see weights.h). */
#include "model/weights.h"

#include "model/arch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const ckpt_entry *find(fm_model *m, int flags, const char *name, char *full, size_t full_size) {
    if (flags & W_ROOT) {
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

static void account(fm_model *m, const st_tensor *t, int flags) {
    uint64_t n = st_tensor_numel(t);
    if (flags & W_EXPERT) {
        m->info.params_experts += n;
        m->info.bytes_experts += t->nbytes;
    } else {
        m->info.params_dense += n;
        m->info.bytes_dense += t->nbytes;
    }
}

static fm_status lookup(fm_model *m, int flags, const char *fmt, va_list ap, const ckpt_entry **out, char *full,
                        size_t full_size) {
    char name[512];
    vsnprintf(name, sizeof name, fmt, ap);
    *out = find(m, flags, name, full, full_size);
    if (!*out) return fm_error(FM_ERR_FORMAT, "%s: missing tensor '%s'", m->ckpt->dir, full);
    if (!fm_dtype_is_weight((*out)->tensor->dtype))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                        (*out)->file->path, full, fm_dtype_name((*out)->tensor->dtype));
    return FM_OK;
}

static fm_status wrong_shape(const ckpt_entry *e, const char *full, const char *expected) {
    char got[128];
    shape_string(e->tensor, got, sizeof got);
    return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", e->file->path, full, got, expected);
}

fm_status weights_mat(fm_model *m, fm_mat *out, int rows, int cols, int flags, const char *fmt, ...) {
    const ckpt_entry *e;
    char full[600];
    va_list ap;
    va_start(ap, fmt);
    fm_status st = lookup(m, flags, fmt, ap, &e, full, sizeof full);
    va_end(ap);
    if (st != FM_OK) return st;
    const st_tensor *t = e->tensor;
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char expected[64];
        snprintf(expected, sizeof expected, "[%d, %d]", rows, cols);
        return wrong_shape(e, full, expected);
    }
    *out = (fm_mat){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols};
    account(m, t, flags);
    return FM_OK;
}

fm_status weights_f32(fm_model *m, float **out, int64_t n, float add, const char *fmt, ...) {
    const ckpt_entry *e;
    char full[600];
    va_list ap;
    va_start(ap, fmt);
    fm_status st = lookup(m, 0, fmt, ap, &e, full, sizeof full);
    va_end(ap);
    if (st != FM_OK) return st;
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
    account(m, e->tensor, 0);
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
    const st_tensor *t = e->tensor;
    if (t->n_dims != 3 || t->shape[0] != E || t->shape[1] != rows || t->shape[2] != cols) {
        char expected[64];
        snprintf(expected, sizeof expected, "[%d, %d, %d]", E, rows, cols);
        return wrong_shape(e, full, expected);
    }
    size_t elt = fm_dtype_size(t->dtype);
    for (int x = 0; x < E; x++) {
        fm_mat *mat = (fm_mat *)((char *)out + (size_t)x * stride);
        *mat = (fm_mat){.data = (const char *)t->data + ((size_t)x * rows + (size_t)row0) * cols * elt,
                        .dtype = t->dtype, .rows = n_rows, .cols = cols};
    }
    if (row0 == 0) account(m, t, W_EXPERT);
    return FM_OK;
}

int weights_has(fm_model *m, const char *fmt, ...) {
    char name[512], full[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return find(m, 0, name, full, sizeof full) != NULL;
}

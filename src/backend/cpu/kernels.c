/* CPU float32 kernels (see kernels.h). */
#include "backend/cpu/kernels.h"

#include "backend/cpu/qkernels.h"
#include "core/pool.h"

#include <stdlib.h>

#define LANES 16

/* The portable build compiles the dot products for AVX-512, AVX2+FMA and
 * baseline x86-64 and picks one at load time (GCC function multiversioning);
 * the native build is already compiled for the host. */
#if defined(FM_MULTIVERSION) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FM_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_DISPATCH
#endif

static inline float reduce_lanes(const float *acc) {
    float s8[8], s4[4];
    for (int j = 0; j < 8; j++) s8[j] = acc[j] + acc[j + 8];
    for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

FM_DISPATCH float cpu_dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    float s = reduce_lanes(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

FM_DISPATCH static float dot_bf16(const uint16_t *w, const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int j = 0; j < LANES; j++) acc[j] += fm_bf16_to_f32(w[i + j]) * x[i + j];
    }
    float s = reduce_lanes(acc);
    for (; i < n; i++) s += fm_bf16_to_f32(w[i]) * x[i];
    return s;
}

FM_DISPATCH static float dot_f16(const uint16_t *w, const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += fm_f16_to_f32(w[i + j]) * x[i + j];
    float s = reduce_lanes(acc);
    for (; i < n; i++) s += fm_f16_to_f32(w[i]) * x[i];
    return s;
}

float cpu_dot_row(const fm_mat *W, int row, const float *x) {
    if (W->bits) return cpu_qdot_row(W, row, x);
    size_t off = (size_t)row * (size_t)W->cols;
    switch (W->dtype) {
    case FM_DTYPE_BF16: return dot_bf16((const uint16_t *)W->data + off, x, W->cols);
    case FM_DTYPE_F16: return dot_f16((const uint16_t *)W->data + off, x, W->cols);
    default: return cpu_dot((const float *)W->data + off, x, W->cols);
    }
}

int cpu_rows_per_item(const fm_mat *W) {
    const size_t row_bytes = W->bits ? (size_t)W->cols * (size_t)W->bits / 8 + (size_t)(W->cols / W->group) * 4
                                     : (size_t)W->cols * fm_dtype_size(W->dtype);
    return pool_rows_per_item(row_bytes);
}

typedef struct {
    const fm_mat *W;
    const float *x;
    float *y, *wide;
    int T, rows_per_item;
} matmul_job;

static void item_matmul(void *arg, int i, int thread) {
    const matmul_job *j = arg;
    const fm_mat *W = j->W;
    const int rows = W->rows, cols = W->cols, T = j->T;
    const int r0 = i * j->rows_per_item, r1 = r0 + j->rows_per_item < rows ? r0 + j->rows_per_item : rows;
    float *wrow = j->wide ? j->wide + (size_t)thread * cols : NULL;
    for (int r = r0; r < r1; r++) {
        if (T == 1) {
            j->y[r] = cpu_dot_row(W, r, j->x);
        } else if (W->dtype == FM_DTYPE_F32 || wrow) {
            const float *w = (const float *)W->data + (size_t)r * cols;
            if (wrow) {
                fm_dtype_to_f32(wrow, (const char *)W->data + (size_t)r * cols * fm_dtype_size(W->dtype), W->dtype,
                                (size_t)cols);
                w = wrow;
            }
            for (int t = 0; t < T; t++) j->y[(size_t)t * rows + r] = cpu_dot(w, j->x + (size_t)t * cols, cols);
        } else {
            for (int t = 0; t < T; t++) j->y[(size_t)t * rows + r] = cpu_dot_row(W, r, j->x + (size_t)t * cols);
        }
    }
}

void cpu_matmul(float *y, const float *x, int T, const fm_mat *W) {
    const cpu_product p = {y, x, W, T};
    cpu_matmul_many(&p, 1);
}

void cpu_matmul_whole(float *y, const float *x, int T, const fm_mat *W) {
    if (W->bits) {
        cpu_qmatmul(y, x, T, W);
        return;
    }
    /* Several tokens: widen each weight row once into a per-thread buffer, then
     * use it for all T inputs (the row is read from memory once). Without a
     * buffer (out of memory) fall back to widening per token. */
    matmul_job j = {.W = W, .x = x, .y = y, .T = T, .rows_per_item = T == 1 ? cpu_rows_per_item(W) : 4};
    if (T > 1 && W->dtype != FM_DTYPE_F32) j.wide = malloc((size_t)pool_threads() * W->cols * sizeof *j.wide);
    pool_run((W->rows + j.rows_per_item - 1) / j.rows_per_item, item_matmul, &j);
    free(j.wide);
}

void cpu_mat_row_f32(const fm_mat *W, int row, float *out) {
    if (W->bits) {
        cpu_qrow_f32(W, row, out);
        return;
    }
    const size_t es = fm_dtype_size(W->dtype);
    fm_dtype_to_f32(out, (const char *)W->data + (size_t)row * (size_t)W->cols * es, W->dtype, (size_t)W->cols);
}

void cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    if (w)
        for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    else
        for (int i = 0; i < n; i++) y[i] = x[i] * scale;
}

void cpu_softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += (x[i] = expf(x[i] - max));
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void cpu_rope(float *x, int half, const float *cos_t, const float *sin_t) {
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cos_t[i] - b * sin_t[i];
        x[i + half] = b * cos_t[i] + a * sin_t[i];
    }
}

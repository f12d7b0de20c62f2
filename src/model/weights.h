/* Binding checkpoint tensors to the model: lookup under the architecture's
 * name prefixes, shape and dtype checks with messages that name the tensor,
 * and parameter/byte accounting for `info`. Names are printf formats. */
#ifndef FM_MODEL_WEIGHTS_H
#define FM_MODEL_WEIGHTS_H

#include "core/error.h"
#include "model/model.h"

enum {
    W_EXPERT = 1, /* counts as routed-expert weight */
    W_ROOT = 2,   /* name is not under the model prefix (lm_head.weight) */
};

/* A matrix [rows, cols], viewed in place: plain (F32/F16/BF16) or quantized
 * in MLX's layout (NAME.weight U32 + NAME.scales + NAME.biases BF16; bits and
 * group follow from the shapes). */
fm_status weights_mat(fm_model *m, fm_mat *out, int rows, int cols, int flags, const char *fmt, ...)
    FM_PRINTF(6, 7);
/* A small tensor of `n` elements (any shape with that many, e.g. conv1d
 * [C,1,K]) converted to float32 at load, plus `add` (1 for zero-centred norms). */
fm_status weights_f32(fm_model *m, float **out, int64_t n, float add, const char *fmt, ...) FM_PRINTF(5, 6);
/* Stacked experts [E, rows, cols] (fused layouts, MLX switch_mlp; plain or
 * quantized): one view per expert, taking
 * rows [row0, row0 + n_rows) of each. Counted once, by the first call for a tensor
 * (row0 == 0). */
fm_status weights_stacked(fm_model *m, fm_mat *out, size_t stride, int E, int rows, int cols, int row0,
                          int n_rows, const char *fmt, ...) FM_PRINTF(9, 10);
/* What the converter learns while a model loads: every non-expert tensor the
 * model binds, in order (the scales and biases of a quantized one included). */
typedef struct {
    const st_tensor *tensor;
    int matrix; /* bound as a [rows, cols] matrix by weights_mat (may be quantized) */
    int cols;
} weights_used;

typedef struct weights_record {
    weights_used *items;
    int n, cap;
} weights_record;

/* 1 if the tensor exists under the prefixes. */
int weights_has(fm_model *m, const char *fmt, ...) FM_PRINTF(2, 3);

#endif

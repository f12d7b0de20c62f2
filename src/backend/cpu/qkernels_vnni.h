/* Internal to backend/cpu: the integer (AVX-512 VNNI) quantized matrix
 * product behind cpu_qmatmul's "vnni" code path. The scheme, its numerics and
 * its data layouts are described at the top of qkernels_vnni.c. */
#ifndef FM_BACKEND_CPU_QKERNELS_VNNI_H
#define FM_BACKEND_CPU_QKERNELS_VNNI_H

#include <stdint.h>

/* Activation groups whose largest |x| is below this are quantized to zero
 * (dx = amax/127 could not be inverted in float32); their contribution is
 * then carried by the exact Σx terms alone. */
#define FM_QVNNI_TINY 1e-30f

/* 1 if this build has the VNNI path and the CPU can run it. */
int fm_qvnni_supported(void);

/* y[T, rows] = x[T, cols] · Wᵀ for the packed affine W (quant/affine.h).
 * Returns 0, or -1 (y untouched) when scratch memory cannot be allocated or
 * the build has no VNNI path; the caller then uses another path. */
int fm_qvnni_matmul(float *y, const float *x, int T, const uint32_t *q, const uint16_t *scales,
                    const uint16_t *biases, int rows, int cols, int bits, int group);

#endif

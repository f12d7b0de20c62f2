/* flashmoe CUDA-on-CPU emulator: the function-space qualifiers, shared by all
 * the fake headers. In the emulator every function is host code. */
#ifndef CUDA_EMU_DEFS_H
#define CUDA_EMU_DEFS_H

#ifdef __cplusplus
#define CUEMU_HD inline
#else
#define CUEMU_HD static inline
#endif

#ifndef __host__
#define __host__
#define __device__
#define __global__
#define __constant__
#define __managed__
#define __grid_constant__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __cudart_builtin__
#endif

#endif

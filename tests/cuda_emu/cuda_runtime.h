/* flashmoe CUDA-on-CPU emulator: cuda_runtime.h. From C: the runtime API;
 * from C++ (the rewritten .cu files): the device side as well. */
#ifndef CUDA_EMU_RUNTIME_H
#define CUDA_EMU_RUNTIME_H
#define __CUDA_RUNTIME_H__

#include "cuda_runtime_api.h"
#ifdef __cplusplus
#include "cuda_emu_kernel.h"
#endif

#endif

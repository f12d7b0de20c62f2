/* flashmoe CUDA-on-CPU emulator: threadIdx & co. come from cuda_emu_kernel.h. */
#include "cuda_runtime.h"

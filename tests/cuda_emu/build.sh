#!/usr/bin/env bash
# flashmoe CUDA-on-CPU emulator: builds into build/emu/ (incremental; see emu.mk)
#   build/emu/libflashmoe.a       the library with the CUDA backend over the emulator
#   build/emu/selftest            the emulator's own tests (selftest.cu)
#   build/emu/test_cuda_kernels   tests/gpu/test_cuda_kernels.c (when it exists)
#   build/emu/test_cuda_models    tests/gpu/test_cuda_models.c
#   build/emu/flashmoe            the CLI (app/*.c)
# Usage: tests/cuda_emu/build.sh [make arguments...]   e.g. OPT="-O0 -g"
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
exec make --no-print-directory -f tests/cuda_emu/emu.mk -j"$JOBS" "$@"

# flashmoe CUDA-on-CPU emulator build (run through tests/cuda_emu/build.sh, from the repository root).
# A CPU-only libflashmoe with the CUDA backend compiled against the fake CUDA headers of
# tests/cuda_emu, the .cu kernels rewritten by cuemu_rewrite.py and compiled as C++17 with g++.
B   := build/emu
EMU := tests/cuda_emu
CC  := gcc
CXX := g++
OPT ?= -O2 -g
# The rewritten kernels: -O3 halves the emulation time of the product kernels (same float results:
# no fast-math, no FMA contraction in ISO C++ mode).
KOPT ?= -O3 -g
# UBSan on the kernels: misaligned vector loads (a fault on the GPU: cudaErrorMisalignedAddress),
# out-of-bounds indices into fixed-size arrays (static __shared__ arrays included), signed
# overflow and bad shifts in index arithmetic. Reports are "runtime error:" lines (run.sh counts them).
KSAN ?= -fsanitize=alignment,bounds,signed-integer-overflow,shift

# The fake headers come first: -I$(EMU) before anything else; never the real CUDA headers.
COMMON   := $(OPT) -D_GNU_SOURCE -DFM_WITH_CUDA -I$(EMU) -Iinclude -Isrc -Iapp -fopenmp
CFLAGS   := -std=c11 -Wall -Wextra $(COMMON)
# CXX_PERMISSIVE=-fpermissive lets g++ accept C-only constructs in the headers the kernels include
# (none today); empty, the kernels compile as g++ sees them under nvcc.
CXX_PERMISSIVE ?=
CXXFLAGS := $(CXX_PERMISSIVE) -std=c++17 -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-parameter $(KOPT) -D_GNU_SOURCE \
            -I$(EMU) -I$(B)/gen -Iinclude -Isrc -fopenmp -include $(EMU)/cuda_emu_kernel.h $(KSAN)
LDLIBS   := -lcjson -lpcre2-8 -lutf8proc -luring -lxxhash -lpthread -lm -fopenmp -lstdc++ -ldl -rdynamic $(if $(KSAN),-lubsan)

CPU_LIB_SRC := $(wildcard src/core/*.c src/load/*.c src/model/*.c src/model/arch/*.c src/backend/cpu/*.c src/quant/*.c \
                          src/store/*.c src/pack/*.c src/text/*.c src/generate/*.c)
CUDA_C_SRC  := $(wildcard src/backend/cuda/*.c)
CU_SRC      := $(wildcard src/backend/cuda/*.cu)
CUH_SRC     := $(wildcard src/backend/cuda/*.cuh)
GEN_CPP     := $(CU_SRC:src/%.cu=$(B)/gen/%.cpp)
GEN_CUH     := $(CUH_SRC:src/%=$(B)/gen/%)
EMU_OBJ     := $(B)/obj/emu/cuda_emu.o $(B)/obj/emu/cuda_emu_switch.o
LIB_OBJ     := $(CPU_LIB_SRC:%.c=$(B)/obj/%.o) $(CUDA_C_SRC:%.c=$(B)/obj/%.o) $(GEN_CPP:$(B)/gen/%.cpp=$(B)/obj/gen/%.o) \
               $(B)/obj/gen/missing_launchers.o $(EMU_OBJ)
APP_OBJ     := $(patsubst %.c,$(B)/obj/%.o,$(wildcard app/*.c app/*/*.c))

PROGS := $(B)/flashmoe $(B)/selftest $(if $(wildcard tests/gpu/test_cuda_models.c),$(B)/test_cuda_models) \
         $(if $(wildcard tests/gpu/test_cuda_kernels.c),$(B)/test_cuda_kernels) \
         $(if $(BENCH),$(B)/bench_cuda_kernels)

.PHONY: all gen
.SECONDARY:
all: $(PROGS)

# ---- rewriting ----------------------------------------------------------------------------
$(B)/gen/%.cpp: src/%.cu $(EMU)/cuemu_rewrite.py
	@mkdir -p $(dir $@)
	python3 $(EMU)/cuemu_rewrite.py $< $@ --name $<
$(B)/gen/%.cuh: src/%.cuh $(EMU)/cuemu_rewrite.py
	@mkdir -p $(dir $@)
	python3 $(EMU)/cuemu_rewrite.py $< $@ --name $<
$(B)/gen/selftest.cpp: $(EMU)/selftest.cu $(EMU)/cuemu_rewrite.py
	@mkdir -p $(dir $@)
	python3 $(EMU)/cuemu_rewrite.py $< $@ --name $<
gen: $(GEN_CPP) $(GEN_CUH)

# ---- objects ------------------------------------------------------------------------------
EMU_HDR := $(wildcard $(EMU)/*.h)
$(B)/obj/%.o: %.c $(EMU_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<
$(B)/obj/gen/%.o: $(B)/gen/%.cpp $(EMU_HDR) | $(GEN_CUH)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c -o $@ $<
$(B)/obj/emu/cuda_emu.o: $(EMU)/cuda_emu.cpp $(EMU_HDR)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -Wall -Wextra -Wno-unknown-pragmas $(OPT) -D_GNU_SOURCE -I$(EMU) -MMD -MP -c -o $@ $<
$(B)/obj/emu/cuda_emu_switch.o: $(EMU)/cuda_emu_switch.S
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

# Launchers declared in cuda_kernels.h that no kernel file defines yet: stubs that say so
# (the tests then fail on them instead of the link failing).
$(B)/gen/missing_launchers.c: $(GEN_CPP:$(B)/gen/%.cpp=$(B)/obj/gen/%.o) src/backend/cuda/cuda_kernels.h $(EMU)/missing_launchers.sh
	@mkdir -p $(dir $@)
	sh $(EMU)/missing_launchers.sh src/backend/cuda/cuda_kernels.h $@ $(GEN_CPP:$(B)/gen/%.cpp=$(B)/obj/gen/%.o)
$(B)/obj/gen/missing_launchers.o: $(B)/gen/missing_launchers.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libflashmoe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# ---- programs -----------------------------------------------------------------------------
$(B)/flashmoe: $(APP_OBJ) $(B)/libflashmoe.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -ledit -lmicrohttpd
$(B)/test_%: tests/gpu/test_%.c tests/test_util.c tests/test_util.h $(B)/libflashmoe.a $(EMU_HDR)
	$(CC) $(CFLAGS) -Itests -o $@ $< tests/test_util.c $(B)/libflashmoe.a $(LDLIBS) -lcmocka
$(B)/bench_cuda_kernels: bench/bench_cuda_kernels.c bench/bench_common.c $(B)/libflashmoe.a $(EMU_HDR)
	$(CC) $(CFLAGS) -Ibench -o $@ $< bench/bench_common.c $(B)/libflashmoe.a $(LDLIBS)
$(B)/selftest: $(B)/obj/gen/selftest.o $(EMU_OBJ)
	$(CXX) -o $@ $^ $(LDLIBS)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

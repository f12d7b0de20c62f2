# flashmoe build.
#   make                 optimised for this CPU      → build/native/flashmoe
#   make portable        any x86-64 / other CPU       → build/portable/flashmoe
#   make asan            AddressSanitizer + UBSan     → build/asan/flashmoe
#   make test            whole suite: native and asan builds, models, CLI, fuzz
#   make fuzz-long       each fuzz target for an hour (FUZZ_SECONDS, FUZZ_TARGETS="a b")
#   make bench           decode benchmark on the largest bundled model
#   make demo            the README's main job on a bundled model
#   make install         PREFIX/bin/flashmoe and the shipped model in PREFIX/share/flashmoe
#                        (PREFIX=/usr/local; DESTDIR for staging); make uninstall
#   make CUDA=0          without the CUDA backend (it is built when nvcc is found)
MODE ?= native
BUILD := build/$(MODE)
CC ?= cc

CFLAGS_native   := -O3 -march=native
CFLAGS_portable := -O3 -DFM_MULTIVERSION
CFLAGS_asan     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS := -std=c11 -Wall -Wextra -D_GNU_SOURCE -Iinclude -Isrc -Iapp -fopenmp $(CFLAGS_$(MODE)) $(EXTRA_CFLAGS)
BASE_LDLIBS := -lcjson -lpcre2-8 -lutf8proc -luring -lxxhash -lpthread -lm
LDLIBS := $(BASE_LDLIBS)
APP_LDLIBS := -ledit -lmicrohttpd
TEST_LDLIBS := -lcmocka

# ---- CUDA backend ----------------------------------------------------------
# On when nvcc is found (PATH, else /usr/local/cuda/bin/nvcc; CUDA_HOME is the
# folder above its bin/), off with CUDA=0; CUDA=1 insists. ASan builds and the
# fuzz targets never use it (ASan and the CUDA runtime do not mix; CI has no GPU).
ifeq ($(MODE),asan)
override CUDA := 0
endif
ifneq ($(CUDA),0)
ifeq ($(origin NVCC),undefined)
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
endif
ifeq ($(NVCC),)
ifeq ($(CUDA),1)
$(error CUDA=1 but nvcc was not found (PATH, /usr/local/cuda/bin): set NVCC=/path/to/nvcc)
endif
$(info flashmoe: nvcc not found: building without the CUDA backend (CPU only))
override CUDA := 0
else
override CUDA := 1
endif
endif

ifeq ($(CUDA),1)
ifeq ($(origin CUDA_HOME),undefined)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
endif
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib/x86_64-linux-gnu) $(CUDA_HOME)/lib)
# sm_86 (RTX 30xx, A10), sm_89 (RTX 40xx, L4), sm_90 (H100/H200) machine code + sm_90 PTX for later GPUs.
CUDA_ARCH := -gencode arch=compute_86,code=sm_86 -gencode arch=compute_89,code=sm_89 \
             -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
# Fatbins compressed for size where nvcc can (12.8+): a quarter of the default, so the binaries sent to a GPU machine stay small.
NVCC_COMPRESS := $(shell $(NVCC) --help 2>/dev/null | grep -q -- --compress-mode && echo --compress-mode=size)
NVCCFLAGS := -O3 -std=c++17 -D_GNU_SOURCE -Iinclude -Isrc $(CUDA_ARCH) $(NVCC_COMPRESS) -Xcompiler -Wall,-Wextra $(EXTRA_NVCCFLAGS)
CFLAGS += -DFM_WITH_CUDA -isystem $(CUDA_HOME)/include
LDLIBS += -L$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lstdc++
BACKEND_SRC := $(wildcard src/backend/cuda/*.c)
CUDA_SRC := $(wildcard src/backend/cuda/*.cu)
GPU_TESTS := $(patsubst tests/gpu/%.c,%,$(wildcard tests/gpu/*.c))
GPU_PROGS := $(GPU_TESTS:%=$(BUILD)/tests/%) $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_cuda_*.c))
else
BACKEND_SRC := $(wildcard src/backend/cuda_stub.c)
CUDA_SRC :=
GPU_PROGS :=
endif

CPU_LIB_SRC := $(wildcard src/core/*.c src/load/*.c src/model/*.c src/model/arch/*.c src/backend/cpu/*.c src/quant/*.c \
                         src/store/*.c src/pack/*.c src/text/*.c src/generate/*.c)
LIB_SRC := $(CPU_LIB_SRC) $(BACKEND_SRC)
APP_SRC := $(wildcard app/*.c app/*/*.c)
TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
TESTS := $(filter-out test_util,$(TESTS))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_SRC:%.cu=$(BUILD)/%.o)
APP_OBJ := $(APP_SRC:%.c=$(BUILD)/%.o)
# The app's modules without main(): unit tests (tests/test_*.c) link them too.
APP_LIB := $(BUILD)/libflashmoe_app.a

.PHONY: fuzz-long install uninstall all portable asan test bench demo clean fuzz
all: $(BUILD)/flashmoe $(TESTS:%=$(BUILD)/tests/%) $(BUILD)/tests/ref_tool $(BUILD)/bench/bench_decode $(BUILD)/bench/synth_model $(BUILD)/bench/bench_tokenizer $(BUILD)/bench/bench_qkernels $(BUILD)/bench/bench_expert_fetch $(BUILD)/bench/synth_packed $(BUILD)/bench/bench_stream $(BUILD)/bench/eval_assistant $(GPU_PROGS)

portable:
	$(MAKE) MODE=portable
asan:
	$(MAKE) MODE=asan

# Built with or without CUDA into the same folder: a switch rebuilds everything
# (the stamp names the setting; the archive is made anew so no stale member stays).
CONFIG_STAMP := $(BUILD)/.config-cuda$(CUDA)
$(CONFIG_STAMP):
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/.config-cuda* $(BUILD)/libflashmoe.a
	@touch $@

$(BUILD)/libflashmoe.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/flashmoe: $(APP_OBJ) $(BUILD)/libflashmoe.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(APP_LDLIBS)

$(APP_LIB): $(filter-out $(BUILD)/app/main.o,$(APP_OBJ))
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tests/%: tests/%.c tests/test_util.c $(APP_LIB) $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/test_util.c $(APP_LIB) $(BUILD)/libflashmoe.a $(LDLIBS) $(APP_LDLIBS) $(TEST_LDLIBS)

$(BUILD)/bench/%: bench/%.c bench/bench_common.c bench/bench_common.h $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< bench/bench_common.c $(BUILD)/libflashmoe.a $(LDLIBS)

# The synthetic model writers share bench/synth_common.c.
$(BUILD)/bench/synth_%: bench/synth_%.c bench/synth_common.c bench/synth_common.h $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< bench/synth_common.c $(BUILD)/libflashmoe.a $(LDLIBS)

$(BUILD)/%.o: %.c $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.cu $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c -o $@ $<

# GPU programs (CUDA builds only): every tests/gpu/*.c, like the unit tests.
$(GPU_TESTS:%=$(BUILD)/tests/%): $(BUILD)/tests/%: tests/gpu/%.c tests/test_util.c tests/test_util.h $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< tests/test_util.c $(BUILD)/libflashmoe.a $(LDLIBS) $(TEST_LDLIBS)

# libFuzzer targets need clang.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz: $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_SRC := $(CPU_LIB_SRC) $(wildcard src/backend/cuda_stub.c)
# Parsers of the app (tool calls) are fuzzed too: their sources join every target.
FUZZ_APP_SRC := $(wildcard app/server/tool_calls.c app/server/api_common.c app/server/openai.c app/server/anthropic.c app/server/job.c app/server/strbuf.c app/server/json_body.c)
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC) $(FUZZ_APP_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -Iapp -o $@ $< $(FUZZ_LIB_SRC) $(FUZZ_APP_SRC) $(BASE_LDLIBS) -fopenmp

test:
	./tests/run_all.sh

# Hour-long fuzzing by hand: FUZZ_SECONDS per target (3600), new inputs in build/fuzz/corpus-*.
fuzz-long:
	./scripts/fuzz-long.sh $(FUZZ_TARGETS)

bench: all
	./bench/run_bench.sh

demo: all
	./scripts/demo.sh

PREFIX ?= /usr/local
SHIPPED_MODEL := models/assistant-q4
install: # never builds (a different CUDA setting would rebuild everything): run make first
	@test -x $(BUILD)/flashmoe || { echo "make install: $(BUILD)/flashmoe is not built; run make first" >&2; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/flashmoe/assistant-q4/experts
	install -m 755 $(BUILD)/flashmoe $(DESTDIR)$(PREFIX)/bin/flashmoe
	cd $(SHIPPED_MODEL) && find . -type f -exec install -m 644 -D {} $(abspath $(DESTDIR)$(PREFIX))/share/flashmoe/assistant-q4/{} \;

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/flashmoe
	rm -rf $(DESTDIR)$(PREFIX)/share/flashmoe

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(APP_OBJ:.o=.d)

$(BUILD)/tests/ref_tool: tests/tools/ref_tool.c $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libflashmoe.a $(LDLIBS)

# flashmoe build.
#   make                 optimised for this CPU      → build/native/flashmoe
#   make portable        any x86-64 / other CPU       → build/portable/flashmoe
#   make asan            AddressSanitizer + UBSan     → build/asan/flashmoe
#   make test            whole suite: native and asan builds, models, CLI, fuzz
#   make bench           decode benchmark on the largest bundled model
#   make demo            the README's main job on a bundled model
MODE ?= native
BUILD := build/$(MODE)
CC ?= cc

CFLAGS_native   := -O3 -march=native
CFLAGS_portable := -O3 -DFM_MULTIVERSION
CFLAGS_asan     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS := -std=c11 -Wall -Wextra -D_GNU_SOURCE -Iinclude -Isrc -fopenmp $(CFLAGS_$(MODE)) $(EXTRA_CFLAGS)
LDLIBS := -lcjson -lpcre2-8 -lutf8proc -luring -lxxhash -lpthread -lm
APP_LDLIBS := -ledit
TEST_LDLIBS := -lcmocka

LIB_SRC := $(wildcard src/core/*.c src/load/*.c src/model/*.c src/model/arch/*.c src/backend/cpu/*.c src/quant/*.c src/store/*.c src/pack/*.c \
                     src/text/*.c src/generate/*.c)
APP_SRC := $(wildcard app/*.c)
TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
TESTS := $(filter-out test_util,$(TESTS))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ := $(APP_SRC:%.c=$(BUILD)/%.o)

.PHONY: all portable asan test bench demo clean fuzz
all: $(BUILD)/flashmoe $(TESTS:%=$(BUILD)/tests/%) $(BUILD)/tests/ref_tool $(BUILD)/bench/bench_decode $(BUILD)/bench/synth_model $(BUILD)/bench/bench_tokenizer $(BUILD)/bench/bench_qkernels $(BUILD)/bench/bench_expert_fetch $(BUILD)/bench/synth_packed $(BUILD)/bench/bench_stream $(BUILD)/bench/eval_assistant

portable:
	$(MAKE) MODE=portable
asan:
	$(MAKE) MODE=asan

$(BUILD)/libflashmoe.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/flashmoe: $(APP_OBJ) $(BUILD)/libflashmoe.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(APP_LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test_util.c $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/test_util.c $(BUILD)/libflashmoe.a $(LDLIBS) $(TEST_LDLIBS)

$(BUILD)/bench/%: bench/%.c bench/bench_common.c bench/bench_common.h $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< bench/bench_common.c $(BUILD)/libflashmoe.a $(LDLIBS)

# The synthetic model writers share bench/synth_common.c.
$(BUILD)/bench/synth_%: bench/synth_%.c bench/synth_common.c bench/synth_common.h $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< bench/synth_common.c $(BUILD)/libflashmoe.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# libFuzzer targets need clang.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz: $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS) -fopenmp

test:
	./tests/run_all.sh

bench: all
	./bench/run_bench.sh

demo: all
	./scripts/demo.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(APP_OBJ:.o=.d)

$(BUILD)/tests/ref_tool: tests/tools/ref_tool.c $(BUILD)/libflashmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libflashmoe.a $(LDLIBS)

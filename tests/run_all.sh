#!/usr/bin/env bash
# The whole test suite (README's test command runs this through `make test`):
#   1. builds the optimised (native) and the AddressSanitizer+UBSan (asan) variants
#   2. unpacks the bundled fixture models into build/models
#   3. runs the unit tests, whole-model tests, CLI and chat tests and the HTTP server tests (Node.js
#      with the official openai and @anthropic-ai/sdk clients, installed by npm) under both builds
#   4. runs the CUDA backend on the CPU emulator (tests/cuda_emu): every kernel against the CPU,
#      two fixture models against transformers (no GPU needed; tests/gpu.sh runs all on a GPU)
#   5. runs the libFuzzer targets briefly (FUZZ_SECONDS, default 15 s each)
# Ends with one line "N passed, N failed" and a non-zero exit if anything failed.
set -u
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
MODELS=build/models
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
passed=0
failed=0
failures=()

note() { printf '\n=== %s\n' "$*"; }
record() { # record NAME RC
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

note "building (native, asan)"
for mode in native asan; do
    if ! make -s -j"$JOBS" MODE=$mode all; then
        echo "build failed: $mode"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

note "unpacking fixture models into $MODELS"
./scripts/unpack-models.sh

export FM_TEST_MODELS=$MODELS
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for mode in native asan; do
    for src in tests/test_*.c; do
        t=$(basename "$src" .c)
        [ "$t" = test_util ] && continue
        note "$mode: $t"
        log=$(mktemp)
        ./build/$mode/tests/$t 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        # One count per cmocka test case.
        p=$(grep -c '^\[       OK \]' "$log")
        f=$(grep -c '^\[  FAILED  \] [^0-9]' "$log")
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then record "$mode/$t (exit $rc)" 1; fi
        [ "$f" -gt 0 ] && failures+=("$mode/$t")
        rm -f "$log"
    done
    for script in tests/test_cli.sh tests/test_chat.sh tests/test_server.sh; do
        note "$mode: $script"
        log=$(mktemp)
        $script build/$mode "$MODELS" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        passed=$((passed + $(grep -c '^ok - ' "$log")))
        f=$(grep -c '^not ok - ' "$log")
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then record "$mode/$script (exit $rc)" 1; fi
        [ "$f" -gt 0 ] && failures+=("$mode/$script")
        rm -f "$log"
    done
done

# Peak RSS against the memory budget: native only (ASan's shadow memory is not the engine's).
note "native: tests/test_memory.sh"
log=$(mktemp)
tests/test_memory.sh build/native 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$((passed + $(grep -c '^ok - ' "$log")))
f=$(grep -c '^not ok - ' "$log")
failed=$((failed + f))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then record "native/test_memory.sh (exit $rc)" 1; fi
[ "$f" -gt 0 ] && failures+=("native/test_memory.sh")
rm -f "$log"

# The CUDA backend's kernels and forward pass on the CPU emulator (about 2 minutes).
note "CUDA backend on the CPU emulator (tests/cuda_emu/run.sh)"
log=$(mktemp)
ONLY="selftest kernels models" FM_TEST_FIXTURES="qwen35moe qwen3next" FM_TEST_LEAK_TOKENS=40 \
    tests/cuda_emu/run.sh 2>&1 | grep -v '^\[kernels/eager\] ok - ' | tee "$log"
rc=${PIPESTATUS[0]}
line=$(grep -E '^cuda emulator: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
p=$(sed -E 's/^cuda emulator: ([0-9]+) passed.*/\1/' <<<"${line:-cuda emulator: 0 passed}")
f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"${line:-x 0 failed}")
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then record "cuda emulator (exit $rc)" 1; fi
[ "$f" -gt 0 ] && failures+=("cuda emulator")
rm -f "$log"

if command -v clang >/dev/null; then
    note "fuzzing ($FUZZ_SECONDS s per target)"
    if make -s fuzz; then
        for src in tests/fuzz/fuzz_*.c; do
            target=${src#tests/fuzz/fuzz_}
            target=${target%.c}
            corpus=$(mktemp -d)
            cp tests/fuzz/corpus/$target/* "$corpus/"
            ./build/fuzz/fuzz_$target -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
                -artifact_prefix=build/fuzz/ "$corpus" 2>&1 | tail -n 3
            record "fuzz_$target" "${PIPESTATUS[0]}"
            rm -rf "$corpus"
        done
    else
        record "fuzz build" 1
    fi
else
    echo "clang not found: fuzz targets not run (scripts/install-deps.sh installs it)"
    record "fuzz (clang missing)" 1
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

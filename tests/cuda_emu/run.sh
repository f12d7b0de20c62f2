#!/usr/bin/env bash
# flashmoe CUDA-on-CPU emulator: builds (build.sh), then runs
#   1. build/emu/selftest                       the emulator's own tests
#   2. build/emu/test_cuda_kernels              every CUDA kernel against CPU references
#   3. build/emu/test_cuda_models build/models  whole models on the emulated GPU
# printing their ok / not ok lines, then `cuda emulator: N passed, M failed`.
# Exit 0 only if nothing failed. A failure is a "not ok" line, a program that
# exits non-zero (77, "no CUDA device", included: the emulator must be found),
# or an error the emulator reports on stderr ("cuda-emu: ERROR: ...": a misuse
# of the CUDA API, a bad launch, an out-of-bounds access, a deadlock, ...) or
# UBSan finds in a kernel ("runtime error: ...": a misaligned vector load, an
# index past a fixed-size array, signed overflow).
#
# Environment:
#   CUDA_EMU_PASSES="eager"   the schedules to run the GPU tests under, any of
#       eager    every operation runs when issued (the default)
#       lazy     stream work runs only when the host waits for it (finds missing syncs)
#       reverse  blocks and threads in reverse order (finds races that order hides)
#     e.g. CUDA_EMU_PASSES="eager lazy reverse" for everything (about three times as long)
#   FM_TEST_LEAK_TOKENS=200   tokens of test_cuda_models' leak check (4000 on a GPU)
#   CUDA_EMU_THREADS          host threads that run blocks (default: all cores)
#   ONLY="kernels"            run a subset: any of selftest kernels models
set -u
cd "$(dirname "$0")/../.." || exit 1
PASSES=${CUDA_EMU_PASSES:-eager}
ONLY=${ONLY:-selftest kernels models}
export FM_TEST_LEAK_TOKENS=${FM_TEST_LEAK_TOKENS:-200}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

t0=$(date +%s)
if ! tests/cuda_emu/build.sh >build/emu-build.log 2>&1; then
    tail -40 build/emu-build.log
    echo "cuda emulator: build failed (log: build/emu-build.log)"
    echo "cuda emulator: 0 passed, 1 failed"
    exit 1
fi
grep -E "warning:|error:" build/emu-build.log | grep -v "changes meaning of 'ckpt'" | head -20
echo "# build: $(($(date +%s) - t0)) s"
if [ ! -d build/models/qwen35moe ]; then
    ./scripts/unpack-models.sh || { echo "cuda emulator: cannot unpack the fixture models"; exit 1; }
fi

passed=0
failed=0
failures=()

# run LABEL COUNT_EMU_ERRORS COMMAND...: prints the program's ok / not ok lines (and # lines),
# its emulator reports, and counts.
run() {
    local label=$1 count_errors=$2
    shift 2
    local out err t1 rc p f e
    out=$(mktemp)
    err=$(mktemp)
    t1=$(date +%s)
    "$@" >"$out" 2>"$err"
    rc=$?
    grep -E '^(ok|not ok) - |^#' "$out" | sed "s|^|[$label] |"
    p=$(grep -c '^ok - ' "$out")
    f=$(grep -c '^not ok - ' "$out")
    e=0
    if [ "$count_errors" = 1 ]; then
        e=$(grep -cE '^cuda-emu: ERROR|runtime error:' "$err")
        grep -E '^cuda-emu: (ERROR|warning)|runtime error:' "$err" | sort | uniq | head -40 | sed "s|^|[$label] |"
    fi
    grep -vE '^cuda-emu: (ERROR|warning)|^cuda-emu: [0-9]+ error' "$err" | grep -v '^ *$' | tail -15 | sed "s|^|[$label] stderr: |"
    passed=$((passed + p))
    failed=$((failed + f + e))
    [ "$f" -gt 0 ] && failures+=("$label: $f not ok")
    [ "$e" -gt 0 ] && failures+=("$label: $e emulator error(s)")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        failed=$((failed + 1))
        failures+=("$label: exit $rc")
        echo "not ok - [$label] exited with status $rc"
    fi
    echo "# [$label] $p passed, $f failed, $e emulator errors, exit $rc, $(($(date +%s) - t1)) s"
    rm -f "$out" "$err"
}

case " $ONLY " in *" selftest "*) run selftest 0 build/emu/selftest ;; esac
for pass in $PASSES; do
    case $pass in
    eager) envs=(CUDA_EMU_SCHEDULE=eager) ;;
    lazy) envs=(CUDA_EMU_SCHEDULE=lazy) ;;
    reverse) envs=(CUDA_EMU_ORDER=reverse) ;;
    *) echo "unknown pass $pass"; exit 2 ;;
    esac
    case " $ONLY " in *" kernels "*)
        if [ -x build/emu/test_cuda_kernels ]; then
            run "kernels/$pass" 1 env "${envs[@]}" build/emu/test_cuda_kernels
        else
            echo "not ok - test_cuda_kernels was not built (tests/gpu/test_cuda_kernels.c missing?)"
            failed=$((failed + 1))
        fi ;;
    esac
    case " $ONLY " in *" models "*) run "models/$pass" 1 env "${envs[@]}" build/emu/test_cuda_models build/models ;; esac
done

for f in "${failures[@]}"; do echo "# failed: $f"; done
echo "# total: $(($(date +%s) - t0)) s"
echo "cuda emulator: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Every GPU test and benchmark in one run, on a machine with an NVIDIA GPU
# (at most 5.5 minutes; each step has a time limit and the whole run a
# budget, FM_GPU_BUDGET seconds, default 330).
#   bash tests/gpu.sh
# Programs: .gpu/bin with LD_LIBRARY_PATH=.gpu/lib and fixtures from
# .gpu/fixtures when .gpu exists (scripts/gpu-bundle.sh makes it here; the run
# needs nothing else from the checkout, not tests/data/models nor models/),
# else build/native (built here by make) and tests/data/models.
# Output: $OUT (default ./gpu-out): one log per step and summary.txt, at most
# 8 files. Never stops at a failure; exits 1 if any test failed or did not run.
# Steps:
#   0. the machine: nvidia-smi, cores, memory, disk
#   1. fixture models unpacked into $WORK/models (WORK: FM_GPU_WORK, default /tmp/fm-gpu)
#   2. test_cuda_kernels (kernels against CPU references; exit 77 = no device: a failure here)
#   3. test_cuda_models $WORK/models (every fixture against transformers; GPU = CPU)
#   4. bench_cuda_kernels (matrix-vector GB/s against device-to-device copy)
#   5. decode on a synthetic Qwen3.5-397B-shaped packed model (synth_packed: 2 MoE layers
#      of 512 experts at 4 bits, 8-bit dense, about 8.7 GB on the disk with the most room;
#      FM_GPU_LAYERS for more; fewer when the disk is small or slow), bench_stream:
#        a. CUDA, VRAM expert cache of one third of the experts (the rest streams from RAM/SSD)
#        b. CUDA, every expert in VRAM (preloaded to RAM, a 256-token prompt brings them all)
#        c. CPU backend, 16 threads, same setup as (a)
#        d. CPU backend, every expert preloaded to RAM (against b)
#   6. summary: every step's key numbers, the ratios, passed/failed
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
WORK=${FM_GPU_WORK:-/tmp/fm-gpu}
BUDGET=${FM_GPU_BUDGET:-330}
START=$SECONDS
mkdir -p "$OUT" "$WORK"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

if [ -d .gpu/bin ]; then
    SRC=bundle
    LIBPATH=$ROOT/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    FIXTURES=$ROOT/.gpu/fixtures
else
    SRC=build/native
    LIBPATH=${LD_LIBRARY_PATH:-}
    FIXTURES=$ROOT/tests/data/models
    echo "no .gpu bundle: building with make (log: $OUT/build.log)"
    make -j"$(nproc)" CUDA=1 >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; echo "build failed"; exit 1; }
fi
# bin NAME: the program's path.
bin() {
    local p
    for p in "$WORK/bin/$1" "$ROOT/.gpu/bin/$1" "$ROOT/build/native/$1" "$ROOT/build/native/tests/$1" \
        "$ROOT/build/native/bench/$1"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    echo "$ROOT/.gpu/bin/$1" # missing: the step fails with 'not found'
}
ZSTD=zstd
command -v zstd >/dev/null || ZSTD=$(bin zstd)
# Programs the bundle stored compressed (scripts/gpu-bundle.sh does when space is short).
rm -rf "${WORK:?}/bin"
for z in .gpu/bin/*.zst; do
    [ -e "$z" ] || break
    mkdir -p "$WORK/bin"
    f=$(basename "$z" .zst)
    env LD_LIBRARY_PATH="$LIBPATH" "$ZSTD" -q -d "$z" -o "$WORK/bin/$f" && chmod +x "$WORK/bin/$f"
done

passed=0
failed=0
failures=()
say() { echo "$*" | tee -a "$SUMMARY"; }
note() { printf '\n=== %s (%ds)\n' "$*" $((SECONDS - START)); }
record() { # record NAME OK(0/1) DETAIL
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
    say "$(printf '%-22s %s  %s' "$1" "$([ "$2" -eq 0 ] && echo PASS || echo FAIL)" "$3")"
}
# limit SECONDS: the step's limit within what is left of the budget (0: none left).
limit() {
    local left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt 15 ] && { echo 0; return; }
    [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}
# runp LOG SECONDS PROGRAM ARGS...: one of our programs, its output appended to LOG and
# shown; returns its exit status (124: stopped at the limit).
runp() {
    local log=$1 t=$2
    shift 2
    echo "\$ $* (limit ${t}s)" | tee -a "$log"
    local t0=$SECONDS
    timeout -k 10 "$t" env LD_LIBRARY_PATH="$LIBPATH" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "[exit $rc after $((SECONDS - t0)) s]" | tee -a "$log"
    return "$rc"
}
# why LOG [FROM_LINE]: the first error-looking line of a failed run, for the summary.
why() {
    tail -n +"${2:-1}" "$1" | grep -m 1 -iE 'error|cannot|fail|not found|no such|abort|out of memory|not ok' | cut -c1-200
}
# counts LOG: "P passed, F failed" from ok/not ok lines or cmocka's, or the program's own final line.
counts() {
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [ -n "$line" ]; then echo "$line"; return; fi
    p=$(($(grep -c '^ok - ' "$1") + $(grep -c '^\[       OK \]' "$1")))
    f=$(($(grep -c '^not ok - ' "$1") + $(grep -c '^\[  FAILED  \] [^0-9]' "$1")))
    echo "$p passed, $f failed"
}
# test_step NAME LOG SECONDS PROGRAM ARGS...
test_step() {
    local name=$1 log=$2 t
    shift 2
    t=$(limit "$1")
    shift
    if [ "$t" -eq 0 ]; then record "$name" 1 "not run: time budget spent"; return; fi
    runp "$log" "$t" "$@"
    local rc=$? c
    c=$(counts "$log")
    case $rc in
    0) record "$name" 0 "$c" ;;
    77) record "$name" 1 "no CUDA device (exit 77)" ;;
    124 | 137) record "$name" 1 "stopped at the ${t}s limit; $c" ;;
    *) record "$name" 1 "exit $rc; $c; $(why "$log")" ;;
    esac
}

say "flashmoe GPU run $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname), programs from $SRC"

# ---- 0. the machine
note "0. machine"
LOG0=$OUT/0-machine.log
{
    echo "\$ nvidia-smi -L"; timeout 30 nvidia-smi -L 2>&1
    echo "\$ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv"
    timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    echo "\$ nproc"; nproc
    echo "\$ free -g"; free -g
    echo "\$ df -h $WORK $ROOT"; df -h "$WORK" "$ROOT"
    echo "\$ uname -a"; uname -a
    echo "\$ ls -la .gpu/bin $WORK/bin"; ls -la .gpu/bin "$WORK/bin" 2>&1
} >"$LOG0" 2>&1
cat "$LOG0"
gpu=$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
say "machine: ${gpu:-no GPU seen by nvidia-smi}; $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"

# ---- 1. fixtures
note "1. fixture models"
LOG1=$OUT/1-unpack.log
MODELS=$WORK/models
rm -rf "$MODELS"
mkdir -p "$MODELS"
n_fix=0
unpack_ok=0
for a in "$FIXTURES"/*.tar.zst; do
    [ -e "$a" ] || break
    name=$(basename "$a" .tar.zst)
    case $name in qwen35moe_tok | assistant*) continue ;; esac # not needed on the GPU (too large to send)
    if env LD_LIBRARY_PATH="$LIBPATH" "$ZSTD" -q -dc "$a" | tar -C "$MODELS" -xf - && [ -d "$MODELS/$name" ]; then
        n_fix=$((n_fix + 1))
        echo "unpacked $name: $(ls "$MODELS/$name" | tr '\n' ' ')" >>"$LOG1"
    else
        echo "FAILED to unpack $a" >>"$LOG1"
        unpack_ok=1
    fi
done 2>>"$LOG1"
cat "$LOG1"
[ "$n_fix" -eq 0 ] && unpack_ok=1
record "unpack fixtures" $unpack_ok "$n_fix models into $MODELS"
export FM_TEST_MODELS=$MODELS FM_TEST_TMP=$WORK

# ---- 2, 3. tests
note "2. test_cuda_kernels"
test_step test_cuda_kernels "$OUT/2-test_cuda_kernels.log" 60 "$(bin test_cuda_kernels)"
note "3. test_cuda_models"
test_step test_cuda_models "$OUT/3-test_cuda_models.log" 90 "$(bin test_cuda_models)" "$MODELS"

# ---- 4. kernel benchmark
note "4. bench_cuda_kernels"
LOG4=$OUT/4-bench_cuda_kernels.log
t=$(limit 45)
if [ "$t" -eq 0 ]; then
    record bench_cuda_kernels 1 "not run: time budget spent"
else
    runp "$LOG4" "$t" "$(bin bench_cuda_kernels)"
    rc=$?
    line=$(grep '^summary:' "$LOG4" | tail -n 1)
    record bench_cuda_kernels "$([ $rc -eq 0 ] && echo 0 || echo 1)" "exit $rc$([ $rc -ne 0 ] && echo "; $(why "$LOG4")")"
    [ -n "$line" ] && say "  ${line#summary: }"
    sed -n '/^  product /,/^$/p' "$LOG4" | sed 's/^/  /' >>"$SUMMARY"
fi

# ---- 5. decode on a synthetic Qwen3.5-397B-shaped model (FM_GPU_STREAM=0 skips it, e.g. before
# bench/gpu_targets.sh, which runs the larger comparison)
LOG5=$OUT/5-stream.log
if [ "${FM_GPU_STREAM:-1}" != 0 ]; then
note "5. streamed decode (bench_stream)"
: >"$LOG5"
# The disk with the most room (not tmpfs: that is RAM, and refuses O_DIRECT).
best=
best_kb=0
for d in "${FM_GPU_SYNTH_DIR:-}" "$WORK" /var/tmp "$ROOT/.." /root /mnt /data; do
    [ -n "$d" ] && [ -d "$d" ] && [ -w "$d" ] || continue
    read -r fstype avail < <(df -PT "$d" 2>/dev/null | awk 'NR == 2 {print $2, $5}')
    [ "${fstype:-tmpfs}" = tmpfs ] && continue
    if [ "${avail:-0}" -gt "$best_kb" ]; then best=$d; best_kb=$avail; fi
done
echo "synthetic model disk: ${best:-none} (${best_kb} kB free)" | tee -a "$LOG5"
SYN=
if [ -z "$best" ]; then
    record "synthetic model" 1 "no disk with room (only tmpfs?)"
else
    SYN=$best/fm-gpu-synth
    rm -rf "$SYN"
    # Write speed decides the layers: at most ~30 s of writing, at most 2 layers of 3.62 GB
    # (device time is scarce; FM_GPU_LAYERS overrides).
    wspeed=$(dd if=/dev/zero of="$best/fm-gpu-ddtest" bs=8M count=128 oflag=direct 2>&1 |
             awk '/copied/ {for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) {print int(1073741824 / $(i - 1) / 1e6); exit}}')
    rm -f "$best/fm-gpu-ddtest"
    wspeed=${wspeed:-500}
    layers=${FM_GPU_LAYERS:-2}
    by_disk=$(((best_kb / 1048576 - 4) * 10 / 37))       # GB free less 4, 3.7 GB a layer
    by_speed=$((wspeed * 30 / 3700))                      # MB/s x 30 s / 3.7 GB
    [ -z "${FM_GPU_LAYERS:-}" ] && for lim in $by_disk $by_speed; do [ "$lim" -lt "$layers" ] && layers=$lim; done
    [ "$layers" -lt 1 ] && layers=1
    echo "disk write ~${wspeed} MB/s (dd, O_DIRECT): $layers layers" | tee -a "$LOG5"
    t=$(limit 60)
    ok=1
    if [ "$t" -gt 0 ]; then
        runp "$LOG5" "$t" "$(bin synth_packed)" "$SYN" --layers "$layers" --dense-bits 8 && ok=0
        if [ $ok -ne 0 ] && [ "$(limit 60)" -gt 0 ] && grep -q 'O_DIRECT\|Invalid argument' "$LOG5"; then
            rm -rf "$SYN"
            runp "$LOG5" "$(limit 60)" "$(bin synth_packed)" "$SYN" --layers "$layers" --dense-bits 8 --buffered && ok=0
        fi
    fi
    if [ $ok -eq 0 ]; then
        say "synthetic model: $layers MoE layers at $SYN ($(du -sh "$SYN" | cut -f1)), disk write ~${wspeed} MB/s"
    else
        record "synthetic model" 1 "synth_packed failed or ran out of time (log 5-stream.log)"
        SYN=
    fi
fi

declare -A TPS
stream_run() { # stream_run KEY LABEL SECONDS ARGS...
    local key=$1 label=$2 t
    t=$(limit "$3")
    shift 3
    if [ -z "$SYN" ]; then return; fi
    if [ "$t" -eq 0 ]; then
        record "stream $key" 1 "not run: time budget spent"
        return
    fi
    echo | tee -a "$LOG5"
    echo "--- ($key) $label" | tee -a "$LOG5"
    local mark
    mark=$(wc -l <"$LOG5")
    runp "$LOG5" "$t" "$(bin bench_stream)" -m "$SYN" --raw-gb 2 "$@"
    local rc=$?
    local s c
    s=$(tail -n +"$mark" "$LOG5" | grep '^summary:' | tail -n 1)
    c=$(tail -n +"$mark" "$LOG5" | grep '^summary-cuda:' | tail -n 1)
    TPS[$key]=$(echo "$s" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
    if [ $rc -eq 0 ] && [ -n "${TPS[$key]}" ]; then
        record "stream $key" 0 "$label: ${TPS[$key]} tok/s"
    else
        record "stream $key" 1 "$label: exit $rc; $(why "$LOG5" "$mark")"
    fi
    [ -n "$s" ] && say "  ${s#summary: }"
    [ -n "$c" ] && say "  ${c#summary-cuda: }"
}
if [ -n "$SYN" ]; then
    experts=$(du -cb "$SYN"/experts/layer_*.bin | tail -n 1 | cut -f1)
    third=$((experts / 3))
    all=$((experts + experts / 10))
    stream_run a "CUDA, VRAM cache 1/3 of the experts ($((third / 1000000)) MB)" 50 \
        --backend cuda --vram-cache "$third" -p 16 -n 64
    stream_run b "CUDA, all experts in VRAM" 50 \
        --backend cuda --vram-cache "$all" --preload -p 256 -n 64
    stream_run c "CPU, 16 threads, as (a)" 50 \
        --backend cpu -t 16 -p 16 -n 32
    stream_run d "CPU, 16 threads, all experts in RAM" 40 \
        --backend cpu -t 16 --preload -p 16 -n 32
    ratio() { awk -v a="${TPS[$1]:-}" -v b="${TPS[$2]:-}" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
    say "decode tok/s: (a) CUDA 1/3 in VRAM ${TPS[a]:--}, (b) CUDA all in VRAM ${TPS[b]:--}, (c) CPU streamed ${TPS[c]:--}, (d) CPU all in RAM ${TPS[d]:--}"
    say "ratios: CUDA/CPU streamed (a/c) $(ratio a c); all in memory (b/d) $(ratio b d); CUDA streamed/all in VRAM (a/b) $(ratio a b)"
    rm -rf "$SYN"
fi
fi

# ---- 6. summary
note "6. summary"
for f in "${failures[@]}"; do say "FAILED: $f"; done
say "$passed passed, $failed failed ($((SECONDS - START)) s)"
echo
echo "=== $SUMMARY"
cat "$SUMMARY"
[ "$failed" -eq 0 ]

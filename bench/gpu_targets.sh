#!/usr/bin/env bash
# The CUDA backend against docs/targets.md's GPU numbers, on the GPU machine, in one run
# (after tests/gpu.sh has passed; same bundle: scripts/gpu-bundle.sh). The incumbent's
# numbers are for a synthetic Qwen3.5-397B-shaped model of 8 layers held in the page cache:
# everything in VRAM 519 tok/s decode; experts in RAM on the CPU, the rest on the GPU 81 tok/s.
# This writes that model (8 MoE layers, 512 experts of 7.08 MB at 4 bits, 8-bit dense,
# buffered so it stays in the page cache) and runs bench_stream:
#   b. CUDA, every expert in VRAM (a 256-token prompt pulls them in from the page cache)
#   e. CUDA, VRAM cache of a third of the experts, the rest from the page cache (RAM)
#   f. as e with 4 experts per token (the reference system's setting)
#   c. CPU backend, 16 threads, experts from the page cache
#   a. CUDA, VRAM cache of a third, the rest from the SSD (page cache dropped)
# and last, where Nsight Compute is installed, the GPU time of each kernel over two decode steps
# (ncu, one metric). Output: $OUT/targets.log (default ./gpu-out), its summary at the end;
# a budget of FM_GPU_BUDGET seconds (default 270).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
WORK=${FM_GPU_WORK:-/tmp/fm-gpu}
BUDGET=${FM_GPU_BUDGET:-270}
LAYERS=${FM_GPU_LAYERS:-8}
START=$SECONDS
mkdir -p "$OUT" "$WORK/bin"
LOG=$OUT/targets.log
SUMMARY=$WORK/targets-summary.txt
: >"$LOG"
: >"$SUMMARY"
export LD_LIBRARY_PATH=$ROOT/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for z in .gpu/bin/*.zst; do
    [ -e "$z" ] || break
    f=$(basename "$z" .zst)
    .gpu/bin/zstd -q -f -d "$z" -o "$WORK/bin/$f" && chmod +x "$WORK/bin/$f"
done
bin() { if [ -x "$WORK/bin/$1" ]; then echo "$WORK/bin/$1"; else echo "$ROOT/.gpu/bin/$1"; fi; }
say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - (SECONDS - START))); }
run() { # run SECONDS ARGS...: one program, its output into the log
    local t=$1 l
    shift
    l=$(left)
    [ "$l" -lt "$t" ] && t=$l
    [ "$t" -lt 10 ] && { echo "(skipped: budget spent) $*" | tee -a "$LOG"; return 124; }
    echo "\$ $* (limit ${t}s)" | tee -a "$LOG"
    timeout -k 5 "$t" "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

say "flashmoe GPU targets run $(date -u '+%Y-%m-%d %H:%M UTC'): $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1); $(nproc) cores"

SYN=
for d in /var/tmp "$WORK" /root; do
    [ -d "$d" ] && [ -w "$d" ] && [ "$(df -PT "$d" | awk 'NR == 2 {print $2}')" != tmpfs ] && { SYN=$d/fm-targets-synth; break; }
done
rm -rf "$SYN"
t0=$SECONDS
run 90 "$(bin synth_packed)" "$SYN" --layers "$LAYERS" --dense-bits 8 --buffered || { say "synth_packed failed"; exit 1; }
say "synthetic model: $LAYERS MoE layers, $(du -sh "$SYN" | cut -f1), written in $((SECONDS - t0)) s (buffered: in the page cache)"
experts=$(du -cb "$SYN"/experts/layer_*.bin | tail -n 1 | cut -f1)
third=$((experts / 3))
all=$((experts + experts / 10))

declare -A TPS
stream() { # stream KEY LABEL SECONDS ARGS...
    local key=$1 label=$2 t=$3 mark s c
    shift 3
    echo "--- ($key) $label" | tee -a "$LOG"
    mark=$(wc -l <"$LOG")
    run "$t" "$(bin bench_stream)" -m "$SYN" --raw-gb 1 "$@"
    s=$(tail -n +"$mark" "$LOG" | grep '^summary:' | tail -n 1)
    c=$(tail -n +"$mark" "$LOG" | grep '^summary-cuda:' | tail -n 1)
    TPS[$key]=$(echo "$s" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
    say "($key) $label: ${TPS[$key]:-failed} tok/s"
    [ -n "$s" ] && say "    ${s#summary: }"
    [ -n "$c" ] && say "    ${c#summary-cuda: }"
}
stream b "CUDA, all experts in VRAM" 60 --backend cuda --vram-cache "$all" --cache os --no-drop -p 256 -n 128
stream e "CUDA, 1/3 of the experts in VRAM, the rest from the page cache" 50 --backend cuda --vram-cache "$third" \
    --cache os --no-drop -p 16 -n 64
stream f "as (e), 4 experts per token" 40 --backend cuda --vram-cache "$third" --cache os --no-drop --experts 4 \
    -p 16 -n 64
stream c "CPU, 16 threads, experts from the page cache" 50 --backend cpu -t 16 --cache os --no-drop -p 16 -n 32
stream a "CUDA, 1/3 in VRAM, the rest from the SSD (page cache dropped)" 50 --backend cuda --vram-cache "$third" \
    -p 16 -n 32
# Per-kernel GPU time of two decode steps (all experts resident after the prompt).
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ -n "$NCU" ] && [ "$(left)" -gt 40 ]; then
    echo "--- ncu: per-kernel GPU time, 2 decode steps" | tee -a "$LOG"
    run 45 "$NCU" --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
        --launch-skip 700 --launch-count 400 "$(bin bench_stream)" -m "$SYN" --raw-gb 0.1 --backend cuda \
        --vram-cache "$all" --cache os --no-drop -p 32 -n 6 >/dev/null
fi
say "targets (docs/targets.md, llama.cpp on this machine, 8 layers): all in VRAM 519 tok/s -> ours (b) ${TPS[b]:--}; experts in RAM 81 tok/s -> ours, 1/3 in VRAM + RAM (e) ${TPS[e]:--}; CPU (c) ${TPS[c]:--}"
rm -rf "$SYN"
say "done in $((SECONDS - START)) s"
{ echo; echo "=== summary"; cat "$SUMMARY"; } >>"$LOG"

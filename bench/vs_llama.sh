#!/usr/bin/env bash
# flashmoe against llama.cpp's llama-bench in one sitting, on models of the same
# shapes (bench/synth_packed and the peers' GGUF generator: see docs/PERF.md),
# alternating runs, medians and their ratio.
#   LLAMA=path/llama-bench GGUF=L.gguf FM=packed-dir bench/vs_llama.sh CASE [RUNS (3)]
# CASE:
#   ram      decode in RAM: llama-bench -p 0 -n 32 -t 2 (GGUF read once first; it
#            reports the mean of 5 repetitions, 160 tokens) vs bench_stream --preload
#            -n 160 -t 2 (the same number of tokens: this VM's speed swings within
#            seconds, and a 32-token run of ours lasts 1.4 s)
#   cold     decode from a cold page cache (larger than RAM): LLAMA_BENCH_NO_REPACK=1
#            llama-bench -p 0 -n 16 vs bench_stream -n 16, caches dropped before each run
#   prefill  prompt of 64 tokens from a cold page cache: llama-bench -p 64 -n 0 vs
#            bench_stream -p 64 -n 1
#   ram-prefill  prompt of 64 tokens in RAM: llama-bench -p 64 -n 0 vs bench_stream --preload -p 64 -n 1
#   busy     decode in RAM with one CPU-bound process running (yes > /dev/null):
#            llama-bench -t 2, flashmoe with its default threads and with -t 1
# THREADS (2) sets -t; EXTRA adds options to bench_stream (e.g. "--memory-budget 5G").
set -eu
CASE=${1:?ram, cold, prefill or busy}
RUNS=${2:-3}
: "${LLAMA:?path of llama-bench}" "${GGUF:?GGUF model}" "${FM:?flashmoe packed model}"
THREADS=${THREADS:-2}
EXTRA=${EXTRA:-}
B=$(dirname "$0")/../build/${MODE:-native}/bench/bench_stream
[ -x "$B" ] || { echo "vs_llama: $B not built (make)" >&2; exit 1; }

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# llama-bench's markdown table: the t/s column of the last row.
llama_tps() { awk -F'|' '/\| *(tg|pp)[0-9]+ *\|/ {v=$(NF-1)} END {split(v, a, " "); print a[1]}'; }
fm_decode() { sed -n 's/.*decode *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tok\/s.*/\1/p' | head -1; }
fm_prefill() { sed -n 's/.*prefill *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tok\/s.*/\1/p' | head -1; }

L=() F=() F1=()
busy_pid=
trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null || true' EXIT
case $CASE in
ram | ram-prefill | busy) cat "$GGUF" >/dev/null ;;
cold | prefill) ;;
*) echo "vs_llama: unknown case $CASE" >&2; exit 2 ;;
esac
if [ "$CASE" = busy ]; then
    yes >/dev/null &
    busy_pid=$!
fi
for i in $(seq "$RUNS"); do
    case $CASE in
    ram | busy)
        l=$("$LLAMA" -m "$GGUF" -p 0 -n 32 -t "$THREADS" | llama_tps)
        f=$("$B" -m "$FM" --preload -n 160 --no-drop --raw-gb 1 --backend cpu $([ "$CASE" = ram ] && echo "-t $THREADS") $EXTRA | fm_decode)
        [ "$CASE" = busy ] && F1+=("$("$B" -m "$FM" --preload -n 160 --no-drop --raw-gb 1 --backend cpu -t 1 $EXTRA | fm_decode)")
        ;;
    ram-prefill)
        l=$("$LLAMA" -m "$GGUF" -p 64 -n 0 -t "$THREADS" | llama_tps)
        f=$("$B" -m "$FM" --preload -p 64 -n 1 --no-drop --raw-gb 1 --backend cpu -t "$THREADS" $EXTRA | fm_prefill)
        ;;
    cold)
        drop
        l=$(LLAMA_BENCH_NO_REPACK=1 "$LLAMA" -m "$GGUF" -p 0 -n 16 -t "$THREADS" -r 1 | llama_tps)
        drop
        f=$("$B" -m "$FM" -n 16 -t "$THREADS" --backend cpu $EXTRA | fm_decode)
        ;;
    prefill)
        drop
        l=$(LLAMA_BENCH_NO_REPACK=1 "$LLAMA" -m "$GGUF" -p 64 -n 0 -t "$THREADS" -r 1 | llama_tps)
        drop
        f=$("$B" -m "$FM" -p 64 -n 1 -t "$THREADS" --backend cpu $EXTRA | fm_prefill)
        ;;
    esac
    L+=("$l") F+=("$f")
    echo "run $i: llama.cpp $l tok/s, flashmoe $f tok/s${F1:+, flashmoe -t 1 ${F1[-1]} tok/s}"
done
ml=$(printf '%s\n' "${L[@]}" | median)
mf=$(printf '%s\n' "${F[@]}" | median)
echo "$CASE: median of $RUNS: llama.cpp $ml tok/s, flashmoe $mf tok/s, flashmoe/llama.cpp $(awk -v a="$mf" -v b="$ml" 'BEGIN {printf "%.2f", a / b}')x"
if [ ${#F1[@]} -gt 0 ]; then
    m1=$(printf '%s\n' "${F1[@]}" | median)
    echo "$CASE: flashmoe -t 1 under the same load: median $m1 tok/s (default threads / -t 1: $(awk -v a="$mf" -v b="$m1" 'BEGIN {printf "%.2f", a / b}')x)"
fi

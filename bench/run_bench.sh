#!/usr/bin/env bash
# Decode benchmark on the bundled models, then (with --synthetic) on a
# random-weight model with Qwen3.5-397B-A17B's layer shapes (4 layers, 32
# experts top-10, bf16, 6.7 GB; written once to build/synth4 by synth_model).
#   bench/run_bench.sh [--synthetic]
# With --stream instead: decode with experts streamed from the disk
# (bench_stream), on packed random models with the real 512 experts at 4 bits
# written by synth_packed: one larger than RAM (STREAM_LAYERS, default 14
# layers = 57 GB; needs that much free disk + 10 GB) under five setups, then a
# 4-layer one (18 GB) all in RAM for the compute-bound speed. Both are removed
# afterwards unless KEEP=1.
#   bench/run_bench.sh --stream
set -eu
cd "$(dirname "$0")/.."
MODE=${MODE:-native}
B=./build/$MODE/bench

stream() {
    local layers=${STREAM_LAYERS:-14} big=build/synthp${STREAM_LAYERS:-14} small=build/synthp4
    local need=$((layers * 37 / 10 + 3 + 10)) free
    free=$(df -BG --output=avail build | tail -1 | tr -dc 0-9)
    if [ "$free" -lt "$need" ]; then
        echo "run_bench --stream: $free GB free under build/, need about $need GB (STREAM_LAYERS=$layers)" >&2
        exit 1
    fi
    # Dense matrices at 8 bits, as flashmoe convert writes them by default.
    [ -f $big/flashmoe.json ] || $B/synth_packed $big --layers "$layers" --dense-bits 8
    echo "== (a) RAM cache, 8 GB memory budget, pread pool"
    $B/bench_stream -m $big --cache ram --memory-budget 8G
    echo "== (b) OS page cache"
    $B/bench_stream -m $big --cache os
    echo "== (c) RAM cache, 8 GB memory budget, io_uring"
    $B/bench_stream -m $big --cache ram --memory-budget 8G --io uring
    echo "== (d) as (a) with 4 experts per token"
    $B/bench_stream -m $big --cache ram --memory-budget 8G --experts 4
    echo "== (f) as (a), a 256-token prompt (one micro-batch: each expert read once for all 256)"
    $B/bench_stream -m $big --cache ram --memory-budget 8G -p 256 -n 4
    [ "${KEEP:-0}" = 1 ] || rm -rf $big
    [ -f $small/flashmoe.json ] || $B/synth_packed $small --layers 4 --dense-bits 8
    echo "== (e) 4 layers, every expert preloaded into RAM (compute-bound)"
    $B/bench_stream -m $small --preload --cache-size 15G
    [ "${KEEP:-0}" = 1 ] || rm -rf $small
}

if [ "${1:-}" = "--stream" ]; then
    stream
    exit 0
fi
./scripts/unpack-models.sh
for m in qwen35moe_tok qwen35moe qwen3next mixtral; do
    ./build/$MODE/bench/bench_decode -m build/models/$m
    echo
done
if [ "${1:-}" = "--synthetic" ]; then
    [ -f build/synth4/model.safetensors ] || ./build/$MODE/bench/synth_model build/synth4
    ./build/$MODE/bench/bench_decode -m build/synth4 -n 16 -p 16
fi

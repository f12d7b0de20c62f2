#!/usr/bin/env bash
# Decode benchmark on the bundled models, then (with --synthetic) on a
# random-weight model with Qwen3.5-397B-A17B's layer shapes (4 layers, 32
# experts top-10, bf16, 6.7 GB; written once to build/synth4 by synth_model).
#   bench/run_bench.sh [--synthetic]
set -eu
cd "$(dirname "$0")/.."
MODE=${MODE:-native}
./scripts/unpack-models.sh
for m in qwen35moe_tok qwen35moe qwen3next mixtral; do
    ./build/$MODE/bench/bench_decode -m build/models/$m
    echo
done
if [ "${1:-}" = "--synthetic" ]; then
    [ -f build/synth4/model.safetensors ] || ./build/$MODE/bench/synth_model build/synth4
    ./build/$MODE/bench/bench_decode -m build/synth4 -n 16 -p 16
fi

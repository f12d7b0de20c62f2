#!/usr/bin/env bash
# Runs the decode benchmark on every bundled model (largest first).
set -eu
cd "$(dirname "$0")/.."
MODE=${MODE:-native}
for m in qwen35moe_tok qwen35moe qwen3next qwen3moe mixtral; do
    [ -d build/models/$m ] || { echo "build/models/$m missing: run 'make test' or scripts/unpack-models.sh first"; exit 1; }
done
for m in qwen35moe_tok qwen35moe qwen3next mixtral; do
    ./build/$MODE/bench/bench_decode -m build/models/$m "$@"
    echo
done

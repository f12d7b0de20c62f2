#!/bin/sh
# Unpacks the bundled fixture models (tests/data/models/*.tar.zst) into build/models.
set -e
cd "$(dirname "$0")/.."
mkdir -p build/models
for archive in tests/data/models/*.tar.zst; do
    name=$(basename "$archive" .tar.zst)
    if [ ! -d "build/models/$name" ] || [ "$archive" -nt "build/models/$name" ]; then
        rm -rf "build/models/$name"
        zstd -q -dc "$archive" | tar -C build/models -xf -
        touch "build/models/$name"
    fi
done

# transformers' reference outputs of the shipped model (models/assistant).
ref=tests/data/models/assistant_reference.safetensors.zst
mkdir -p build/models/assistant_ref
if [ ! -f build/models/assistant_ref/reference.safetensors ] || [ $ref -nt build/models/assistant_ref/reference.safetensors ]; then
    zstd -q -dc $ref >build/models/assistant_ref/reference.safetensors.tmp
    mv build/models/assistant_ref/reference.safetensors.tmp build/models/assistant_ref/reference.safetensors
fi

# The Qwen3 tokenizer, also the tokenizer of the qwen35moe_tok model.
mkdir -p build/tokenizers/qwen3
src=tests/data/tokenizers/qwen3
if [ ! -f build/tokenizers/qwen3/tokenizer.json ] || [ $src/tokenizer.json.zst -nt build/tokenizers/qwen3/tokenizer.json ]; then
    zstd -q -dc $src/tokenizer.json.zst >build/tokenizers/qwen3/tokenizer.json.tmp
    mv build/tokenizers/qwen3/tokenizer.json.tmp build/tokenizers/qwen3/tokenizer.json
fi
cp $src/tokenizer_config.json $src/reference.json build/tokenizers/qwen3/
cp build/tokenizers/qwen3/tokenizer.json $src/tokenizer_config.json build/models/qwen35moe_tok/

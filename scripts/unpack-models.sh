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

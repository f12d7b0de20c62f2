#!/usr/bin/env bash
# Prepares what one run of tests/gpu.sh on a GPU machine needs, into ./.gpu/
# (ignored by git; send it along with the checkout):
#   .gpu/bin       the CUDA-enabled programs (built here by `make`), and zstd
#   .gpu/lib       the shared libraries they need that are not part of glibc,
#                  under their sonames (the GPU machine may lack cJSON, PCRE2, ...)
#   .gpu/fixtures  the fixture models tests/gpu.sh unpacks (tests/data/models/*.tar.zst
#                  without qwen35moe_tok and the assistant files: the tree sent must stay
#                  under 64 MiB, and tests/data/models and models/ stay behind)
# When the whole would come near the limit (more than 48 MiB), the programs are
# stored zstd-compressed (.gpu/bin/NAME.zst; tests/gpu.sh unpacks them with the
# zstd beside them); FM_BUNDLE_COMPRESS=1 always, =0 never.
# Then prints the size of .gpu and of what would be sent.
#   scripts/gpu-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FIXTURES="qwen35moe qwen35moe_fused qwen35moe_text qwen3next qwen3moe mixtral qwen35moe_mlx4 qwen3next_mlx4"
B=build/native
PROGRAMS="$B/flashmoe $B/tests/test_cuda_kernels $B/tests/test_cuda_models $B/tests/ref_tool
          $B/bench/bench_cuda_kernels $B/bench/bench_stream $B/bench/synth_packed"
# glibc's own libraries and the loader's: there already (glibc 2.39 there, older here).
SKIP='^(linux-vdso|linux-gate|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so)'

echo "== make -j2"
make -j2
if [ ! -f $B/.config-cuda1 ]; then
    echo "gpu-bundle: $B was built without CUDA (nvcc not found, or CUDA=0): nothing to send to a GPU machine" >&2
    exit 1
fi

rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/fixtures
missing=()
for p in $PROGRAMS; do
    if [ -x "$p" ]; then cp "$p" .gpu/bin/; else missing+=("$p"); fi
done
# zstd for the fixtures (the GPU machine may have none); its libraries follow below.
cp "$(command -v zstd)" .gpu/bin/zstd

# Libraries: every one ldd resolves outside glibc, copied under the name asked for (its soname).
for f in .gpu/bin/*; do
    ldd "$f" | while read -r name arrow path rest; do
        [ "$arrow" = "=>" ] || continue
        [[ $name =~ $SKIP ]] && continue
        if [ "$path" = "not" ]; then
            echo "gpu-bundle: $f needs $name, which is not found here" >&2
            exit 1
        fi
        [ -f ".gpu/lib/$name" ] || cp -L "$path" ".gpu/lib/$name"
    done
done
strip --strip-unneeded .gpu/bin/* .gpu/lib/* 2>/dev/null || true

for name in $FIXTURES; do
    cp "tests/data/models/$name.tar.zst" .gpu/fixtures/
done

compress=${FM_BUNDLE_COMPRESS:-auto}
if [ "$compress" = auto ]; then
    compress=0
    [ "$(du -sb .gpu | awk '{print $1}')" -gt $((48 * 1048576)) ] && compress=1
fi
if [ "$compress" = 1 ]; then
    for f in .gpu/bin/*; do
        [ "${f##*/}" = zstd ] && continue
        zstd -q -19 --rm "$f" -o "$f.zst"
    done
fi

echo
echo "== .gpu"
for d in bin lib fixtures; do
    printf '  %-10s %6.1f MiB  %s\n' "$d" "$(du -sb .gpu/$d | awk '{print $1 / 1048576}')" \
        "$(cd .gpu/$d && ls | tr '\n' ' ')"
done
gpu=$(du -sb .gpu | awk '{print $1}')
# What a run sends: tracked and untracked-not-ignored files, without the folders moved aside, plus .gpu.
tree=$(git ls-files -co --exclude-standard -z | grep -zv '^tests/data/models/\|^models/' |
       xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
printf '  %-10s %6.1f MiB\n' "total" "$(awk "BEGIN {print $gpu / 1048576}")"
printf '  sent: checkout without tests/data/models and models/ %.1f MiB + .gpu %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
    "$(awk "BEGIN {print $tree / 1048576}")" "$(awk "BEGIN {print $gpu / 1048576}")" \
    "$(awk "BEGIN {print ($tree + $gpu) / 1048576}")"
if [ $((tree + gpu)) -gt $((62 * 1048576)) ]; then
    echo "gpu-bundle: WARNING: that is too close to or over the 64 MiB limit" >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "gpu-bundle: not built (tests/gpu.sh reports them as failed): ${missing[*]}" >&2
    exit 2
fi

#!/usr/bin/env bash
# End-to-end tests of the flashmoe commands on the bundled models: outputs
# against transformers' reference, and bad input (exit code 1, a message
# naming the problem, no partial output).
#   tests/test_cli.sh BUILD_DIR MODELS_DIR
set -u
BUILD=${1:-build/native}
MODELS=${2:-build/models}
FM=$BUILD/flashmoe
REF=$BUILD/tests/ref_tool
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && sed 's/^/    /' <<<"$2"; }

# expect_fail NAME SUBSTRING CMD...: exit code 1 and SUBSTRING in stderr.
expect_fail() {
    local name=$1 want=$2
    shift 2
    local err
    err=$("$@" 2>&1 >/dev/null)
    local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$want" <<<"$err"; then ok "$name"; else not_ok "$name (rc=$rc)" "$err"; fi
}

for model in qwen35moe qwen35moe_fused qwen35moe_text qwen35moe_tok qwen3next qwen3moe mixtral; do
    dir=$MODELS/$model
    ref=$dir/reference.safetensors
    [ "$model" = qwen35moe_fused ] && ref=$MODELS/qwen35moe/reference.safetensors
    ids=$($REF ids "$ref" input_ids)
    full=$($REF ids "$ref" full_ids)

    if out=$($FM info -m "$dir" 2>&1) && grep -q "^architecture" <<<"$out" && grep -q "active per token" <<<"$out"; then
        ok "$model: info"
    else
        not_ok "$model: info" "$out"
    fi

    rm -f "$TMP/logits"
    if $FM score -m "$dir" --ids "$ids" -o "$TMP/logits" && out=$($REF compare "$TMP/logits" "$ref" logits 1e-4); then
        ok "$model: score matches reference logits ($out)"
    else
        not_ok "$model: score matches reference logits" "${out:-}"
    fi
    if $FM score -m "$dir" --ids "$full" -o "$TMP/full" && out=$($REF compare "$TMP/full" "$ref" full_logits 1e-4); then
        ok "$model: score of prompt+continuation matches full_logits ($out)"
    else
        not_ok "$model: score of prompt+continuation" "${out:-}"
    fi
    [ -z "$(ls "$TMP" | grep tmp)" ] && ok "$model: no temporary files left" || not_ok "$model: temporary files left"

    want=$($REF tokens "$ref" greedy_tokens)
    got=$($FM generate -m "$dir" --ids "$ids" -n 24 --greedy)
    if [ "$got" = "$want" ]; then ok "$model: generate equals transformers' greedy tokens"; else not_ok "$model: generate" "got:  $got
want: $want"; fi
done

# ---- bad input ----------------------------------------------------------
M=$MODELS/qwen3moe
expect_fail "no command" "usage" $FM
expect_fail "unknown command" "unknown command 'frobnicate'" $FM frobnicate
expect_fail "unknown option" "unknown option '--bogus'" $FM info -m "$M" --bogus
FLASHMOE_MODEL= expect_fail "missing -m (no default model)" "missing -m" $FM info
expect_fail "missing model directory" "$TMP/nope" $FM info -m "$TMP/nope"
expect_fail "missing --ids" "missing --ids" $FM generate -m "$M" -n 3
expect_fail "bad ids" "--ids: item 2 of '1,x,3' is not a token id" $FM generate -m "$M" --ids 1,x,3 -n 2 --greedy
expect_fail "empty ids" "--ids: item 1 of '' is not a token id" $FM generate -m "$M" --ids "" -n 2 --greedy
expect_fail "token id >= vocab_size" "token id 1024 at position 1 is outside the vocabulary [0, 1024)" \
    $FM generate -m "$M" --ids 5,1024 -n 2 --greedy
expect_fail "bad -n" "-n: 'lots' is not a whole number" $FM generate -m "$M" --ids 1 -n lots --greedy
expect_fail "-n too large" "-n: 999999999999 is too large (at most 2147483647)" $FM run -m "$M" -p hi -n 999999999999
expect_fail "-n 0 for run" "-n: 0 is too small (at least 1)" $FM run -m "$M" -p hi -n 0
expect_fail "--io-threads over the limit" "--io-threads: 5000 is too large (at most 1024)" $FM info -m "$M" --io-threads 5000
if out=$($FM info -m "$M" --io-threads 0 2>&1); then ok "--io-threads 0 is the default"; else not_ok "--io-threads 0" "$out"; fi
if err=$($FM generate -m "$M" --ids 1,2 -n 1 --greedy -t 100000 2>&1 >/dev/null) && grep -q "more than 4 threads per CPU" <<<"$err"; then
    ok "-t far above the CPUs: a warning and the CPU count"
else
    not_ok "-t 100000" "$err"
fi
expect_fail "context limit" "exceed the context limit of 4 tokens" $FM generate -m "$M" --ids 1,2,3,4,5 -n 1 --ctx 4
expect_fail "bad --threads" "--threads: 'x' is not a whole number" $FM info -m "$M" --threads x
mkdir -p "$TMP/halfdone" && cp "$M/config.json" "$TMP/halfdone/" && echo '{}' >"$TMP/halfdone/.convert-state.json"
expect_fail "an interrupted conversion says so" "a conversion into this folder did not finish" $FM info -m "$TMP/halfdone"

# ---- output files: replaced atomically only when they are regular files --------
$FM score -m "$M" --ids 1,2 -o "$TMP/ref_logits"
echo old >"$TMP/target" && ln -s target "$TMP/link"
if $FM score -m "$M" --ids 1,2 -o "$TMP/link" && [ -L "$TMP/link" ] && cmp -s "$TMP/target" "$TMP/ref_logits"; then
    ok "score through a symlink writes the file it names and keeps the link"
else
    not_ok "score through a symlink"
fi
mkfifo "$TMP/fifo"
(cat "$TMP/fifo" >"$TMP/from_fifo") &
reader=$!
if $FM score -m "$M" --ids 1,2 -o "$TMP/fifo" && wait $reader && [ -p "$TMP/fifo" ] && cmp -s "$TMP/from_fifo" "$TMP/ref_logits"; then
    ok "score into a FIFO writes through it and leaves the FIFO"
else
    not_ok "score into a FIFO"
fi
# Device nodes: our own in $TMP where mknod is allowed, else the system's /dev/null and
# /dev/full written by a user who cannot replace them (nobody, when we are root), so a
# regression shows as a failure and never as a lost device.
NULLDEV=$TMP/null FULLDEV=$TMP/full AS=()
if ! { mknod "$NULLDEV" c 1 3 && mknod "$FULLDEV" c 1 7; } 2>/dev/null; then
    NULLDEV=/dev/null FULLDEV=/dev/full
    [ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
if "${AS[@]}" $FM score -m "$M" --ids 1,2 -o "$NULLDEV" && [ -c "$NULLDEV" ]; then
    ok "score -o $NULLDEV: exit 0, still a device"
else
    not_ok "score -o $NULLDEV" "$(ls -l "$NULLDEV")"
fi
expect_fail "score -o $FULLDEV: the error" "$FULLDEV: cannot write logits: No space left on device" \
    "${AS[@]}" $FM score -m "$M" --ids 1,2 -o "$FULLDEV"
[ -c "$FULLDEV" ] && ok "score -o $FULLDEV leaves the device" || not_ok "$FULLDEV was replaced"

rm -f "$TMP/never"
expect_fail "score with bad id writes nothing" "outside the vocabulary" $FM score -m "$M" --ids 1,99999 -o "$TMP/never"
[ ! -e "$TMP/never" ] && ok "no output file after a failed score" || not_ok "output file left after a failed score"
expect_fail "score into a missing directory" "$TMP/no/such/dir/out" $FM score -m "$M" --ids 1,2 -o "$TMP/no/such/dir/out"

# Damaged copies of a model.
mk() { rm -rf "$TMP/m"; mkdir -p "$TMP/m"; cp "$M"/config.json "$M"/generation_config.json "$M"/model.safetensors "$TMP/m/"; }
mk; size=$(stat -c %s "$TMP/m/model.safetensors"); head -c $((size / 2)) "$M/model.safetensors" >"$TMP/m/model.safetensors"
expect_fail "truncated safetensors" "model.safetensors: tensor" $FM info -m "$TMP/m"
mk; head -c 4 "$M/model.safetensors" >"$TMP/m/model.safetensors"
expect_fail "safetensors shorter than its header" "too short" $FM info -m "$TMP/m"
mk; printf '\xff\xff\xff\x00\x00\x00\x00\x00{}' >"$TMP/m/model.safetensors"
expect_fail "header length past the end" "header length" $FM info -m "$TMP/m"
mk; echo '{"model_type": "qwen3_moe", ' >"$TMP/m/config.json"
expect_fail "bad JSON config" "config.json: invalid JSON" $FM info -m "$TMP/m"
mk; sed 's/"qwen3_moe"/"llama4"/' "$M/config.json" >"$TMP/m/config.json"
expect_fail "unknown model_type" "model_type \"llama4\" is not supported" $FM info -m "$TMP/m"
mk; grep -v '"hidden_size"' "$M/config.json" >"$TMP/m/config.json"
expect_fail "config missing hidden_size" "missing required key \"hidden_size\"" $FM info -m "$TMP/m"
mk; sed 's/"hidden_size": 128/"hidden_size": 96/' "$M/config.json" >"$TMP/m/config.json"
expect_fail "wrong-shaped tensor" "has shape [1024, 128], expected [1024, 96]" $FM info -m "$TMP/m"
mk; rm "$TMP/m/model.safetensors"
expect_fail "no weights" "no model.safetensors" $FM info -m "$TMP/m"

# ---- convert, verify, packed models ---------------------------------------
Q=$MODELS/qwen35moe
QREF=$Q/reference.safetensors
qids=$($REF ids "$QREF" input_ids)
if err=$($FM convert "$Q" "$TMP/p16" --bits 16 2>&1) && grep -q "packed model written" <<<"$err" &&
    grep -q "GB (100.0%)" <<<"$err"; then ok "convert --bits 16 reports progress"; else not_ok "convert --bits 16" "$err"; fi
[ -f "$TMP/p16/flashmoe.json" ] && [ -f "$TMP/p16/dense.safetensors" ] && [ -f "$TMP/p16/experts/layer_000.bin" ] &&
    [ -f "$TMP/p16/config.json" ] && [ -z "$(find "$TMP/p16" -name '*.tmp' -o -name '*.xxh3' -o -name '.convert-state.json')" ] &&
    ok "convert leaves the model and no temporary files" || not_ok "convert output files" "$(find "$TMP/p16")"
$FM score -m "$Q" --ids "$qids" -o "$TMP/l_ckpt" && $FM score -m "$TMP/p16" --ids "$qids" -o "$TMP/l_p16" &&
    cmp -s "$TMP/l_ckpt" "$TMP/l_p16" && ok "packed bf16 scores bit-identical to the checkpoint" ||
    not_ok "packed bf16 scores bit-identical to the checkpoint"
want=$($REF tokens "$QREF" greedy_tokens)
got=$($FM generate -m "$TMP/p16" --ids "$qids" -n 24 --greedy --cache ram --io uring)
[ "$got" = "$want" ] && ok "packed bf16 (ram cache, io_uring) generates transformers' greedy tokens" ||
    not_ok "packed bf16 generate" "got:  $got
want: $want"
$FM convert "$Q" "$TMP/p8" --bits 8 --quiet && $FM score -m "$TMP/p8" --ids "$qids" -o "$TMP/l_p8" &&
    out=$($REF compare "$TMP/l_p8" "$QREF" logits 0.08) && ok "8-bit experts and dense: logits within 0.08 ($out)" ||
    not_ok "8-bit experts close to the reference" "${out:-}"
if out=$($FM info -m "$TMP/p8") && grep -q "packed         experts at 8 bits" <<<"$out"; then ok "info shows packed experts"; else
    not_ok "info shows packed experts" "$out"; fi
if err=$($FM generate -m "$TMP/p8" --ids "$qids" -n 4 --greedy --timing 2>&1 >/dev/null) &&
    grep -q "layer  attention    routing    io wait    experts      other" <<<"$err" &&
    grep -q "experts: .* fetched, cache hit rate" <<<"$err" && grep -q "GB read from disk" <<<"$err"; then
    ok "--timing prints the per-layer breakdown and totals"
else
    not_ok "--timing" "$err"
fi
a=$($FM generate -m "$TMP/p16" --ids "$qids" -n 8 --greedy --experts 2)
b=$($FM generate -m "$Q" --ids "$qids" -n 8 --greedy --experts 2)
full4=$($FM generate -m "$Q" --ids "$qids" -n 8 --greedy)
c=$($FM generate -m "$TMP/p8" --ids "$qids" -n 8 --greedy --preload --memory-budget 1G)
[ "$(wc -w <<<"$a")" = 8 ] && [ "$a" = "$b" ] && [ "$a" != "$full4" ] &&
    ok "--experts 2: packed = checkpoint, and not the model's 4" || not_ok "--experts 2" "$a / $b / $full4"
[ -n "$c" ] && ok "--preload --memory-budget" || not_ok "--preload --memory-budget"
out=$($FM verify "$TMP/p8" 2>&1) && grep -q "all checksums match" <<<"$out" && ok "verify a good model" || not_ok "verify" "$out"
expect_fail "convert onto a packed model" "already holds a packed model" $FM convert "$Q" "$TMP/p8" --quiet
expect_fail "convert a packed model" "already a packed flashmoe model" $FM convert "$TMP/p8" "$TMP/p9" --quiet
expect_fail "convert --bits 5" "--bits 5" $FM convert "$Q" "$TMP/p9" --bits 5 --quiet
expect_fail "convert from a missing directory" "$TMP/none" $FM convert "$TMP/none" "$TMP/p9" --quiet
expect_fail "--experts beyond the model" "cannot run 17 experts per token" $FM info -m "$TMP/p8" --experts 17
expect_fail "bad --cache" "--cache: 'disk'" $FM info -m "$TMP/p8" --cache disk
expect_fail "bad --memory-budget" "not a size" $FM info -m "$TMP/p8" --memory-budget lots
expect_fail "memory budget below the dense weights" "too small" $FM generate -m "$TMP/p8" --ids 1 -n 1 --memory-budget 1M
expect_fail "memory budget with the page cache" "need the ram expert cache" $FM info -m "$TMP/p8" --memory-budget 1G --cache os
FM_FAULT=write:40:ENOSPC $FM convert "$Q" "$TMP/p4" --bits 4 --quiet 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -q "disk full" "$TMP/err" && [ ! -e "$TMP/p4/flashmoe.json" ] &&
    ok "convert on a full disk: error, no manifest" || not_ok "convert on a full disk (rc=$rc)" "$(cat "$TMP/err")"
$FM convert "$Q" "$TMP/p4" --bits 4 --quiet && $FM verify "$TMP/p4" --quiet >/dev/null &&
    ok "the rerun resumes and completes" || not_ok "resume after a full disk"
FM_FAULT=read:3:EIO $FM generate -m "$TMP/p4" --ids "$qids" -n 2 --greedy 2>"$TMP/err" >/dev/null
rc=$?
[ $rc -eq 1 ] && grep -q "experts/layer_000.bin: read of" "$TMP/err" && grep -q "Input/output error" "$TMP/err" &&
    ok "an I/O error names the expert file" || not_ok "I/O error (rc=$rc)" "$(cat "$TMP/err")"
cp -r "$TMP/p4" "$TMP/bad"
printf 'X' | dd of="$TMP/bad/experts/layer_001.bin" bs=1 seek=100 conv=notrunc status=none
expect_fail "verify finds a corrupt expert" "checksum mismatch in layer 1 expert 0" $FM verify "$TMP/bad" --quiet
expect_fail "--verify-reads finds it while running" "checksum mismatch" \
    $FM generate -m "$TMP/bad" --ids "$qids" -n 1 --greedy --verify-reads
truncate -s 5000 "$TMP/bad/experts/layer_001.bin"
expect_fail "truncated expert file" "layer_001.bin: truncated" $FM info -m "$TMP/bad"

# A conversion killed midway (SIGKILL after the first layer's experts are done)
# resumes: the rerun skips what was finished and writes the same model.
$BUILD/bench/synth_model "$TMP/big" --layers 8 --experts 32 --top-k 4 --hidden 1024 --expert-ffn 512 \
    --vocab 4096 >/dev/null 2>&1
$FM convert "$TMP/big" "$TMP/big-once" --bits 4 --quiet
$FM convert "$TMP/big" "$TMP/big-killed" --bits 4 --quiet &
pid=$!
for _ in $(seq 1 500); do
    [ -e "$TMP/big-killed/experts/layer_000.bin.xxh3" ] && break
    sleep 0.01
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -e "$TMP/big-killed/flashmoe.json" ]; then
    not_ok "convert killed midway (it finished before the kill; the model is too small for this machine)"
else
    done_before=$(ls "$TMP/big-killed/experts" | grep -c 'bin$')
    err=$($FM convert "$TMP/big" "$TMP/big-killed" --bits 4 2>&1)
    if grep -q "packed model written" <<<"$err" && cmp -s "$TMP/big-once/flashmoe.json" "$TMP/big-killed/flashmoe.json" &&
        [ -z "$(find "$TMP/big-killed" -name '*.tmp' -o -name '*.xxh3')" ]; then
        ok "convert killed after $done_before layer file(s) resumes to the same model"
    else
        not_ok "resume after SIGKILL" "$err"
    fi
fi

# ---- the shipped model (models/assistant, its 4-bit packed form models/assistant-q4) ----
A=models/assistant
AREF=$MODELS/assistant_ref/reference.safetensors
for c in conv0 conv1 conv2; do # whole held-out conversations, against transformers
    if $FM score -m $A --ids "$($REF ids $AREF ${c}_ids)" -o "$TMP/a_$c" &&
        out=$($REF compare "$TMP/a_$c" $AREF ${c}_logits 1e-4); then
        ok "shipped model: held-out conversation $c matches transformers ($out)"
    else
        not_ok "shipped model: $c" "${out:-}"
    fi
done
$FM convert $A "$TMP/aq4" --bits 4 --quiet
if cmp -s "$TMP/aq4/flashmoe.json" models/assistant-q4/flashmoe.json; then
    ok "models/assistant-q4 is convert --bits 4 of models/assistant (same checksums)"
else
    not_ok "models/assistant-q4 is stale: run flashmoe convert models/assistant models/assistant-q4 --bits 4 --force"
fi
want='**door** (noun): a swinging or sliding barrier that will close the entrance to a room or building or vehicle.'
got=$(env -u FLASHMOE_MODEL $FM run -p "What does 'door' mean?" --temp 0 --no-think -n 64 --quiet)
[ "$got" = "$want" ] && ok "run without -m answers with the shipped 4-bit model" || not_ok "run without -m" "$got"
got=$($FM run -m $A -p "Define the noun question." --temp 0 --no-think -n 64 --quiet)
[ "$got" = "**question** (noun): an instance of questioning." ] && ok "the bf16 shipped model defines a word" ||
    not_ok "bf16 shipped model" "$got"

# ---- backends --------------------------------------------------------------
# Without a usable GPU, --backend cuda fails clearly and the default runs on the CPU
# (tests/gpu.sh covers the GPU itself).
if nvidia-smi -L >/dev/null 2>&1; then
    got=$($FM info -m $A --backend cuda 2>&1) && grep -q "^backend        cuda" <<<"$got" &&
        ok "--backend cuda on this GPU machine" || not_ok "--backend cuda" "$got"
else
    got=$($FM score -m $A --backend cuda --ids 1,2,3 -o "$TMP/cuda_scores" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && grep -q "the cuda backend cannot run: " <<<"$got" && [ ! -e "$TMP/cuda_scores" ]; then
        ok "--backend cuda without a GPU: $(sed 's/.*cannot run: //' <<<"$got")"
    else
        not_ok "--backend cuda without a GPU (rc $rc)" "$got"
    fi
    got=$($FM info -m $A 2>&1 | grep "^backend")
    grep -q "^backend        cpu" <<<"$got" && ok "the default backend without a GPU: ${got#backend }" ||
        not_ok "default backend" "$got"
fi
got=$($FM info -m $A --backend gpu 2>&1)
[ $? -ne 0 ] && grep -q "cpu, cuda or auto" <<<"$got" && ok "--backend refuses an unknown name" ||
    not_ok "--backend gpu" "$got"

# ---- tokenize ------------------------------------------------------------
TOK=$MODELS/../tokenizers/qwen3
got=$($FM tokenize --tokenizer "$TOK" "Hello, world!")
[ "$got" = "9707 11 1879 0" ] && ok "tokenize prints the ids" || not_ok "tokenize prints the ids" "$got"
got=$($FM tokenize --tokenizer "$MODELS/qwen35moe_tok" "Hello, world!")
[ "$got" = "9707 11 1879 0" ] && ok "tokenize takes a model directory" || not_ok "tokenize takes a model directory" "$got"
got=$($FM tokenize --tokenizer "$TOK/tokenizer.json" --decode 9707,11,1879,0)
[ "$got" = "Hello, world!" ] && ok "tokenize --decode prints the text" || not_ok "tokenize --decode" "$got"
printf '<|im_start|>user\nhi<|im_end|>' >"$TMP/chat.txt"
got=$($FM tokenize --tokenizer "$TOK" --text-file "$TMP/chat.txt")
[ "$(cut -d' ' -f1 <<<"$got")" = 151644 ] && [ "$(awk '{print $NF}' <<<"$got")" = 151645 ] &&
    ok "tokenize --text-file matches special tokens" || not_ok "tokenize --text-file" "$got"
got=$($FM tokenize --tokenizer "$TOK" --decode 151644,872 --skip-special)
[ "$got" = "user" ] && ok "tokenize --decode --skip-special" || not_ok "--skip-special" "$got"
printf 'ok\xff' >"$TMP/bad.txt"
expect_fail "tokenize refuses invalid UTF-8" "$TMP/bad.txt: text is not valid UTF-8 (byte 2)" \
    $FM tokenize --tokenizer "$TOK" --text-file "$TMP/bad.txt"
expect_fail "tokenize without a tokenizer" "missing --tokenizer" $FM tokenize "text"
expect_fail "tokenize with a missing tokenizer" "$TMP/none: no such tokenizer" $FM tokenize --tokenizer "$TMP/none" "x"
expect_fail "tokenize --decode of an unknown id" "token id 999999 at position 1" $FM tokenize --tokenizer "$TOK" --decode 1,999999
echo '{"model": {"type": "Unigram", "vocab": []}}' >"$TMP/tokenizer.json"
# A tokenizer with more ids than the model's vocabulary (151,669 against 1,024): a clear error, no crash.
for cmd in run chat serve; do
    expect_fail "$cmd: tokenizer larger than the model's vocabulary" "ids but the model's vocabulary only 1024" \
        timeout 60 $FM $cmd -m "$MODELS/qwen35moe" --tokenizer "$TOK" $([ $cmd = run ] && echo "-p hi") -n 1 </dev/null
done
expect_fail "tokenize --decode names --decode" "--decode: item 1 of '-1' is not a token id" \
    $FM tokenize --tokenizer "$TOK" --decode -1

# ---- convert's free-space check on small file systems (a tmpfs in a user+mount namespace) ----
if unshare -rm true 2>/dev/null; then
    mkdir -p "$TMP/small"
    if out=$(unshare -rm sh -c "mount -t tmpfs -o size=30m none '$TMP/small' && $FM convert '$A' '$TMP/small/q4' --bits 4 --quiet && du -sm '$TMP/small/q4'" 2>&1); then
        ok "convert fits a 9.5 MB output on a 30 MB file system ($(awk '{print $1}' <<<"$out" | tail -1) MB)"
    else
        not_ok "convert on a 30 MB file system" "$out"
    fi
    expect_fail "convert on an 8 MB file system: a clear refusal" "not enough free disk space: the conversion needs" \
        unshare -rm sh -c "mount -t tmpfs -o size=8m none '$TMP/small' && $FM convert '$A' '$TMP/small/q4' --bits 4 --quiet"
else
    echo "skipped: 2 small-file-system convert checks (no user namespaces here)"
fi

# ---- a full context: answers stop cleanly, chat drops its oldest messages -------

four=$'Define the noun question.\nDefine the verb run.\nDefine the noun house.\nDefine the adjective happy.\n/stats\n'
if out=$(timeout 120 $FM chat -m "$A" --ctx 90 --temp 0 --no-think -n 60 --plain <<<"$four" 2>&1) &&
    grep -q "the context of 90 tokens is full: dropped the 2 oldest messages" <<<"$out" &&
    grep -q "4 oldest messages dropped to fit the context" <<<"$out"; then
    ok "chat with a full context drops the oldest messages and goes on"
else
    not_ok "chat with a full context" "$out"
fi
if err=$($FM run -m "$A" --ctx 30 -n 100 -p "Define the noun question." --temp 0 --no-think 2>&1 >"$TMP/answer") &&
    grep -q "the answer stopped where the context of 30 tokens is full" <<<"$err" && [ -s "$TMP/answer" ]; then
    ok "run: an answer that fills the context stops cleanly (exit 0)"
else
    not_ok "run at the context's end" "$err"
fi
expect_fail "run: a prompt longer than the context" "the prompt (17 tokens) does not fit the context" \
    $FM run -m "$A" --ctx 10 -p "Define the noun question." --no-think
$FM chat -m "$A" --session "$TMP/conv.json" --temp 0 --no-think -n 40 --plain <<<"$four" >/dev/null 2>&1
if out=$(timeout 120 $FM chat -m "$A" --session "$TMP/conv.json" --ctx 70 --temp 0 --no-think -n 20 --plain \
    <<<$'Define the noun tree.\n' 2>&1) && grep -q "dropped the" <<<"$out"; then
    ok "a saved conversation resumes with a smaller --ctx, dropping its oldest messages"
else
    not_ok "--session with a smaller --ctx" "$out"
fi

# ---- make install: the binary finds the shipped model under PREFIX/share --------
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if make -s -C "$ROOT" install MODE="$(basename "$BUILD")" PREFIX="$TMP/prefix" >"$TMP/install.log" 2>&1 &&
    out=$(env -u FLASHMOE_MODEL "$TMP/prefix/bin/flashmoe" run -p "Define the noun question." --temp 0 --no-think -n 8 --quiet 2>&1) &&
    [ -n "$out" ]; then
    ok "make install: the installed binary answers with the installed model"
else
    not_ok "make install" "$(cat "$TMP/install.log") ${out:-}"
fi
mkdir -p "$TMP/elsewhere/bin" && cp "$BUILD/flashmoe" "$TMP/elsewhere/bin/"
expect_fail "a copied binary without a model says where models are looked up" "PREFIX/share/flashmoe after make install" \
    env -u FLASHMOE_MODEL "$TMP/elsewhere/bin/flashmoe" run -p hi -n 1
make -s -C "$ROOT" uninstall PREFIX="$TMP/prefix" && [ ! -e "$TMP/prefix/bin/flashmoe" ] && [ ! -e "$TMP/prefix/share/flashmoe" ] &&
    ok "make uninstall removes both" || not_ok "make uninstall"
expect_fail "unsupported tokenizer model" "model type 'Unigram' is not supported" $FM tokenize --tokenizer "$TMP/tokenizer.json" x

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]

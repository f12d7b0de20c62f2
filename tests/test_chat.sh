#!/usr/bin/env bash
# `flashmoe run` and `flashmoe chat` end to end on qwen35moe_tok (random
# weights, the real Qwen3 tokenizer and chat template): the mechanics, not
# the prose; then a calculator tool round trip with the shipped trained model
# (models/assistant). chat runs in a pseudo-terminal under tmux.
#   tests/test_chat.sh BUILD_DIR MODELS_DIR
set -u
BUILD=${1:-build/native}
MODELS=${2:-build/models}
FM=$BUILD/flashmoe
M=$MODELS/qwen35moe_tok
pass=0
fail=0
# count_tokens TEXT (printf format): the number of ids of the text, trailing newlines included.
count_tokens() {
    printf "$1" >"$BUILD/count.txt"
    $FM tokenize --tokenizer "$M" --text-file "$BUILD/count.txt" | wc -w
}
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && sed 's/^/    /' <<<"$2"; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1" "${3:-}"; fi; }

# ---- run --------------------------------------------------------------------
out=$($FM run -m "$M" -p "Hello there" -n 12 --seed 7 2>"$BUILD/run.err"); rc=$?
err=$(cat "$BUILD/run.err")
check "run exits 0" "[ $rc -eq 0 ]" "$err"
check "run prints prefill and decode speed on stderr" "grep -q 'prefill: [0-9]* tokens, .* tok/s; decode: 12 tokens' <<<\"\$err\"" "$err"
out2=$($FM run -m "$M" -p "Hello there" -n 12 --seed 7 2>/dev/null)
check "run with the same seed repeats itself" "[ \"\$out\" = \"\$out2\" ]" "$out
$out2"
out3=$($FM run -m "$M" -p "Hello there" -n 12 --seed 8 2>/dev/null)
check "another seed gives another answer" "[ \"\$out\" != \"\$out3\" ]"
g1=$($FM run -m "$M" -p "Hi" -n 10 --temp 0 2>/dev/null); g2=$($FM run -m "$M" -p "Hi" -n 10 --temp 0 --seed 99 2>/dev/null)
check "greedy ignores the seed" "[ \"\$g1\" = \"\$g2\" ]"
# The prompt token count is that of the rendered template (user turn + generation prompt).
want=$(count_tokens '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
err=$($FM run -m "$M" -p "Hi" -n 2 --temp 0 2>&1 >/dev/null)
check "run renders the chat template ($want prompt tokens)" "grep -q \"prefill: $want tokens\" <<<\"\$err\"" "$err"
want=$(count_tokens '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n')
err=$($FM run -m "$M" -p "Hi" -n 2 --temp 0 --no-think 2>&1 >/dev/null)
check "--no-think adds the empty think block ($want prompt tokens)" "grep -q \"prefill: $want tokens\" <<<\"\$err\"" "$err"
err=$($FM run -m "$M" -p "Hi" -n 2 --temp 0 --system "Be brief." 2>&1 >/dev/null)
want=$(count_tokens '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
check "--system adds a system turn ($want prompt tokens)" "grep -q \"prefill: $want tokens\" <<<\"\$err\"" "$err"
err=$($FM run -m "$M" -p "x" -n 2 --temp -1 2>&1); rc=$?
check "bad --temp is refused" "[ $rc -eq 1 ] && grep -q 'temp' <<<\"\$err\"" "$err"
err=$($FM run -m "$M" -n 2 2>&1); rc=$?
check "missing prompt is refused" "[ $rc -eq 1 ] && grep -q 'missing -p' <<<\"\$err\"" "$err"
err=$($FM run -m "$MODELS/qwen3moe" -p "x" -n 2 2>&1); rc=$?
check "a model without tokenizer gets a clear error" "[ $rc -eq 1 ] && grep -q 'tokenizer' <<<\"\$err\"" "$err"
# Sampling defaults come from generation_config.json unless given: do_sample false is greedy.
D=$BUILD/greedy_model
rm -rf "$D"; mkdir -p "$D"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do ln -s "$(cd "$M" && pwd)/$f" "$D/$f"; done
echo '{"eos_token_id": [151645, 151643], "do_sample": false, "top_k": 20}' >"$D/generation_config.json"
a=$($FM run -m "$D" -p "Hi" -n 8 --seed 1 2>/dev/null); b=$($FM run -m "$D" -p "Hi" -n 8 --seed 2 2>/dev/null)
c=$($FM run -m "$M" -p "Hi" -n 8 --temp 0 2>/dev/null)
check "do_sample false in generation_config.json makes run greedy" "[ \"\$a\" = \"\$b\" ] && [ \"\$a\" = \"\$c\" ]" "$a
$b
$c"
a=$($FM run -m "$D" -p "Hi" -n 8 --seed 1 --temp 1.5 --top-k 0 --top-p 1 2>/dev/null); b=$($FM run -m "$D" -p "Hi" -n 8 --seed 2 --temp 1.5 --top-k 0 --top-p 1 2>/dev/null)
check "--temp overrides the model's default" "[ \"\$a\" != \"\$b\" ]" "$a
$b"
rm -rf "$D"

# Stop strings: the answer ends before the first stop string. Use the first
# generated character as a stop string, so that the answer is empty.
first=$($FM run -m "$M" -p "Hello" -n 4 --temp 0 2>/dev/null | head -c 1)
if [ -n "$first" ]; then
    err=$($FM run -m "$M" -p "Hello" -n 4 --temp 0 --stop "$first" 2>&1 >"$BUILD/stop.out")
    check "--stop ends the answer before the stop string" "[ \"\$(tr -d '\n' <$BUILD/stop.out)\" = '' ] && grep -q 'finish: stop string' <<<\"\$err\"" "$(cat $BUILD/stop.out) $err"
fi
rm -f "$BUILD/run.err" "$BUILD/stop.out"

# ---- chat in a pseudo-terminal --------------------------------------------
if command -v tmux >/dev/null; then
    S=fmchat$$
    tmux kill-session -t $S 2>/dev/null
    tmux new-session -d -s $S -x 200 -y 50 "$FM chat -m $M -n 6 --temp 0 ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for() { # wait_for TEXT [seconds]
        for _ in $(seq 1 $((${2:-20} * 10))); do
            tmux capture-pane -p -t $S -S -200 | grep -qF -- "$1" && return 0
            sleep 0.1
        done
        return 1
    }
    screen() { tmux capture-pane -p -t $S -S -200; }
    check "chat starts and shows its banner" "wait_for 'flashmoe chat:'" "$(screen)"
    tmux send-keys -t $S "Hello" Enter
    wait_for "> " && sleep 0.5
    tmux send-keys -t $S "/stats" Enter
    check "first turn answered; /stats reports it" "wait_for 'context:'" "$(screen)"
    first_ctx=$(screen | grep -o 'context: [0-9]*' | tail -1 | grep -o '[0-9]*')
    tmux send-keys -t $S "And again" Enter
    sleep 1
    tmux send-keys -t $S "/stats" Enter
    sleep 1
    # Second turn: only the new tokens are prefilled: the end of the first turn
    # (<|im_end|> unless the model wrote it) and the new user turn.
    close='\n'
    screen | grep -q 'finish: length' && close='<|im_end|>\n'
    want=$(count_tokens "${close}<|im_start|>user\nAnd again<|im_end|>\n<|im_start|>assistant\n")
    got=$(screen | grep -o 'prefill [0-9]* tokens' | tail -1 | grep -o '[0-9]*')
    check "second turn prefills only its $want new tokens (got $got; first context $first_ctx)" "[ \"$got\" = \"$want\" ]" "$(screen)"
    check "history was never prefilled again" "screen | grep -q 're-prefilled 0 times'" "$(screen)"
    tmux send-keys -t $S "/think" Enter
    check "/think toggles thinking" "wait_for '(thinking'" "$(screen)"
    tmux send-keys -t $S "/reset" Enter
    check "/reset starts a new conversation" "wait_for '(new conversation)'" "$(screen)"
    tmux send-keys -t $S "/quit" Enter
    check "/quit leaves with status 0" "wait_for 'CHAT-EXIT-0'" "$(screen)"
    tmux kill-session -t $S 2>/dev/null

    # Ctrl-C stops a long answer but not the chat.
    tmux new-session -d -s $S -x 200 -y 50 "$FM chat -m $M -n 100000 --ctx 200000 ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for 'flashmoe chat:'
    tmux send-keys -t $S "Write forever" Enter
    sleep 2
    tmux send-keys -t $S C-c
    check "Ctrl-C stops the answer" "wait_for '(stopped)' 30" "$(screen)"
    tmux send-keys -t $S "/stats" Enter
    check "the chat goes on after Ctrl-C" "wait_for 'finish: cancelled'" "$(screen)"
    tmux send-keys -t $S C-d
    check "Ctrl-D leaves" "wait_for 'CHAT-EXIT-0'" "$(screen)"
    tmux kill-session -t $S 2>/dev/null

    # A calculator tool round trip with the shipped model: the model calls the tool,
    # /tool gives it the result, the model answers with it.
    tmux new-session -d -s $S -x 200 -y 50 \
        "$FM chat -m models/assistant-q4 --tools tests/data/chat/calculator_tool.json --temp 0 --no-think -n 80 ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for 'flashmoe chat:'
    tmux send-keys -t $S "What is 37 * 12?" Enter
    check "the shipped model calls the calculator" \
        "wait_for '{\"name\": \"calculator\", \"arguments\": {\"expression\": \"37 * 12\"}}' 30" "$(screen)"
    tmux send-keys -t $S "/tool 444" Enter
    check "and answers with the tool's result" "wait_for '37 × 12 = 444.' 30" "$(screen)"
    tmux send-keys -t $S C-d
    check "Ctrl-D leaves" "wait_for 'CHAT-EXIT-0'" "$(screen)"
    tmux kill-session -t $S 2>/dev/null
else
    not_ok "tmux is missing (scripts/install-deps.sh installs it)"
fi
got=$($FM run -m models/assistant --tools tests/data/chat/calculator_tool.json -p "What is 5 + 7?" --temp 0 --no-think -n 60 2>/dev/null)
check "run --tools: the shipped model emits a tool call" "grep -qF '{\"name\": \"calculator\", \"arguments\": {\"expression\": \"5 + 7\"}}' <<<\"\$got\"" "$got"
echo '{"not": "an array"}' >"$BUILD/tools.json"
err=$($FM run -m models/assistant --tools "$BUILD/tools.json" -p x -n 1 2>&1); rc=$?
check "--tools refuses a file that is not a JSON array" "[ $rc -eq 1 ] && grep -q 'not a JSON array' <<<\"\$err\"" "$err"
rm -f "$BUILD/tools.json"

rm -f "$BUILD/count.txt"
echo "chat: $pass passed, $fail failed"
[ $fail -eq 0 ]

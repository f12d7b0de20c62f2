#!/usr/bin/env bash
# `flashmoe run` and `flashmoe chat` end to end on qwen35moe_tok (random
# weights, the real Qwen3 tokenizer and chat template): the mechanics, not
# the prose; then a calculator tool round trip with the shipped trained model
# (models/assistant); then, with the shipped model, chat --session (saved,
# resumed, refused when corrupt), /save and /load, Markdown on a terminal and
# not elsewhere, and --shell (accepted and offered; the model never calls it).
# chat runs in a pseudo-terminal under tmux, or with piped stdin.
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

# ---- thinking: the shipped model opens each answer with an empty <think></think> ----
A=models/assistant-q4
out=$($FM run -m $A -p "Define the noun tree." --temp 0 -n 40 2>"$BUILD/think.err"); err=$(cat "$BUILD/think.err")
check "run: an empty think block is not printed" "[ -n \"\$out\" ] && ! grep -q 'think>' <<<\"\$out\"" "$out"
out=$($FM run -m $A -p "Define the noun tree." --temp 0 -n 40 --show-think 2>"$BUILD/think.err"); err=$(cat "$BUILD/think.err")
check "run --show-think: an empty reasoning is not printed either" "! grep -q 'think>' <<<\"\$out\$err\"" "$out $err"
out=$(printf 'Define the noun tree.\n' | $FM chat -m $A --temp 0 -n 40 --plain 2>&1)
check "chat --plain: no empty think block" "grep -q 'tree' <<<\"\$out\" && ! grep -q 'think>' <<<\"\$out\"" "$out"
rm -f "$BUILD/think.err"

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
    # at_prompt: waits until the last line is the empty prompt. libedit flushes pending input when
    # it sets the terminal up for a line, so keys sent before the prompt shows may be lost.
    at_prompt() {
        for _ in $(seq 1 200); do
            [ "$(tmux capture-pane -p -t $S | sed '/^$/d' | tail -n 1)" = ">" ] && sleep 0.3 && return 0
            sleep 0.1
        done
        return 1
    }
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
    at_prompt
    tmux send-keys -t $S C-d
    check "Ctrl-D leaves" "wait_for 'CHAT-EXIT-0'" "$(screen)"
    tmux kill-session -t $S 2>/dev/null

    # Ctrl-C while a long prompt (46,000 tokens) is prefilled acts at once (within 0.5 s; the
    # prompt takes several), and the next turn prefills the whole conversation again.
    printf '{"flashmoe_chat": 1, "messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "ok"}]}\n' \
        "$(printf 'word%d ' $(seq 1 12000))" >"$BUILD/long_conv.json"
    tmux new-session -d -s $S -x 200 -y 50 "$FM chat -m $M -n 100000 --ctx 200000 --temp 0 --session $BUILD/long_conv.json ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for 'flashmoe chat:' && at_prompt
    tmux send-keys -t $S "Hi" Enter
    sleep 0.05
    t0=$(date +%s%N)
    tmux send-keys -t $S C-c
    wait_for '(stopped)' 30
    ms=$((($(date +%s%N) - t0) / 1000000))
    check "Ctrl-C during a long prompt stops it within 0.5 s (${ms} ms)" "[ $ms -lt 500 ]" "$(screen)"
    at_prompt
    tmux send-keys -t $S "/stats" Enter
    check "the cancelled prompt is not kept half-prefilled" "wait_for 'finish: cancelled' && wait_for 're-prefilled 1 time'" "$(screen)"
    tmux send-keys -t $S C-d
    tmux kill-session -t $S 2>/dev/null
    rm -f "$BUILD/long_conv.json"

    # Ctrl-C at the prompt clears the line and keeps the chat; twice within a second leaves.
    tmux new-session -d -s $S -x 200 -y 50 "$FM chat -m $M -n 4 --temp 0 ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for 'flashmoe chat:' && at_prompt
    tmux send-keys -t $S "half a line"
    sleep 0.3
    tmux send-keys -t $S C-c
    check "Ctrl-C at the prompt clears the line" "wait_for '(Ctrl-C again or Ctrl-D to leave)'" "$(screen)"
    sleep 1.2
    at_prompt
    tmux send-keys -t $S "/stats" Enter
    check "the chat goes on after Ctrl-C at the prompt (the cleared line was not sent)" \
        "wait_for 'no answer yet'" "$(screen)"
    at_prompt
    tmux send-keys -t $S C-c
    sleep 0.2
    tmux send-keys -t $S C-c
    check "Ctrl-C twice within a second leaves (status 0)" "wait_for 'CHAT-EXIT-0'" "$(screen)"
    tmux kill-session -t $S 2>/dev/null

    # On a terminal, with the shipped model (its answers open with an empty think block) and a
    # context of 90 tokens: no think tags on the screen, and the chat outlives a full context.
    tmux new-session -d -s $S -x 200 -y 50 "$FM chat -m models/assistant-q4 --ctx 90 -n 60 --temp 0 ; echo CHAT-EXIT-\$?; sleep 30"
    wait_for 'flashmoe chat:' && at_prompt
    for w in "the noun question" "the verb run" "the noun house" "the adjective happy"; do
        tmux send-keys -t $S "Define $w." Enter
        sleep 0.3
        at_prompt
    done
    check "terminal: answers shown, no think tags" "screen | grep -q '(noun)' && ! screen | grep -q 'think>'" "$(screen)"
    check "terminal: a full context drops the oldest messages and the chat goes on" \
        "screen | grep -q 'dropped the 2 oldest messages' && at_prompt" "$(screen)"
    tmux send-keys -t $S C-d
    check "and leaves with status 0" "wait_for 'CHAT-EXIT-0'" "$(screen)"
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
    at_prompt
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


# ---- chat --session, /save, /load, Markdown, --shell (models/assistant-q4) ----
# Piped stdin is enough for these (readline reads the lines; stdout is not a
# terminal, so answers are plain); the Markdown checks use tmux.
A=models/assistant-q4
CHAT="$FM chat -m $A --temp 0 --no-think -n 40"
T=$BUILD/chat_files.$$
rm -rf "$T"; mkdir -p "$T"
# json_check FILE EXPR: FILE parses as JSON and the Python expression EXPR over it (j) is true.
json_check() { python3 -c "import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1" 2>/dev/null; }
# stat_of TEXT WHAT: the number in the last "WHAT N" of /stats ("prefill", "context:", "decode").
stat_of() { grep -o "$2 [0-9]*" <<<"$1" | tail -1 | grep -o '[0-9]*$'; }

# A fresh conversation asking the second question alone: what a turn without history prefills.
fresh=$(printf 'What is my name?\n/stats\n' | $CHAT 2>&1)
fresh_prefill=$(stat_of "$fresh" prefill)

out=$(printf 'Hello, my name is Ada.\n/stats\n/quit\n' | $CHAT --session "$T/s.json" 2>&1); rc=$?
first_ctx=$(stat_of "$out" context:)
check "chat --session FILE: a new FILE is written after the turn" "[ $rc -eq 0 ] && [ -f $T/s.json ] && ! grep -q resumed <<<\"\$out\"" "$out"
check "FILE is JSON holding the user's and the assistant's message" \
    "json_check $T/s.json \"[m['role'] for m in j['messages']] == ['user', 'assistant'] and j['messages'][0]['content'] == 'Hello, my name is Ada.' and j['messages'][1]['content'].strip() != ''\"" "$(cat $T/s.json)"
check "no FILE.tmp is left behind" "[ ! -e $T/s.json.tmp ] && [ \$(ls $T | wc -l) -eq 1 ]" "$(ls -la $T)"
out=$(printf 'What is my name?\n/stats\n' | $CHAT --session "$T/s.json" 2>&1); rc=$?
check "the same --session again resumes the conversation" "[ $rc -eq 0 ] && grep -qF '(resumed 2 messages from $T/s.json)' <<<\"\$out\"" "$out"
check "and the second question is answered" "[ \"\$(stat_of \"\$out\" decode)\" -gt 0 ] 2>/dev/null" "$out"
check "FILE then holds both turns (4 messages)" \
    "json_check $T/s.json \"[m['role'] for m in j['messages']] == ['user', 'assistant', 'user', 'assistant'] and j['messages'][0]['content'] == 'Hello, my name is Ada.' and j['messages'][2]['content'] == 'What is my name?'\"" "$(cat $T/s.json)"
got=$(stat_of "$out" prefill)
check "the resumed turn prefills the earlier turn too ($got tokens; the question alone $fresh_prefill, the first conversation $first_ctx)" \
    "[ \"$got\" -gt \"$fresh_prefill\" ] 2>/dev/null && [ \"$got\" -gt \"$first_ctx\" ] && [ \"\$(stat_of \"\$out\" context:)\" -gt \"$got\" ]" "$out
$fresh"
check "still no FILE.tmp" "[ ! -e $T/s.json.tmp ]" "$(ls -la $T)"

# A corrupt or foreign file is refused before anything else, and left as it was.
printf '{"flashmoe_chat": 1, "messages": [{"role": "user", "content": "Hi"},' >"$T/bad.json"
cp "$T/bad.json" "$T/bad.orig"
err=$(printf 'Hello\n' | $CHAT --session "$T/bad.json" 2>&1 >/dev/null); rc=$?
check "--session with a corrupt file: an error naming the file, exit status non-zero" \
    "[ $rc -ne 0 ] && grep -qF '$T/bad.json: not a saved conversation' <<<\"\$err\"" "rc $rc: $err"
check "the corrupt file is not overwritten" "cmp -s $T/bad.json $T/bad.orig && [ ! -e $T/bad.json.tmp ]"
echo '{"messages": [{"role": "user"}]}' >"$T/norole.json"
err=$(printf 'Hello\n' | $CHAT --session "$T/norole.json" 2>&1 >/dev/null); rc=$?
check "--session with JSON of another shape (a message without content): the same error" \
    "[ $rc -ne 0 ] && grep -qF '$T/norole.json: not a saved conversation' <<<\"\$err\"" "rc $rc: $err"
err=$($FM chat -m $A --session 2>&1 </dev/null); rc=$?
check "--session without a file is refused" "[ $rc -ne 0 ] && grep -q 'session needs a file' <<<\"\$err\"" "rc $rc: $err"

# /save to a path that cannot be written: an error, and the chat goes on (here: a
# /save that works and /stats).
out=$(printf 'Hello, my name is Ada.\n/save %s\n/save %s\n/stats\n' "$T/missing/dir/x.json" "$T/saved.json" | $CHAT 2>&1); rc=$?
check "/save to an unwritable path: an error naming it" \
    "grep -qF '$T/missing/dir/x.json: cannot write the conversation: No such file or directory' <<<\"\$out\"" "$out"
check "and the chat goes on: /save to a good path works, /stats answers, exit 0" \
    "[ $rc -eq 0 ] && grep -qF '(saved to $T/saved.json)' <<<\"\$out\" && grep -q 'context: ' <<<\"\$out\" && json_check $T/saved.json \"len(j['messages']) == 2\"" "$out"
# /load: a corrupt file is refused (the chat goes on), a saved one is read at the next turn.
out=$(printf '/load %s\n/load %s\nWhat is my name?\n/stats\n' "$T/bad.json" "$T/saved.json" | $CHAT 2>&1); rc=$?
check "/load of a corrupt file: an error, the chat goes on" \
    "grep -qF '$T/bad.json: not a saved conversation' <<<\"\$out\" && grep -qF '(loaded 2 messages' <<<\"\$out\"" "$out"
got=$(stat_of "$out" prefill)
check "after /load the next turn prefills the loaded conversation ($got > $fresh_prefill tokens)" \
    "[ $rc -eq 0 ] && [ \"$got\" -gt \"$fresh_prefill\" ] 2>/dev/null" "$out"

# Markdown: off when stdout is not a terminal (and with --plain or NO_COLOR).
# The shipped model happens to answer this greeting with a **bold** word.
plain=$(printf 'Hello, my name is Ada.\n' | $CHAT 2>&1); rc=$?
check "stdout not a terminal: no ANSI escape sequences" "[ $rc -eq 0 ] && ! grep -q $'\e' <<<\"\$plain\"" "$(cat -v <<<"$plain")"
bold=$(grep -o '\*\*[A-Za-z][A-Za-z ]*\*\*' <<<"$plain" | head -1 | tr -d '*')
if command -v tmux >/dev/null; then
    S=fmchatmd$$
    # md_screen ARGS...: the escape-coded screen of a chat on a terminal after the greeting.
    md_screen() {
        tmux kill-session -t $S 2>/dev/null
        tmux new-session -d -s $S -x 200 -y 50 "$* ; echo CHAT-EXIT-\$?; sleep 30"
        wait_for 'flashmoe chat:' 30
        tmux send-keys -t $S "Hello, my name is Ada." Enter
        # The answer is complete when the next prompt shows (keys typed earlier would be echoed into it).
        for _ in $(seq 1 600); do [ "$(screen | grep -c '^>')" -ge 2 ] && break; sleep 0.1; done
        tmux send-keys -t $S "/stats" Enter
        wait_for 'context:' 60
        at_prompt
    tmux send-keys -t $S C-d
        wait_for 'CHAT-EXIT-' 20
        tmux capture-pane -p -e -t $S -S -200
        tmux kill-session -t $S 2>/dev/null
    }
    tty=$(md_screen "$CHAT")
    check "on a terminal the chat answers and leaves cleanly" "grep -q 'context: ' <<<\"\$tty\" && grep -q 'CHAT-EXIT-0' <<<\"\$tty\"" "$(cat -v <<<"$tty")"
    if [ -n "$bold" ]; then
        check "on a terminal **$bold** is rendered bold, without the asterisks" \
            "grep -qF $'\e[1m'\"$bold\" <<<\"\$tty\" && ! grep -qF \"**$bold**\" <<<\"\$tty\"" "$(cat -v <<<"$tty")"
    else
        not_ok "the model's answer had no **bold** word to check the rendering with" "$plain"
    fi
    tty=$(md_screen "$CHAT --plain")
    check "--plain on a terminal: the answer as written, no ANSI escape sequences" \
        "grep -q 'CHAT-EXIT-0' <<<\"\$tty\" && ! grep -q $'\e' <<<\"\$tty\" && { [ -z \"$bold\" ] || grep -qF \"**$bold**\" <<<\"\$tty\"; }" "$(cat -v <<<"$tty")"
    tty=$(md_screen "NO_COLOR=1 $CHAT")
    check "NO_COLOR on a terminal: no ANSI escape sequences" \
        "grep -q 'CHAT-EXIT-0' <<<\"\$tty\" && ! grep -q $'\e' <<<\"\$tty\"" "$(cat -v <<<"$tty")"
fi

# --shell. The shipped model was trained with a calculator tool only and never
# calls "shell", so nothing here exercises the model's use of the shell (the
# confirmation, the run and the result fed back are tested with canned answers
# in tests/test_chat_tools.c). These check that --shell is accepted, that the
# shell tool is what the model is offered, and that the conversation works.
out=$(printf 'Hello, my name is Ada.\n/stats\n' | $CHAT --shell 2>&1); rc=$?
got=$(stat_of "$out" prefill)
plain_prefill=$(stat_of "$(printf 'Hello, my name is Ada.\n/stats\n' | $CHAT 2>&1)" prefill)
check "chat --shell: a normal turn is answered, nothing is asked" \
    "[ $rc -eq 0 ] && [ \"\$(stat_of \"\$out\" decode)\" -gt 0 ] && ! grep -q 'Run it?' <<<\"\$out\" && ! grep -q 'tool call' <<<\"\$out\"" "$out"
check "--shell puts a tool definition in the prompt ($got > $plain_prefill tokens)" "[ \"$got\" -gt \"$plain_prefill\" ] 2>/dev/null" "$out"
# Asked for arithmetic, the model calls its calculator, which --shell alone does
# not offer: the chat says so, naming the tools it offered.
out=$(printf 'What is 37 * 12?\n' | $CHAT --shell 2>&1); rc=$?
check "--shell offers exactly the shell tool (a calculator call: \"unknown function ... (tools: shell)\")" \
    "[ $rc -eq 0 ] && grep -qF \"unknown function 'calculator' (tools: shell)\" <<<\"\$out\" && ! grep -q 'Run it?' <<<\"\$out\"" "$out"
# With --tools too, a calculator call is valid and left to /tool: nothing asked, no notice.
out=$(printf 'What is 37 * 12?\n/stats\n' | $CHAT --shell --tools tests/data/chat/calculator_tool.json 2>&1); rc=$?
check "--shell with --tools: a calculator call is left to /tool (nothing asked, no notice)" \
    "[ $rc -eq 0 ] && grep -qF '{\"name\": \"calculator\"' <<<\"\$out\" && ! grep -q 'Run it?' <<<\"\$out\" && ! grep -q 'invalid tool call' <<<\"\$out\" && grep -q 'context: ' <<<\"\$out\"" "$out"
rm -rf "$T"

rm -f "$BUILD/count.txt"
echo "chat: $pass passed, $fail failed"
[ $fail -eq 0 ]

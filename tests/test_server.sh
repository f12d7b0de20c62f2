#!/usr/bin/env bash
# `flashmoe serve` end to end with the official OpenAI and Anthropic clients
# (npm packages `openai` and `@anthropic-ai/sdk`, pinned in tests/server):
# the node:test files in tests/server on four servers, then the load test
# (tests/server/load.mjs), then a clean stop of every server.
#   tests/test_server.sh BUILD_DIR MODELS_DIR
# LOAD_REQUESTS / LOAD_CONCURRENCY size the load test (default 200 / 16 a
# round; 40 / 8 for an asan build, which is also given 8x the timeouts).
set -u
BUILD=${1:-build/native}
MODELS=${2:-build/models}
FM=$BUILD/flashmoe
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTS=$ROOT/tests/server
DIR=$BUILD/server-test # server logs
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && sed 's/^/    /' <<<"$2"; }
finish() {
    echo "server: $pass passed, $fail failed"
    [ $fail -eq 0 ]
    exit
}

slow=1 load_requests=200 load_concurrency=16 rss_bounds=()
if [[ $BUILD == *asan* ]]; then
    slow=8 load_requests=40 load_concurrency=8
    rss_bounds=(--rss-bound-mb 512 --rss-growth-mb 512) # ASan's quarantine holds freed memory
fi
load_requests=${LOAD_REQUESTS:-$load_requests}
load_concurrency=${LOAD_CONCURRENCY:-$load_concurrency}
export FM_SLOW=${FM_SLOW:-$slow}

[ -x "$FM" ] || { not_ok "$FM is missing (make $FM)"; finish; }
[ -d "$MODELS/qwen35moe_tok" ] || { not_ok "$MODELS/qwen35moe_tok is missing (./scripts/unpack-models.sh)"; finish; }

# ---- the clients: npm packages ------------------------------------------------
npm_ok=1
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    not_ok "npm install" "node or npm is missing (scripts/install-deps.sh installs them)"
    npm_ok=0
elif [ ! -f "$TESTS/node_modules/.package-lock.json" ] || [ "$TESTS/package-lock.json" -nt "$TESTS/node_modules/.package-lock.json" ]; then
    if ! out=$(cd "$TESTS" && timeout 600 npm ci --no-audit --no-fund --loglevel=error 2>&1); then
        not_ok "npm install" "$(grep -v "^npm error  *at " <<<"$out" | head -n 12)"
        npm_ok=0
    fi
fi
if [ $npm_ok -eq 1 ]; then
    versions=$(cd "$TESTS" && node -p "['openai', '@anthropic-ai/sdk'].map(p => p + '@' + require('./node_modules/' + p + '/package.json').version).join(', ')" 2>&1)
    if [ $? -eq 0 ]; then ok "npm install ($versions)"; else not_ok "npm install" "$versions"; npm_ok=0; fi
fi

# ---- the servers ------------------------------------------------------------------
rm -rf "$DIR"
mkdir -p "$DIR"
declare -A pid port
cleanup() {
    for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null; done
    sleep 0.5
    for name in "${!pid[@]}"; do kill -9 "${pid[$name]}" 2>/dev/null; done
}
trap cleanup EXIT
# start NAME ARGS...: a server on a free port; its port in ${port[NAME]}.
start() {
    local name=$1
    shift
    "$FM" serve "$@" --port 0 >"$DIR/$name.out" 2>"$DIR/$name.log" &
    pid[$name]=$!
    for _ in $(seq 1 $((300 * slow))); do
        port[$name]=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$DIR/$name.out")
        [ -n "${port[$name]}" ] && return 0
        kill -0 "${pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    not_ok "the $name server starts ($*)" "$(tail -n 20 "$DIR/$name.log")"
    return 1
}
started=1
start tok -m "$MODELS/qwen35moe_tok" || started=0
start assist -m "$ROOT/models/assistant-q4" || started=0
start guarded -m "$MODELS/qwen35moe_tok" --api-key secret --max-body 64K --queue 2 || started=0
start fresh -m "$MODELS/qwen35moe_tok" --max-body 64K || started=0 # the prefix test's reference, then the load test
[ $started -eq 1 ] || finish
ok "four servers started (tok :${port[tok]}, assist :${port[assist]}, guarded :${port[guarded]}, fresh :${port[fresh]})"

# count LOG: adds the ok / not ok lines of a log to the totals.
count() {
    pass=$((pass + $(grep -c '^ok - ' "$1")))
    fail=$((fail + $(grep -c '^not ok - ' "$1")))
}

# ---- the node:test files ------------------------------------------------------
if [ $npm_ok -eq 1 ]; then
    FM_PORT_TOK=${port[tok]} FM_PORT_ASSIST=${port[assist]} FM_PORT_GUARDED=${port[guarded]} FM_PORT_FRESH=${port[fresh]} \
        "$TESTS/run.sh" 2>&1 | tee "$DIR/node.out"
    rc=${PIPESTATUS[0]}
    count "$DIR/node.out"
    if [ "$rc" -ne 0 ] && ! grep -q '^not ok - ' "$DIR/node.out"; then not_ok "node --test exited with $rc"; fi
fi

# ---- the load test (fetch only: runs without the npm packages) -------------------
node "$TESTS/load.mjs" --port "${port[fresh]}" --requests "$load_requests" --concurrency "$load_concurrency" \
    --max-body 65536 --timeout-s $((120 * slow)) "${rss_bounds[@]}" 2>&1 | tee "$DIR/load.out"
rc=${PIPESTATUS[0]}
count "$DIR/load.out"
if [ "$rc" -ne 0 ] && ! grep -q '^not ok - ' "$DIR/load.out"; then not_ok "load.mjs exited with $rc"; fi

# ---- command-line errors: a message naming the problem, exit 1, nothing left listening ----
# refuse NAME PATTERN ARGS...: `flashmoe serve ARGS` exits 1 within 60 s with PATTERN on stderr.
refuse() {
    local name=$1 pattern=$2 out rc
    shift 2
    out=$(timeout $((60 * slow)) "$FM" serve "$@" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 1 ] && grep -qE -e "$pattern" <<<"$out"; then ok "serve refuses $name"
    else not_ok "serve refuses $name (exit $rc)" "$out"; fi
}
# ---- -t 1: no thread computes beside the worker (a 350 KB prompt is tokenized in parallel,
# and OpenMP's team size was per thread: the worker's was every CPU) ----
if start single -m "$MODELS/qwen35moe_tok" -t 1 --ctx 4096; then
    awk 'BEGIN { printf "{\"messages\": [{\"role\": \"user\", \"content\": \""
                 for (i = 0; i < 9000; i++) printf "line %d of a long prompt with words\\n", i
                 printf "\"}], \"max_tokens\": 1}" }' >"$DIR/big.json"
    before=$(ls /proc/${pid[single]}/task | wc -l)
    curl -s -o "$DIR/big.out" -w '%{http_code}' --max-time $((120 * slow)) -H 'content-type: application/json' \
        --data-binary @"$DIR/big.json" "http://127.0.0.1:${port[single]}/v1/chat/completions" >"$DIR/big.code" &
    client=$!
    most=$before # threads while it runs: the connection's own, and no OpenMP team (one before)
    while kill -0 $client 2>/dev/null; do
        n=$(ls /proc/${pid[single]}/task 2>/dev/null | wc -l)
        [ "$n" -gt "$most" ] && most=$n
        sleep 0.005
    done
    code=$(cat "$DIR/big.code")
    # 400: longer than the context (tokenized, then refused before any prefill)
    if [ "$code" = 400 ] && [ "$most" -le $((before + 1)) ]; then
        ok "serve -t 1: tokenizing a long prompt adds only the connection's thread ($before, at most $most)"
    else
        not_ok "serve -t 1: $before threads before a long prompt, $most while tokenizing it (HTTP $code)"
    fi
    kill "${pid[single]}"
fi

refuse "a port out of range" "--port: '70000' is not a port" -m "$MODELS/qwen35moe_tok" --port 70000
refuse "an unknown option" "unknown option '--bogus'" -m "$MODELS/qwen35moe_tok" --bogus
refuse "a port in use" "cannot listen on 127.0.0.1:${port[tok]}" -m "$MODELS/qwen35moe_tok" --port "${port[tok]}"
refuse "a missing model" "no-such-model" -m "$DIR/no-such-model"
refuse "a bad size" "--prompt-cache: 'lots' is not a size" -m "$MODELS/qwen35moe_tok" --prompt-cache lots
refuse "--template none" "needs a chat template" -m "$MODELS/qwen35moe_tok" --template none

# ---- every server is still up, then stops cleanly ---------------------------------
# excerpt NAME: the head of a sanitizer report in the server's log, else its last lines.
excerpt() {
    local report
    report=$(grep -m1 -A16 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$DIR/$1.log")
    if [ -n "$report" ]; then echo "$report"; else tail -n 10 "$DIR/$1.log"; fi
}
for name in tok assist guarded fresh; do
    if kill -0 "${pid[$name]}" 2>/dev/null; then ok "the $name server is still running"
    else not_ok "the $name server is still running" "$(excerpt $name)"; fi
done
for name in tok assist guarded fresh; do kill -TERM "${pid[$name]}" 2>/dev/null; done
for name in tok assist guarded fresh; do
    for _ in $(seq 1 $((100 * slow))); do kill -0 "${pid[$name]}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${pid[$name]}" 2>/dev/null; then
        not_ok "the $name server stops on SIGTERM" "still running after $((10 * slow)) s"
        continue
    fi
    wait "${pid[$name]}"
    rc=$?
    unset "pid[$name]"
    if [ $rc -eq 0 ] && ! grep -qE 'Sanitizer|runtime error:' "$DIR/$name.log"; then ok "the $name server stops cleanly on SIGTERM"
    else not_ok "the $name server stops cleanly on SIGTERM (exit $rc)" "$(excerpt $name | head -n 3)"; fi
done
[ $fail -eq 0 ] || echo "    (server logs: $DIR)"
finish

#!/usr/bin/env bash
# What the server's prompt cache saves: the second turn of a conversation with a long history,
# answered by a server that served the first turn (its prefix cached) and by a fresh one
# (everything prefilled), in the same run. Prints both times and their ratio.
#   bench/bench_server.sh [MODEL_DIR] [HISTORY_WORDS]   (defaults: build/models/qwen35moe_tok, 1500)
set -euo pipefail
cd "$(dirname "$0")/.."
FM=${FM:-build/native/flashmoe}
MODEL=${1:-build/models/qwen35moe_tok}
WORDS=${2:-1500}
LOG=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$LOG"' EXIT

start() { # start NAME → sets PORT_NAME
    "$FM" serve -m "$MODEL" --port 0 --quiet >"$LOG/$1.out" 2>"$LOG/$1.err" &
    for _ in $(seq 100); do grep -q "listening on port" "$LOG/$1.out" 2>/dev/null && break; sleep 0.1; done
    sed -n 's/listening on port //p' "$LOG/$1.out"
}
request() { # request PORT BODY → seconds and the usage line
    curl -s -o "$LOG/resp.json" -w '%{time_total}' "http://127.0.0.1:$1/v1/chat/completions" \
        -H 'Content-Type: application/json' -d "$2"
}
history=$(python3 -c "import random; random.seed(1); w='alpha beta gamma delta river stone cloud paper light music'.split(); print(' '.join(random.choice(w) for _ in range($WORDS)))")
turn1=$(python3 -c "import json,sys; print(json.dumps({'messages':[{'role':'system','content':sys.argv[1]},{'role':'user','content':'Summarise.'}],'max_tokens':8,'temperature':0}))" "$history")
answer() { python3 -c "import json; print(json.load(open('$LOG/resp.json'))['choices'][0]['message']['content'])"; }
usage() { python3 -c "import json; u=json.load(open('$LOG/resp.json'))['usage']; print(u['prompt_tokens'], u['prompt_tokens_details']['cached_tokens'])"; }

warm=$(start warm)
request "$warm" "$turn1" >/dev/null
turn2=$(python3 -c "import json,sys; print(json.dumps({'messages':[{'role':'system','content':sys.argv[1]},{'role':'user','content':'Summarise.'},{'role':'assistant','content':sys.argv[2]},{'role':'user','content':'Shorter, please.'}],'max_tokens':1,'temperature':0}))" "$history" "$(answer)")
t_warm=$(request "$warm" "$turn2"); read -r prompt cached_warm < <(usage)
fresh=$(start fresh)
t_fresh=$(request "$fresh" "$turn2"); read -r _ cached_fresh < <(usage)
echo "model: $MODEL; turn 2: $prompt prompt tokens"
echo "  cached prefix: ${t_warm} s (${cached_warm} tokens reused, $((prompt - cached_warm)) prefilled)"
echo "  fresh server:  ${t_fresh} s (${cached_fresh} reused)"
python3 -c "print(f'  speed-up of turn 2 from the prompt cache: {$t_fresh / $t_warm:.1f}x')"

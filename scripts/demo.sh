#!/bin/sh
# The README's main job. First the shipped model (models/assistant-q4: a tiny
# Qwen3.5-MoE trained to define words and call a calculator, experts packed at
# 4 bits and streamed from disk) answers, with no -m, in run, chat and through
# the OpenAI-compatible server; then a random-weight
# fixture with the real Qwen3 vocabulary is compared with what Hugging Face
# transformers generated, packed, and streamed.
set -e
cd "$(dirname "$0")/.."
./scripts/unpack-models.sh
FM=build/native/flashmoe
echo "\$ flashmoe run -p \"What does 'light' mean?\" --temp 0 --no-think"
$FM run -p "What does 'light' mean?" --temp 0 --no-think -n 80
echo
echo "\$ flashmoe chat --tools tests/data/chat/calculator_tool.json --temp 0 --no-think   (typed: What is 37 * 12? then /tool 444)"
printf 'What is 37 * 12?\n/tool 444\n' | $FM chat --tools tests/data/chat/calculator_tool.json --temp 0 --no-think -n 80
echo
echo '$ flashmoe serve --port 0 &   then an OpenAI-style request with the calculator tool (curl)'
log=$(mktemp)
$FM serve --port 0 --quiet >"$log" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q "listening on port" "$log" && break; sleep 0.1; done
port=$(sed -n 's/listening on port //p' "$log")
tools=$(cat tests/data/chat/calculator_tool.json)
curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 5 + 7?\"}], \"tools\": $tools, \"temperature\": 0,
         \"chat_template_kwargs\": {\"enable_thinking\": false}}" | python3 -m json.tool
kill $server
wait $server 2>/dev/null || true
rm -f "$log"
echo
M=build/models/qwen35moe_tok
REF=build/native/tests/ref_tool
$FM info -m $M
echo
ids=$($REF ids $M/reference.safetensors input_ids)
echo "prompt ids:       $ids"
ours=$($FM generate -m $M --ids "$ids" -n 24 --greedy --stats)
theirs=$($REF tokens $M/reference.safetensors greedy_tokens)
echo "flashmoe:         $ours"
echo "transformers:     $theirs"
if [ "$ours" = "$theirs" ]; then echo "identical greedy continuations"; else echo "continuations differ"; exit 1; fi
echo
P=build/packed/qwen35moe_tok-q8
echo "\$ flashmoe convert $M $P --bits 8 --group 32"
if [ -f $P/flashmoe.json ]; then echo "(already converted)"; else $FM convert $M $P --bits 8 --group 32; fi
packed=$($FM generate -m $P --ids "$ids" -n 24 --greedy --timing 2>build/demo-timing.txt)
echo "flashmoe, 8-bit experts streamed from disk: $packed"
same=0
for i in $(seq 1 24); do
    [ "$(echo "$ours" | cut -d' ' -f$i)" = "$(echo "$packed" | cut -d' ' -f$i)" ] && same=$((same + 1))
done
echo "$same of 24 tokens agree with the bf16 run"
tail -n 4 build/demo-timing.txt
echo
echo '$ flashmoe run -m build/models/qwen35moe_tok -p "What does lucid mean?" -n 24 --seed 1'
$FM run -m $M -p "What does lucid mean?" -n 24 --seed 1

#!/usr/bin/env bash
# The memory budget, measured: a packed model whose experts (~850 MB) are several
# times the budget is decoded with --memory-budget, and the process's peak RSS
# (VmHWM, printed by --timing) must stay within the budget; the same model
# preloaded all in RAM must exceed it (so the measure can fail). Native build
# only: AddressSanitizer's shadow memory and quarantine are not the engine's.
#   tests/test_memory.sh BUILD_DIR
set -u
BUILD=${1:-build/native}
FM=$BUILD/flashmoe
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && sed 's/^/    /' <<<"$2"; }

M=$TMP/model
$BUILD/bench/synth_packed "$M" --layers 4 --experts 64 --top-k 8 --bits 8 --hidden 1024 --expert-ffn 1024 \
    --vocab 4096 >/dev/null 2>"$TMP/synth.log" || { not_ok "synth_packed" "$(cat "$TMP/synth.log")"; exit 1; }
experts=$(du -sb "$M/experts" | cut -f1)
ids=$(seq -s, 1 64)

peak() { sed -n 's/^memory: peak RSS \([0-9.]*\) MB[;]*.*/\1/p' "$1"; }
budget_mb=800
$FM generate -m "$M" --ids "$ids" -n 64 --greedy --memory-budget ${budget_mb}M --timing >/dev/null 2>"$TMP/budget.log"
rc=$?
rss=$(peak "$TMP/budget.log")
hit=$(sed -n 's/.*cache hit rate \([0-9.]*\)%.*/\1/p' "$TMP/budget.log")
if [ $rc -eq 0 ] && [ -n "$rss" ] && awk -v r="$rss" -v b=$budget_mb 'BEGIN { exit !(r <= b) }'; then
    ok "peak RSS ${rss} MB within a ${budget_mb} MB budget (experts: $((experts / 1000000)) MB on disk, cache hit rate ${hit}%)"
else
    not_ok "peak RSS within the budget (rc=$rc, peak ${rss:-?} MB, budget $budget_mb MB)" "$(tail -5 "$TMP/budget.log")"
fi
$FM generate -m "$M" --ids "$ids" -n 8 --greedy --preload --timing >/dev/null 2>"$TMP/all.log"
rss=$(peak "$TMP/all.log")
if [ -n "$rss" ] && awk -v r="$rss" -v e="$experts" 'BEGIN { exit !(r * 1e6 >= e) }'; then
    ok "all in RAM (--preload): peak RSS ${rss} MB holds the $((experts / 1000000)) MB of experts"
else
    not_ok "all in RAM: peak RSS ${rss:-?} MB" "$(tail -5 "$TMP/all.log")"
fi
echo "memory: $pass passed, $fail failed"
[ $fail -eq 0 ]

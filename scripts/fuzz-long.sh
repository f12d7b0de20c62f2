#!/usr/bin/env bash
# Long fuzzing runs by hand (make fuzz-long): each target of tests/fuzz for
# FUZZ_SECONDS (default 3600) on 1 job, starting from its checked-in corpus.
# What a run adds to the corpus is kept in build/fuzz/corpus-TARGET (to merge
# by hand: ./build/fuzz/fuzz_T -merge=1 tests/fuzz/corpus/T build/fuzz/corpus-T),
# crashes and timeouts in build/fuzz/ (crash-*, timeout-*): add each as a
# regression seed to tests/fuzz/corpus/TARGET once fixed.
#   scripts/fuzz-long.sh [TARGET ...]      (default: every target)
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-3600}
make -s fuzz || exit 1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for src in tests/fuzz/fuzz_*.c; do t=${src#tests/fuzz/fuzz_}; targets+=("${t%.c}"); done
fi
status=0
for t in "${targets[@]}"; do
    [ -x "build/fuzz/fuzz_$t" ] || { echo "fuzz-long: no target $t" >&2; status=1; continue; }
    work=build/fuzz/corpus-$t
    mkdir -p "$work"
    echo "== fuzz_$t for $SECONDS_EACH s (new inputs in $work)"
    ./build/fuzz/fuzz_"$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -artifact_prefix=build/fuzz/ \
        "$work" "tests/fuzz/corpus/$t" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY)|Done [0-9]+ runs"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz-long: fuzz_$t found a failure (build/fuzz/crash-*)"; status=1; }
done
exit $status

#!/usr/bin/env bash
# Runs the node:test files given (default: all *.test.mjs here, those that
# abandon requests last), one file at a time (the servers run one generation at
# a time, and some tests read /stats), printing "ok - NAME" / "not ok - NAME"
# lines. The FM_PORT_* variables must be set (tests/test_server.sh does it; see
# common.mjs).
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
    first=(openai anthropic tools sse errors prefix)
    set -- "${first[@]/%/.test.mjs}"
    for f in *.test.mjs; do [[ " $* " == *" $f "* ]] || set -- "$@" "$f"; done
fi
# One node per file: node --test would sort the files.
rc=0
for f in "$@"; do node --test --test-reporter=./reporter.mjs "$f" || rc=1; done
exit $rc

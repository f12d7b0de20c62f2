#!/usr/bin/env bash
# The server tests (tests/test_server.sh) on Debian 12's own Node.js 18, the
# Node a fresh Debian 12 gets from `apt-get install nodejs`, without replacing
# the Node installed here: the .debs are downloaded (apt-get download) and
# unpacked into build/node18. Debian's node looks for some of its built-in
# modules in /usr/share/nodejs, so that path is linked to the unpacked copy for
# the run (only when nothing is there already; needs root) and removed after.
#   scripts/test-node18.sh [BUILD_DIR (build/native)] [MODELS_DIR (build/models)]
set -eu
BUILD=${1:-build/native}
MODELS=${2:-build/models}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=$ROOT/build/node18
if [ ! -x "$N/root/usr/bin/node" ]; then
    mkdir -p "$N/debs"
    # Debian's own version, not one from another repository (e.g. NodeSource's nodejs 20)
    (cd "$N/debs" && for rel in bookworm-security bookworm; do
        apt-get download "nodejs/$rel" "libnode108/$rel" node-acorn node-cjs-module-lexer node-undici 2>/dev/null && break
    done)
    for f in "$N"/debs/*.deb; do dpkg -x "$f" "$N/root"; done
fi
mkdir -p "$N/bin"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$N/root/usr/lib/x86_64-linux-gnu" "$N/root/usr/bin/node" >"$N/bin/node"
chmod +x "$N/bin/node"
linked=
if [ ! -e /usr/share/nodejs ]; then
    ln -s "$N/root/usr/share/nodejs" /usr/share/nodejs
    linked=1
fi
trap 'if [ -n "$linked" ]; then rm -f /usr/share/nodejs; fi' EXIT
echo "node $(PATH=$N/bin:$PATH node --version) (Debian's)"
PATH=$N/bin:$PATH "$ROOT/tests/test_server.sh" "$BUILD" "$MODELS"

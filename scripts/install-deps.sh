#!/bin/sh
# Installs what flashmoe needs to build and test on Debian 12 (run as root or with sudo).
set -e
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential libcjson-dev libpcre2-dev libutf8proc-dev libedit-dev libmicrohttpd-dev libcmocka-dev zstd tmux curl \
    clang libclang-rt-14-dev liburing-dev libxxhash-dev fio python3-numpy wordnet-base >/dev/null
# Node.js runs the server tests with the official OpenAI and Anthropic clients (npm packages).
command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
echo "dependencies installed"

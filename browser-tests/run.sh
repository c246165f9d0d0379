#!/usr/bin/env bash
# Builds the chat-web example and drives it with Chromium (see chat.test.mjs); the
# two-node test (chat-nodes.test.mjs) starts its own redis-server. Then the ticker in
# Chromium across the emulated 4G link, checked against a Rust client at the same time
# (ticker-netem.test.mjs, about 45 s; needs root and TUN, which CI has).
# CARGO_TARGET_DIR is honoured; a relative one is taken from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    why="the browser tests need Chromium at $chromium (Debian: bash browser-tests/install.sh, or set CHROMIUM)"
    if [ -n "${CI:-}" ]; then
        echo "error: $why" >&2
        exit 1
    fi
    echo "skipped: $why"
    exit 0
fi

cargo build -p duplex-hub --features tokio,redis --example chat-web
if [ ! -d browser-tests/node_modules/playwright-core ]; then
    (cd browser-tests && npm ci --no-audit --no-fund)
fi
cd browser-tests
node --test --test-reporter=spec chat.test.mjs chat-h2.test.mjs chat-nodes.test.mjs
node --test --test-reporter=spec ticker-netem.test.mjs

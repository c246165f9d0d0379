#!/usr/bin/env bash
# Builds the chat-web example and drives it with Chromium (see chat.test.mjs).
# CARGO_TARGET_DIR is honoured; a relative one is taken from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p duplex-tokio --features hyper --example chat-web
if [ ! -d browser-tests/node_modules/playwright-core ]; then
    (cd browser-tests && npm ci --no-audit --no-fund)
fi
cd browser-tests
node --test --test-reporter=spec chat.test.mjs chat-h2.test.mjs

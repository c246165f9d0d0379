#!/usr/bin/env bash
# The library crates must stay publishable: their docs build without warnings (as on
# docs.rs, all features) and they package, each against the others as packaged
# (crates.io is only read; nothing is uploaded).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features \
    -p duplex-codec -p duplex-core -p duplex-handshake -p duplex-tokio -p duplex-mio -p duplex-hub
cargo publish --workspace --dry-run --no-verify --allow-dirty \
    --exclude duplex-benches --exclude xtask --exclude duplex-hostile --exclude duplex-wire-kit

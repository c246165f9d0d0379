#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short, fixed time on nightly.
#
#   fuzz/smoke.sh                      # 15 s per target (the test command's smoke run)
#   FUZZ_SECS=300 fuzz/smoke.sh        # longer
#   FUZZ_TARGETS="core decoder" fuzz/smoke.sh
#
# Each run starts from the committed seeds (fuzz/seeds/<target>) and keeps its corpus in
# fuzz/corpus/<target> (not committed). A crash stops the script with a non-zero status
# and leaves the input in fuzz/artifacts/<target>/; copy it to
# fuzz/regressions/<target>/ so that `cargo test -p duplex-hostile` replays it forever.
set -euo pipefail
cd "$(dirname "$0")"

SECS="${FUZZ_SECS:-15}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
TARGETS="${FUZZ_TARGETS:-decoder core server_handshake client_handshake extensions}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

cargo "+$TOOLCHAIN" fuzz build
for target in $TARGETS; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target for ${SECS}s"
    log="${TMPDIR:-/tmp}/duplex-fuzz-$target.log"
    set +e
    cargo "+$TOOLCHAIN" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECS" -rss_limit_mb="$RSS_LIMIT_MB" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs|SUMMARY|panicked" "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $target failed (status $status); see $log and fuzz/artifacts/$target/" >&2
        tail -n 40 "$log" >&2
        exit "$status"
    fi
done
echo "fuzz smoke run: all targets ran ${SECS}s without a finding"

#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target in fuzz/ for a few seconds each (default 10).
# Installs cargo-fuzz when missing. The machine has only the stable toolchain; cargo-fuzz needs
# nightly -Z flags, which stable accepts with RUSTC_BOOTSTRAP=1 (see fuzz/README.md).
# Usage: .ci/fuzz-smoke.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
if ! command -v cargo-fuzz >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION:-0.13.2}"
fi
export RUSTC_BOOTSTRAP=1
# fuzz/ is its own workspace with its own committed Cargo.lock: fetch against it with --locked, which
# fails (instead of silently re-resolving) when the lock no longer matches fuzz/Cargo.toml or the
# sagegate crate's dependencies. cargo fuzz has no --locked flag of its own; after this fetch its
# builds find every package already resolved and downloaded.
cargo fetch --locked || { echo "fuzz/Cargo.lock is stale: run bash .ci/fuzz-lock.sh and commit it" >&2; exit 1; }
targets=$(cargo fuzz list)
# --dev: unoptimised builds (still with the address sanitizer, plus debug assertions) build in about
# 3 min instead of 5 on the 2-core box, and a few seconds per target need no speed; long campaigns
# use release builds (fuzz/README.md).
for t in $targets; do
    cargo fuzz build --dev "$t"
done
for t in $targets; do
    echo "== fuzz $t for ${secs}s"
    # -timeout: a single input taking longer than 10 s is a hang, reported as a failure.
    cargo fuzz run --dev "$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
done
echo "fuzz smoke: all targets ran ${secs}s without a finding"

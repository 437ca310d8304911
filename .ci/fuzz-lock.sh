#!/usr/bin/env bash
# Rewrites fuzz/Cargo.lock from the root Cargo.lock after a dependency change of the sagegate crate.
# fuzz/ is its own workspace, so the root lock does not cover it; starting from a copy of the root
# lock keeps every package the two share at the root's version, and cargo adds only the fuzz-only
# packages (libfuzzer-sys, arbitrary) and drops what the fuzz build does not use.
# `.ci/run`'s first section fails fast when this is needed (`--check`: nothing is written).
# Usage: .ci/fuzz-lock.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if [ "${1:-}" = --check ]; then
    if ! cargo metadata --locked --format-version 1 >/dev/null 2>&1; then
        echo "fuzz/Cargo.lock no longer matches the sagegate crate's dependencies:" >&2
        echo "run 'bash .ci/fuzz-lock.sh' and commit fuzz/Cargo.lock" >&2
        exit 1
    fi
    exit 0
fi
cp ../Cargo.lock Cargo.lock
cargo metadata --format-version 1 >/dev/null
echo "fuzz/Cargo.lock rewritten from Cargo.lock; review 'git diff fuzz/Cargo.lock' and commit it"

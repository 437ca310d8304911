#!/usr/bin/env bash
# Dependency policy: bans, licenses and sources (deny.toml). Installs cargo-deny when missing
# (a from-source build takes about 4.5 min on the 2-core build box).
# `cargo deny --offline` reads every crate of every target platform in Cargo.lock (windows-sys,
# wasm crates, ...), while a build downloads only the host's: `cargo fetch --locked` brings the rest
# first, and fails if Cargo.lock is out of date, so a fresh cargo home passes as a warm one does.
# The advisories check needs network access to the RustSec database; run `cargo deny check advisories` elsewhere (docs/security.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null 2>&1 && ! cargo deny --version >/dev/null 2>&1; then
    cargo install cargo-deny --locked --version "${CARGO_DENY_VERSION:-0.20.2}"
fi
cargo fetch --locked
cargo deny --offline check bans licenses sources

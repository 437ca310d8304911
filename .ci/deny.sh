#!/usr/bin/env bash
# Dependency policy: bans, licenses and sources (deny.toml). Installs cargo-deny when missing
# (a from-source build takes about 4.5 min on the 2-core build box).
# The advisories check needs network access to the RustSec database; run `cargo deny check advisories` elsewhere (docs/security.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install cargo-deny --locked
fi
cargo deny --offline check bans licenses sources

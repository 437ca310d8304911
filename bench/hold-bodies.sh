#!/usr/bin/env bash
# The slow-body memory attack of issue 14 against a local gateway, bounded, with its RSS sampled.
#
#   bench/hold-bodies.sh [hold-bodies flags...]
#
# Starts `sagegate serve` ($SAGEGATE, default target/debug/sagegate) on a free loopback port with
# $CONFIG and $KEYS (default: the shipped config/), runs `hold-bodies` against it (default: 40
# connections, POST /x/y without a key, Content-Length 10 MiB and one byte short of it, held 15 s),
# prints its JSON line and the RSS one second after the connections closed, and stops the gateway.
# Example with a valid key and a 64 MiB budget (see docs/security.md):
#   CONFIG=my-gateway.yaml KEYS=bench/config/keys.yaml bench/hold-bodies.sh --method GET \
#     --path '/prod/recommended-movies/U:1?k=1&inference_type=deterministic' \
#     -H 'x-api-key: sagegate-bench-key-0123456789abcdef'
set -euo pipefail
cd "$(dirname "$0")/.."
SAGEGATE=${SAGEGATE:-target/debug/sagegate}
CONFIG=${CONFIG:-config/gateway.yaml}
KEYS=${KEYS:-config/keys.yaml}
cargo build -q -p sagegate-bench --bin hold-bodies
LOG=$(mktemp)
AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:1 SAGEGATE_ADMIN_LISTEN= \
    "$SAGEGATE" serve --config "$CONFIG" --keys "$KEYS" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true; rm -f "$LOG"' EXIT
ADDR=
for _ in $(seq 1 150); do
    ADDR=$(grep '"sagegate listening"' "$LOG" | grep -o '"listen":"[^"]*"' | cut -d'"' -f4 || true)
    [[ -n $ADDR ]] && break
    kill -0 "$GW" || { cat "$LOG"; exit 1; }
    sleep 0.2
done
[[ -n $ADDR ]] || { echo "sagegate did not start" >&2; exit 1; }
sleep 1
target/debug/hold-bodies --addr "$ADDR" --pid "$GW" "$@"
sleep 1
echo "rss_after_close_kb: $(awk '/^VmRSS:/ {print $2}' "/proc/$GW/status")"

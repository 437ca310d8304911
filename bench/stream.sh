#!/usr/bin/env bash
# bench/stream.sh [REQUESTS] [STREAMS] — what response streaming (#17) costs, loopback only:
# (a) added time to first byte: REQUESTS (default 200) streaming requests through the gateway and
#     the same requests straight to the recommender's `invocations-response-stream`, interleaved in
#     one run, p50/p90 of curl's time_starttransfer for each;
# (b) memory per open stream: STREAMS (default 100) slow streams held open (the recommender's
#     line_delay_ms), gateway RSS before and while they are open, (RSS delta) / STREAMS.
# Release binaries from BENCH_BIN (a directory holding sagegate and recommender), else built with
# `cargo build --release -p sagegate -p recommender`. Writes bench/out/stream-<time>/results.md
# (also printed). Every curl has --max-time; the script stops by itself. No timed assertion: exit
# status is non-zero only when something is broken.
set -euo pipefail

REQUESTS=${1:-200}
STREAMS=${2:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/out/stream-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
KEY=sagegate-bench-key-0123456789abcdef
BODY='{"user_id":"U:114521","k":10,"inference_type":"deterministic"}'
QUERY='k=10&inference_type=deterministic'

LOG_TAG=stream-bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    log "building (cargo build --release -p sagegate -p recommender)"
    (cd "$ROOT" && cargo build --release --quiet -p sagegate -p recommender) || die "build"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    [[ $BIN == /* ]] || BIN=$ROOT/$BIN
fi
[[ -x $BIN/sagegate && -x $BIN/recommender ]] || die "no sagegate/recommender in $BIN"

wait_url() { # url [tries of 0.1 s]
    for _ in $(seq "${2:-300}"); do
        curl -sf -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    die "$1 never answered"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# p50 and p90 (nearest rank) of the numbers in file $1, in ms.
percentiles() {
    sort -n "$1" | awk '{ v[NR] = $1 * 1000 } END {
        p50 = v[int(NR * 0.5 + 0.5)]; p90 = v[int(NR * 0.9 + 0.5)];
        printf "%.2f %.2f\n", p50, p90 }'
}

RPORT=$(free_port)
GPORT=$(free_port)
APORT=$(free_port)
"$BIN/recommender" sample-model --out "$OUT/model" --items 2000 >/dev/null
SM_MODEL_DIR=$OUT/model RUST_LOG=warn "$BIN/recommender" serve --listen "127.0.0.1:$RPORT" \
    --stream-test-knobs >"$OUT/recommender.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$RPORT/ping"

# One streaming route whose default body (path and query parameters) reaches the recommender as is,
# so the slow streams' knobs pass through.
cat >"$OUT/gateway.yaml" <<EOF
server:
  listen: "127.0.0.1:$GPORT"
  admin_listen: "127.0.0.1:$APORT"
sagemaker:
  region: us-east-1
  client: lean
  max_attempts: 1
stages:
  prod:
    variables: { endpoint: bench }
routes:
  - method: GET
    path: /s/{user_id}
    api_key_required: true
    integration:
      endpoint_name: "\${stageVariables.endpoint}"
      accept: application/jsonlines
      mode: stream
      stream: { first_byte_timeout_ms: 29000, idle_timeout_ms: 30000, max_duration_ms: 900000 }
EOF
env -i PATH="$PATH" HOME="$OUT" RUST_LOG=warn AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME="http://127.0.0.1:$RPORT" \
    "$BIN/sagegate" serve --config "$OUT/gateway.yaml" --keys "$ROOT/bench/config/keys.yaml" \
    >"$OUT/gateway.log" 2>&1 &
GW=$!
PIDS+=("$GW")
wait_url "http://127.0.0.1:$GPORT/healthz"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

direct() {
    curl -sf -o /dev/null --max-time 30 -w '%{time_starttransfer}\n' -X POST \
        "http://127.0.0.1:$RPORT/endpoints/bench/invocations-response-stream" \
        -H 'content-type: application/json' -H 'x-amzn-sagemaker-accept: application/jsonlines' \
        --data "$1"
}
gateway() {
    curl -sf -o /dev/null --max-time 30 -w '%{time_starttransfer}\n' \
        "http://127.0.0.1:$GPORT/prod/s/U:114521?$1" -H "x-api-key: $KEY"
}

# (a) time to first byte, interleaved so both see the same machine.
for _ in $(seq 20); do direct "$BODY" >/dev/null && gateway "$QUERY" >/dev/null || die "warm-up"; done
: >"$OUT/direct.txt"
: >"$OUT/gateway.txt"
for _ in $(seq "$REQUESTS"); do
    direct "$BODY" >>"$OUT/direct.txt" || die "direct call"
    gateway "$QUERY" >>"$OUT/gateway.txt" || die "gateway call"
done
read -r D50 D90 < <(percentiles "$OUT/direct.txt")
read -r G50 G90 < <(percentiles "$OUT/gateway.txt")

# (b) memory per open stream: STREAMS streams of 30 lines, one a second, all open at once.
open_streams() { curl -s --max-time 2 "http://127.0.0.1:$APORT/metrics" | awk '$1 == "sagegate_stream_open" { print $2 }'; }
BEFORE=$(rss_kb "$GW")
SLOW=()
for i in $(seq "$STREAMS"); do
    curl -sN -o /dev/null --max-time 60 \
        "http://127.0.0.1:$GPORT/prod/s/U:$i?k=30&inference_type=deterministic&first_line_delay_ms=0&line_delay_ms=1000" \
        -H "x-api-key: $KEY" &
    SLOW+=($!)
    PIDS+=($!)
done
for _ in $(seq 200); do
    [[ $(open_streams) == "$STREAMS" ]] && break
    sleep 0.1
done
OPEN=$(open_streams)
[[ $OPEN == "$STREAMS" ]] || die "only ${OPEN:-0} of $STREAMS streams open"
DURING=$(rss_kb "$GW")
kill "${SLOW[@]}" 2>/dev/null || true
PER=$(((DURING - BEFORE) * 1024 / STREAMS))
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

cat >"$OUT/results.md" <<EOF
## Response streaming (bench/stream.sh $REQUESTS $STREAMS), $(date -u +%Y-%m-%d)

Release build, loopback, lean client, recommender sample model (2000 items), k=10 deterministic;
curl's time_starttransfer (new connection each request), interleaved direct/gateway.

| time to first byte | p50 ms | p90 ms |
|---|---|---|
| recommender's invocations-response-stream, direct | $D50 | $D90 |
| through sagegate (\`mode: stream\`) | $G50 | $G90 |
| added by the gateway | $(awk "BEGIN { printf \"%.2f\", $G50 - $D50 }") | $(awk "BEGIN { printf \"%.2f\", $G90 - $D90 }") |

Memory per open stream: $STREAMS slow streams open (sagegate_stream_open = $OPEN), gateway RSS
$BEFORE kB before, $DURING kB during: $PER bytes per stream.
EOF
cat "$OUT/results.md"

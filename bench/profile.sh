#!/usr/bin/env bash
# bench/profile.sh [REQUESTS] — instruction-level profile of sagegate (and of stack-floor, the same
# stack with none of the gateway's work, and of nginx doing the same job)
# with valgrind's callgrind: warm up, zero the counters, send REQUESTS (default 2000) requests on one
# connection, dump; then the same for a request sagegate answers from its stage cache. BENCH_CLIENT=sdk
# profiles the full AWS SDK client instead of the lean one. Instruction counts do not depend on how busy the machine is, so this is the
# stable per-request cost. Writes bench/out/profile-<time>/{summary.md,*.callgrind,*.annotate.txt}.
# `perf` would be lighter, but hardware counters are not available in this VM
# (`perf stat -e instructions true` reports <not supported>).
set -euo pipefail

REQUESTS=${1:-2000}
WARM=200
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
OUT=$BENCH/out/profile-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/nginx-tmp"
KEY=sagegate-bench-key-0123456789abcdef

LOG_TAG=profile
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
if [[ -n ${BENCH_BIN:-} ]]; then # prebuilt binaries, as in run.sh
    BIN=$BENCH_BIN
else
    (cd "$ROOT" && cargo build --release --quiet -p sagegate -p sagegate-bench) || die "build"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    [[ $BIN == /* ]] || BIN=$ROOT/$BIN
fi

wait_port() { # port pid [tries of 0.1 s]
    for _ in $(seq "${3:-600}"); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

UP_PORT=$(free_port)
"$BIN/fake-sagemaker" --listen "127.0.0.1:$UP_PORT" >"$OUT/fake-sagemaker.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_port "$UP_PORT" "$UP_PID" || die "fake-sagemaker did not start"
PATH_Q="/prod/recommended-movies/U1?k=5&inference_type=PL"

# Deterministic answers are cached (bench/config/gateway.yaml): the in-process path.
PATH_CACHED="/prod/recommended-movies/U1?k=5&inference_type=deterministic"

# profile NAME PORT PID [PATH [CALLGRIND-FILE-BASE]]: warm up, zero, measure REQUESTS, dump, annotate.
profile() {
    local name=$1 port=$2 pid=$3 path=${4:-$PATH_Q} base=${5:-$1} r
    wait_port "$port" "$pid" 1200 || die "$name did not start under valgrind"
    "$BIN/loadgen" --url "http://127.0.0.1:$port$path" -H "x-api-key:$KEY" -c 1 --requests "$WARM" \
        --timeout-ms 60000 >/dev/null
    callgrind_control --zero "$pid" >/dev/null
    r=$("$BIN/loadgen" --url "http://127.0.0.1:$port$path" -H "x-api-key:$KEY" -c 1 \
        --requests "$REQUESTS" --timeout-ms 60000)
    [[ $(jq .ok <<<"$r") == "$REQUESTS" ]] || die "$name: not every request succeeded: $r"
    callgrind_control --dump="measured" "$pid" >/dev/null
    sleep 1
    local file
    file=$(ls -t "$OUT/$base".callgrind* | head -1)
    callgrind_annotate --inclusive=yes "$file" >"$OUT/$name.inclusive.txt" 2>/dev/null || true
    callgrind_annotate "$file" >"$OUT/$name.self.txt" 2>/dev/null || true
    local total
    total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$file")
    echo "- $name: $total instructions for $REQUESTS requests = $((total / REQUESTS)) per request" |
        tee -a "$OUT/summary.md"
}

GW_PORT=$(free_port)
SAGEGATE_BENCH_CLIENT="${BENCH_CLIENT:-lean}" AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME="http://127.0.0.1:$UP_PORT" \
    valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no \
    --callgrind-out-file="$OUT/sagegate.callgrind" \
    "$BIN/sagegate" serve --config "$BENCH/config/gateway.yaml" --keys "$BENCH/config/keys.yaml" \
    --listen "127.0.0.1:$GW_PORT" >"$OUT/sagegate-access.log" 2>"$OUT/sagegate.valgrind.log" &
GW_PID=$!
PIDS+=("$GW_PID")
log "sagegate under callgrind (pid $GW_PID)"
profile sagegate "$GW_PORT" "$GW_PID"
profile sagegate-cache-hit "$GW_PORT" "$GW_PID" "$PATH_CACHED" sagegate

# The stack's floor (bench/src/bin/stack-floor.rs): actix-web + hyper forwarding, none of the gateway's work.
if [[ -x $BIN/stack-floor ]]; then
    FL_PORT=$(free_port)
    valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no \
        --callgrind-out-file="$OUT/stack-floor.callgrind" \
        "$BIN/stack-floor" --listen "127.0.0.1:$FL_PORT" --upstream "127.0.0.1:$UP_PORT" \
        >"$OUT/stack-floor.log" 2>"$OUT/stack-floor.valgrind.log" &
    FL_PID=$!
    PIDS+=("$FL_PID")
    log "stack-floor under callgrind (pid $FL_PID)"
    profile stack-floor "$FL_PORT" "$FL_PID"
fi

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -x $NGINX ]]; then
    NG_PORT=$(free_port)
    sed -e "s#@OUT@#$OUT#g" -e "s#@PORT@#$NG_PORT#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" \
        -e "s#@KEY@#$KEY#g" -e 's#^master_process on;#master_process off;#' \
        "$BENCH/config/nginx.conf.in" >"$OUT/nginx.conf"
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/nginx.callgrind" \
        "$NGINX" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" \
        >"$OUT/nginx.stdout" 2>"$OUT/nginx.valgrind.log" &
    NG_PID=$!
    PIDS+=("$NG_PID")
    log "nginx under callgrind (pid $NG_PID)"
    profile nginx "$NG_PORT" "$NG_PID"
fi
log "summary: $OUT/summary.md; annotations: $OUT/*.inclusive.txt"
ln -sfn "$(basename "$OUT")" "$BENCH/out/latest-profile"

#!/usr/bin/env bash
# bench/run.sh [--quick|--full] — sagegate's benchmark: the same closed-loop load sent straight to a
# fixed-latency SageMaker stand-in (the floor), through `stack-floor` (actix-web + hyper with none of
# the gateway's work: the stack's floor), through sagegate (full pipeline), and through nginx doing the
# comparable job; then in-flight concurrency runs (sagegate, stack-floor) against a 5-second upstream.
# Loopback only; every phase is bounded; every process started here is stopped on exit.
# Exit status: non-zero only when something is broken (build, a server not starting, a target that
# answers no request successfully) — never because a number is slow. See bench/README.md.
set -euo pipefail

MODE=quick
for arg in "$@"; do
    case "$arg" in
        --quick) MODE=quick ;;
        --full) MODE=full ;;
        -h | --help)
            sed -n '2,7p' "$0"
            exit 0
            ;;
        *)
            echo "usage: bench/run.sh [--quick|--full]" >&2
            exit 2
            ;;
    esac
done

if [[ $MODE == quick ]]; then
    LEVELS=(1 16)
    WARMUP=1
    DURATION=3
    INFLIGHT=1000
else
    LEVELS=(1 16 64 256)
    WARMUP=2
    DURATION=10
    INFLIGHT=9000
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/out/$MODE-$STAMP
mkdir -p "$OUT/nginx-tmp"
KEY=sagegate-bench-key-0123456789abcdef
CLK_TCK=$(getconf CLK_TCK)

# log, die, the processes we start (PIDS, stopped on every exit path), free_port
LOG_TAG=bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# ---- build (cargo's default target dir unless CARGO_TARGET_DIR says otherwise) ----
# BENCH_BIN=DIR skips the build and uses DIR/{sagegate,fake-sagemaker,loadgen} (for profiling a
# binary built elsewhere); the results then say so.
if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
    log "using prebuilt binaries in $BIN (BENCH_BIN)"
else
    log "building release binaries (cargo build --release -p sagegate -p sagegate-bench)"
    (cd "$ROOT" && cargo build --release --quiet -p sagegate -p sagegate-bench) || die "build"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    [[ $BIN == /* ]] || BIN=$ROOT/$BIN
fi
for b in sagegate fake-sagemaker loadgen; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b"
done
# A prebuilt directory (BENCH_BIN) may predate stack-floor: its rows are then skipped.
FLOOR=$BIN/stack-floor
[[ -x $FLOOR ]] || { log "no $FLOOR: the stack-floor rows are skipped"; FLOOR=; }

# ---- nginx: installed with apt-get when missing; the nginx rows are skipped if that fails ----
NGINX=$(command -v nginx || true)
if [[ -z $NGINX && -x /usr/sbin/nginx ]]; then NGINX=/usr/sbin/nginx; fi
if [[ -z $NGINX ]]; then
    log "nginx missing: apt-get install -y nginx-light"
    if [[ $(id -u) == 0 ]]; then
        (apt-get install -y nginx-light >"$OUT/apt.log" 2>&1 ||
            { apt-get update >>"$OUT/apt.log" 2>&1 && apt-get install -y nginx-light >>"$OUT/apt.log" 2>&1; }) || true
    else
        (sudo -n apt-get install -y nginx-light >"$OUT/apt.log" 2>&1) || true
    fi
    NGINX=$(command -v nginx || true)
    [[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
    [[ -n $NGINX ]] || log "nginx could not be installed: nginx rows skipped (see $OUT/apt.log)"
fi

# ---- CPU placement: the server under test alone on CPU 0; load generator and upstream on CPU 1 ----
NCPU=$(nproc)
if command -v taskset >/dev/null && ((NCPU >= 2)); then
    SUT_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
    PLACEMENT="server under test (sagegate / stack-floor / nginx) pinned to CPU 0; load generator and upstream pinned to CPU 1"
else
    SUT_PIN=()
    LOAD_PIN=()
    PLACEMENT="no pinning ($NCPU CPU(s) or no taskset): all processes share every CPU"
fi

# Polls until something accepts on 127.0.0.1:$1 (bounded: 30 s) while $2 is alive.
wait_port() {
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}
cpu_ticks() { # utime+stime of a process and its direct children, in clock ticks
    local total=0 pid
    for pid in "$@" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        if [[ -r /proc/$pid/stat ]]; then
            # fields after the ")" of comm: state is 3rd, utime 14th, stime 15th overall
            total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
        fi
    done
    echo "$total"
}
hwm_kb() { # VmHWM of a process plus its direct children (nginx: master + worker)
    local total=0 pid v
    for pid in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

start_upstream() { # $1 port, $2 delay ms; sets UP_PID
    "${LOAD_PIN[@]}" "$BIN/fake-sagemaker" --listen "127.0.0.1:$1" --delay-ms "$2" \
        >"$OUT/fake-sagemaker-$1.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    wait_port "$1" "$UP_PID" || die "fake-sagemaker did not start (see $OUT/fake-sagemaker-$1.log)"
}
# BENCH_CLIENT=sdk|lean picks `sagemaker.client` of every gateway started here (default lean).
BENCH_CLIENT=${BENCH_CLIENT:-lean}
start_gateway() { # $1 port, $2 upstream port, $3 log name, [$4 config]; sets GW_PID
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 \
        AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME="http://127.0.0.1:$2" \
        SAGEGATE_BENCH_CLIENT="$BENCH_CLIENT" \
        "${SUT_PIN[@]}" "$BIN/sagegate" serve --config "${4:-$BENCH/config/gateway.yaml}" \
        --keys "$BENCH/config/keys.yaml" --listen "127.0.0.1:$1" \
        >"$OUT/$3" 2>"$OUT/$3.stderr" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_port "$1" "$GW_PID" || die "sagegate did not start (see $OUT/$3.stderr)"
}

start_floor() { # $1 port, $2 upstream port, $3 log name, [$4 head timeout s]; sets FL_PID
    "${SUT_PIN[@]}" "$FLOOR" --listen "127.0.0.1:$1" --upstream "127.0.0.1:$2" \
        --client-header-timeout-secs "${4:-10}" >"$OUT/$3" 2>&1 &
    FL_PID=$!
    PIDS+=("$FL_PID")
    wait_port "$1" "$FL_PID" || die "stack-floor did not start (see $OUT/$3)"
}

UP_PORT=$(free_port)
GW_PORT=$(free_port)
NG_PORT=$(free_port)
FL_PORT=$(free_port)
start_upstream "$UP_PORT" 0
log "fake-sagemaker on :$UP_PORT (pid $UP_PID)"
start_gateway "$GW_PORT" "$UP_PORT" gateway-access.log
log "sagegate on :$GW_PORT (pid $GW_PID), access log $OUT/gateway-access.log"
FL_PID=
if [[ -n $FLOOR ]]; then
    start_floor "$FL_PORT" "$UP_PORT" stack-floor.log
    log "stack-floor on :$FL_PORT (pid $FL_PID)"
fi
NG_PID=
if [[ -n $NGINX ]]; then
    sed -e "s#@OUT@#$OUT#g" -e "s#@PORT@#$NG_PORT#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" \
        -e "s#@KEY@#$KEY#g" "$BENCH/config/nginx.conf.in" >"$OUT/nginx.conf"
    "${SUT_PIN[@]}" "$NGINX" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" \
        >"$OUT/nginx.stdout" 2>&1 &
    NG_PID=$!
    PIDS+=("$NG_PID")
    wait_port "$NG_PORT" "$NG_PID" || die "nginx did not start (see $OUT/nginx-error.log, $OUT/nginx.stdout)"
    log "nginx $("$NGINX" -v 2>&1 | sed 's/.*version: //') on :$NG_PORT (pid $NG_PID)"
fi

# ---- sagegate with the shared limit store (limits.store: redis) beside the memory-store one; the row
# is skipped when redis-server is not installed (Debian: apt-get install redis-server) ----
RD_PID=
GWR_PID=
REDIS_SERVER=$(command -v redis-server || true)
if [[ -n $REDIS_SERVER ]]; then
    RD_PORT=$(free_port)
    GWR_PORT=$(free_port)
    "${LOAD_PIN[@]}" "$REDIS_SERVER" --port "$RD_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        >"$OUT/redis.log" 2>&1 &
    RD_PID=$!
    PIDS+=("$RD_PID")
    wait_port "$RD_PORT" "$RD_PID" || die "redis-server did not start (see $OUT/redis.log)"
    { cat "$BENCH/config/gateway.yaml"
      printf 'limits:\n  store: redis\n  redis:\n    url: "redis://127.0.0.1:%s"\n' "$RD_PORT"
    } >"$OUT/gateway-redis.yaml"
    GWM_PID=$GW_PID # start_gateway sets GW_PID: keep the memory-store gateway's
    start_gateway "$GWR_PORT" "$UP_PORT" gateway-redis-access.log "$OUT/gateway-redis.yaml"
    GWR_PID=$GW_PID
    GW_PID=$GWM_PID
    log "sagegate with the Redis store on :$GWR_PORT (pid $GWR_PID), redis-server on :$RD_PORT (pid $RD_PID)"
else
    log "redis-server missing: the sagegate-redis rows are skipped"
fi

# ---- the rows: one name each in TARGETS, with its loadgen arguments and the pid whose CPU and RSS
# it is charged to. To add a row (e.g. a gateway with another limiter store): start its process
# above, add its two case entries here and its name to TARGETS. `direct` must stay first. ----
PATH_Q="/prod/recommended-movies/U1?k=5&inference_type=PL"
# Deterministic answers are cached (bench/config/gateway.yaml): after the first call, served in-process.
PATH_CACHED="/prod/recommended-movies/U1?k=5&inference_type=deterministic"
target_args() { # the loadgen arguments that address one target
    case "$1" in
        direct) echo "--url http://127.0.0.1:$UP_PORT/endpoints/movie-recommender-prod/invocations --method POST --body {\"user_id\":\"U1\",\"k\":\"5\",\"inference_type\":\"PL\"}" ;;
        # The key header too: the floor ignores it, but parses the same request bytes as the others.
        stack-floor) echo "--url http://127.0.0.1:$FL_PORT$PATH_Q -H x-api-key:$KEY" ;;
        sagegate) echo "--url http://127.0.0.1:$GW_PORT$PATH_Q -H x-api-key:$KEY" ;;
        sagegate-cache-hit) echo "--url http://127.0.0.1:$GW_PORT$PATH_CACHED -H x-api-key:$KEY" ;;
        sagegate-redis) echo "--url http://127.0.0.1:$GWR_PORT$PATH_Q -H x-api-key:$KEY" ;;
        nginx) echo "--url http://127.0.0.1:$NG_PORT$PATH_Q -H x-api-key:$KEY" ;;
    esac
}
target_pid() {
    case "$1" in
        direct) echo "$UP_PID" ;;
        stack-floor) echo "$FL_PID" ;;
        sagegate | sagegate-cache-hit) echo "$GW_PID" ;;
        sagegate-redis) echo "$GWR_PID" ;;
        nginx) echo "$NG_PID" ;;
    esac
}
TARGETS=(direct)
[[ -n $FL_PID ]] && TARGETS+=(stack-floor)
TARGETS+=(sagegate sagegate-cache-hit)
[[ -n $GWR_PID ]] && TARGETS+=(sagegate-redis)
[[ -n $NG_PID ]] && TARGETS+=(nginx)

# ---- smoke: each target answers 2xx, and sagegate rejects a wrong key (the check is really on) ----
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2046
    r=$("${LOAD_PIN[@]}" "$BIN/loadgen" $(target_args "$t") -c 1 --requests 3 --timeout-ms 10000) ||
        die "loadgen against $t"
    [[ $(jq .ok <<<"$r") == 3 ]] || die "$t does not answer 2xx: $r"
done
for t in sagegate nginx; do
    [[ $t == nginx && -z $NG_PID ]] && continue
    port=$GW_PORT
    [[ $t == nginx ]] && port=$NG_PORT
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-api-key: wrong-key-0000000000' \
        "http://127.0.0.1:$port$PATH_Q")
    [[ $code == 403 ]] || die "$t answered $code to a wrong key (expected 403)"
done
if [[ -n $GWR_PID ]]; then
    curl -s "http://127.0.0.1:$GWR_PORT/healthz" | grep -q '"state":"up"' ||
        die "sagegate-redis: the limit store is not up (see $OUT/gateway-redis-access.log)"
fi
# The cache-hit row really hits: after the smoke requests above, the answer comes from the cache.
cache_status=$(curl -s -o /dev/null -D - -H "x-api-key: $KEY" "http://127.0.0.1:$GW_PORT$PATH_CACHED" |
    awk -F': ' 'tolower($1) == "x-sagegate-cache" {print $2}' | tr -d '\r')
[[ ${cache_status,,} == hit ]] || die "sagegate-cache-hit is not served from the cache (x-sagegate-cache: $cache_status)"
log "smoke ok: every target answers 2xx; a wrong key gets 403; the cached row hits the cache"

# ---- throughput / latency rows ----
ROWS=$OUT/rows.jsonl
: >"$ROWS"
# The 1-minute load average, sampled at the start and after every row: the machine may be shared.
LOADS=("$(cut -d' ' -f1 /proc/loadavg)")
for c in "${LEVELS[@]}"; do
    for t in "${TARGETS[@]}"; do
        pid=$(target_pid "$t")
        t0=$(cpu_ticks "$pid")
        u0=$(cpu_ticks "$UP_PID")
        r0=$([[ -n $RD_PID ]] && cpu_ticks "$RD_PID" || echo 0)
        # shellcheck disable=SC2046
        r=$("${LOAD_PIN[@]}" "$BIN/loadgen" $(target_args "$t") -c "$c" \
            --warmup-secs "$WARMUP" --duration-secs "$DURATION" --timeout-ms 10000) ||
            die "loadgen against $t at $c connections"
        t1=$(cpu_ticks "$pid")
        u1=$(cpu_ticks "$UP_PID")
        r1=$([[ -n $RD_PID ]] && cpu_ticks "$RD_PID" || echo 0)
        jq -c --arg t "$t" --argjson cpu "$((t1 - t0))" --argjson up "$((u1 - u0))" \
            --argjson hz "$CLK_TCK" --argjson hwm "$(hwm_kb "$pid")" --argjson rd "$((r1 - r0))" \
            '. + {target: $t, cpu_s: ($cpu / $hz), upstream_cpu_s: ($up / $hz), redis_cpu_s: ($rd / $hz), hwm_kb: $hwm}' \
            <<<"$r" >>"$ROWS"
        log "$(jq -r '"\(.target) c=\(.connections): \(.rps|floor) req/s p50 \(.latency_ms.p50) ms, \(.ok) ok, \(.errors) errors, \(.non_2xx) non-2xx"' <<<"$(tail -1 "$ROWS")")"
        [[ $(jq .ok <<<"$r") -gt 0 ]] || die "$t at $c connections: no request succeeded"
        LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
    done
done

# ---- in-flight: N requests held open at once through sagegate, then through stack-floor, against a
# slow upstream. Each server is fresh, so its idle RSS is its own and (peak - idle) / (peak in
# flight) is the memory one request in flight costs it. The upstream holds each answer 5 s: one busy
# core can take more than 1 s to read 9,000 heads and open 9,000 upstream connections, and with a
# 1 s upstream the first answers came back before the last requests went out (7,814 of 9,000 held
# at once, 6,467 upstream connections, in one --full run), so the peak depended on the load. ----
INFLIGHT_DELAY_MS=5000
SLOW_PORT=$(free_port)
start_upstream "$SLOW_PORT" "$INFLIGHT_DELAY_MS"
SLOW_PID=$UP_PID
NOFILE=$(ulimit -n)
# One core (shared with the rest of the machine) cannot read 9,000 request heads within the shipped
# 10 s client_header_timeout; actix then answers 408 or closes the connection. The in-flight runs
# measure memory and descriptors with every request held, so they allow 60 s (heads) and 60 s (route).
sed -e 's/^  client_header_timeout_secs: .*/  client_header_timeout_secs: 60/' \
    -e 's/^      timeout_ms: .*/      timeout_ms: 60000/' "$BENCH/config/gateway.yaml" >"$OUT/gateway-inflight.yaml"
inflight() { # $1 server pid, $2 its port, $3 result file, [$4 loadgen header]: INFLIGHT requests at once
    local pid=$1 fdmax=$OUT/$3.fd-max sampler fd_idle rss_idle r fd_peak up_fd_peak
    echo "0 0" >"$fdmax"
    (
        max=0 up=0
        while kill -0 "$pid" 2>/dev/null; do
            n=$(fd_count "$pid")
            u=$(fd_count "$SLOW_PID")
            ((n > max)) && max=$n
            ((u > up)) && up=$u
            echo "$max $up" >"$fdmax"
            sleep 0.2
        done
    ) &
    sampler=$!
    PIDS+=("$sampler")
    fd_idle=$(fd_count "$pid")
    rss_idle=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    r=$("${LOAD_PIN[@]}" "$BIN/loadgen" --url "http://127.0.0.1:$2$PATH_Q" ${4:+-H "$4"} \
        -c "$INFLIGHT" --requests "$INFLIGHT" --timeout-ms 90000 --connect-parallelism 256) ||
        die "loadgen in-flight run against pid $pid"
    sleep 0.5
    read -r fd_peak up_fd_peak <"$fdmax"
    jq -c --argjson fd_idle "$fd_idle" --argjson fd_peak "$fd_peak" --argjson up_fd_peak "$up_fd_peak" \
        --argjson rss_idle "$rss_idle" --argjson hwm "$(hwm_kb "$pid")" --argjson nofile "$NOFILE" \
        '. + {fd_idle: $fd_idle, fd_peak: $fd_peak, upstream_fd_peak: $up_fd_peak, rss_idle_kb: $rss_idle, hwm_kb: $hwm, nofile: $nofile}' \
        <<<"$r" >"$OUT/$3"
    [[ $(jq .ok <<<"$r") -gt 0 ]] || die "in-flight run against pid $pid: no request succeeded: $r"
    # Its memory is measured: stop it and wait (bounded: 30 s) until it is gone, so the next run
    # starts on a quiet core and the upstream's descriptors are the next server's own.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
}
GW2_PORT=$(free_port)
start_gateway "$GW2_PORT" "$SLOW_PORT" gateway-inflight-access.log "$OUT/gateway-inflight.yaml"
log "in-flight: $INFLIGHT requests at once through sagegate (pid $GW_PID) to a $((INFLIGHT_DELAY_MS / 1000)) s upstream; ulimit -n $NOFILE per process"
inflight "$GW_PID" "$GW2_PORT" inflight.json "x-api-key:$KEY"
if [[ -n $FLOOR ]]; then
    FL2_PORT=$(free_port)
    start_floor "$FL2_PORT" "$SLOW_PORT" stack-floor-inflight.log 60
    log "in-flight: $INFLIGHT requests at once through stack-floor (pid $FL_PID)"
    inflight "$FL_PID" "$FL2_PORT" inflight-floor.json "x-api-key:$KEY"
fi

# ---- report ----
# jq definitions for the in-flight lines: KB per request held, and a warning when the burst was not held whole.
INFLIGHT_DEFS='def per_request: ((.hwm_kb - .rss_idle_kb) / ([.peak_in_flight, 1] | max) | round);
def held: if .peak_in_flight < .connections * 0.95
  then "  (only \(.peak_in_flight) of \(.connections) were in flight at once: the machine was busy; compare KB per request only between runs that held the burst)"
  else empty end; '
{
    echo "## sagegate benchmark ($MODE, $STAMP)"
    echo
    if [[ -n ${BENCH_BIN:-} ]]; then
        echo "Binaries: prebuilt in $BIN (BENCH_BIN; sagegate modified $(date -u -r "$BIN/sagegate" +%FT%TZ)), not built by this run."
    else
        echo "Binaries: $BIN, built by this run from commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n $(git -C "$ROOT" status --porcelain -- src 2>/dev/null) ]] && echo ' with uncommitted changes in src/')."
    fi
    echo "Machine: $(nproc) CPU(s), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)."
    echo "Placement: $PLACEMENT. Closed loop, HTTP/1.1 keep-alive, ${WARMUP} s warm-up + ${DURATION} s measured per row."
    echo "sagegate's SageMaker client: \`sagemaker.client: $BENCH_CLIENT\`. Load average (1 min) on $(nproc) CPUs, sampled at the start and after each row: $(printf '%s\n' "${LOADS[@]}" | sort -n | head -1) to $(printf '%s\n' "${LOADS[@]}" | sort -n | tail -1) (anything above ~2 means other processes competed for the cores; compare rows by CPU per request, not req/s)."
    echo "CPU columns: utime+stime from /proc/<pid>/stat over the whole row (warm-up included) divided by every"
    echo "answered request; RSS: VmHWM so far (the process has served every earlier row)."
    echo
    echo "| target | conns | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 ms | errors / non-2xx | server CPU s per 10k req | upstream CPU s per 10k req | server peak RSS MB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    jq -rs '
      (map(select(.target == "direct")) | map({key: (.connections|tostring), value: .latency_ms.p50}) | from_entries) as $floor
      | .[] | . as $r
      | (($r.ok + $r.non_2xx) | if . == 0 then 1 else . end) as $n
      | "| \($r.target) | \($r.connections) | \($r.rps|floor) | \($r.latency_ms.p50) | \($r.latency_ms.p90) | \($r.latency_ms.p99) | \($r.latency_ms.p99_9) | "
        + (if $r.target == "direct" then "–" else (($r.latency_ms.p50 - $floor[$r.connections|tostring]) * 1000 | round / 1000 | tostring) end)
        + " | \($r.errors) / \($r.non_2xx) | "
        + (if $r.target == "direct" then "–" else ($r.cpu_s / $n * 10000 * 1000 | round / 1000 | tostring) end)
        + " | \($r.upstream_cpu_s / $n * 10000 * 1000 | round / 1000) | "
        + (if $r.target == "direct" then "–" else ($r.hwm_kb / 1024 | floor | tostring) end) + " |"
    ' "$ROWS"
    echo
    echo "Server CPU per request relative to nginx, and sagegate's added p50 relative to nginx's; then the"
    echo "stack floor (actix-web + hyper with none of the gateway's work) and what sagegate costs above it:"
    echo
    jq -rs '
      (map(select(.target == "direct")) | map({key: (.connections|tostring), value: .latency_ms.p50}) | from_entries) as $floor
      | group_by(.connections)[]
      | (map(select(.target == "sagegate"))[0]) as $g | (map(select(.target == "nginx"))[0]) as $x
      | (map(select(.target == "stack-floor"))[0]) as $f
      | select($g != null and ($x != null or $f != null))
      | ($g.cpu_s / ([$g.ok + $g.non_2xx, 1] | max)) as $gc
      | (if $x == null then 0 else $x.cpu_s / ([$x.ok + $x.non_2xx, 1] | max) end) as $xc
      | ($g.latency_ms.p50 - $floor[$g.connections|tostring]) as $ga
      | "- \($g.connections) connection(s): "
        + (if $x == null then "CPU/request sagegate \($gc * 1e6 | round) µs (no nginx row)" else
            ($x.latency_ms.p50 - $floor[$x.connections|tostring]) as $xa
            | "CPU/request sagegate \($gc * 1e6 | round) µs vs nginx \($xc * 1e6 | round) µs = "
              + (if $xc > 0 then "\($gc / $xc * 100 | round / 100)×" else "n/a (nginx CPU below tick resolution)" end)
              + "; added p50 \($ga * 1000 | round) µs vs \($xa * 1000 | round) µs"
              + (if $xa > 0 then " = \($ga / $xa * 100 | round / 100)×" else "" end) end)
        + (if $f == null then "" else
            ($f.cpu_s / ([$f.ok + $f.non_2xx, 1] | max)) as $fc
            | "; stack-floor \($fc * 1e6 | round) µs"
              + (if $xc > 0 then " (\($fc / $xc * 100 | round / 100)× nginx)" else "" end)
              + ", sagegate above it \(($gc - $fc) * 1e6 | round) µs" end)
    ' "$ROWS"
    if [[ -n $GWR_PID ]]; then
        echo
        echo "Shared limit store: sagegate with limits.store: redis (one script call per request, redis-server on the"
        echo "load generator's CPU) vs the memory store, same config otherwise:"
        echo
        jq -rs '
          group_by(.connections)[]
          | (map(select(.target == "sagegate"))[0]) as $m | (map(select(.target == "sagegate-redis"))[0]) as $r
          | select($m != null and $r != null)
          | ([$m.ok + $m.non_2xx, 1] | max) as $mn | ([$r.ok + $r.non_2xx, 1] | max) as $rn
          | "- \($r.connections) connection(s): p50 \($r.latency_ms.p50) ms vs \($m.latency_ms.p50) ms (added \(($r.latency_ms.p50 - $m.latency_ms.p50) * 1000 | round) µs), p99 \($r.latency_ms.p99) ms vs \($m.latency_ms.p99) ms; "
            + "gateway CPU/request \($r.cpu_s / $rn * 1e6 | round) µs vs \($m.cpu_s / $mn * 1e6 | round) µs; redis-server CPU/request \($r.redis_cpu_s / $rn * 1e6 | round) µs; \($r.non_2xx) non-2xx"
        ' "$ROWS"
        echo "- limit store outages during the run (each sends requests to the in-process limits until the next"
        echo "  probe, 1 s): $(grep -c 'limit store down' "$OUT/gateway-redis-access.log" || true)"
    fi
    echo
    echo "sagegate answering from its stage cache (no upstream call) against the direct call at the same concurrency:"
    echo
    jq -rs '
      (map(select(.target == "direct")) | map({key: (.connections|tostring), value: .latency_ms.p50}) | from_entries) as $floor
      | .[] | select(.target == "sagegate-cache-hit")
      | "- \(.connections) connection(s): \(.rps | floor) req/s; CPU/request \(.cpu_s / ([.ok + .non_2xx, 1] | max) * 1e6 | round) µs; p50 \(.latency_ms.p50) ms vs direct \($floor[.connections|tostring]) ms"
    ' "$ROWS"
    echo
    echo "In-flight run: $INFLIGHT connections, one request each, upstream answers after $((INFLIGHT_DELAY_MS / 1000)) s (header and route timeouts 60 s)."
    echo "Per request in flight: (peak RSS - idle RSS) / the client's peak in flight (the server held at most that many)."
    echo
    jq -r "$INFLIGHT_DEFS"'"- \(.ok) of \(.connections) answered 2xx (\(.non_2xx) non-2xx, \(.errors) errors); peak in flight (client side) \(.peak_in_flight); wall \(.seconds * 100 | round / 100) s; p50 \(.latency_ms.p50) ms, max \(.latency_ms.max) ms"
      , "- sagegate file descriptors: \(.fd_idle) idle, \(.fd_peak) peak (sampled every 0.2 s); upstream peak \(.upstream_fd_peak); open-file limit per process \(.nofile)"
      , "- sagegate RSS: \(.rss_idle_kb / 1024 | floor) MB idle, peak (VmHWM) \(.hwm_kb / 1024 | floor) MB: \(per_request) KB per request in flight"
      , held' "$OUT/inflight.json"
    if [[ -f $OUT/inflight-floor.json ]]; then
        jq -r "$INFLIGHT_DEFS"'"- stack-floor, same run on a fresh process: \(.ok) of \(.connections) answered 2xx (\(.non_2xx) non-2xx, \(.errors) errors); peak in flight \(.peak_in_flight); RSS \(.rss_idle_kb / 1024 | floor) MB idle, peak \(.hwm_kb / 1024 | floor) MB: \(per_request) KB per request in flight"
          , held' "$OUT/inflight-floor.json"
    fi
} >"$OUT/results.md"
cat "$OUT/results.md"
ln -sfn "$(basename "$OUT")" "$BENCH/out/latest"
log "results: $OUT/results.md (raw rows: $ROWS, $OUT/inflight.json${FLOOR:+, $OUT/inflight-floor.json})"

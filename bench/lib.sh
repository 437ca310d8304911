# bench/lib.sh — what the benchmark scripts share; sourced, never run. Set LOG_TAG before sourcing.
# log/die print with the script's tag; every process appended to PIDS is stopped on every exit path
# (TERM, then KILL after 10 s); free_port picks a free loopback port below the ephemeral range.

log() { printf '[%s %s] %s\n' "${LOG_TAG:-bench}" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+), where our own client sockets live
        if port_free "$p"; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

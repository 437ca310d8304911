#!/usr/bin/env bash
# bench/recommender.sh [--quick] [--items N,N] [--dtypes f16,int8] — the recommender against numpy's
# floor in one run: builds the release recommender, writes sample models of N items (dim 64), starts
# the real server on loopback pinned to CPU 0, drives every policy over HTTP, reads the server's CPU
# per request from /proc, times numpy's exhaustive f32 scoring (OpenBLAS sgemv + argpartition top-k,
# one thread, same core, same embeddings) and prints the ratios; reduced-precision models report
# recall@10 against f32. Writes bench/out/recommender-<time>/results.md (also printed).
# --baseline BIN adds another build's rows (e.g. main's) to the same interleaved rounds.
# Exit status: non-zero only when something is broken, never because a number is slow.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NUMPY_VERSION=2.3.5 # pinned: the floor must not move under us
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) ARGS+=(--items 10000 --seconds 4 --dtypes int8 --recall-users 50) ;;
        --items | --dtypes | --seconds | --baseline)
            ARGS+=("$1" "$2")
            shift
            ;;
        -h | --help)
            sed -n '2,9p' "$0"
            exit 0
            ;;
        *)
            echo "usage: bench/recommender.sh [--quick] [--items N,N] [--dtypes f16,int8] [--seconds S] [--baseline BIN]" >&2
            exit 2
            ;;
    esac
    shift
done

log() { printf '[recommender-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

log "building (cargo build --release -p recommender)"
(cd "$ROOT" && cargo build --release --quiet -p recommender) || {
    log "FAILED: build"
    exit 1
}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/recommender
[[ $BIN == /* ]] || BIN=$ROOT/$BIN

VENV=$ROOT/bench/out/venv-recommender
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c "import numpy, sys; sys.exit(numpy.__version__ != '$NUMPY_VERSION')" 2>/dev/null; then
    log "creating $VENV with numpy==$NUMPY_VERSION"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "numpy==$NUMPY_VERSION" || {
        log "FAILED: venv with numpy==$NUMPY_VERSION"
        exit 1
    }
fi

OUT=$ROOT/bench/out/recommender-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
PIN=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN=(--cpu 0 --driver-cpu 1)
fi
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# One BLAS thread: the floor is one core's, like the server's.
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$VENV/bin/python" "$ROOT/bench/recommender_bench.py" \
    --binary "$BIN" --out "$OUT" "${PIN[@]}" "${ARGS[@]}"
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
ln -sfn "$OUT" "$ROOT/bench/out/recommender-latest"

#!/usr/bin/env bash
# The local stack without Docker: the recommender with a generated sample model on 127.0.0.1:8081,
# and the gateway with config/ on 127.0.0.1:8080, reaching the recommender through the SageMaker
# Runtime endpoint override, exactly as it reaches SageMaker in AWS. Ctrl-C stops everything.
#
#   deploy/local-stack.sh            # one gateway, limits in process (limits.store: memory)
#   deploy/local-stack.sh --redis    # redis-server on 127.0.0.1:6380 (no persistence) and two
#                                    # gateways sharing its limits: 8080 (admin 9090) and 8082
#                                    # (admin 9091), like two Fargate tasks behind the ALB
#
# --redis needs the redis-server binary (Debian/Ubuntu: apt-get install redis-server; macOS: brew
# install redis); SAGEGATE_REDIS_PORT picks another port.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

redis=false
case "${1:-}" in
  --redis) redis=true ;;
  "") ;;
  *) echo "usage: $0 [--redis]" >&2; exit 2 ;;
esac
if $redis && ! command -v redis-server >/dev/null; then
  echo "--redis needs redis-server (apt-get install redis-server / brew install redis)" >&2
  exit 1
fi

cargo build --release --locked -p sagegate -p recommender
bin=target/release
model="${SAGEGATE_MODEL_DIR:-target/sample-model}"
[ -f "$model/model.json" ] || "$bin/recommender" sample-model --out "$model"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM

SM_MODEL_DIR="$model" SAGEMAKER_BIND_TO_PORT=8081 "$bin/recommender" serve --listen 127.0.0.1:8081 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:8081/ping >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "recommender failed to start" >&2; exit 1; }
  sleep 0.1
done

# Local credentials: the SDK still signs every call (SigV4); the recommender ignores the signature.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8081

if ! $redis; then
  echo "gateway on http://127.0.0.1:8080 (demo key: sagegate-demo-key-0123456789); Ctrl-C stops both" >&2
  "$bin/sagegate" serve --config config/gateway.yaml --keys config/keys.yaml --listen 127.0.0.1:8080
  exit
fi

port="${SAGEGATE_REDIS_PORT:-6380}"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
export SAGEGATE_LIMITS_STORE=redis SAGEGATE_REDIS_URL="redis://127.0.0.1:$port"
"$bin/sagegate" serve --config config/gateway.yaml --keys config/keys.yaml \
  --listen 127.0.0.1:8082 --admin-listen 127.0.0.1:9091 &
pids+=($!)
echo "gateways on http://127.0.0.1:8080 and :8082 sharing limits in redis://127.0.0.1:$port" \
  "(demo key: sagegate-demo-key-0123456789; usage: $bin/sagegate usage --admin http://127.0.0.1:9090); Ctrl-C stops all" >&2
"$bin/sagegate" serve --config config/gateway.yaml --keys config/keys.yaml --listen 127.0.0.1:8080

#!/usr/bin/env bash
# The local stack without Docker: the recommender with a generated sample model on 127.0.0.1:8081,
# and the gateway with config/ on 127.0.0.1:8080, reaching the recommender through the SageMaker
# Runtime endpoint override, exactly as it reaches SageMaker in AWS. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked -p sagegate -p recommender
bin=target/release
model="${SAGEGATE_MODEL_DIR:-target/sample-model}"
[ -f "$model/model.json" ] || "$bin/recommender" sample-model --out "$model"

SM_MODEL_DIR="$model" SAGEMAKER_BIND_TO_PORT=8081 "$bin/recommender" serve --listen 127.0.0.1:8081 &
recommender=$!
trap 'kill "$recommender" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:8081/ping >/dev/null 2>&1 && break
  kill -0 "$recommender" 2>/dev/null || { echo "recommender failed to start" >&2; exit 1; }
  sleep 0.1
done

# Local credentials: the SDK still signs every call (SigV4); the recommender ignores the signature.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8081
echo "gateway on http://127.0.0.1:8080 (demo key: sagegate-demo-key-0123456789); Ctrl-C stops both" >&2
"$bin/sagegate" serve --config config/gateway.yaml --keys config/keys.yaml --listen 127.0.0.1:8080

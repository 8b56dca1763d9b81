#!/usr/bin/env bash
# The served OpenAPI document against the service itself: Schemathesis (PyPI, pinned below,
# installed into its own virtualenv on first use) generates requests from
# /api/v1/openapi.json — examples, the coverage phase's edge cases, fuzzing, and stateful
# sequences that follow the document's links (a host's listing → a guest's booking → its
# payment …) — and checks every answer: no 5xx, the status, the content type, the body's
# schema and the headers all as documented. Each operation is called with the token of the
# role that uses it (admin, host, guest; scripts/schemathesis/schemathesis.toml). `/metrics`
# is checked on the ops listener, where it is served.
#
# Runs the embedded service (SQLite, in-process read models) on free ports with a scratch data
# dir. ZHILEGO_BIN: a built binary (CI builds it once), else it is built here.
# SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the cases per operation and phase, and so the
# run time (about three minutes on two cores). Exit status non-zero on any failure; the summary
# is printed, the JUnit report is written under $CI_ARTIFACTS_DIR (default target/artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSION=4.32.5
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/zhilego/schemathesis-$VERSION}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
ARTIFACTS="${CI_ARTIFACTS_DIR:-$ROOT/target/artifacts}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
SEED="${SCHEMATHESIS_SEED:-$RANDOM}"
mkdir -p "$ARTIFACTS"

if [ ! -x "$VENV/bin/st" ]; then
  echo "installing schemathesis $VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

if [ -z "${ZHILEGO_BIN:-}" ]; then
  cargo build -q -p zhilego
fi
BIN="${ZHILEGO_BIN:-$CARGO_TARGET_DIR/debug/zhilego}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DATA=$(mktemp -d)
SCRATCH=$(mktemp -d) # Schemathesis's and Hypothesis's caches, out of the work tree
PORT=$(free_port)
OPS_PORT=$(free_port)
LOG="$ARTIFACTS/schemathesis-server.log"
# The API's own limit is off so the generated traffic is not throttled (429 stays documented
# and is tested in the suite); everything else is as embedded mode ships.
export ZHILEGO_DATA_DIR="$DATA" ZHILEGO_LISTEN="127.0.0.1:$PORT" \
  ZHILEGO_METRICS_ADDR="127.0.0.1:$OPS_PORT" ZHILEGO_RATE_LIMIT=0 ZHILEGO_WEBHOOK_RATE_LIMIT=0
unset DATABASE_URL NATS_URL TELEGRAM_BOT_TOKEN TWILIO_ACCOUNT_SID
"$BIN" serve >"$LOG" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA" "$SCRATCH"; }
trap cleanup EXIT
up=0
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.2
done
if [ "$up" -ne 1 ]; then
  echo "the service did not start; its log:" >&2
  cat "$LOG" >&2
  exit 1
fi

uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }
ZHILEGO_ADMIN_TOKEN=$("$BIN" token --role admin --sub "$(uuid)")
ZHILEGO_HOST_TOKEN=$("$BIN" token --role host --sub "$(uuid)")
ZHILEGO_GUEST_TOKEN=$("$BIN" token --role guest --sub "$(uuid)")
export ZHILEGO_ADMIN_TOKEN ZHILEGO_HOST_TOKEN ZHILEGO_GUEST_TOKEN

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
st() {
  (cd "$SCRATCH" && "$VENV/bin/st" --no-color --config-file "$ROOT/scripts/schemathesis/schemathesis.toml" run "$@" \
    --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
    --request-timeout 30 --suppress-health-check all --warnings off)
}

echo "schemathesis $VERSION, seed $SEED, at most $MAX_EXAMPLES cases per operation and phase"
status=0
st "http://127.0.0.1:$PORT/api/v1/openapi.json" --url "http://127.0.0.1:$PORT" \
  --exclude-path /metrics --workers 2 \
  --report junit --report-junit-path "$ARTIFACTS/schemathesis-api.xml" || status=$?
st "http://127.0.0.1:$PORT/api/v1/openapi.json" --url "http://127.0.0.1:$OPS_PORT" \
  --include-path /metrics --phases examples,coverage,fuzzing \
  --report junit --report-junit-path "$ARTIFACTS/schemathesis-ops.xml" || status=$?
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "the service died during the run; its log: $LOG" >&2
  status=1
fi
exit "$status"

#!/usr/bin/env bash
# The production stack, natively (no Docker): the same programs and the repository's own
# configuration as docker-compose.yml, on free ports with their own data directories:
#   PostgreSQL 15 primary + a streaming replica made with pg_basebackup (deploy/postgres),
#   a three-node NATS JetStream cluster, `zhilego relay`, `zhilego project`, two
#   `zhilego serve` (ZHILEGO_PROJECTIONS=off, reads on the replica), nginx with
#   deploy/nginx (scripts/render-gateway.sh), Prometheus with deploy/prometheus.
# Then tests/stack/check.py drives it (what it proves is listed there) and prints the
# measurements. Needs root (PostgreSQL runs as `postgres`) and scripts/install-tools.sh.
#
#   tests/stack/run.sh            # CI (.ci/run)
#   STACK_KEEP=1 tests/stack/run.sh   # leave the stack running and print where it is
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zhilego/target}"
./scripts/install-tools.sh >/dev/null

pgbin="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin"
work=$(mktemp -d /tmp/zhilego-stack.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  status=$?
  if [ "${STACK_KEEP:-}" = 1 ]; then
    echo "stack left running in $work (pids ${pids[*]})"
    exit $status
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "$work"/pg1 "$work"/pg2 "$work"/pg3; do
    [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  [ -f "$work/gateway/run/nginx.pid" ] && kill "$(cat "$work/gateway/run/nginx.pid")" 2>/dev/null || true
  sleep 1
  if [ $status -ne 0 ]; then
    echo "== stack logs (last lines) ==" >&2
    for f in "$work"/logs/*.log "$work"/gateway/run/error.log; do
      [ -f "$f" ] && { echo "-- $f" >&2; tail -n 15 "$f" >&2; }
    done
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
mkdir -p "$work/logs"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port seconds
  for _ in $(seq 1 $(($2 * 10))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; return 1
}

# ZHILEGO_BIN: a built binary (CI builds it once); else build it. A private copy, so a build
# running beside the stack never swaps it underneath.
if [ -z "${ZHILEGO_BIN:-}" ]; then
  echo "== building zhilego"
  cargo build -q -p zhilego
  ZHILEGO_BIN="$CARGO_TARGET_DIR/debug/zhilego"
fi
cp "$ZHILEGO_BIN" "$work/zhilego"
zhilego="$work/zhilego"

echo "== PostgreSQL primary and streaming replica"
pg1=$(free_port); pg2=$(free_port)
install -d -o postgres -g postgres -m 0700 "$work/pg1" "$work/pg2" "$work/sockets"
chown postgres "$work/logs"
runuser -u postgres -- "$pgbin/initdb" --no-instructions -D "$work/pg1" -U postgres --auth=trust >/dev/null
cat >> "$work/pg1/postgresql.conf" <<CONF
port = $pg1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/sockets'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
fsync = off
CONF
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg1" -l "$work/logs/pg1.log" -w start >/dev/null
# The repository's own replication setup (docker-compose.yml runs it from initdb.d).
runuser -u postgres -- env PGHOST=127.0.0.1 PGPORT="$pg1" PGDATA="$work/pg1" POSTGRES_USER=postgres \
  POSTGRES_DB=postgres REPLICATION_PASSWORD=stack-test bash deploy/postgres/primary-init.sh >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg1" reload >/dev/null
runuser -u postgres -- env PGPASSWORD=stack-test "$pgbin/pg_basebackup" -h 127.0.0.1 -p "$pg1" \
  -U replicator -D "$work/pg2" -R -X stream -S replica_1 -c fast
sed -i "s/^port = $pg1/port = $pg2/" "$work/pg2/postgresql.conf"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg2" -l "$work/logs/pg2.log" -w start >/dev/null
psql -h 127.0.0.1 -p "$pg2" -U postgres -Atc "select 'replica in recovery: ' || pg_is_in_recovery()"

echo "== NATS: three JetStream nodes in one cluster"
declare -a nats_client nats_route
for i in 1 2 3; do nats_client[$i]=$(free_port); nats_route[$i]=$(free_port); done
routes="nats://127.0.0.1:${nats_route[1]},nats://127.0.0.1:${nats_route[2]},nats://127.0.0.1:${nats_route[3]}"
for i in 1 2 3; do
  mkdir -p "$work/nats$i"
  nats-server -a 127.0.0.1 -p "${nats_client[$i]}" -js -sd "$work/nats$i" --server_name "n$i" \
    --cluster_name zhilego --cluster "nats://127.0.0.1:${nats_route[$i]}" --routes "$routes" \
    >"$work/logs/nats$i.log" 2>&1 &
  pids+=($!); echo "${pids[-1]}" > "$work/nats$i.pid"
  disown  # check.py kills one on purpose; no job report for it
done
for i in 1 2 3; do wait_port "${nats_client[$i]}" 20; done
nats_url="nats://127.0.0.1:${nats_client[1]},nats://127.0.0.1:${nats_client[2]},nats://127.0.0.1:${nats_client[3]}"

echo "== zhilego: migrate, relay, project, two serve"
export DATABASE_URL="postgres://postgres@127.0.0.1:$pg1/zhilego"
replica_url="postgres://postgres@127.0.0.1:$pg2/zhilego_read"
export NATS_URL="$nats_url" ZHILEGO_NATS_REPLICAS=3
export ZHILEGO_JWT_SECRET="stack-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ZHILEGO_ENCRYPTION_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ZHILEGO_AUDIT_SIGNING_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ZHILEGO_TRUSTED_PROXIES=127.0.0.0/8 ZHILEGO_LOG_FORMAT=json RUST_LOG=warn
# Payments are not what this test is about: the sandbox, allowed explicitly, on loopback.
export KASPI_MODE=sandbox ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1
# The gateway enforces the client limits; the instances keep theirs (per client, through
# X-Forwarded-For), but the storms below come from one test process.
export ZHILEGO_RATE_LIMIT=0 ZHILEGO_WEBHOOK_RATE_LIMIT=0
# The storm's few guests book many stays each; the hold cap is tested in the suite.
export ZHILEGO_MAX_HOLDS_PER_GUEST=0
psql -h 127.0.0.1 -p "$pg1" -U postgres -qc "create database zhilego"
"$zhilego" migrate >"$work/logs/migrate.log" 2>&1
ops_relay=$(free_port); ops_project=$(free_port)
ZHILEGO_METRICS_ADDR="127.0.0.1:$ops_relay" "$zhilego" relay >"$work/logs/relay.log" 2>&1 &
pids+=($!); echo "${pids[-1]}" > "$work/relay.pid"
ZHILEGO_METRICS_ADDR="127.0.0.1:$ops_project" "$zhilego" project >"$work/logs/project.log" 2>&1 &
pids+=($!); echo "${pids[-1]}" > "$work/project.pid"
wait_port "$ops_project" 60
# `project` made the read database on the primary; the instances open the replica's copy.
for _ in $(seq 1 100); do
  [ "$(psql -h 127.0.0.1 -p "$pg2" -U postgres -Atc "select 1 from pg_database where datname = 'zhilego_read'")" = 1 ] && break
  sleep 0.1
done
declare -a api ops_api
for i in 1 2; do
  api[$i]=$(free_port); ops_api[$i]=$(free_port)
  READ_REPLICA_URLS="$replica_url" \
  ZHILEGO_LISTEN="127.0.0.1:${api[$i]}" ZHILEGO_METRICS_ADDR="127.0.0.1:${ops_api[$i]}" \
    ZHILEGO_PROJECTIONS=off ZHILEGO_RELAY=off ZHILEGO_DATA_DIR="$work/api$i" \
    "$zhilego" serve >"$work/logs/api$i.log" 2>&1 &
  pids+=($!); echo "${pids[-1]}" > "$work/api$i.pid"
done
for p in "${api[1]}" "${api[2]}" "$ops_relay" "$ops_project"; do wait_port "$p" 60; done

echo "== gateway (nginx, deploy/nginx)"
gw_http=$(free_port); gw_https=$(free_port)
conf=$(ZHILEGO_APIS="127.0.0.1:${api[1]},127.0.0.1:${api[2]}" GATEWAY_HTTP_PORT=$gw_http \
  GATEWAY_HTTPS_PORT=$gw_https scripts/render-gateway.sh "$work/gateway")
nginx -t -q -c "$conf" -p "$work/gateway/run"
nginx -c "$conf" -p "$work/gateway/run"
wait_port "$gw_https" 20

echo "== Prometheus (deploy/prometheus; scrape interval shortened to 2 s for the test)"
prom=$(free_port)
cp -r deploy/prometheus "$work/prometheus"
sed -i 's/^  scrape_interval: 15s/  scrape_interval: 2s/; s/^  scrape_timeout: 5s/  scrape_timeout: 2s/; s/^  evaluation_interval: 15s/  evaluation_interval: 2s/' "$work/prometheus/prometheus.yml"
printf -- '- targets: ["127.0.0.1:%s", "127.0.0.1:%s"]\n' "${ops_api[1]}" "${ops_api[2]}" > "$work/prometheus/targets/api.yml"
printf -- '- targets: ["127.0.0.1:%s"]\n' "$ops_project" > "$work/prometheus/targets/projector.yml"
printf -- '- targets: ["127.0.0.1:%s"]\n' "$ops_relay" > "$work/prometheus/targets/relay.yml"
printf -- '[]\n' > "$work/prometheus/targets/alertmanager.yml"
sed -i "s/targets: \[localhost:9090\]/targets: [\"127.0.0.1:$prom\"]/" "$work/prometheus/prometheus.yml"
prometheus --config.file="$work/prometheus/prometheus.yml" --storage.tsdb.path="$work/prometheus/data" \
  --web.listen-address="127.0.0.1:$prom" >"$work/logs/prometheus.log" 2>&1 &
pids+=($!)
wait_port "$prom" 30

cat > "$work/stack.json" <<JSON
{
  "work": "$work", "pgbin": "$pgbin", "zhilego": "$zhilego",
  "pg_primary": $pg1, "pg_replica": $pg2,
  "api": [${api[1]}, ${api[2]}], "ops": [${ops_api[1]}, ${ops_api[2]}, $ops_relay, $ops_project],
  "gateway_https": $gw_https, "gateway_http": $gw_http, "prometheus": $prom,
  "nats": [${nats_client[1]}, ${nats_client[2]}, ${nats_client[3]}],
  "nats_pids": ["$work/nats1.pid", "$work/nats2.pid", "$work/nats3.pid"]
}
JSON
echo "== checks"
python3 tests/stack/check.py "$work/stack.json"

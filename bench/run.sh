#!/usr/bin/env bash
# The issue-3 benchmark suite on one machine: installs wrk if missing, builds the service and
# the bench (release), seeds one store and runs search, relay, lag and rebuild over it, then
# drops the store. Reports go to bench/results/<mode>.txt.
#
#   bench/run.sh                 # everything
#   bench/run.sh search relay    # only these modes (seed runs first whenever a mode needs it)
#   bench/run.sh payments        # Kaspi payments on SQLite and PostgreSQL (own scratch stores)
#   bench/run.sh bots            # Telegram and WhatsApp bots on SQLite and PostgreSQL (fake APIs)
#   bench/run.sh admin           # an admin's phone search among 50,000 users, both backends
#   bench/run.sh ical            # 5,000 calendar feeds served locally, synced in < 60 s
#
# Needs PostgreSQL (PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres) and, for
# relay and lag, NATS with JetStream (NATS_URL, default nats://127.0.0.1:4222).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zhilego/target}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(search relay lag rebuild)

if ! command -v wrk >/dev/null; then
    echo "== installing wrk"
    apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }
fi

cargo build --release -p zhilego -p zhilego-bench
B="$CARGO_TARGET_DIR/release/zhilego-bench"

db="zhilego_bench_suite_$(date +%s)"
url="${PG_ADMIN_URL%/*}/$db"
needs_seed=0
for m in "${modes[@]}"; do
    case "$m" in search|relay|rebuild) needs_seed=1 ;; esac
done
cleanup() {
    rm -f "${stamp:-}"
    [ "$needs_seed" = 1 ] && "$B" drop --database-url "$url" --pg-admin-url "$PG_ADMIN_URL" || true
}
trap cleanup EXIT
# The reports this run writes are the ones newer than this file.
stamp=$(mktemp)
if [ "$needs_seed" = 1 ]; then
    "$B" seed --database-url "$url" --pg-admin-url "$PG_ADMIN_URL"
fi
for m in "${modes[@]}"; do
    case "$m" in
        search)  "$B" search --database-url "$url" --pg-admin-url "$PG_ADMIN_URL" ;;
        relay)   "$B" relay --database-url "$url" --pg-admin-url "$PG_ADMIN_URL" --nats-url "$NATS_URL" ;;
        lag)     "$B" lag --pg-admin-url "$PG_ADMIN_URL" --nats-url "$NATS_URL" ;;
        rebuild) "$B" rebuild --database-url "$url" --pg-admin-url "$PG_ADMIN_URL" ;;
        audit) "$B" audit --pg-admin-url "$PG_ADMIN_URL" ;;
        booking) "$B" booking --pg-admin-url "$PG_ADMIN_URL" ;;
        payments) "$B" payments --pg-admin-url "$PG_ADMIN_URL" ;;
        bots)    "$B" bots --pg-admin-url "$PG_ADMIN_URL" ;;
        admin)   "$B" admin --pg-admin-url "$PG_ADMIN_URL" ;;
        ical)    "$B" ical --pg-admin-url "$PG_ADMIN_URL" ;;
        analytics) "$B" analytics --pg-admin-url "$PG_ADMIN_URL" ;;
        *) echo "unknown mode $m (search, relay, lag, rebuild, booking, payments, bots, audit, admin, ical, analytics)" >&2; exit 2 ;;
    esac
done

# Every goal of this run on one line each: the figure, the goal, the anchor measured in the same
# run, and the verdict (the reports' `goal:` lines).
echo
echo "== goals of this run (figure | goal | anchor, same run | verdict)"
find bench/results -name '*.txt' -newer "$stamp" -exec grep -h -E '^ *goal: ' {} + | sed -E 's/^ *goal: +//' || true

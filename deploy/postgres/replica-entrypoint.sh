#!/bin/bash
# The streaming replica (docker-compose.yml `postgres-replica`): on first start it clones the
# primary with pg_basebackup (-R writes standby.signal and primary_conninfo, on the slot
# primary-init.sh made), then runs as a hot standby that serves the read queries.
set -euo pipefail
: "${PRIMARY_HOST:?}" "${REPLICATION_PASSWORD:?}" "${PGDATA:?}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  until pg_isready -h "$PRIMARY_HOST" -q; do sleep 1; done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" -U replicator \
    -D "$PGDATA" -R -X stream -S replica_1 -c fast --progress
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on

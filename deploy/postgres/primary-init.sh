#!/bin/bash
# Runs once, when the primary's data directory is first made (the postgres image's
# /docker-entrypoint-initdb.d): a replication role, a physical slot for the replica (so the
# primary keeps the WAL the replica has not received), and the replica's access in pg_hba.
# The stack test does the same natively (tests/stack/run.sh).
set -euo pipefail
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SELECT pg_create_physical_replication_slot('replica_1');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"

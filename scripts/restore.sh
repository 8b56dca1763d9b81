#!/usr/bin/env bash
# Restores an encrypted backup (scripts/backup.sh) into an empty database, then makes it
# servable: advances the new server's transaction counter past the restored events' ids (the
# store reads in commit-safe order by transaction id, docs/runbook.md), verifies every hash
# chain, and rebuilds the read models.
#
#   ZHILEGO_BACKUP_IDENTITY=key.txt DATABASE_URL=postgres://…/empty scripts/restore.sh FILE
#
# The other settings (ZHILEGO_JWT_SECRET, ZHILEGO_ENCRYPTION_KEY, …) are those the service runs
# with: the encryption key is what opens personal data, so restore it from its own backup.
# ZHILEGO_BIN: the zhilego binary (default: zhilego on PATH).
set -euo pipefail
file=${1:?usage: restore.sh FILE}
: "${DATABASE_URL:?set DATABASE_URL to the empty database to restore into}"
: "${ZHILEGO_BACKUP_IDENTITY:?set ZHILEGO_BACKUP_IDENTITY to the age identity file}"
zhilego=${ZHILEGO_BIN:-zhilego}

age -d -i "$ZHILEGO_BACKUP_IDENTITY" "$file" | pg_restore --no-owner --no-privileges --exit-on-error --dbname="$DATABASE_URL"

needed=$(psql "$DATABASE_URL" -Atc "select coalesce(max(xid::text::bigint), 0) + 1 - pg_current_xact_id()::text::bigint from events")
if [ "$needed" -gt 0 ]; then
  if [ "$needed" -gt 50000000 ]; then
    echo "restore: the server's transaction counter is $needed behind the restored events; stop it and" >&2
    echo "         advance it with pg_resetwal -x (docs/operations.md \"Backups\"), then run this again" >&2
    exit 1
  fi
  echo "restore: advancing the transaction counter by $needed"
  psql "$DATABASE_URL" -qc "do \$\$ begin for i in 1..$needed loop perform pg_current_xact_id(); commit; end loop; end \$\$"
fi
"$zhilego" audit verify
"$zhilego" projections rebuild all
echo "restore: $file restored into the database, chains verified, read models rebuilt"

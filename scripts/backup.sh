#!/usr/bin/env bash
# An encrypted backup of the event store: pg_dump (custom format, one consistent snapshot)
# piped straight into age, so no readable byte of it touches a disk or leaves the host.
#
#   DATABASE_URL=postgres://… ZHILEGO_BACKUP_RECIPIENTS="age1… age1…" scripts/backup.sh FILE
#
# ZHILEGO_BACKUP_RECIPIENTS: age public keys (space- or comma-separated), or
# ZHILEGO_BACKUP_RECIPIENTS_FILE: a file of them. The matching private keys live off the host
# (docs/operations.md "Backups"). The read database is derived data and is not backed up: a
# restore rebuilds it (scripts/restore.sh).
set -euo pipefail
out=${1:?usage: backup.sh FILE}
: "${DATABASE_URL:?set DATABASE_URL to the event store}"
recipients=()
if [ -n "${ZHILEGO_BACKUP_RECIPIENTS_FILE:-}" ]; then
  recipients+=(-R "$ZHILEGO_BACKUP_RECIPIENTS_FILE")
fi
for r in ${ZHILEGO_BACKUP_RECIPIENTS//,/ }; do recipients+=(-r "$r"); done
if [ ${#recipients[@]} -eq 0 ]; then
  echo "backup: set ZHILEGO_BACKUP_RECIPIENTS (age public keys) or ZHILEGO_BACKUP_RECIPIENTS_FILE" >&2
  exit 2
fi
tmp="$out.partial"
trap 'rm -f "$tmp"' EXIT
umask 077
pg_dump --format=custom --no-owner --no-privileges "$DATABASE_URL" | age "${recipients[@]}" -o "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "backup: $out ($(stat -c %s "$out") bytes, encrypted with age)"

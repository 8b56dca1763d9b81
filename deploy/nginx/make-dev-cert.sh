#!/bin/sh
# A self-signed development certificate for the gateway (localhost), made once at start when
# DIR has none: docker-compose.yml's `gateway-cert` runs it, so does the stack test. Production
# mounts a real certificate at the same paths instead.
set -eu
dir=${1:-/etc/nginx/certs}
mkdir -p "$dir"
if [ -s "$dir/privkey.pem" ] && [ -s "$dir/fullchain.pem" ]; then
  echo "certificate present in $dir"
  exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/privkey.pem" -out "$dir/fullchain.pem" 2>/dev/null
chmod 600 "$dir/privkey.pem"
echo "development certificate made in $dir (30 days, localhost)"

#!/usr/bin/env bash
# Renders the gateway's nginx configuration (deploy/nginx) into a directory of its own, as the
# nginx image does with its templates, so it runs natively: `.ci/run` checks it with `nginx -t`
# and the stack test serves with it. Usage: scripts/render-gateway.sh DIR
# Takes ZHILEGO_APIS (host:port of each API instance, comma-separated), GATEWAY_HTTP_PORT and
# GATEWAY_HTTPS_PORT from the environment (defaults: two local instances, ports 8088/8443)
# and makes a development certificate in DIR/certs when there is none.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir=${1:?usage: render-gateway.sh DIR}
mkdir -p "$dir/conf.d" "$dir/run" "$dir/certs"
dir="$(cd "$dir" && pwd)"
ZHILEGO_API_UPSTREAMS=""
IFS=, read -ra apis <<< "${ZHILEGO_APIS:-127.0.0.1:8080,127.0.0.1:8082}"
for a in "${apis[@]}"; do
  ZHILEGO_API_UPSTREAMS+="server $a max_fails=3 fail_timeout=10s; "
done
export ZHILEGO_API_UPSTREAMS
export GATEWAY_HTTP_PORT=${GATEWAY_HTTP_PORT:-8088}
export GATEWAY_HTTPS_PORT=${GATEWAY_HTTPS_PORT:-8443}
export GATEWAY_CERT_DIR="$dir/certs" GATEWAY_CONF_DIR="$dir/conf.d" GATEWAY_RUN_DIR="$dir/run"
export GATEWAY_ACCESS_LOG="${GATEWAY_ACCESS_LOG:-$dir/run/access.log}"
vars='${ZHILEGO_API_UPSTREAMS} ${GATEWAY_HTTP_PORT} ${GATEWAY_HTTPS_PORT} ${GATEWAY_CERT_DIR} ${GATEWAY_CONF_DIR} ${GATEWAY_RUN_DIR} ${GATEWAY_ACCESS_LOG}'
envsubst "$vars" < "$repo/deploy/nginx/templates/zhilego.conf.template" > "$dir/conf.d/zhilego.conf"
envsubst "$vars" < "$repo/deploy/nginx/nginx.conf" > "$dir/nginx.conf"
if [ ! -s "$dir/certs/privkey.pem" ]; then
  "$repo/deploy/nginx/make-dev-cert.sh" "$dir/certs" >/dev/null
fi
echo "$dir/nginx.conf"

#!/usr/bin/env bash
# The deployment configuration, checked with the programs that will run it (no Docker here):
# the compose file against the compose specification's schema and the project's rules, the
# gateway with `nginx -t`, Prometheus' configuration and alert rules with promtool (rules'
# unit tests included), Alertmanager's routing with amtool, and the Kubernetes manifests
# (kustomize base and overlays) against the Kubernetes schemas, offline.
# Installs what is missing through scripts/install-tools.sh. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-tools.sh

step() { printf -- '-- %s\n' "$*"; }

step "compose: the specification's schema, then the project's rules"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
python3 scripts/check-compose.py docker-compose.yml

step "gateway: nginx -t on the rendered configuration"
gw=$(mktemp -d)
trap 'rm -rf "$gw"' EXIT
conf=$(scripts/render-gateway.sh "$gw/gateway")
nginx -t -q -c "$conf" -p "$gw/gateway/run"
echo "nginx: $conf ok"

step "prometheus: configuration, rules, rules' unit tests"
promtool check config --syntax-only deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.test.yml

step "alertmanager"
amtool check-config deploy/alertmanager/alertmanager.yml

step "grafana: the dashboard's queries name exported metrics"
python3 scripts/check-metrics-names.py --static

step "kubernetes: kustomize builds, offline schema validation"
python3 scripts/check-kubernetes.py deploy/k8s

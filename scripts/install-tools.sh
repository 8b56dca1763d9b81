#!/usr/bin/env bash
# Installs the programs the configuration checks and the stack test run natively (no Docker
# here): nginx (the gateway), Prometheus with promtool, Alertmanager with amtool, age (backup
# encryption) and kubectl (its built-in kustomize renders deploy/k8s offline) from Debian;
# check-jsonschema (the compose specification's schema) and
# kubernetes-validate (the Kubernetes manifests, offline) from PyPI. Idempotent: installs only
# what is missing. Used by .ci/run and by developers; never needed to run the service.
set -euo pipefail

need_apt=()
for pair in nginx:nginx promtool:prometheus amtool:prometheus-alertmanager age:age kubectl:kubectl wrk:wrk; do
  bin=${pair%%:*} pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing from Debian: ${need_apt[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  # Only the programs: the packages' own services are not started (policy-rc.d), the stack test
  # starts private instances on free ports.
  printf '#!/bin/sh\nexit 101\n' | $sudo_ tee /usr/sbin/policy-rc.d >/dev/null
  $sudo_ chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  $sudo_ rm -f /usr/sbin/policy-rc.d
fi

need_pip=()
command -v check-jsonschema >/dev/null 2>&1 || need_pip+=("check-jsonschema==0.33.*")
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate==1.33.*")
python3 -c 'import yaml' 2>/dev/null || need_pip+=(pyyaml)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing from PyPI: ${need_pip[*]}"
  python3 -m pip install --quiet "${need_pip[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

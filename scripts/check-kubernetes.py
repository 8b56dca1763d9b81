#!/usr/bin/env python3
"""Renders every kustomization under deploy/k8s (the base and each overlay) with
`kubectl kustomize`, validates the result offline against the Kubernetes schemas
(kubernetes-validate --strict), and checks the project's rules on it:

- the API Deployment rolls with maxUnavailable 0, is ready on /readyz and alive on /healthz,
  drains in a preStop hook, and has an HPA on CPU and a PodDisruptionBudget;
- the projector, the relay and the migration Job exist; every container has resource
  requests and a memory limit, runs as non-root without privilege escalation;
- configuration comes from the ConfigMap and the Secret `zhilego-secrets`, which the
  repository never defines; a NetworkPolicy denies by default.

    python3 scripts/check-kubernetes.py deploy/k8s
"""
import os
import subprocess
import sys
import tempfile

import yaml


def kustomizations(root):
    for dirpath, _, files in os.walk(root):
        if "kustomization.yaml" in files:
            yield dirpath


def check(docs, where, problem):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    if "Secret" in by_kind:
        problem(where, "defines a Secret: secrets are the operator's, never in the repository")
    for name in ("zhilego-api", "zhilego-projector", "zhilego-relay"):
        if name not in by_kind.get("Deployment", {}):
            problem(where, f"Deployment {name} is missing")
    if "zhilego-migrate" not in by_kind.get("Job", {}):
        problem(where, "the migration Job is missing")
    api = by_kind.get("Deployment", {}).get("zhilego-api")
    if api:
        strategy = api["spec"].get("strategy", {})
        if strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            problem(where, "zhilego-api must roll with maxUnavailable: 0")
        c = api["spec"]["template"]["spec"]["containers"][0]
        if (c.get("readinessProbe", {}).get("httpGet", {}).get("path")) != "/readyz":
            problem(where, "zhilego-api's readiness probe must be /readyz")
        if (c.get("livenessProbe", {}).get("httpGet", {}).get("path")) != "/healthz":
            problem(where, "zhilego-api's liveness probe must be /healthz")
        if "preStop" not in c.get("lifecycle", {}):
            problem(where, "zhilego-api needs a preStop drain")
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("zhilego-api")
    if not hpa or not any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", [])):
        problem(where, "zhilego-api needs an HPA on CPU")
    if "zhilego-api" not in by_kind.get("PodDisruptionBudget", {}):
        problem(where, "zhilego-api needs a PodDisruptionBudget")
    policies = by_kind.get("NetworkPolicy", {}).values()
    if not any(p["spec"].get("podSelector") == {} and not p["spec"].get("ingress") for p in policies):
        problem(where, "a default-deny NetworkPolicy is missing")
    for kind in ("Deployment", "Job"):
        for name, obj in by_kind.get(kind, {}).items():
            pod = obj["spec"]["template"]["spec"]
            if not pod.get("securityContext", {}).get("runAsNonRoot"):
                problem(where, f"{kind} {name} must run as non-root")
            for c in pod["containers"]:
                res = c.get("resources", {})
                if not res.get("requests") or "memory" not in res.get("limits", {}):
                    problem(where, f"{name}/{c['name']} needs resource requests and a memory limit")
                if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                    problem(where, f"{name}/{c['name']} must set allowPrivilegeEscalation: false")
                refs = {e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])}
                if "zhilego-secrets" not in refs:
                    problem(where, f"{name}/{c['name']} must take its secrets from zhilego-secrets")


def main(argv):
    root = argv[1] if len(argv) > 1 else "deploy/k8s"
    problems = []
    problem = lambda where, msg: problems.append(f"{where}: {msg}")
    dirs = sorted(kustomizations(root))
    if not dirs:
        print(f"check-kubernetes: no kustomization under {root}", file=sys.stderr)
        return 2
    for d in dirs:
        rendered = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True)
        if rendered.returncode != 0:
            problem(d, f"kustomize failed: {rendered.stderr.strip()}")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(rendered.stdout)
        try:
            valid = subprocess.run(["kubernetes-validate", "--strict", "--quiet", f.name],
                                   capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        if valid.returncode != 0:
            problem(d, "schema validation failed:\n" + (valid.stdout + valid.stderr).strip())
        docs = [x for x in yaml.safe_load_all(rendered.stdout) if x]
        if d.rstrip("/").endswith("base") or "overlays" in d:
            check(docs, d, problem)
        print(f"check-kubernetes: {d}: {len(docs)} objects rendered and validated")
    for p in problems:
        print(f"check-kubernetes: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

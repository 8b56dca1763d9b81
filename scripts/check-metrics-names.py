#!/usr/bin/env python3
"""Every metric the Grafana dashboard and the Prometheus alert rules read must exist.

    python3 scripts/check-metrics-names.py --static
        each name is one the service declares (api/src/telemetry.rs, METRICS: every metric
        the code records is declared there, a unit test checks that side);
    python3 scripts/check-metrics-names.py URL [URL ...]
        each name is exported, with a sample, by at least one of the running processes whose
        /metrics URLs are given (the stack test runs this against its processes).
"""
import glob
import json
import os
import re
import sys
import urllib.request

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NAME = re.compile(r"\bzhilego_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def base(name):
    for s in SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def referenced():
    """{metric: [where it is read]} for the dashboards and the alert rules."""
    out = {}
    for path in glob.glob(os.path.join(ROOT, "deploy/grafana/dashboards/*.json")):
        with open(path, encoding="utf-8") as f:
            for panel in json.load(f).get("panels", []):
                for t in panel.get("targets", []):
                    for n in NAME.findall(t.get("expr", "")):
                        out.setdefault(base(n), []).append(f"{os.path.basename(path)}: {panel['title']}")
    for path in glob.glob(os.path.join(ROOT, "deploy/prometheus/rules/*.yml")):
        with open(path, encoding="utf-8") as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    for n in NAME.findall(rule["expr"]):
                        out.setdefault(base(n), []).append(f"{os.path.basename(path)}: {rule.get('alert') or rule.get('record')}")
    return out


def declared():
    with open(os.path.join(ROOT, "api/src/telemetry.rs"), encoding="utf-8") as f:
        return set(re.findall(r'\(\s*"(zhilego_[a-z0-9_]+)",\s*Kind::', f.read()))


def exported(urls):
    names = set()
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as res:
            for line in res.read().decode().splitlines():
                if line and not line.startswith("#"):
                    names.add(base(re.split(r"[{ ]", line, 1)[0]))
    return names


def main(argv):
    wanted = referenced()
    if not wanted:
        print("check-metrics-names: the dashboards and rules read no zhilego metric?", file=sys.stderr)
        return 2
    if argv[1:] == ["--static"]:
        have, what = declared(), "declared in api/src/telemetry.rs"
    elif len(argv) > 1:
        have, what = exported(argv[1:]), f"exported by {', '.join(argv[1:])}"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    missing = {n: w for n, w in wanted.items() if n not in have}
    for n, where in sorted(missing.items()):
        print(f"check-metrics-names: {n} (read by {'; '.join(sorted(set(where)))}) is not {what}", file=sys.stderr)
    if missing:
        return 1
    print(f"check-metrics-names: all {len(wanted)} metrics the dashboard and the rules read are {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env bash
# Line coverage of the workspace by its own tests, per crate and in total, with
# cargo-llvm-cov (LLVM source-based coverage; pinned, installed by
# scripts/install-cargo-tools.sh with rustup's llvm-tools). Runs the same tests as
# scripts/test, instrumented, including the `zhilego` processes the tests start; set
# ZHILEGO_TEST_PG_URL and ZHILEGO_TEST_NATS_URL as for scripts/test, or the service-backed
# half is skipped and not counted.
#
# Not part of .ci/run: it builds the workspace a second time (instrumented) and runs the whole
# suite again, slower, which would take CI past its 30-minute budget (docs/supply-chain.md).
#
# Usage: scripts/coverage.sh [--html] [extra cargo test arguments]
# COVERAGE_PACKAGES="domain bots" measures only those crates' own tests (a quicker look).
# Writes to $COVERAGE_DIR (default $CARGO_TARGET_DIR/coverage, else target/coverage):
# summary.json (cargo-llvm-cov's), lcov.info, by-crate.txt (the table printed), html/ with
# --html. The instrumented build lives in <target dir>/llvm-cov-target.
set -euo pipefail
cd "$(dirname "$0")/.."

html=0
if [ "${1:-}" = "--html" ]; then
  html=1
  shift
fi

PATH="$(./scripts/install-cargo-tools.sh --print-path llvm-cov):$PATH"
target=${CARGO_TARGET_DIR:-target}
out=${COVERAGE_DIR:-$target/coverage}
mkdir -p "$out"

# As scripts/test: the concurrency tests hold 1,000 client and 1,000 server sockets at once,
# and the audit verifier test needs PyPI's `cryptography`.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if ! python3 -c 'import cryptography' 2>/dev/null; then
  python3 -m pip install --quiet --user cryptography || python3 -m pip install --quiet --user --break-system-packages cryptography
fi

# Test support and the benchmarks are not the service: measured, shown, not in the total.
ignore='(^|/)(tests|testkit|bench)/'

scope=(--workspace)
if [ -n "${COVERAGE_PACKAGES:-}" ]; then
  scope=()
  for p in $COVERAGE_PACKAGES; do scope+=(-p "$p"); done
fi

started=$(date +%s)
cargo llvm-cov clean --workspace
cargo llvm-cov "${scope[@]}" --no-report "$@"
cargo llvm-cov report --json --summary-only --output-path "$out/summary.json"
cargo llvm-cov report --lcov --output-path "$out/lcov.info"
if [ "$html" = 1 ]; then
  cargo llvm-cov report --html --output-dir "$out"
fi

python3 - "$out/summary.json" "$PWD" "$ignore" "${COVERAGE_PACKAGES:-}" <<'EOF' | tee "$out/by-crate.txt"
import json, re, sys
from collections import defaultdict

summary, root, ignore = sys.argv[1], sys.argv[2].rstrip("/") + "/", re.compile(sys.argv[3])
# With COVERAGE_PACKAGES, only those crates count; code of others their tests reach is shown apart.
folders = {"zhilego": "api", "zhilego-testkit": "testkit", "zhilego-bench": "bench"}
measured = {folders.get(p, p) for p in sys.argv[4].split()}
files = json.load(open(summary))["data"][0]["files"]
by_crate = defaultdict(lambda: [0, 0])  # crate dir -> [lines, covered]
outside = defaultdict(lambda: [0, 0])
for f in files:
    path = f["filename"]
    if not path.startswith(root):
        continue
    rel = path[len(root):]
    lines = f["summary"]["lines"]
    support = ignore.search(rel)
    if support:
        into, key = outside, rel[: support.end()]
    elif measured and rel.split("/")[0] not in measured:
        into, key = outside, rel.split("/")[0] + " (not measured)"
    else:
        into, key = by_crate, rel.split("/")[0]
    into[key][0] += lines["count"]
    into[key][1] += lines["covered"]

def row(name, lines, covered):
    pct = 100.0 * covered / lines if lines else 0.0
    return f"{name:<28}{lines:>9}{covered:>9}{pct:>8.1f} %"

print(f"{'crate':<28}{'lines':>9}{'covered':>9}{'':>10}")
total = [0, 0]
for crate in sorted(by_crate):
    lines, covered = by_crate[crate]
    total[0] += lines
    total[1] += covered
    print(row(crate, lines, covered))
print(row("total (the crates measured)" if measured else "total (the service)", *total))
for name in sorted(outside):
    print(row(name, *outside[name]) + "  (not in the total)")
EOF
echo "coverage measured in $(( $(date +%s) - started )) s; reports in $out"

#!/usr/bin/env bash
# Installs the cargo subcommands the quality checks use, at pinned versions, from crates.io
# with `cargo install --locked` (their own lock files, so the same build every time):
#   deny      cargo-deny (licences, bans, sources, advisories; deny.toml), used by .ci/run
#   llvm-cov  cargo-llvm-cov and rustup's llvm-tools component, used by scripts/coverage.sh
# Each goes to its own folder under ~/.cache/zhilego/tools (ZHILEGO_TOOLS_DIR), named by its
# version, so a machine builds it once and CI reuses it; bumping a version below builds the
# new one beside the old. Prints nothing when all is in place, except the PATH entries with
# --print-path. Usage: scripts/install-cargo-tools.sh [--print-path] deny|llvm-cov ...
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
CARGO_LLVM_COV_VERSION=0.9.1

tools_dir=${ZHILEGO_TOOLS_DIR:-$HOME/.cache/zhilego/tools}
print_path=0
paths=()

install_crate() { # crate, version, binary
  local crate=$1 version=$2 bin=$3 root="$tools_dir/$1-$2"
  if [ ! -x "$root/bin/$bin" ]; then
    echo "building $crate $version from crates.io (once per machine, into $root)" >&2
    # Its own target dir, outside the workspace's, removed afterwards.
    local build
    build=$(mktemp -d)
    CARGO_TARGET_DIR="$build" cargo install --locked --quiet --root "$root.partial" \
      "$crate@$version" >&2 || { rm -rf "$build" "$root.partial"; return 1; }
    rm -rf "$build" "$root"
    mv "$root.partial" "$root"
  fi
  paths+=("$root/bin")
}

for arg in "$@"; do
  case $arg in
    --print-path) print_path=1 ;;
    deny) install_crate cargo-deny "$CARGO_DENY_VERSION" cargo-deny ;;
    llvm-cov)
      # The profiler's raw data is read by the llvm-profdata/llvm-cov of the compiler's own
      # LLVM, which rustup ships as a component.
      if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
        echo "adding rustup's llvm-tools component" >&2
        rustup component add llvm-tools >&2
      fi
      install_crate cargo-llvm-cov "$CARGO_LLVM_COV_VERSION" cargo-llvm-cov
      ;;
    *)
      echo "usage: $0 [--print-path] deny|llvm-cov ..." >&2
      exit 2
      ;;
  esac
done

if [ "$print_path" = 1 ] && [ ${#paths[@]} -gt 0 ]; then
  (IFS=:; echo "${paths[*]}")
fi

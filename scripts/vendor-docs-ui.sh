#!/usr/bin/env bash
# Vendors the API reference UI served at /api/v1/docs: the browser build of the npm package
# @scalar/api-reference (MIT), pinned by version and by the tarball's SHA-256, copied into
# api/src/docs/ and compiled into the binary, so the page needs no network. Run it only to move
# to another version (change both pins); CI never runs it. Needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.72.1
SHA256=b86884e6251eed57234f1a62732a5e6303700a5b4d159192a5a5dd003b854378
DEST=api/src/docs

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@scalar/api-reference@$VERSION" >/dev/null)
tarball="$work/scalar-api-reference-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet
tar -xzf "$tarball" -C "$work" package/dist/browser/standalone.js package/package.json
license=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["license"])' "$work/package/package.json")
[ "$license" = MIT ] || { echo "the package's license is now $license: review it" >&2; exit 1; }

# The bundle is self-contained; its source map is not shipped, so its reference goes.
grep -v '^//# sourceMappingURL=' "$work/package/dist/browser/standalone.js" >"$DEST/scalar.js"
cat >"$DEST/scalar.LICENSE" <<LICENSE
@scalar/api-reference $VERSION (npm), dist/browser/standalone.js, served as scalar.js.

MIT License

Copyright (c) 2023-present Scalar

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
LICENSE
echo "vendored @scalar/api-reference $VERSION into $DEST/scalar.js ($(wc -c <"$DEST/scalar.js") bytes)"

#!/usr/bin/env bash
# Builds the go-mysql peer of make bench into target/bench-bin and prints the binary's path (last stdout line).
# Modules come from the Go module proxy, pinned by go.mod and go.sum.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
out="$here/../../target/bench-bin"
mkdir -p "$out"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
(cd "$here" && CGO_ENABLED=0 "$GO" build -trimpath -o "$out/go-mysql-consumer" .) >&2
echo "$out/go-mysql-consumer"

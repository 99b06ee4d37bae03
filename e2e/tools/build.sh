#!/usr/bin/env bash
# Build helm, promtool and the prometheus server from Go modules into a cache directory, and print that
# directory (last stdout line).
#
#   build.sh [--force] [helm|promtool|prometheus]...   build what is missing or stale (default: all three)
#   build.sh --check [NAME]...                         exit 0 if they are up to date, 1 if not
#
# TOOLS_BIN_DIR  output directory (default: <repo>/target/tools)
# GO             go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# Versions are what the wrapper modules pin: helm/go.mod (helm.sh/helm/v4, cmd/helm) and prometheus/go.mod
# (github.com/prometheus/prometheus, cmd/promtool and cmd/prometheus), each with a `tool` directive. To move to
# another version: `cd e2e/tools/helm && GOTOOLCHAIN=local go get helm.sh/helm/v4@vX.Y.Z && GOTOOLCHAIN=local go
# mod tidy`. A stamp per module holds a hash of its go.mod + go.sum and of the build recipe, so a rerun with
# nothing changed only hashes a few files. The prometheus server is built without the `builtinassets` tag (its
# React UI is not in the Go module): the HTTP API, /metrics and scraping work, the web UI pages do not.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
BIN_DIR=${TOOLS_BIN_DIR:-$REPO/target/tools}

# Bump when the flags below change, to force a rebuild.
RECIPE="r2 CGO_ENABLED=0 -trimpath -ldflags=-s,-w,version tags"

log() { echo "build.sh: $*" >&2; }
die() {
    echo "build.sh: error: $*" >&2
    exit 1
}
usage() {
    echo "usage: $(basename "$0") [--force | --check] [helm|promtool|prometheus]..." >&2
    exit 2
}

force=0 check=0 wanted=()
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --check) check=1 ;;
        helm | promtool | prometheus) wanted+=("$1") ;;
        *) usage ;;
    esac
    shift
done
[ ${#wanted[@]} -gt 0 ] || wanted=(helm promtool prometheus)

# module_of NAME: the wrapper module (directory under e2e/tools) that builds NAME
module_of() {
    case "$1" in
        helm) echo helm ;;
        promtool | prometheus) echo prometheus ;;
    esac
}

# package_of NAME: the Go package of NAME's main
package_of() {
    case "$1" in
        helm) echo helm.sh/helm/v4/cmd/helm ;;
        promtool) echo github.com/prometheus/prometheus/cmd/promtool ;;
        prometheus) echo github.com/prometheus/prometheus/cmd/prometheus ;;
    esac
}

# required MODULE_DIR MODULE_PATH: the version go.mod requires of MODULE_PATH
required() {
    awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

# ldflags_of NAME: -s -w, and the version the binary reports (both read it from a variable set at link time)
ldflags_of() {
    local v
    case "$1" in
        helm)
            v=$(required "$HERE/helm" helm.sh/helm/v4)
            echo "-s -w -X helm.sh/helm/v4/internal/version.version=$v"
            ;;
        promtool | prometheus)
            # The Go module v0.3MM.P is Prometheus 3.MM.P.
            v=$(required "$HERE/prometheus" github.com/prometheus/prometheus |
                sed -E 's/^v0\.3([0-9]{2})\.([0-9]+).*/3.\1.\2/; s/^3\.0([0-9])/3.\1/')
            echo "-s -w -X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=HEAD"
            ;;
    esac
}

# tags_of NAME: build tags. Prometheus's service discovery is plugins, each behind a tag: the tests use only the
# Kubernetes one, and leaving out the cloud SDKs halves the first build.
tags_of() {
    case "$1" in
        promtool | prometheus) echo remove_all_sd,enable_kubernetes_sd ;;
        *) echo "" ;;
    esac
}

stamp_of() {
    { echo "$RECIPE"; cat "$HERE/$1/go.mod" "$HERE/$1/go.sum"; } | sha256sum | cut -d' ' -f1
}

# up_to_date NAME: NAME exists and was built from its module's current go.mod/go.sum with this recipe
up_to_date() {
    local stamp="$BIN_DIR/.stamp-$1"
    [ -x "$BIN_DIR/$1" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_of "$(module_of "$1")")" ]
}

if [ "$check" = 1 ]; then
    for name in "${wanted[@]}"; do up_to_date "$name" || exit 1; done
    exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || die "no go binary (set GO)"
mkdir -p "$BIN_DIR"
# Tests build in parallel (one helper per test binary): one build at a time, the others wait and find it done.
exec 9>"$BIN_DIR/.lock"
flock 9

for name in "${wanted[@]}"; do
    if [ "$force" = 0 ] && up_to_date "$name"; then
        log "$name up to date"
        continue
    fi
    module=$(module_of "$name")
    log "building $name ($(package_of "$name") from e2e/tools/$module/go.mod); the first build downloads modules and takes minutes"
    started=$(date +%s)
    tmp="$BIN_DIR/.$name.tmp"
    (
        cd "$HERE/$module"
        GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" \
            "$GO" build -trimpath -tags "$(tags_of "$name")" -ldflags "$(ldflags_of "$name")" -o "$tmp" \
            "$(package_of "$name")"
    ) || die "building $name failed"
    mv -f "$tmp" "$BIN_DIR/$name"
    stamp_of "$module" >"$BIN_DIR/.stamp-$name"
    log "built $name in $(($(date +%s) - started)) s"
done

log "tools in $BIN_DIR"
echo "$BIN_DIR"

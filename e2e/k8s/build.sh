#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
# kubelet and kubectl from Go
# modules into a cache directory, and print that directory (last stdout line).
#
#   build.sh [--force]     build unless up to date
#   build.sh --check       exit 0 if the binaries are up to date, 1 if not
#
# K8S_BIN_DIR  output directory (default: <repo>/target/k8s-bin)
# GO           go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# The versions are whatever tools/go.mod and etcd/go.mod pin (see
# update-versions.sh).  A stamp file per module holds a hash of its
# go.mod + go.sum and of the build recipe below, so a rerun with nothing
# changed only hashes four files.  The first build downloads ~850 MB of
# modules and compiles for ~6-7 minutes on 2 cores (see README.md); later
# builds with a warm Go build cache take ~10 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
BIN_DIR=${K8S_BIN_DIR:-$REPO/target/k8s-bin}

# Bump when the flags below change, to force a rebuild.
RECIPE="r1 CGO_ENABLED=0 -trimpath -tags=selinux,notest,grpcnotrace -ldflags=-s,-w,version"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

usage() {
    echo "usage: $(basename "$0") [--force | --check]" >&2
    exit 2
}

force=0 check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --check) check=1 ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
    shift
done

# stamp_of MODDIR: the hash that the binaries of MODDIR were built from
stamp_of() {
    { echo "$RECIPE"; cat "$1/go.mod" "$1/go.sum"; } | sha256sum | cut -d' ' -f1
}

# up_to_date NAME MODDIR BINARIES...
up_to_date() {
    local name=$1 moddir=$2 b
    shift 2
    [ -f "$BIN_DIR/.stamp-$name" ] || return 1
    [ "$(cat "$BIN_DIR/.stamp-$name")" = "$(stamp_of "$moddir")" ] || return 1
    for b in "$@"; do
        [ -x "$BIN_DIR/$b" ] || return 1
    done
}

K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)
ETCD_BINS=(etcd)
CRI_BINS=(crictl)

if [ "$check" = 1 ]; then
    up_to_date k8s "$HERE/tools" "${K8S_BINS[@]}" && up_to_date etcd "$HERE/etcd" "${ETCD_BINS[@]}" &&
        up_to_date cri "$HERE/cri-tools" "${CRI_BINS[@]}"
    exit
fi

if [ "$force" = 0 ] &&
    up_to_date k8s "$HERE/tools" "${K8S_BINS[@]}" &&
    up_to_date etcd "$HERE/etcd" "${ETCD_BINS[@]}" &&
    up_to_date cri "$HERE/cri-tools" "${CRI_BINS[@]}"; then
    log "up to date in $BIN_DIR"
    echo "$BIN_DIR"
    exit 0
fi

GO=${GO:-$(command -v go || true)}
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || command -v "$GO" >/dev/null || die "go not found (set GO=/path/to/go)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

mkdir -p "$BIN_DIR"
# One build at a time per output directory.
exec 9>"$BIN_DIR/.lock"
if ! flock -n 9; then
    log "another build.sh is building into $BIN_DIR, waiting for it"
    flock 9
fi

# heartbeat MSG: log every minute while the caller's build runs.
heartbeat() {
    local t0=$SECONDS s=""
    # kill the sleep too, or it would hold our stderr open for up to a minute
    trap '[ -z "$s" ] || kill "$s" 2>/dev/null; exit 0' TERM
    while :; do
        sleep 60 &
        s=$!
        wait "$s" || true
        log "$1: still building ($(((SECONDS - t0) / 60)) min)"
    done
}

# go_build NAME MODDIR LDFLAGS OUT PACKAGES...: build into a temp dir, then
# move the binaries into BIN_DIR and write the stamp.
go_build() {
    local name=$1 moddir=$2 ldflags=$3 out=$4 stamp tmp hb rc=0 t0=$SECONDS
    shift 4
    stamp=$(stamp_of "$moddir")
    tmp=$(mktemp -d "$BIN_DIR/.build-$name.XXXXXX")
    heartbeat "$name" &
    hb=$!
    (cd "$moddir" && "$GO" build -trimpath -tags=selinux,notest,grpcnotrace \
        -ldflags "$ldflags" -o "$tmp/$out" "$@") || rc=$?
    kill "$hb" 2>/dev/null || true
    wait "$hb" 2>/dev/null || true
    if [ "$rc" != 0 ]; then
        rm -rf "$tmp"
        die "go build of $name failed (exit $rc), see above"
    fi
    rm -f "$BIN_DIR/.stamp-$name"
    mv -f "$tmp"/* "$BIN_DIR/"
    rmdir "$tmp"
    echo "$stamp" >"$BIN_DIR/.stamp-$name"
    log "$name built in $((SECONDS - t0)) s"
}

# mod_info MODDIR MODULE: "VERSION TIME" of MODULE in MODDIR's build list
mod_info() {
    (cd "$1" && "$GO" list -m -f '{{.Version}} {{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$2")
}

log "$("$GO" version)"

if [ "$force" = 1 ] || ! up_to_date k8s "$HERE/tools" "${K8S_BINS[@]}"; then
    read -r kver kdate <<<"$(mod_info "$HERE/tools" k8s.io/kubernetes)"
    [[ "$kver" =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s.io/kubernetes version '$kver'"
    kminor=${BASH_REMATCH[1]}
    # What hack/lib/version.sh sets: /version and --version then report the
    # real version.  The module proxy does not know the git commit; the build
    # date is the release's (the module version's time), for reproducibility.
    ld="-s -w"
    for kv in "gitVersion=$kver" gitMajor=1 "gitMinor=$kminor" gitTreeState=clean \
        "buildDate=${kdate:-1970-01-01T00:00:00Z}" gitCommit=; do
        ld+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
    done
    log "building ${K8S_BINS[*]} $kver into $BIN_DIR"
    log "the first build downloads ~850 MB of Go modules and compiles for ~6 min on 2 cores (~3 GB of Go build cache); later builds reuse that cache"
    go_build k8s "$HERE/tools" "$ld" "" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kube-proxy \
        k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kubectl
fi

if [ "$force" = 1 ] || ! up_to_date etcd "$HERE/etcd" "${ETCD_BINS[@]}"; then
    read -r ever _ <<<"$(mod_info "$HERE/etcd" go.etcd.io/etcd/server/v3)"
    log "building etcd $ever into $BIN_DIR (under a minute the first time)"
    go_build etcd "$HERE/etcd" "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ever" etcd \
        go.etcd.io/etcd/server/v3
fi

if [ "$force" = 1 ] || ! up_to_date cri "$HERE/cri-tools" "${CRI_BINS[@]}"; then
    read -r cver _ <<<"$(mod_info "$HERE/cri-tools" sigs.k8s.io/cri-tools)"
    log "building crictl $cver into $BIN_DIR"
    go_build cri "$HERE/cri-tools" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$cver" crictl \
        sigs.k8s.io/cri-tools/cmd/crictl
fi

log "done: $BIN_DIR"
echo "$BIN_DIR"

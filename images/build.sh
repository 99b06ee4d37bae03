#!/usr/bin/env bash
# Builds the canal-rs container images on this machine, without a Docker engine or a registry (`make images`).
#
#   images/build.sh        build what changed; the last line of stdout is the output directory
#
# Output, under target/images/:
#   canal-instance.tar  canal-rs/canal-instance:VERSION   tini -- canal-instance, user 65532, ports 11111 11112
#   canal-operator.tar  canal-rs/canal-operator:VERSION   canal-operator, user 65532, port 8080
#   pause.tar           canal-rs/pause:VERSION            a static pause program (containerd's sandbox_image)
# each a docker-archive that `ctr -n k8s.io images import` and `docker load` take, and oci/NAME, the same image as
# an OCI layout. VERSION is the workspace's version, the tag the chart and the examples use.
#
# The binaries are the host's glibc release builds, so instead of the Dockerfiles' empty base (which needs a
# static musl build) the images get what a distroless base has: the dynamic loader, libc and libgcc_s taken
# from Debian's own packages (only the libraries the binaries need), CA roots, /etc/passwd with the nonroot user
# and no shell. Entrypoint, user, ports and labels are those of images/*.Dockerfile (operator/tests/images.rs
# checks that they agree). The images are assembled with umoci and written out with skopeo; an image whose inputs
# did not change since the last run is left as it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${CANAL_IMAGES_OUT:-$ROOT/target/images}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CARGO=${CARGO:-cargo}
SCRIPT="$ROOT/images/build.sh"
PAUSE_SRC="$ROOT/images/pause.c"
# The user of the Helm chart, the operator's StatefulSets and the Dockerfiles; the pause image keeps the
# upstream pause image's user.
NONROOT=65532
PAUSE_USER=65535

log() { echo "images: $*" >&2; }
die() {
    echo "images: error: $*" >&2
    exit 1
}

# --- tools -------------------------------------------------------------------------------------------------------

PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
missing=()
for tool in umoci skopeo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x /usr/bin/tini-static ] || missing+=("tini (/usr/bin/tini-static)")
if [ ${#missing[@]} -gt 0 ]; then
    die "missing ${missing[*]}: run \`bash e2e/services/install.sh\` (as root, or with sudo), which installs them"
fi
for tool in gcc readelf objcopy dpkg dpkg-deb dpkg-query apt-get sha256sum "$CARGO"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool (this script expects a Debian machine with Rust and gcc)"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] ||
    die "no /etc/ssl/certs/ca-certificates.crt: run \`bash e2e/services/install.sh\` or apt-get install ca-certificates"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Progress and the tools' own output go to stderr; stdout gets only the output directory, last.
exec 3>&1 1>&2

mkdir -p "$OUT"
# One build at a time (make images and the test may run together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT/.lock"
    flock 9
fi

# --- what goes into the labels -----------------------------------------------------------------------------------

# `key = "value"` of a TOML section.
toml_value() { # FILE SECTION KEY
    awk -v section="[$2]" -v key="$3" '
        /^\[/ { in_section = ($0 == section); next }
        in_section && $1 == key && $2 == "=" {
            sub(/^[^=]*=[[:space:]]*"/, ""); sub(/"[[:space:]]*$/, ""); print; exit
        }' "$1"
}
VERSION=$(toml_value "$ROOT/Cargo.toml" workspace.package version)
LICENSE=$(toml_value "$ROOT/Cargo.toml" workspace.package license)
[ -n "$VERSION" ] || die "cannot read [workspace.package] version from Cargo.toml"
[ -n "$LICENSE" ] || die "cannot read [workspace.package] license from Cargo.toml"

REVISION=""
SOURCE_URL=""
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)
    # GIT_OPTIONAL_LOCKS=0: status must not refresh (write) the index of a tree others are working in.
    if [ -n "$REVISION" ] &&
        [ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        REVISION="$REVISION-dirty"
    fi
    SOURCE_URL=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
    # git@github.com:owner/repo.git -> https://github.com/owner/repo
    case "$SOURCE_URL" in
        git@*:*)
            SOURCE_URL=${SOURCE_URL#git@}
            SOURCE_URL="https://${SOURCE_URL/://}"
            ;;
    esac
    SOURCE_URL=${SOURCE_URL%.git}
fi

ARCH=$(dpkg --print-architecture)
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
[ -n "$MULTIARCH" ] || MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
[ -n "$MULTIARCH" ] || die "cannot tell the multiarch triplet (gcc -print-multiarch)"

# --- binaries ----------------------------------------------------------------------------------------------------

BINARIES=(canal-instance canal-operator)
log "cargo build --release ${BINARIES[*]}"
# The workspace's release profile (debug = 1) is kept so that the build shares target/release with make bench;
# the debug info is stripped from the copies instead, as CARGO_PROFILE_RELEASE_DEBUG=0 does in the Dockerfiles.
# Run from a test (cargo test), the environment carries the test's CARGO_MANIFEST_DIR, CARGO_PKG_* and the like;
# build scripts that watch them (ring's does) would rebuild half the tree here and again in the next plain build.
(cd "$ROOT" &&
    for var in $(compgen -e); do
        case "$var" in
            CARGO_MANIFEST_DIR | CARGO_MANIFEST_PATH | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | \
                CARGO_BIN_EXE_* | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR)
                unset "$var"
                ;;
        esac
    done &&
    "$CARGO" build --release --locked \
    -p canal-instance --bin canal-instance -p canal-operator --bin canal-operator) >&2 ||
    die "cargo build --release failed"
for bin in "${BINARIES[@]}"; do
    [ -x "$TARGET_DIR/release/$bin" ] || die "cargo built no $TARGET_DIR/release/$bin"
done

# --- glibc and libgcc from Debian's packages ---------------------------------------------------------------------

DEBS="$OUT/cache/debs"
SYSROOTS="$OUT/cache/sysroot"
mkdir -p "$DEBS" "$SYSROOTS"
APT_OPTS=(-q)
# As root, apt downloads as the _apt user, which cannot write the cache dir; the download is the same.
[ "$IS_ROOT" = 1 ] && APT_OPTS+=(-o APT::Sandbox::User=root)
apt_updated=0

# Prints the path of PACKAGE's .deb in the cache, downloading it first when missing: the version installed here
# (the binaries were linked against it), else the archive's candidate.
fetch_deb() {
    local pkg=$1 version file
    version=$(dpkg-query -W -f='${Version}' "$pkg:$ARCH" 2>/dev/null || dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
    file="$DEBS/${pkg}_${version//:/%3a}_${ARCH}.deb"
    if [ -n "$version" ] && [ -f "$file" ]; then
        echo "$file"
        return
    fi
    log "apt-get download $pkg${version:+=$version}"
    if [ -n "$version" ] && (cd "$DEBS" && apt-get "${APT_OPTS[@]}" download "$pkg:$ARCH=$version") >&2 && [ -f "$file" ]; then
        echo "$file"
        return
    fi
    if [ "$apt_updated" = 0 ] && [ "$IS_ROOT" = 1 ]; then
        log "apt-get update"
        apt-get -qq update >&2 || true
        apt_updated=1
    fi
    (cd "$DEBS" && apt-get "${APT_OPTS[@]}" download "$pkg:$ARCH") >&2 ||
        die "cannot download $pkg with apt-get (run apt-get update as root?)"
    # shellcheck disable=SC2012
    file=$(ls -t "$DEBS/${pkg}_"*"_${ARCH}.deb" | head -n 1)
    echo "$file"
}

# Extracts a .deb once; prints the directory.
extract_deb() {
    local deb=$1 dir
    dir="$SYSROOTS/$(basename "$deb" .deb)"
    if [ ! -f "$dir/.extracted" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
        touch "$dir/.extracted"
    fi
    echo "$dir"
}

LIB_PACKAGES=(libc6 libgcc-s1)
LIB_DEBS=()
PKG_ROOTS=()
for pkg in "${LIB_PACKAGES[@]}"; do
    deb=$(fetch_deb "$pkg")
    LIB_DEBS+=("$deb")
    PKG_ROOTS+=("$(extract_deb "$deb")")
done

# Copies /REL from the package trees into ROOTFS, with the targets of symlinks; absolute link targets are taken
# relative to the package tree, as they would resolve in the image.
install_from_packages() { # ROOTFS REL
    local rootfs=$1 rel=${2#/} pkg_root link target
    [ -e "$rootfs/$rel" ] || [ -L "$rootfs/$rel" ] && return 0
    for pkg_root in "${PKG_ROOTS[@]}"; do
        if [ -L "$pkg_root/$rel" ] || [ -e "$pkg_root/$rel" ]; then
            mkdir -p "$rootfs/$(dirname "$rel")"
            cp -P --preserve=mode,links "$pkg_root/$rel" "$rootfs/$rel"
            if [ -L "$pkg_root/$rel" ]; then
                link=$(readlink "$pkg_root/$rel")
                case "$link" in
                    /*) target=$link ;;
                    *) target="$(dirname "$rel")/$link" ;;
                esac
                install_from_packages "$rootfs" "$target"
            fi
            return 0
        fi
    done
    return 1
}

# Installs the dynamic loader and, transitively, every DT_NEEDED library of ELF into ROOTFS.
install_libraries() { # ROOTFS ELF
    local rootfs=$1 elf=$2 interp lib dir found link queue=() seen=" "
    interp=$(readelf -lW "$elf" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
    [ -n "$interp" ] || return 0 # static
    install_from_packages "$rootfs" "$interp" || die "$elf needs $interp, which ${LIB_PACKAGES[*]} do not ship"
    queue=("$elf")
    while [ ${#queue[@]} -gt 0 ]; do
        elf=${queue[0]}
        queue=("${queue[@]:1}")
        for lib in $(readelf -dW "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            case "$seen" in *" $lib "*) continue ;; esac
            seen="$seen$lib "
            found=""
            for dir in "lib/$MULTIARCH" "usr/lib/$MULTIARCH" lib usr/lib; do
                if install_from_packages "$rootfs" "$dir/$lib"; then
                    found="$rootfs/$dir/$lib"
                    break
                fi
            done
            [ -n "$found" ] || die "$(basename "$2") needs $lib, which ${LIB_PACKAGES[*]} do not ship"
            # Follow symlinks inside the rootfs: an absolute target means the image's path, not the host's.
            while [ -L "$found" ]; do
                link=$(readlink "$found")
                case "$link" in
                    /*) found="$rootfs$link" ;;
                    *) found="$(dirname "$found")/$link" ;;
                esac
            done
            queue+=("$found")
        done
    done
}

# --- images ------------------------------------------------------------------------------------------------------

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Writes the rootfs of a distroless-like image for BINARY into DIR.
distroless_rootfs() { # DIR BINARY
    local dir=$1 bin=$2 pkg_root
    mkdir -p "$dir/etc/ssl/certs" "$dir/usr/local/bin" "$dir/home/nonroot" "$dir/tmp"
    chmod 1777 "$dir/tmp"
    chmod 0700 "$dir/home/nonroot"
    [ "$IS_ROOT" = 1 ] && chown "$NONROOT:$NONROOT" "$dir/home/nonroot"
    cat >"$dir/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:$NONROOT:$NONROOT:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$dir/etc/group" <<EOF
root:x:0:
nobody:x:65534:
nonroot:x:$NONROOT:
EOF
    # Kubernetes writes the pod's own names into /etc/hosts; without this file glibc asks DNS first.
    printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
    chmod 0644 "$dir/etc/passwd" "$dir/etc/group" "$dir/etc/nsswitch.conf"
    install -m 0644 /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    # tini is PID 1 so that the binary is not (see canal-instance.Dockerfile); the static build needs no libc.
    install -m 0755 /usr/bin/tini-static "$dir/usr/local/bin/tini"
    install -m 0755 "$TARGET_DIR/release/$bin" "$dir/usr/local/bin/$bin"
    objcopy --strip-debug "$dir/usr/local/bin/$bin"
    install_libraries "$dir" "$dir/usr/local/bin/$bin"
    # The licences of what is shipped, as Debian's images keep them.
    for pkg_root in "${PKG_ROOTS[@]}"; do
        for copyright in "$pkg_root"/usr/share/doc/*/copyright; do
            [ -f "$copyright" ] || continue
            install -D -m 0644 "$copyright" "$dir/${copyright#"$pkg_root"/}"
        done
    done
    [ -f /usr/share/doc/tini/copyright ] &&
        install -D -m 0644 /usr/share/doc/tini/copyright "$dir/usr/share/doc/tini/copyright"
    return 0
}

pause_rootfs() { # DIR
    mkdir -p "$1"
    gcc -static -O2 -s -Wall -Wextra -Werror -o "$1/pause" "$PAUSE_SRC"
}

# The stamp of an image: everything its contents and config come from.
stamp_of() { # NAME
    local name=$1
    echo "script $(sha "$SCRIPT")"
    echo "version $VERSION revision $REVISION source $SOURCE_URL license $LICENSE arch $ARCH"
    if [ "$name" = pause ]; then
        echo "pause.c $(sha "$PAUSE_SRC")"
        echo "gcc $(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)"
    else
        echo "binary $(sha "$TARGET_DIR/release/$name")"
        echo "description $(image_description "$name")"
        echo "tini $(sha /usr/bin/tini-static)"
        echo "ca $(sha /etc/ssl/certs/ca-certificates.crt)"
        local deb
        for deb in "${LIB_DEBS[@]}"; do echo "deb $(basename "$deb")"; done
    fi
}

# The description label: the package's own description, as in the Dockerfiles.
image_description() { # NAME
    case "$1" in
        canal-instance) toml_value "$ROOT/instance/Cargo.toml" package description ;;
        canal-operator) toml_value "$ROOT/operator/Cargo.toml" package description ;;
        pause) echo "Holds a pod sandbox's namespaces until it is stopped (a static pause program)" ;;
    esac
}

# NAME ENTRYPOINT USER PORTS...
build_image() {
    local name=$1 entrypoint=$2 user=$3
    shift 3
    local ports=("$@")
    local ref="canal-rs/$name:$VERSION"
    local tar="$OUT/$name.tar" layout="$OUT/oci/$name" stampfile="$OUT/.stamps/$name"
    local stamp
    stamp=$(stamp_of "$name")
    if [ -f "$tar" ] && [ -f "$stampfile" ] && [ -f "$layout/index.json" ] && [ "$(cat "$stampfile")" = "$stamp" ]; then
        log "$ref is up to date ($tar)"
        return
    fi
    log "building $ref"
    local work="$OUT/work/$name"
    rm -rf "$work" "$layout"
    mkdir -p "$work" "$OUT/oci" "$OUT/.stamps"
    rm -f "$stampfile"

    umoci init --layout "$layout"
    umoci new --image "$layout:$VERSION"
    local unpack=(--image "$layout:$VERSION")
    [ "$IS_ROOT" = 1 ] || unpack+=(--rootless)
    umoci unpack "${unpack[@]}" "$work/bundle" >&2
    local rootfs="$work/bundle/rootfs"
    if [ "$name" = pause ]; then
        pause_rootfs "$rootfs"
    else
        distroless_rootfs "$rootfs" "$name"
    fi
    [ ! -e "$rootfs/bin/sh" ] || die "$ref has a shell"

    # Start the entrypoint the way the image will (as its user, with --help), where a chroot can try the loader
    # and the libraries.
    local entry=()
    read -r -a entry <<<"$entrypoint"
    if [ "$IS_ROOT" = 1 ] && [ "$name" != pause ] && command -v chroot >/dev/null 2>&1; then
        local smoke
        smoke=$(chroot --userspec="$user" "$rootfs" "${entry[@]}" --help 2>&1) ||
            die "$ref: ${entry[*]} --help fails in the image's rootfs: $smoke"
    fi

    umoci repack --image "$layout:$VERSION" "$work/bundle" >&2

    local config=(
        --image "$layout:$VERSION" --no-history
        --architecture "$ARCH" --os linux
        --config.user "$user"
        --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        --config.label "org.opencontainers.image.source=$SOURCE_URL"
        --config.label "org.opencontainers.image.version=$VERSION"
        --config.label "org.opencontainers.image.revision=$REVISION"
        --config.label "org.opencontainers.image.title=$name"
        --config.label "org.opencontainers.image.description=$(image_description "$name")"
        --config.label "org.opencontainers.image.licenses=$LICENSE"
    )
    local arg port
    # --flag=value: the entrypoint's "--" would otherwise end umoci's options.
    for arg in "${entry[@]}"; do config+=("--config.entrypoint=$arg"); done
    for port in "${ports[@]}"; do config+=("--config.exposedports=$port/tcp"); done
    umoci config "${config[@]}"
    umoci gc --layout "$layout"

    rm -f "$tar.tmp"
    skopeo --insecure-policy copy -q "oci:$layout:$VERSION" "docker-archive:$tar.tmp:$ref" >&2
    mv -f "$tar.tmp" "$tar"
    rm -rf "$work"
    echo "$stamp" >"$stampfile"
    log "wrote $tar ($ref, $(du -h "$tar" | cut -f1))"
}

# canal-instance.Dockerfile: tini in front, the canal protocol (server.port) and /metrics (server.metricsPort).
build_image canal-instance "/usr/local/bin/tini -- /usr/local/bin/canal-instance" "$NONROOT:$NONROOT" 11111 11112
# canal-operator.Dockerfile: /metrics, /healthz and /readyz (--listen, the chart's metricsPort).
build_image canal-operator "/usr/local/bin/canal-operator" "$NONROOT:$NONROOT" 8080
build_image pause "/pause" "$PAUSE_USER:$PAUSE_USER"

rm -rf "$OUT/work"
echo "$OUT" >&3

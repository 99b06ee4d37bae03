#!/usr/bin/env bash
# Install the Debian packages needed by mariadb.sh and zookeeper.sh, but only
# when they are missing. Idempotent; prints nothing when everything is there.
#
#   e2e/services/install.sh            install what is missing
#   e2e/services/install.sh --check    exit 0 if everything is installed, 1 otherwise
#
# Packages: mariadb-server mariadb-client zookeeper (zookeeper pulls in a JRE), and the others named below
# (umoci, skopeo and tini for make images; containerd, runc, the CNI plugins, nftables and iproute2 for the e2e's
# real node; shellcheck for actionlint's checks of the release workflow).
# Uses sudo only when not running as root.
set -euo pipefail

usage() {
    echo "usage: $0 [--check]" >&2
    exit 2
}

check_only=0
case "${1:-}" in
    "") ;;
    --check) check_only=1 ;;
    -h|--help) usage ;;
    *) usage ;;
esac
[ $# -le 1 ] || usage

# PATH of a non-root user usually lacks /usr/sbin, where mariadbd lives.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb-install-db >/dev/null 2>&1; then
    missing+=(mariadb-server)
fi
if ! command -v mariadb >/dev/null 2>&1 || ! command -v mariadb-admin >/dev/null 2>&1; then
    missing+=(mariadb-client)
fi
if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
    missing+=(zookeeper)
fi
# canal's Java client (the compatibility test) is built with Maven and needs a JDK.
if ! command -v mvn >/dev/null 2>&1; then
    missing+=(maven)
fi
if ! command -v javac >/dev/null 2>&1; then
    missing+=(default-jdk-headless)
fi
# The Kubernetes control plane for the e2e test (e2e/k8s/control-plane.sh) makes its certificates with openssl and
# probes with curl; build.sh serialises builds with flock.
if ! command -v openssl >/dev/null 2>&1; then
    missing+=(openssl)
fi
if ! command -v curl >/dev/null 2>&1; then
    missing+=(curl)
fi
if ! command -v flock >/dev/null 2>&1; then
    missing+=(util-linux)
fi
# make images (images/build.sh) assembles the images without a Docker engine: umoci builds them, skopeo writes
# them out as docker-archives, tini's static build is the images' init.
if ! command -v umoci >/dev/null 2>&1; then
    missing+=(umoci)
fi
if ! command -v skopeo >/dev/null 2>&1; then
    missing+=(skopeo)
fi
if [ ! -x /usr/bin/tini-static ]; then
    missing+=(tini)
fi
# The e2e's real node (e2e/k8s/node.sh): the container runtime, pod networking, and kube-proxy's nftables mode.
if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
    missing+=(containerd)
fi
if ! command -v runc >/dev/null 2>&1; then
    missing+=(runc)
fi
if [ ! -x /usr/lib/cni/bridge ] || [ ! -x /usr/lib/cni/host-local ] || [ ! -x /usr/lib/cni/loopback ]; then
    missing+=(containernetworking-plugins)
fi
if ! command -v nft >/dev/null 2>&1; then
    missing+=(nftables)
fi
if ! command -v ip >/dev/null 2>&1; then
    missing+=(iproute2)
fi
# The Kafka sink links librdkafka, which rdkafka-sys builds from the source the crate ships with its own configure
# script: a C compiler, make and perl.
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    missing+=(build-essential)
fi
if ! command -v perl >/dev/null 2>&1; then
    missing+=(perl)
fi
# actionlint (operator/tests/release_workflow.rs) checks the workflow's shell steps with it when present.
if ! command -v shellcheck >/dev/null 2>&1; then
    missing+=(shellcheck)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$check_only" = 1 ]; then
    echo "missing packages: ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: apt-get not found; install these packages by hand: ${missing[*]}" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install.sh: not root and sudo is not available; cannot install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install.sh: installing ${missing[*]}" >&2

# Keep the package maintainer scripts from starting system-wide MariaDB /
# ZooKeeper daemons (we start our own throwaway instances): install a
# temporary policy-rc.d that denies service starts, unless one already exists.
policy=/usr/sbin/policy-rc.d
added_policy=0
remove_policy() {
    if [ "$added_policy" = 1 ]; then
        "${SUDO[@]}" rm -f "$policy" || true
    fi
}
trap remove_policy EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, added by canal-rs e2e/services/install.sh\nexit 101\n' \
        | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    added_policy=1
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

# Sanity check.
PATH="$PATH" command -v mariadbd >/dev/null
[ -f /usr/share/java/zookeeper.jar ]
echo "install.sh: done" >&2

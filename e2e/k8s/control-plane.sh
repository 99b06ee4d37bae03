#!/usr/bin/env bash
# Throwaway Kubernetes control plane (etcd + kube-apiserver +
# kube-controller-manager, no scheduler, no nodes) on loopback, for tests.
# See README.md next to this file.
#
#   control-plane.sh start [--owner-pid PID] DIR
#   control-plane.sh stop [--rm] DIR
#   control-plane.sh status DIR
#
# start prints the path of DIR/env (shell-sourceable: KUBECONFIG, K8S_API_URL,
# K8S_BIN_DIR, KUBECTL, ...) as its last stdout line.  With --owner-pid, a
# watchdog stops everything and removes DIR once PID exits (or DIR is removed).
# The binaries come from K8S_BIN_DIR (default <repo>/target/k8s-bin), built by
# build.sh; start refuses to run with missing or stale binaries.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
SERVICE_NAME=control-plane.sh
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd -P)
# shellcheck source=../services/lib.sh
. "$HERE/../services/lib.sh"

START_TIMEOUT=${K8S_START_TIMEOUT:-120}
STOP_TIMEOUT=${K8S_STOP_TIMEOUT:-20}
SERVICE_CIDR=${K8S_SERVICE_CIDR:-10.96.0.0/12}
BIN_DIR=${K8S_BIN_DIR:-$REPO/target/k8s-bin}

# start order; stop goes the other way
COMPONENTS=(etcd apiserver controller-manager)

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start [--owner-pid PID] DIR
       $(basename "$0") stop [--rm] DIR
       $(basename "$0") status DIR
EOF
    exit 2
}

# ---------------------------------------------------------------- helpers
# (log, die, alive, terminate, detach, free_ports, watchdog, read_comp, comp_running, launch, tail_log: see lib.sh)

find_bins() {
    local b
    for b in etcd kube-apiserver kube-controller-manager kubectl; do
        [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found; run $HERE/build.sh first (the first build takes many minutes)"
    done
    # binaries built by build.sh carry stamps: refuse stale ones
    if [ -f "$BIN_DIR/.stamp-k8s" ] && [ -z "${K8S_SKIP_STALE_CHECK:-}" ]; then
        K8S_BIN_DIR=$BIN_DIR "$HERE/build.sh" --check ||
            die "the binaries in $BIN_DIR are older than $HERE/{tools,etcd}/go.{mod,sum}; run $HERE/build.sh"
    fi
}

# read_ports DIR: sets ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT
read_ports() {
    ETCD_PORT="" ETCD_PEER_PORT="" API_PORT="" KCM_PORT=""
    [ -f "$1/ports" ] && read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT <"$1/ports" || true
}

stop_comp() {
    read_comp "$1" "$2"
    if [ -n "$COMP_PID" ]; then
        terminate "$COMP_PID" "$COMP_ST" || true
    fi
    rm -f "$1/$2.pidinfo"
}

stop_all() {
    local dir=$1 i
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop_comp "$dir" "${COMPONENTS[$i]}"
    done
}

# admin_curl DIR URL_PATH [curl args...]: GET on the apiserver as admin
admin_curl() {
    local dir=$1 path=$2
    shift 2
    curl -sS --max-time 5 --cacert "$dir/pki/ca.crt" \
        --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
        "$@" "https://127.0.0.1:$API_PORT$path"
}

# wait_until DIR NAME WHAT CHECK...: poll CHECK until it succeeds.  Returns 1
# on timeout, 2 if component NAME exited.
wait_until() {
    local dir=$1 name=$2 what=$3 deadline
    shift 3
    deadline=$(($(date +%s) + START_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        comp_running "$dir" "$name" || return 2
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    log "$name: timed out after ${START_TIMEOUT}s waiting for $what"
    return 1
}

etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
api_ready() { [ "$(admin_curl "$1" /readyz)" = ok ]; }
kcm_healthy() { [ "$(curl -sk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz")" = ok ]; }
default_sa() { admin_curl "$1" /api/v1/namespaces/default/serviceaccounts/default -f; }

bind_error() {
    grep -qsi 'address already in use' "$1/$2.log"
}

# ---------------------------------------------------------------- pki

# new_ca DIR NAME CN: self-signed CA DIR/pki/NAME.{crt,key} (EC P-256: fast
# to generate, accepted by Go, rustls and OpenSSL)
new_ca() {
    local pki=$1/pki name=$2 cn=$3
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
        openssl pkcs8 -topk8 -nocrypt -out "$pki/$name.key"
    openssl req -x509 -new -key "$pki/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$pki/$name.crt" 2>/dev/null
}

# sign DIR CA NAME SUBJECT EXTENSIONS: key DIR/pki/NAME.key (EC P-256) and a
# cert signed by DIR/pki/CA.
sign() {
    local pki=$1/pki ca=$2 name=$3 subj=$4 ext=$5
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
        openssl pkcs8 -topk8 -nocrypt -out "$pki/$name.key"
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
        -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

gen_pki() {
    local dir=$1 pki=$1/pki
    mkdir -p "$pki"
    chmod 700 "$pki"
    # cluster CA: serving and client certs, kcm's CSR signer
    new_ca "$dir" ca canal-rs-e2e-ca
    # apiserver serving cert: loopback names plus the in-cluster ones (the
    # first IP of the service range is the "kubernetes" Service's ClusterIP)
    local svc_ip
    svc_ip=$(first_service_ip "$SERVICE_CIDR")
    sign "$dir" ca apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier=keyid"
    # admin client cert: group system:masters bypasses RBAC
    sign "$dir" ca admin "/O=system:masters/CN=kubernetes-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"
    # front-proxy (request-header) CA and the apiserver's proxy client cert,
    # as kubeadm does: extension-apiserver-authentication then carries a
    # request-header CA, which kcm's delegated authentication (and any
    # aggregated API server) expects; without it kcm logs errors forever
    new_ca "$dir" front-proxy-ca canal-rs-e2e-front-proxy-ca
    sign "$dir" front-proxy-ca front-proxy-client "/CN=front-proxy-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"
    # service-account token signing key pair (RSA: RS256 tokens, the default)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# first_service_ip CIDR: network address + 1 (IPv4 only)
first_service_ip() {
    local ip=${1%/*} bits=${1#*/} a b c d n
    IFS=. read -r a b c d <<<"$ip"
    n=$(((a << 24 | b << 16 | c << 8 | d) & (0xffffffff << (32 - bits)) & 0xffffffff))
    n=$((n + 1))
    echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"
}

write_kubeconfig() {
    local dir=$1 tmp=$1/kubeconfig.tmp
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"$dir/pki/admin.crt")
    client-key-data: $(base64 -w0 <"$dir/pki/admin.key")
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
    namespace: default
current-context: e2e
EOF
    chmod 600 "$tmp"
    mv -f "$tmp" "$dir/kubeconfig"
}

# ---------------------------------------------------------------- env

write_env() {
    local dir=$1 tmp=$1/env.tmp name var
    read_ports "$dir"
    {
        printf 'K8S_DIR=%q\n' "$dir"
        printf 'KUBECONFIG=%q\n' "$dir/kubeconfig"
        printf 'K8S_API_URL=%s\n' "https://127.0.0.1:$API_PORT"
        printf 'K8S_API_PORT=%s\n' "$API_PORT"
        printf 'K8S_CA_FILE=%q\n' "$dir/pki/ca.crt"
        printf 'K8S_ADMIN_CERT_FILE=%q\n' "$dir/pki/admin.crt"
        printf 'K8S_ADMIN_KEY_FILE=%q\n' "$dir/pki/admin.key"
        printf 'K8S_SERVICE_CIDR=%s\n' "$SERVICE_CIDR"
        printf 'K8S_VERSION=%s\n' "$(cat "$dir/version" 2>/dev/null || true)"
        printf 'K8S_BIN_DIR=%q\n' "$BIN_DIR"
        printf 'KUBECTL=%q\n' "$BIN_DIR/kubectl"
        # kubectl's discovery cache (default ~/.kube/cache)
        printf 'KUBECACHEDIR=%q\n' "$dir/kube-cache"
        printf 'K8S_ETCD_URL=%s\n' "http://127.0.0.1:$ETCD_PORT"
        printf 'K8S_KCM_PORT=%s\n' "$KCM_PORT"
        for name in "${COMPONENTS[@]}"; do
            var=$(echo "$name" | tr 'a-z-' 'A-Z_')
            var=${var/CONTROLLER_MANAGER/KCM}
            var=${var/APISERVER/API}
            read_comp "$dir" "$name"
            alive "$COMP_PID" "$COMP_ST" || COMP_PID=""
            printf 'K8S_%s_PID=%s\n' "$var" "$COMP_PID"
            printf 'K8S_%s_LOG=%q\n' "$var" "$dir/$name.log"
        done
    } >"$tmp"
    mv -f "$tmp" "$dir/env"
}

# ---------------------------------------------------------------- watchdog

restart_watchdog() {
    local dir=$1 owner owner_st name pids=""
    [ -f "$dir/owner" ] || return 0
    read -r owner owner_st <"$dir/owner"
    kill_watchdog "$dir"
    for name in "${COMPONENTS[@]}"; do
        read_comp "$dir" "$name"
        [ -z "$COMP_PID" ] || pids+="${pids:+,}$COMP_PID:$COMP_ST"
    done
    spawn_watchdog "$owner" "$owner_st" "$dir" "$pids"
}

# watchdog_collect DIR: note every component's current pid in cmd_watchdog's
# "known" (in stop order).
watchdog_collect() {
    local i
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        read_comp "$1" "${COMPONENTS[$i]}"
        if [ -n "$COMP_PID" ] && [ -z "${known[$COMP_PID]:-}" ]; then
            known[$COMP_PID]=$COMP_ST
            order+=("$COMP_PID")
        fi
    done
}

# __watchdog OWNER_PID OWNER_STARTTIME DIR PID:ST,PID:ST,...
cmd_watchdog() {
    local owner=$1 owner_st=$2 dir=$3 item pid i
    declare -A known=()
    local order=()
    IFS=, read -r -a items <<<"$4"
    # given in start order; stop in reverse
    for ((i = ${#items[@]} - 1; i >= 0; i--)); do
        item=${items[$i]}
        [ -z "$item" ] || { known[${item%%:*}]=${item#*:}; order+=("${item%%:*}"); }
    done
    watchdog_wait "the control plane" "$owner" "$owner_st" "$dir" watchdog_collect
    for pid in "${order[@]}"; do
        terminate "$pid" "${known[$pid]}" || true
    done
    rm -rf "$dir"
    exit 0
}

# ---------------------------------------------------------------- start

# start_component DIR NAME: launch NAME and wait until it is ready.
# Returns 0, or 1 (timeout), 2 (exited), 3 (exited: port taken).
start_component() {
    local dir=$1 name=$2 rc=0 pki=$1/pki
    case "$name" in
    etcd)
        mkdir -p "$dir/etcd-data"
        chmod 700 "$dir/etcd-data"
        launch "$dir" etcd "$BIN_DIR/etcd" \
            --name=default \
            --data-dir="$dir/etcd-data" \
            --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
            --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
            --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-cluster-state=new \
            --unsafe-no-fsync \
            --log-level=info
        wait_until "$dir" etcd "http://127.0.0.1:$ETCD_PORT/health" etcd_healthy || rc=$?
        ;;
    apiserver)
        mkdir -p "$dir/apiserver-certs"
        launch "$dir" apiserver "$BIN_DIR/kube-apiserver" \
            --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
            --bind-address=127.0.0.1 \
            --secure-port="$API_PORT" \
            --advertise-address=127.0.0.1 \
            --endpoint-reconciler-type=none \
            --cert-dir="$dir/apiserver-certs" \
            --tls-cert-file="$pki/apiserver.crt" \
            --tls-private-key-file="$pki/apiserver.key" \
            --client-ca-file="$pki/ca.crt" \
            --authorization-mode=Node,RBAC \
            --anonymous-auth=true \
            --service-account-issuer=https://kubernetes.default.svc.cluster.local \
            --service-account-key-file="$pki/sa.pub" \
            --service-account-signing-key-file="$pki/sa.key" \
            --service-cluster-ip-range="$SERVICE_CIDR" \
            --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
            --requestheader-allowed-names=front-proxy-client \
            --requestheader-username-headers=X-Remote-User \
            --requestheader-group-headers=X-Remote-Group \
            --requestheader-extra-headers-prefix=X-Remote-Extra- \
            --proxy-client-cert-file="$pki/front-proxy-client.crt" \
            --proxy-client-key-file="$pki/front-proxy-client.key" \
            --allow-privileged=true \
            --profiling=false \
            --v="${K8S_LOG_VERBOSITY:-1}"
        wait_until "$dir" apiserver "https://127.0.0.1:$API_PORT/readyz" api_ready "$dir" || rc=$?
        ;;
    controller-manager)
        mkdir -p "$dir/controller-manager-certs"
        launch "$dir" controller-manager "$BIN_DIR/kube-controller-manager" \
            --kubeconfig="$dir/kubeconfig" \
            --authentication-kubeconfig="$dir/kubeconfig" \
            --authorization-kubeconfig="$dir/kubeconfig" \
            --bind-address=127.0.0.1 \
            --secure-port="$KCM_PORT" \
            --cert-dir="$dir/controller-manager-certs" \
            --leader-elect=false \
            --controllers='*' \
            --use-service-account-credentials=true \
            --service-account-private-key-file="$pki/sa.key" \
            --root-ca-file="$pki/ca.crt" \
            --cluster-signing-cert-file="$pki/ca.crt" \
            --cluster-signing-key-file="$pki/ca.key" \
            --service-cluster-ip-range="$SERVICE_CIDR" \
            --flex-volume-plugin-dir="$dir/flexvolume" \
            --profiling=false \
            --v="${K8S_LOG_VERBOSITY:-1}"
        wait_until "$dir" controller-manager "https://127.0.0.1:$KCM_PORT/healthz" kcm_healthy || rc=$?
        # the serviceaccount controller works: pods can be created in
        # "default" (the ServiceAccount admission plugin needs its SA)
        [ "$rc" != 0 ] ||
            wait_until "$dir" controller-manager "ServiceAccount default/default" default_sa "$dir" || rc=$?
        ;;
    esac
    if [ "$rc" = 2 ] && bind_error "$dir" "$name"; then
        rc=3
    fi
    return "$rc"
}

cmd_start() {
    local owner=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --owner-pid)
                [ $# -ge 2 ] || usage
                owner=$2
                shift 2
                ;;
            --owner-pid=*) owner=${1#*=}; shift ;;
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -eq 1 ] || usage
    local dir=$1 name
    check_owner_pid "$owner"
    command -v openssl >/dev/null || die "openssl not found"
    command -v curl >/dev/null || die "curl not found"
    find_bins
    dir=$(abs_dir "$dir")

    for name in "${COMPONENTS[@]}"; do
        if comp_running "$dir" "$name"; then
            die "$name is already running in $dir (pid $COMP_PID); stop it first"
        fi
    done
    kill_watchdog "$dir"

    local t0
    t0=$(date +%s%N)

    # fresh state every time
    rm -rf "$dir/pki" "$dir/etcd-data" "$dir"/*-certs "$dir/flexvolume" "$dir/kube-cache" "$dir"/*.log "$dir"/*.pidinfo \
        "$dir/env" "$dir/kubeconfig" "$dir/ports" "$dir/version" "$dir/owner" "$dir/watchdog.log"
    if [ -n "$owner" ]; then
        echo "$owner $(starttime_of "$owner")" >"$dir/owner"
    fi
    "$BIN_DIR/kube-apiserver" --version 2>/dev/null | sed -n 's/^Kubernetes //p' >"$dir/version" || true
    gen_pki "$dir"

    START_DIR=$dir
    trap start_failed_cleanup EXIT

    local attempt rc=0 failed=""
    for attempt in 1 2 3 4 5; do
        echo "$(free_ports 4)" >"$dir/ports"
        read_ports "$dir"
        write_kubeconfig "$dir"
        rm -rf "$dir/etcd-data" "$dir"/*.log
        failed=""
        for name in "${COMPONENTS[@]}"; do
            rc=0
            start_component "$dir" "$name" || rc=$?
            # the watchdog must know every pid as soon as it exists
            restart_watchdog "$dir"
            if [ "$rc" != 0 ]; then
                failed=$name
                break
            fi
        done
        [ "$rc" = 3 ] || break
        log "$failed: a port was taken, retrying with other ports"
        stop_all "$dir"
    done
    if [ -n "$failed" ]; then
        tail_log "$dir" "$failed"
        stop_all "$dir"
        case "$rc" in
            1) die "$failed did not become ready within ${START_TIMEOUT}s (log: $dir/$failed.log)" ;;
            2) die "$failed exited during startup (log: $dir/$failed.log)" ;;
            *) die "could not start $failed (port conflicts; log: $dir/$failed.log)" ;;
        esac
    fi

    write_env "$dir"
    trap - EXIT
    local t1
    t1=$(date +%s%N)
    log "Kubernetes $(cat "$dir/version") control plane ready at https://127.0.0.1:$API_PORT in $(((t1 - t0) / 1000000)) ms"
    echo "$dir/env"
}

start_failed_cleanup() {
    local rc=$? dir=$START_DIR
    stop_all "$dir" || true
    kill_watchdog "$dir" || true
    exit "$rc"
}

# ---------------------------------------------------------------- stop, status

cmd_stop() {
    stop_args "$@"
    local dir=$STOP_DIR
    [ -n "$dir" ] || return 0
    # the watchdog first, so that it does not race with us
    kill_watchdog "$dir"
    stop_all "$dir"
    if [ "$STOP_RM" = 1 ]; then
        rm -rf "$dir"
    elif [ -f "$dir/ports" ]; then
        write_env "$dir"
    fi
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local dir=$1 name running=0 port state
    [ -f "$dir/ports" ] || { echo "not running (no $dir/ports)" >&2; return 1; }
    dir=$(cd "$dir" && pwd -P)
    read_ports "$dir"
    for name in "${COMPONENTS[@]}"; do
        case "$name" in
            etcd) port=$ETCD_PORT; etcd_healthy 2>/dev/null && state=healthy || state=unhealthy ;;
            apiserver) port=$API_PORT; api_ready "$dir" 2>/dev/null && state=ready || state="not ready" ;;
            controller-manager) port=$KCM_PORT; kcm_healthy 2>/dev/null && state=healthy || state=unhealthy ;;
        esac
        if comp_running "$dir" "$name"; then
            running=$((running + 1))
            echo "$name: pid $COMP_PID port $port $state"
        else
            echo "$name: stopped (port $port)"
        fi
    done
    [ "$running" = "${#COMPONENTS[@]}" ]
}

# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    __watchdog) [ $# -eq 4 ] || usage; cmd_watchdog "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac

#!/usr/bin/env bash
# A real Kubernetes node for e2e tests, joined to a control plane started by control-plane.sh: containerd and runc
# from Debian's packages, kubelet, kube-scheduler and kube-proxy (nftables mode) built by build.sh, and pod
# networking through Debian's bridge CNI plugin on a bridge and a /24 of its own.
#
#   node.sh start [--owner-pid PID] --pause-image IMAGE DIR CONTROL_PLANE_DIR [IMAGE_TAR...]
#   node.sh stop [--rm] DIR
#   node.sh host-state            what this script may change on the host, printed for a before/after comparison
#
# start imports the image tarballs into the node's containerd (namespace k8s.io) and prints the path of an env
# file (NODE_NAME, NODE_GATEWAY_IP, NODE_POD_CIDR, NODE_BRIDGE, CRICTL, CRI_ENDPOINT, ...) as its last stdout line.
# With --owner-pid, a watchdog runs `stop --rm DIR` once that process is gone, so a test that dies still leaves the
# host as it found it.
#
# What it changes on the host, and stop undoes (also after a failed start):
#   - a bridge (cnrs-<n>) with the gateway address of the pod /24, and the pods' veths;
#   - net.ipv4.ip_forward: the bridge plugin sets it on every pod; the value found at start is put back;
#   - nftables: kube-proxy's own tables `ip kube-proxy` and `ip6 kube-proxy`, deleted at stop;
#   - cgroups: /kubepods (cgroupfs driver) in every v1 hierarchy and in the unified one, removed at stop;
#   - mounts below DIR (containerd's overlays and shm, the kubelet's volumes) and the pods' network namespaces
#     (/run/netns/cni-*), unmounted at stop.
# The kubelet runs with makeIPTablesUtilChains: false, so it adds no iptables chains of its own.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
HERE="$(dirname "$SELF")"
SERVICE_NAME=node.sh
STOP_TIMEOUT=${NODE_STOP_TIMEOUT:-20}
START_TIMEOUT=${NODE_START_TIMEOUT:-180}
# shellcheck source=../services/lib.sh
. "$HERE/../services/lib.sh"

REPO="$(cd "$HERE/../.." && pwd -P)"
BIN_DIR=${K8S_BIN_DIR:-$REPO/target/k8s-bin}
NODE_NAME=localhost
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
# Started in this order, stopped in the reverse one.
COMPONENTS=(containerd kube-scheduler kubelet kube-proxy)

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start [--owner-pid PID] --pause-image IMAGE DIR CONTROL_PLANE_DIR [IMAGE_TAR...]
       $(basename "$0") stop [--rm] DIR
       $(basename "$0") host-state
EOF
    exit 2
}

# ---------------------------------------------------------------- helpers

# wait_for DIR NAME WHAT CHECK...: poll CHECK until it succeeds; fails when NAME exits or after START_TIMEOUT.
wait_for() {
    local dir=$1 name=$2 what=$3 deadline
    shift 3
    deadline=$(($(date +%s) + START_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        comp_running "$dir" "$name" || { tail_log "$dir" "$name"; die "$name exited while waiting for $what"; }
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.3
    done
    tail_log "$dir" "$name"
    die "$name: timed out after ${START_TIMEOUT}s waiting for $what (log: $dir/$name.log)"
}

need() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null ||
            die "$cmd not found: install containerd, runc, containernetworking-plugins and nftables (bash e2e/services/install.sh)"
    done
}

# load_env FILE: the control plane's env file, as variables of this shell.
load_env() {
    # shellcheck disable=SC1090
    . "$1"
}

kubectl_admin() { "$BIN_DIR/kubectl" --kubeconfig "$CP_DIR/kubeconfig" "$@"; }

# pick_subnet: the first 10.<x>.<y>.0/24 that no route or address of the host overlaps, as "x.y".
pick_subnet() {
    local x y used
    used=$(ip -4 route show table all 2>/dev/null; ip -4 addr show 2>/dev/null)
    for x in 244 245 246 247; do
        for y in $(seq 0 250); do
            if ! grep -q "10\.$x\.$y\." <<<"$used"; then
                echo "$x.$y"
                return 0
            fi
        done
    done
    die "no free 10.x.y.0/24 for the pod network"
}

# host-state: everything start may change on the host, in a stable order (a test compares it before and after).
cmd_host_state() {
    echo "ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
    echo "bridges: $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sort | tr '\n' ' ')"
    echo "veths: $(ip -o link show type veth 2>/dev/null | wc -l)"
    echo "netns: $(ls /run/netns 2>/dev/null | grep -c '^cni-' || true)"
    echo "cgroups: $(ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/k8s.io 2>/dev/null | tr '\n' ' ')"
    echo "nftables:"
    nft list ruleset 2>/dev/null | sed 's/^/  /' || echo "  (nft failed)"
    echo "iptables:"
    { iptables-save 2>/dev/null || true; } | grep -v '^#' | sed -e 's/\[[0-9]*:[0-9]*\]//' -e 's/^/  /'
}

# ---------------------------------------------------------------- pki, configs

# node_cert DIR: the kubelet's client certificate (CN=system:node:NAME, O=system:nodes), signed by the control
# plane's CA, and its kubeconfig.
node_cert() {
    local dir=$1 pki=$1/pki
    mkdir -p "$pki"
    chmod 700 "$pki"
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$pki/kubelet.key"
    openssl req -new -key "$pki/kubelet.key" -subj "/O=system:nodes/CN=system:node:$NODE_NAME" \
        -out "$pki/kubelet.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth" >"$pki/kubelet.ext"
    openssl x509 -req -in "$pki/kubelet.csr" -CA "$CP_DIR/pki/ca.crt" -CAkey "$CP_DIR/pki/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 -extfile "$pki/kubelet.ext" \
        -out "$pki/kubelet.crt" 2>/dev/null
    rm -f "$pki/kubelet.csr" "$pki/kubelet.ext"
    cat >"$dir/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $K8S_API_URL
    certificate-authority: $CP_DIR/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $pki/kubelet.crt
    client-key: $pki/kubelet.key
contexts:
- name: e2e
  context: {cluster: e2e, user: kubelet}
current-context: e2e
EOF
}

write_containerd_config() {
    local dir=$1 c=$1/containerd
    mkdir -p "$c/root" "$c/state" "$c/opt" "$dir/cni/conf"
    containerd config default >"$c/config.default.toml"
    python3 - "$c/config.default.toml" "$c/config.toml" "$c" "$PAUSE_IMAGE" "$CNI_BIN_DIR" "$dir/cni/conf" <<'EOF'
import re, sys
src, out, c, pause, cni_bin, cni_conf = sys.argv[1:]
text = open(src).read()
def setting(key, value, text, count=1):
    new, n = re.subn(r'(?m)^(\s*)' + re.escape(key) + r' = .*$', lambda m: m.group(1) + key + ' = ' + value, text, count)
    if n == 0:
        sys.exit(f"containerd's default config has no '{key}'")
    return new
text = setting('root', f'"{c}/root"', text)
text = setting('state', f'"{c}/state"', text)
text = text.replace('address = "/run/containerd/containerd.sock"', f'address = "{c}/containerd.sock"', 1)  # [grpc]
text = setting('sandbox_image', f'"{pause}"', text)
# runc cannot give the sandbox an oom_score_adj below the caller's without CAP_SYS_RESOURCE.
text = setting('restrict_oom_score_adj', 'true', text)
text = setting('bin_dir', f'"{cni_bin}"', text)
text = setting('conf_dir', f'"{cni_conf}"', text)
text = setting('SystemdCgroup', 'false', text)
text = setting('disable_apparmor', 'true', text)
text = re.sub(r'(?m)^(\s*)path = "/opt/containerd"', lambda m: m.group(1) + f'path = "{c}/opt"', text)
# [ttrpc] and [debug] have addresses of their own; keep them off the system's paths too.
text = re.sub(r'(?ms)^(\[ttrpc\]\s*\n\s*address = )""', lambda m: m.group(1) + f'"{c}/containerd.sock.ttrpc"', text)
open(out, 'w').write(text)
EOF
}

write_cni_config() {
    local dir=$1
    cat >"$dir/cni/conf/10-canal-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "canal-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

write_kubelet_config() {
    local dir=$1
    cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
# The machines run cgroup v1 (hybrid), which 1.36 refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# Without this the kubelet adds KUBE-FIREWALL, which drops loopback traffic from other sources on the whole host.
makeIPTablesUtilChains: false
# Reached only on loopback by the API server (logs, exec), which presents no client certificate here.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $CP_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
podLogsDir: $dir/pod-logs
resolvConf: /etc/resolv.conf
staticPodPath: ""
serializeImagePulls: false
# Shared machines fill their disks at times: never evict the test's pods for it, and never collect its images.
evictionHard: {memory.available: "50Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
EOF
}

write_proxy_config() {
    local dir=$1
    cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $CP_DIR/kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$GATEWAY_IP/32"]
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# ---------------------------------------------------------------- start

node_ready() {
    [ "$(kubectl_admin get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
cri_ready() { "$BIN_DIR/crictl" --runtime-endpoint "unix://$1/containerd/containerd.sock" info >/dev/null; }
http_ok() { curl -sf --max-time 2 "$1" >/dev/null; }
https_ok() { curl -skf --max-time 2 "$1" >/dev/null; }

write_env() {
    local dir=$1 tmp=$1/env.tmp name var
    {
        printf 'NODE_DIR=%q\n' "$dir"
        printf 'NODE_NAME=%s\n' "$NODE_NAME"
        printf 'NODE_BRIDGE=%s\n' "$BRIDGE"
        printf 'NODE_POD_CIDR=%s\n' "$POD_CIDR"
        printf 'NODE_GATEWAY_IP=%s\n' "$GATEWAY_IP"
        printf 'CRICTL=%q\n' "$BIN_DIR/crictl"
        printf 'CRI_ENDPOINT=%q\n' "unix://$dir/containerd/containerd.sock"
        printf 'CTR_ADDRESS=%q\n' "$dir/containerd/containerd.sock"
        for name in "${COMPONENTS[@]}"; do
            var=$(echo "$name" | tr 'a-z-' 'A-Z_')
            read_comp "$dir" "$name"
            printf 'NODE_%s_PID=%s\n' "$var" "$COMP_PID"
            printf 'NODE_%s_LOG=%q\n' "$var" "$dir/$name.log"
        done
    } >"$tmp"
    mv -f "$tmp" "$dir/env"
}

main_start() {
    local owner=$1 dir=$2 t0 sub name
    shift 2
    t0=$(date +%s%N)
    dir=$(abs_dir "$dir")
    for name in "${COMPONENTS[@]}"; do
        comp_running "$dir" "$name" && die "$name is already running in $dir (pid $COMP_PID); stop it first"
    done
    kill_watchdog "$dir"
    rm -rf "$dir/env" "$dir"/*.log "$dir"/*.pidinfo "$dir/owner"
    [ -z "$owner" ] || echo "$owner $(starttime_of "$owner")" >"$dir/owner"

    # What stop puts back; recorded before anything changes.
    cat /proc/sys/net/ipv4/ip_forward >"$dir/ip_forward.orig"
    # containerd's own cgroup (named after its namespace) is removed at stop only if this node made it.
    ls -d /sys/fs/cgroup/*/k8s.io >"$dir/cgroups.before" 2>/dev/null || true
    sub=$(pick_subnet)
    POD_CIDR="10.$sub.0/24"
    GATEWAY_IP="10.$sub.1"
    BRIDGE="cnrs-${sub//./-}"
    echo "$BRIDGE" >"$dir/bridge"
    read -r KUBELET_PORT KUBELET_HEALTHZ_PORT SCHED_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT <<<"$(free_ports 5)"

    START_DIR=$dir
    trap start_failed_cleanup EXIT
    # The watchdog undoes everything below if the owner dies, from the first change on.
    [ -z "$owner" ] || spawn_watchdog "$(cut -d' ' -f1 "$dir/owner")" "$(cut -d' ' -f2 "$dir/owner")" "$dir"

    # The bridge exists before any pod, with the gateway address: host services are reached there from the pods.
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up

    node_cert "$dir"
    write_containerd_config "$dir"
    write_cni_config "$dir"
    write_kubelet_config "$dir"
    write_proxy_config "$dir"

    launch "$dir" containerd containerd --config "$dir/containerd/config.toml"
    wait_for "$dir" containerd "the CRI socket" cri_ready "$dir"
    for tar in "$@"; do
        log "importing $(basename "$tar")"
        ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import --no-unpack=false "$tar" >/dev/null ||
            die "ctr could not import $tar"
    done

    launch "$dir" kube-scheduler "$BIN_DIR/kube-scheduler" \
        --kubeconfig="$CP_DIR/kubeconfig" \
        --authentication-kubeconfig="$CP_DIR/kubeconfig" \
        --authorization-kubeconfig="$CP_DIR/kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
        --leader-elect=false --v=1
    wait_for "$dir" kube-scheduler "/healthz" https_ok "https://127.0.0.1:$SCHED_PORT/healthz"

    mkdir -p "$dir/kubelet" "$dir/pod-logs"
    launch "$dir" kubelet "$BIN_DIR/kubelet" \
        --config="$dir/kubelet.yaml" \
        --kubeconfig="$dir/kubelet.kubeconfig" \
        --hostname-override="$NODE_NAME" \
        --node-ip="$GATEWAY_IP" \
        --root-dir="$dir/kubelet" \
        --cert-dir="$dir/kubelet/pki" \
        --v=1
    wait_for "$dir" kubelet "node $NODE_NAME Ready" node_ready

    launch "$dir" kube-proxy "$BIN_DIR/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
    wait_for "$dir" kube-proxy "/healthz" http_ok "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"

    write_env "$dir"
    trap - EXIT
    log "node $NODE_NAME ready (pods on $POD_CIDR, bridge $BRIDGE) in $((($(date +%s%N) - t0) / 1000000)) ms"
    echo "$dir/env"
}

start_failed_cleanup() {
    local rc=$?
    log "start failed: undoing what it changed"
    cleanup "$START_DIR" || true
    kill_watchdog "$START_DIR" || true
    exit "$rc"
}

# ---------------------------------------------------------------- stop

# unmount_below DIR: every mount point at or below DIR, deepest first.
unmount_below() {
    local m
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# remove_cgroup PATH: a cgroup directory and everything below it, leaves first.
remove_cgroup() {
    [ -d "$1" ] || return 0
    find "$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

cleanup() {
    local dir=$1 i bridge="" ns pid
    [ -f "$dir/bridge" ] && bridge=$(cat "$dir/bridge")
    # Pods first, through the CRI while containerd still runs: each sandbox's network is torn down by CNI.
    read_comp "$dir" kubelet
    [ -z "$COMP_PID" ] || terminate "$COMP_PID" "$COMP_ST" || true
    if comp_running "$dir" containerd && [ -x "$BIN_DIR/crictl" ]; then
        timeout 60 "$BIN_DIR/crictl" --runtime-endpoint "unix://$dir/containerd/containerd.sock" rmp -fa >/dev/null 2>&1 || true
    fi
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        read_comp "$dir" "${COMPONENTS[$i]}"
        [ -z "$COMP_PID" ] || terminate "$COMP_PID" "$COMP_ST" || true
        rm -f "$dir/${COMPONENTS[$i]}.pidinfo"
    done
    # Whatever the sandboxes left: their shims (which hold the containers), then mounts and network namespaces.
    for pid in $(pgrep -f "containerd-shim.*-address $dir/containerd/containerd.sock" 2>/dev/null || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -f "$dir/netns.before" ]; then
        for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do
            grep -qx "$ns" "$dir/netns.before" || { umount "/run/netns/$ns" 2>/dev/null || true; rm -f "/run/netns/$ns"; }
        done
    fi
    unmount_below "$dir"
    # kube-proxy's own tables (it made no others).
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
    [ -z "$bridge" ] || ip link del "$bridge" 2>/dev/null || true
    for i in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        remove_cgroup "$i"
    done
    if [ -f "$dir/cgroups.before" ]; then
        for i in /sys/fs/cgroup/*/k8s.io; do
            grep -qx "$i" "$dir/cgroups.before" || remove_cgroup "$i"
        done
    fi
    if [ -f "$dir/ip_forward.orig" ]; then
        cat "$dir/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward || true
    fi
}

cmd_stop() {
    stop_args "$@"
    local dir=$STOP_DIR
    [ -n "$dir" ] || return 0
    kill_watchdog "$dir"
    cleanup "$dir"
    if [ "$STOP_RM" = 1 ]; then
        rm -rf "$dir"
    fi
}

# __watchdog OWNER OWNER_STARTTIME DIR: waits for the owner to go, then stops the node and removes DIR.
cmd_watchdog() {
    local owner=$1 owner_st=$2 dir=$3
    noop() { :; }
    watchdog_wait "the node" "$owner" "$owner_st" "$dir" noop
    rm -f "$dir/watchdog.pidinfo"
    cleanup "$dir"
    rm -rf "$dir"
    exit 0
}

# ---------------------------------------------------------------- main

parse_start() {
    local owner=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --owner-pid) [ $# -ge 2 ] || usage; owner=$2; shift 2 ;;
            --owner-pid=*) owner=${1#*=}; shift ;;
            --pause-image) [ $# -ge 2 ] || usage; PAUSE_IMAGE=$2; shift 2 ;;
            -*) usage ;;
            *) break ;;
        esac
    done
    [ $# -ge 2 ] || usage
    [ -n "${PAUSE_IMAGE:-}" ] || die "--pause-image is required: the sandbox image, imported from one of the tarballs"
    local dir=$1 b
    [ -d "$2" ] || die "control plane dir $2 not found"
    CP_DIR=$(cd "$2" && pwd -P)
    shift 2
    [ "$(id -u)" = 0 ] || die "a real node needs root (it creates a bridge, cgroups and network namespaces)"
    need containerd ctr runc nft ip openssl curl python3
    [ -x "$CNI_BIN_DIR/bridge" ] && [ -x "$CNI_BIN_DIR/host-local" ] ||
        die "no CNI plugins in $CNI_BIN_DIR: install containernetworking-plugins (bash e2e/services/install.sh)"
    for b in kubelet kube-scheduler kube-proxy kubectl crictl; do
        [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found; run $HERE/build.sh first"
    done
    [ -f "$CP_DIR/env" ] || die "$CP_DIR/env not found: start the control plane with control-plane.sh first"
    load_env "$CP_DIR/env"
    check_owner_pid "$owner"
    mkdir -p "$dir"
    ls /run/netns 2>/dev/null | grep '^cni-' >"$dir/netns.before" || true
    main_start "$owner" "$dir" "$@"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) parse_start "$@" ;;
    stop) cmd_stop "$@" ;;
    host-state) cmd_host_state ;;
    __watchdog) [ $# -eq 3 ] || usage; cmd_watchdog "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac

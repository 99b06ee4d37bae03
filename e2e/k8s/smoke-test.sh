#!/usr/bin/env bash
# Smoke test of the throwaway control plane: build (if needed), start, check
# that the apiserver, RBAC, ServiceAccount tokens and the controllers we rely
# on (serviceaccount, statefulset, garbage collector) work, then stop and check
# that no process is left.
#
#   smoke-test.sh [DIR]     (default: a fresh temp dir, removed at the end)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
log() { echo "smoke-test.sh: $*" >&2; }
fail() { echo "smoke-test.sh: FAIL: $*" >&2; exit 1; }

"$HERE/build.sh" >/dev/null
DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/k8s-smoke.XXXXXX")}
trap '"$HERE/control-plane.sh" stop --rm "$DIR"' EXIT
env_file=$("$HERE/control-plane.sh" start --owner-pid $$ "$DIR" | tail -n1)
# shellcheck disable=SC1090
. "$env_file"
export KUBECONFIG KUBECACHEDIR
k() { "$KUBECTL" "$@"; }

# eventually SECONDS CMD...: retry CMD until it succeeds
eventually() {
    local n=$(($1 * 5))
    shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.2
    done
}

[ "$(k version -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | tail -n1)" = "$K8S_VERSION" ] ||
    fail "server /version is not $K8S_VERSION"
k get ns >/dev/null
k create ns smoke >/dev/null
eventually 30 k -n smoke get sa default || fail "kcm did not create ServiceAccount smoke/default"
eventually 30 k -n smoke get cm kube-root-ca.crt || fail "kcm did not publish kube-root-ca.crt"
log "namespace + default ServiceAccount: ok"

# RBAC with a ServiceAccount token
k -n smoke create sa robot >/dev/null
token=$(k -n smoke create token robot --duration=10m)
code() {
    curl -s -o /dev/null -w '%{http_code}' --cacert "$K8S_CA_FILE" \
        -H "Authorization: Bearer $token" "$K8S_API_URL$1"
}
[ "$(code /api/v1/namespaces/smoke/pods)" = 403 ] || fail "token: expected 403 before the RoleBinding"
k -n smoke create role pod-reader --verb=get,list --resource=pods >/dev/null
k -n smoke create rolebinding robot-pods --role=pod-reader --serviceaccount=smoke:robot >/dev/null
code_is() { [ "$(code "$1")" = "$2" ]; }
eventually 10 code_is /api/v1/namespaces/smoke/pods 200 || fail "token: expected 200 after the RoleBinding"
[ "$(code /api/v1/namespaces/default/pods)" = 403 ] || fail "token: expected 403 in another namespace"
log "ServiceAccount token + RBAC: ok"

# StatefulSet -> pods (Pending: no scheduler, no nodes) -> garbage collection
k -n smoke apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: none}]
EOF
eventually 30 k -n smoke get pod web-0 web-1 || fail "statefulset controller did not create web-0/web-1"
[ "$(k -n smoke get pod web-0 -o jsonpath='{.status.phase}')" = Pending ] || fail "web-0 not Pending"
k -n smoke delete sts web --cascade=background --wait=false >/dev/null
no_pods() { [ -z "$(k -n smoke get pods -o name)" ]; }
eventually 30 no_pods || fail "garbage collector did not delete the pods"
log "StatefulSet pods created and garbage-collected: ok"

"$HERE/control-plane.sh" stop --rm "$DIR"
trap - EXIT
for pid in $K8S_ETCD_PID $K8S_API_PID $K8S_KCM_PID; do
    if [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        fail "pid $pid still running after stop"
    fi
done
log "PASS"

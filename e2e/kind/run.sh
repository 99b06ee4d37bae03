#!/usr/bin/env bash
# make e2e-kind: the end-to-end scenarios of operator/tests/kubernetes_e2e.rs on a kind cluster, with the real
# images, the Helm chart installed by helm, and the test itself running as a Job inside the cluster.
# See README.md next to this file.
#
#   run.sh [--keep]          build, load, install, run; delete the cluster afterwards unless --keep
#   run.sh --print-images    print each Dockerfile and the image it is built as, one pair a line, and exit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
KIND_DIR=$ROOT/e2e/kind
CLUSTER=${KIND_CLUSTER:-canal-e2e}
NAMESPACE=canal-e2e
JOB=canal-e2e-runner
RUNNER_IMAGE=canal-rs/e2e-runner:dev

log() { printf '[e2e-kind] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

keep=0
print_images=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        --print-images) print_images=1 ;;
        -h|--help) usage ;;
        *) log "unknown argument: $arg"; usage ;;
    esac
done

# The chart's default operator image and the example's spec.image are what a user installs; building exactly
# those names makes the run test them rather than something tagged for the test.
chart_image() {
    awk '
        /^image:/ { in_image = 1; next }
        /^[^[:space:]#]/ { in_image = 0 }
        in_image && $1 == "repository:" { repo = $2 }
        in_image && $1 == "tag:" { tag = $2 }
        END { gsub(/["\047]/, "", repo); gsub(/["\047]/, "", tag); if (repo != "" && tag != "") print repo ":" tag }
    ' "$ROOT/charts/canal-operator/values.yaml"
}
example_image() {
    # The only image: key of the example is the CanalInstance's spec.image.
    awk '$1 == "image:" { v = $2; gsub(/["\047]/, "", v); print v; exit }' "$ROOT/examples/canalinstance.yaml"
}
OPERATOR_IMAGE=$(chart_image)
INSTANCE_IMAGE=$(example_image)
[ -n "$OPERATOR_IMAGE" ] || die "cannot read image.repository and image.tag from charts/canal-operator/values.yaml"
[ -n "$INSTANCE_IMAGE" ] || die "cannot read spec.image from examples/canalinstance.yaml"

# Dockerfile under images/ and the tag it is built as; operator/tests/images.rs reads this table through
# --print-images.
IMAGES=(
    "canal-instance.Dockerfile $INSTANCE_IMAGE"
    "canal-operator.Dockerfile $OPERATOR_IMAGE"
    "e2e-runner.Dockerfile $RUNNER_IMAGE"
)
if [ "$print_images" = 1 ]; then
    printf '%s\n' "${IMAGES[@]}"
    exit 0
fi

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed or not on PATH; $2"
}
need docker "see https://docs.docker.com/engine/install/"
need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need helm "see https://helm.sh/docs/intro/install/"
need kubectl "see https://kubernetes.io/docs/tasks/tools/"
docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine (is the daemon running, and may this user use it?)"

# A private kubeconfig: kubectl and helm talk to this cluster only, and the user's current context is left alone.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/canal-e2e-kind.XXXXXX")
export KUBECONFIG=$WORK/kubeconfig

cleanup() {
    local rc=$?
    if [ "$keep" = 1 ]; then
        log "kept cluster $CLUSTER; kubectl access: kind export kubeconfig --name $CLUSTER"
    elif kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        log "deleting cluster $CLUSTER (--keep keeps it)"
        kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Fills the images' OCI source label when the checkout has a remote.
SOURCE_URL=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
export DOCKER_BUILDKIT=1
tags=()
for entry in "${IMAGES[@]}"; do
    read -r dockerfile tag <<<"$entry"
    log "building $tag from images/$dockerfile"
    docker build -f "$ROOT/images/$dockerfile" -t "$tag" --build-arg "SOURCE_URL=$SOURCE_URL" "$ROOT"
    tags+=("$tag")
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "using existing kind cluster $CLUSTER"
    kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
else
    log "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s
fi

log "loading images into $CLUSTER"
kind load docker-image --name "$CLUSTER" "${tags[@]}"

log "starting MariaDB and ZooKeeper"
kubectl apply -f "$KIND_DIR/services.yaml"
kubectl -n "$NAMESPACE" rollout status deployment/mariadb --timeout=300s
kubectl -n "$NAMESPACE" rollout status statefulset/zookeeper --timeout=300s

log "installing the canal-operator chart"
helm upgrade --install canal-operator "$ROOT/charts/canal-operator" \
    -n canal-system --create-namespace --wait --timeout 5m

log "starting the test Job"
# Foreground, so the old run's pod is gone before the new one is looked up by its job-name label.
kubectl -n "$NAMESPACE" delete job "$JOB" --ignore-not-found --cascade=foreground --wait=true
kubectl apply -f "$KIND_DIR/runner.yaml"

diagnostics() {
    log "diagnostics:"
    kubectl get pods -A -o wide >&2 || true
    kubectl -n "$NAMESPACE" describe job "$JOB" >&2 || true
    # Both operator replicas: only the leader reconciles, and which one leads is not known here.
    kubectl -n canal-system logs -l app.kubernetes.io/name=canal-operator --prefix --tail=200 >&2 || true
    kubectl get canalinstances,statefulsets -A -o wide >&2 || true
}

# kubectl logs -f fails while the container has not started yet.
phase=""
for _ in $(seq 1 150); do
    phase=$(kubectl -n "$NAMESPACE" get pods -l job-name="$JOB" -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)
    case "$phase" in Running|Succeeded|Failed) break ;; esac
    sleep 2
done
case "$phase" in
    Running|Succeeded|Failed) ;;
    *) kubectl -n "$NAMESPACE" describe pods -l job-name="$JOB" >&2 || true
       die "the test pod did not start within 300s (phase: ${phase:-none})" ;;
esac
kubectl -n "$NAMESPACE" logs -f "job/$JOB" || log "log stream ended early; waiting for the Job's outcome"

# The log stream may end before the Job records its outcome, or break off; the Job's conditions are the verdict.
while :; do
    conditions=$(kubectl -n "$NAMESPACE" get job "$JOB" \
        -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
        *" Complete "*) log "end-to-end test passed"; exit 0 ;;
        *" Failed "*)
            diagnostics
            [ "$keep" = 1 ] || log "rerun with --keep to keep the cluster for a closer look"
            die "end-to-end test failed" ;;
    esac
    sleep 2
done

# canal-rs front door. `make demo` runs the main job locally; `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all deps k8s tools build demo test e2e e2e-kind lint fmt bench crds images

all: build

## deps: install the local services (MariaDB, ZooKeeper) when missing and the canal-python test venv
deps:
	bash e2e/services/install.sh
	bash e2e/python/venv.sh >/dev/null

## k8s: build etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into target/k8s-bin
## (about 7 minutes the first time, then cached; see e2e/k8s/README.md)
k8s:
	bash e2e/k8s/build.sh >/dev/null

## tools: build helm, promtool and prometheus from Go modules into target/tools (about 4 minutes the
## first time, then cached; see e2e/tools/build.sh)
tools:
	bash e2e/tools/build.sh >/dev/null

build:
	$(CARGO) build --workspace

## demo: local MariaDB + standalone canal-instance + sample writes + tail; Ctrl-C stops everything
demo: deps build
	bash examples/demo.sh

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

## test: lint, then every unit and integration test against real MariaDB/ZooKeeper/canal-python, and the end-to-end
## test on a real API server and a real node with the images of make images (make e2e runs that one alone)
test: deps k8s tools images lint
	$(CARGO) test --workspace --all-features --no-fail-fast

## e2e: the operator, the chart and two canal-instance pods on a real kube-apiserver, driven with kubectl
e2e: deps k8s tools images
	$(CARGO) build --workspace
	$(CARGO) test -p canal-operator --test kubernetes_e2e -- --nocapture

## images: canal-rs/canal-instance, canal-rs/canal-operator and canal-rs/pause as docker-archives in target/images/
## (ctr -n k8s.io images import target/images/NAME.tar), built here without Docker or a registry (needs umoci,
## skopeo and tini: make deps); see images/README.md
images:
	bash images/build.sh

## e2e-kind: the same scenarios in a kind cluster (needs Docker, kind, helm, kubectl): builds the images, loads them,
## installs the chart with helm and runs the test as a Job. ARGS=--keep keeps the cluster.
e2e-kind:
	bash e2e/kind/run.sh $(ARGS)

## bench: canal-rs against its peers on the same binlog (throughput, RSS, CPU, latency; see docs/benchmarks.md),
## then the failover times of servers and of consumer replicas. BENCH_SCALE=0.1 for a quick run.
bench: deps
	$(CARGO) build --release -p canal-instance -p canal-bench
	$(CARGO) test -p canal-instance --test ha_failover --test client_ha -- --nocapture
	target/release/canal-bench
	mkdir -p docs
	cp target/bench/report.md docs/benchmarks.md
	if [ -f target/bench/throughput.png ]; then cp target/bench/throughput.png docs/benchmarks.png; fi

## crds: regenerate the CanalInstance CRD (crds/ and the Helm chart's copy) and the chart's values schema
crds:
	$(CARGO) run -q -p canal-operator --bin crdgen > crds/canalinstance.yaml
	cp crds/canalinstance.yaml charts/canal-operator/crds/canalinstance.yaml
	$(CARGO) run -q -p canal-operator --bin crdgen values-schema > charts/canal-operator/values.schema.json

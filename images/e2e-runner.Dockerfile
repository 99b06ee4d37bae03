# syntax=docker/dockerfile:1
# The end-to-end test (operator/tests/kubernetes_e2e.rs) as a Job inside a cluster, with kubectl. Build context:
# the repository root. e2e/kind/run.sh builds it and runs it; see e2e/kind/README.md.
#   docker build -f images/e2e-runner.Dockerfile -t canal-rs/e2e-runner:dev .

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools jq \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
# Same profile as the canal-instance and canal-operator images, so the shared target cache serves all three.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
# The test finds examples/ and charts/ under the parent of e2e's CARGO_MANIFEST_DIR, fixed at compile time:
# the final stage puts them under this same directory.
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY third_party/ third_party/
COPY operator/ operator/
COPY instance/ instance/
COPY e2e/Cargo.toml e2e/
COPY e2e/src/ e2e/src/
COPY bench/Cargo.toml bench/
COPY bench/src/ bench/src/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Old test binaries linger in the cached target dir, so the one just built is taken from cargo's own report.
RUN --mount=type=cache,id=canal-rs-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=canal-rs-target,target=/src/target,sharing=locked \
    cargo test --release --locked --target x86_64-unknown-linux-musl -p canal-operator --test kubernetes_e2e \
        --no-run --message-format=json-render-diagnostics > /tmp/cargo.json \
 && exe=$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "kubernetes_e2e" and .profile.test) | .executable // empty' /tmp/cargo.json) \
 && if [ -z "$exe" ]; then echo "cargo reported no kubernetes_e2e test executable" >&2; exit 1; fi \
 && install -D -m 0755 "$exe" /out/kubernetes_e2e

FROM rust:1.95-bookworm AS kubectl
ARG KUBECTL_VERSION=v1.36.3
RUN curl -fsSLo /kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" \
 && curl -fsSLo /kubectl.sha256 "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl.sha256" \
 && echo "$(cat /kubectl.sha256)  /kubectl" | sha256sum --check \
 && chmod 0755 /kubectl

FROM debian:bookworm-slim
ARG SOURCE_URL=""
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.title="canal-rs e2e runner" \
      org.opencontainers.image.description="canal-rs end-to-end test against an existing Kubernetes cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=kubectl /kubectl /usr/local/bin/kubectl
COPY --from=builder /out/kubernetes_e2e /usr/local/bin/kubernetes_e2e
COPY examples/ /src/examples/
COPY charts/ /src/charts/
# kubectl keeps its discovery cache under $HOME; the user has no home directory of its own.
ENV HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/kubernetes_e2e", "--nocapture", "--test-threads=1"]

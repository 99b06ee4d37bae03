# syntax=docker/dockerfile:1
# canal-instance as one static (musl) binary on an empty base, for amd64 or arm64. Build context: the repository root.
#   docker build -f images/canal-instance.Dockerfile -t canal-rs/canal-instance:0.1.0 .

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools tini \
 && rm -rf /var/lib/apt/lists/*
# The musl target of the platform being built: buildx sets TARGETARCH for each platform of a multi-platform build
# (.github/workflows/release.yml builds arm64 under QEMU), a plain docker build sets it to the host's.
ARG TARGETARCH
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
        amd64) musl=x86_64-unknown-linux-musl ;; \
        arm64) musl=aarch64-unknown-linux-musl ;; \
        *) echo "no musl target for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && rustup target add "$musl" \
 && echo "$musl" > /musl-target
# ring, zstd-sys and psm compile C: pinned to musl-gcc so it never falls back to glibc's gcc and headers.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
# The workspace's release profile keeps line tables (debug = 1); the image does without them, and backtraces
# still name functions.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
WORKDIR /src
# Only what the workspace needs to compile, so edits to docs, charts or examples keep this layer cached.
COPY Cargo.toml Cargo.lock ./
COPY third_party/ third_party/
COPY operator/ operator/
COPY instance/ instance/
COPY e2e/Cargo.toml e2e/
COPY e2e/src/ e2e/src/
COPY bench/Cargo.toml bench/
COPY bench/src/ bench/src/
# The target dir is a cache mount, so the binary has to leave it within the same RUN.
RUN --mount=type=cache,id=canal-rs-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=canal-rs-target,target=/src/target,sharing=locked \
    musl=$(cat /musl-target) \
 && cargo build --release --locked --target "$musl" -p canal-instance --bin canal-instance \
 && install -D -m 0755 "target/$musl/release/canal-instance" /out/canal-instance \
 && if readelf -lW /out/canal-instance | grep -q 'program interpreter'; then \
        echo "/out/canal-instance is dynamically linked, but scratch has no loader" >&2; exit 1; \
    fi

FROM scratch
# The repository records no public URL (no git remote, no Cargo.toml repository); run.sh passes its remote.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.title="canal-instance" \
      org.opencontainers.image.description="A canal-compatible MySQL/MariaDB change-data-capture server" \
      org.opencontainers.image.licenses="Apache-2.0"
# Roots for TLS peers other than the API server, which is verified with the ServiceAccount's CA.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/canal-instance /usr/local/bin/canal-instance
# tini is PID 1 so that canal-instance is not: the kernel drops SIGKILL and SIGSTOP sent to a PID namespace's init
# from inside the namespace, which is where `kubectl debug --target` puts a container that signals the instance.
# tini-static is statically linked, as scratch needs.
COPY --from=builder /usr/bin/tini-static /usr/local/bin/tini
# The UID the Helm chart and the operator's StatefulSets run as (runAsNonRoot needs it numeric).
USER 65532:65532
# The canal protocol (server.port), then /healthz, /readyz and /metrics (server.metricsPort).
EXPOSE 11111 11112
ENTRYPOINT ["/usr/local/bin/tini", "--", "/usr/local/bin/canal-instance"]

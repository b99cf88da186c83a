# syntax=docker/dockerfile:1
# The kiln executor image: a static kiln binary, CA certificates and an empty registry
# config on top of scratch. Built by kiln itself (tests/tests/e2e/executor_image.rs) or by any
# BuildKit-compatible builder:
#
#   kiln build --context . --target executor --destination REGISTRY/kiln/executor:TAG
#   kiln build --context . --target debug    --destination REGISTRY/kiln/executor:debug
#
# BASE_IMAGE is any Debian bookworm image; the builder stage installs Rust with rustup, so it
# needs the network (static.rust-lang.org, crates.io and a Debian mirror). Behind a
# TLS-intercepting proxy, pass its CA bundle as a secret:
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates curl gcc libc6-dev musl-tools busybox-static \
 && rm -rf /var/lib/apt/lists/*
# An optional CA bundle given as the secret `ca-certificates` is trusted for downloads
# (curl, rustup, cargo); it never reaches a layer, and the image gets Debian's bundle.
RUN printf '%s\n' \
      'if [ -f /run/secrets/ca-certificates ]; then' \
      '  export CURL_CA_BUNDLE=/run/secrets/ca-certificates SSL_CERT_FILE=/run/secrets/ca-certificates CARGO_HTTP_CAINFO=/run/secrets/ca-certificates' \
      'fi' > /usr/local/bin/use-build-ca
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The toolchain version, its components and the wasm32-wasip2 target come from
# rust-toolchain.toml; rustup installs them on the first cargo call below.
RUN --mount=type=secret,id=ca-certificates \
    . /usr/local/bin/use-build-ca \
 && curl -fsSL --proto '=https' --tlsv1.2 -o /tmp/rustup-init \
      https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y -q --profile minimal --default-toolchain none --no-modify-path \
 && rm /tmp/rustup-init
WORKDIR /src
COPY . .
# The cargo profile of the executor binary: `release`, or `quick` (Cargo.toml: the same code
# without optimisation, for kiln's own self-hosting test, which must compile, link and run it).
ARG CARGO_PROFILE=release
# Cargo's registry and the target dir live in cache mounts: rebuilding the second target
# (or the next release) is incremental, and neither ends up in a layer.
RUN --mount=type=secret,id=ca-certificates \
    --mount=type=cache,target=/opt/cargo/registry \
    --mount=type=cache,target=/build/target \
    . /usr/local/bin/use-build-ca \
 && rustup toolchain install \
 && rustup target add x86_64-unknown-linux-musl \
 && CARGO_TARGET_DIR=/build/target cargo build --profile "$CARGO_PROFILE" --locked -p kiln --target x86_64-unknown-linux-musl \
 && install -D -m 0755 "/build/target/x86_64-unknown-linux-musl/$CARGO_PROFILE/kiln" /out/kiln/executor \
 && install -d -m 0755 /out/kiln/.docker /out/workspace \
 && printf '{}\n' > /out/kiln/.docker/config.json \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/kiln/ssl/certs/ca-certificates.crt

# The debug image's manual pages and bash completion, made from kiln's own flag definitions.
RUN install -d /debug/usr/share/man/man1 /debug/usr/share/bash-completion/completions \
 && /out/kiln/executor manpage > /debug/usr/share/man/man1/kiln.1 \
 && /out/kiln/executor manpage build > /debug/usr/share/man/man1/kiln-build.1 \
 && /out/kiln/executor manpage warm > /debug/usr/share/man/man1/kiln-warm.1 \
 && /out/kiln/executor completion bash > /debug/usr/share/bash-completion/completions/kiln

FROM scratch AS executor
COPY --from=builder /out/ /
ENV HOME=/root \
    USER=root \
    PATH=/kiln \
    DOCKER_CONFIG=/kiln/.docker/ \
    SSL_CERT_FILE=/kiln/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/kiln/ssl/certs
WORKDIR /workspace
ENTRYPOINT ["/kiln/executor"]

FROM executor AS debug
COPY --from=builder /bin/busybox /busybox/busybox
COPY --from=builder /debug/ /
RUN ["/busybox/busybox", "--install", "-s", "/busybox"]
ENV PATH=/kiln:/busybox

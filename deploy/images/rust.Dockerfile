# The build stage's base image, for machines that cannot pull it: what the official
# docker.io/library/rust:<version>-slim-bookworm holds (Debian bookworm-slim, gcc, libc6-dev and
# a minimal rustup toolchain in /usr/local), made the same way from the locally assembled
# debian:bookworm-slim. scripts/images.sh builds it under the official name, so the Dockerfile
# at the root is the one a user with a registry builds unchanged.
FROM docker.io/library/debian:bookworm-slim

# Keep RUST_VERSION equal to the root Dockerfile's (scripts/images.sh passes that one).
ARG RUST_VERSION=1.95.0
# rustup-init from rustup's own archive, pinned by checksum as the official image pins it.
ARG RUSTUP_VERSION=1.28.2
ARG RUSTUP_SHA256=20a06e644b0d9bd2fbdbfd52d42540bdde820ea7df86e92e533c073da0cdd43c

ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Downloads trust the build secret build_ca when given (a CA bundle, for a build behind a
# TLS-inspecting proxy; scripts/images.sh passes the host's), else the public CAs.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=build_ca,target=/run/secrets/build_ca \
    if [ -s /run/secrets/build_ca ]; then export CURL_CA_BUNDLE=/run/secrets/build_ca SSL_CERT_FILE=/run/secrets/build_ca; fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev curl \
 && curl --proto '=https' --tlsv1.2 -fsSL -o /tmp/rustup-init \
      "https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-gnu/rustup-init" \
 && echo "${RUSTUP_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
 && rm /tmp/rustup-init \
 && chmod -R a+w "${RUSTUP_HOME}" "${CARGO_HOME}" \
 && apt-get purge -y --auto-remove curl \
 && rm -rf /var/lib/apt/lists/* \
 && rustc --version && cargo --version

# syntax=docker/dockerfile:1
# pedidos' images: one build of the daemons (scripts/lib/daemons.txt), then one image per daemon
# that differs from the others only in its entry point, admin port and title. All share every
# layer (Debian bookworm-slim, ca-certificates and libssl3, the daemons' binaries), so a registry
# or a node stores them once; one cargo invocation compiles the dependencies once for all.
#
#   docker build --target fraud -t pedidos-fraud .          (api, fraud, notification, monitoring)
#   scripts/images.sh                                       (all four, here, with buildah)
#
# Configuration only through PEDIDOS_* variables or a conf.toml mounted at
# /etc/pedidos/conf.toml with PEDIDOS_CONFIG=/etc/pedidos/conf.toml. The working directory,
# /var/lib/pedidos, is a volume: the API's SQLite order view (sqlite:pedidos-api.db) and
# monitoring's audit file live there.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# librdkafka is built from source (configure, make, a C compiler) against the system OpenSSL and
# zlib; sqlx's TLS is native-tls (OpenSSL) too.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The daemons built are those of scripts/lib/daemons.txt, the one list, in one cargo invocation.
# The crates' download cache and the target directory are cache mounts: a rebuild after a source
# change compiles only the workspace's crates. Both are outside the image; the binaries are
# copied out of the cache mount into /out. Downloads trust the build secret build_ca when given
# (a CA bundle, for a build behind a TLS-inspecting proxy), else the public CAs.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=cache,id=pedidos-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=pedidos-target,target=/src/target \
    --mount=type=secret,id=build_ca,target=/run/secrets/build_ca \
    if [ -s /run/secrets/build_ca ]; then export CARGO_HTTP_CAINFO=/run/secrets/build_ca; fi \
 && awk '!/^#/ && NF { print "-p"; print $1 }' scripts/lib/daemons.txt \
      | xargs cargo build --release --locked \
 && mkdir -p /out \
 && awk '!/^#/ && NF { print "target/release/" $1 }' scripts/lib/daemons.txt | xargs cp -t /out/

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the system CA bundle that verifies Confluent Cloud's brokers; libssl3: the
# OpenSSL that librdkafka and sqlx link. The daemons run as an unprivileged user of their own.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 pedidos \
 && useradd --system --uid 10001 --gid pedidos --home-dir /var/lib/pedidos --no-create-home \
      --shell /usr/sbin/nologin pedidos \
 && install -d -o pedidos -g pedidos -m 0750 /var/lib/pedidos \
 && install -d -m 0755 /etc/pedidos
COPY --from=build /out/ /usr/local/bin/
# The workspace's version, which each binary's --version prints (scripts/images.sh passes it
# from Cargo.toml and the smoke test compares the two).
ARG PEDIDOS_VERSION=0.0.0
LABEL org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${PEDIDOS_VERSION}"
WORKDIR /var/lib/pedidos
VOLUME ["/var/lib/pedidos"]
USER 10001:10001
# Each daemon stops gracefully on SIGTERM: intake stops, in-flight records finish, offsets are
# committed, exit 0.
STOPSIGNAL SIGTERM

# One stage per daemon (`--target`): its entry point, and its HTTP port on every interface, as a
# container's port must be (the daemons' own default is loopback). The API also refuses that
# address under api.auth = "none" unless api.allow_anonymous = true: choose one or the other.
# Written out, not generated: a Dockerfile has no loop, and a stage taking the daemon as a build
# argument could not name its binary in an exec-form ENTRYPOINT, nor keep `--target fraud`
# meaning what it does.
FROM runtime AS api
LABEL org.opencontainers.image.title="pedidos-api"
ENV PEDIDOS_API__LISTEN=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/api"]

FROM runtime AS fraud
LABEL org.opencontainers.image.title="pedidos-fraud"
ENV PEDIDOS_FRAUD__ADMIN_LISTEN=0.0.0.0:9101
EXPOSE 9101
ENTRYPOINT ["/usr/local/bin/fraud"]

FROM runtime AS notification
LABEL org.opencontainers.image.title="pedidos-notification"
ENV PEDIDOS_NOTIFICATION__ADMIN_LISTEN=0.0.0.0:9102
EXPOSE 9102
ENTRYPOINT ["/usr/local/bin/notification"]

FROM runtime AS monitoring
LABEL org.opencontainers.image.title="pedidos-monitoring"
ENV PEDIDOS_MONITORING__ADMIN_LISTEN=0.0.0.0:9103
EXPOSE 9103
ENTRYPOINT ["/usr/local/bin/monitoring"]

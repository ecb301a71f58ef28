# shellcheck shell=bash
# The names of pedidos' images and their base images: sourced, never run (scripts/images.sh
# builds them, scripts/image-smoke.sh runs them). Needs scripts/lib/buildah.sh for image_size.

# The Dockerfile's own defaults, read from it so there is one source.
# shellcheck disable=SC2034 # used by the scripts that source this
RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
DEBIAN_RELEASE=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
DEBIAN_IMAGE=docker.io/library/debian:$DEBIAN_RELEASE-slim
RUST_IMAGE=docker.io/library/rust:$RUST_VERSION-slim-$DEBIAN_RELEASE
# The workspace's version: the images' tag and label, and what each binary's --version prints.
PEDIDOS_VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

# image_repo DAEMON: localhost/pedidos-DAEMON; image_name DAEMON: with the version's tag.
image_repo() { printf 'localhost/pedidos-%s\n' "$1"; }
image_name() { printf '%s:%s\n' "$(image_repo "$1")" "$PEDIDOS_VERSION"; }

# image_size NAME: the image's size, uncompressed, as buildah counts it ("203 MB").
image_size() {
  bh images --noheading --format '{{.Size}}' "$1" 2>/dev/null | head -n 1
}

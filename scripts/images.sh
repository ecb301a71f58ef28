#!/usr/bin/env bash
# Builds pedidos' container images from ./Dockerfile with buildah: no Docker engine, no registry.
# One image per daemon (pedidos-api, pedidos-fraud, pedidos-notification, pedidos-monitoring,
# tagged with the workspace's version and `latest`), all from one build of the four binaries.
#
# No registry can be reached, so the two base images the Dockerfile names are assembled here,
# under the official names, once, and kept in the image store under the cache:
#   docker.io/library/debian:bookworm-slim
#       Debian's `debootstrap --variant=minbase bookworm` from Debian's mirror, upgraded from
#       bookworm-updates and bookworm-security, apt's lists and caches removed, imported by a
#       `FROM scratch` + `ADD rootfs.tar /` build.
#   docker.io/library/rust:<RUST_VERSION>-slim-bookworm
#       deploy/images/rust.Dockerfile on that base: gcc, libc6-dev and rustup's minimal
#       toolchain of the root Dockerfile's RUST_VERSION, as the official image is made.
# A user with a registry builds the same Dockerfile against the official images unchanged.
#
# Usage: scripts/images.sh [bases]      (bases: only the two base images)
# Environment: PEDIDOS_CACHE, PEDIDOS_IMAGE_STORE (scripts/lib/buildah.sh),
#              DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              PEDIDOS_BUILD_CA (default /etc/ssl/certs/ca-certificates.crt).
# Prints the sizes of the images it built. Needs root, buildah and debootstrap (Debian
# packages; scripts/lib/install.sh installs them).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
. scripts/lib/daemons.sh
. scripts/lib/buildah.sh
. scripts/lib/images.sh

readonly DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The CA bundle the build's downloads (rustup, crates) trust, passed as the build secret
# build_ca: this machine's own, so a build behind a TLS-inspecting proxy works as the host does.
readonly BUILD_CA=${PEDIDOS_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
((EUID == 0)) || die "buildah builds here as root (vfs storage, chroot isolation); run as root"
command -v buildah >/dev/null 2>&1 || die "buildah not found (Debian: apt-get install buildah)"

# --- base images ---------------------------------------------------------------------------
debian_base() {
  if bh_has_image "$DEBIAN_IMAGE"; then return; fi
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (Debian: apt-get install debootstrap)"
  log "assembling $DEBIAN_IMAGE: debootstrap --variant=minbase $DEBIAN_RELEASE"
  local work
  work=$(mktemp -d "$PEDIDOS_CACHE/debian-rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf -- '$work'" RETURN
  debootstrap --variant=minbase "$DEBIAN_RELEASE" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -f "$work/rootfs/etc/apt/sources.list"
  cat >"$work/rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_RELEASE $DEBIAN_RELEASE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: $DEBIAN_RELEASE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  chroot "$work/rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -qq -y upgrade \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /tmp/*' \
    >>"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "apt-get upgrade failed"; }
  tar --numeric-owner -C "$work/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$work/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$work/Containerfile"
  bh bud --quiet --file "$work/Containerfile" --tag "$DEBIAN_IMAGE" "$work" >/dev/null
}

rust_base() {
  if bh_has_image "$RUST_IMAGE"; then return; fi
  log "assembling $RUST_IMAGE: deploy/images/rust.Dockerfile (rustup, Rust $RUST_VERSION)"
  bh bud --quiet --file deploy/images/rust.Dockerfile --build-arg "RUST_VERSION=$RUST_VERSION" \
    --secret "id=build_ca,src=$BUILD_CA" --tag "$RUST_IMAGE" deploy/images >/dev/null
}

debian_base
rust_base
if [[ ${1:-} == bases ]]; then exit 0; fi

# --- the daemons' images ---------------------------------------------------------------------
# --layers: each instruction's result is kept, so an unchanged Dockerfile and sources rebuild
# nothing; the cargo build's own caches are its cache mounts (under TMPDIR, see buildah.sh).
for daemon in "${DAEMONS[@]}"; do
  log "building $(image_name "$daemon")"
  bh bud --layers --target "$daemon" --build-arg "PEDIDOS_VERSION=$PEDIDOS_VERSION" \
    --secret "id=build_ca,src=$BUILD_CA" \
    --tag "$(image_name "$daemon")" --tag "$(image_repo "$daemon"):latest" . >&2
done
# Layers no longer named by any image (earlier builds' intermediate results) only take space.
bh rmi --prune >/dev/null 2>&1 || true
for daemon in "${DAEMONS[@]}"; do
  printf '%s\t%s\n' "$(image_name "$daemon")" "$(image_size "$(image_name "$daemon")")"
done

#!/usr/bin/env bash
# Builds pedidos' container images from ./Dockerfile with buildah: no Docker engine, no registry.
# One image per daemon (pedidos-api, pedidos-fraud, pedidos-notification, pedidos-monitoring,
# tagged with the workspace's version and `latest`), all from one build of the four binaries.
#
# No registry can be reached, so the two base images the Dockerfile names are assembled here,
# under the official names, once, and kept in the image store under the cache:
#   docker.io/library/debian:bookworm-slim
#       Debian's `debootstrap --variant=minbase bookworm` from Debian's mirror, upgraded from
#       bookworm-updates and bookworm-security, without documentation, manual pages and
#       translations (as the official slim image), apt's lists and caches removed, imported by a
#       `FROM scratch` + `ADD rootfs.tar /` build.
#   docker.io/library/rust:<RUST_VERSION>-slim-bookworm
#       deploy/images/rust.Dockerfile on that base: gcc, libc6-dev and rustup's minimal
#       toolchain of the root Dockerfile's RUST_VERSION, as the official image is made.
# A user with a registry builds the same Dockerfile against the official images unchanged.
#
# Usage: scripts/images.sh [bases]      (bases: only the two base images)
# Environment: PEDIDOS_CACHE, PEDIDOS_IMAGE_STORE, PEDIDOS_STORAGE_DRIVER (scripts/lib/buildah.sh),
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
((EUID == 0)) || die "buildah builds here as root (chroot isolation, no user namespace); run as root"
command -v buildah >/dev/null 2>&1 || die "buildah not found (Debian: apt-get install buildah)"

# Scratch space beside the store (a Debian root file system does not belong in a small /tmp).
scratch=$(mktemp -d "$PEDIDOS_CACHE/images-scratch.XXXXXX")
trap 'rm -rf -- "$scratch"' EXIT

# --- base images ---------------------------------------------------------------------------
# A base image is made again when its recipe changes: the hash of the recipe it was made from is
# kept beside the store (debian: debian_base's own text and the mirror; rust: rust.Dockerfile,
# the Rust version and the debian recipe).
recipes=$PEDIDOS_IMAGE_STORE/recipes
mkdir -p -- "$recipes"
made_from() { # made_from IMAGE RECIPE: the image exists and was made from that recipe
  bh_has_image "$1" && [[ $(cat "$recipes/${1//[\/:]/_}" 2>/dev/null) == "$2" ]]
}
made() { printf '%s\n' "$2" >"$recipes/${1//[\/:]/_}"; }

debian_base() {
  if made_from "$DEBIAN_IMAGE" "$debian_recipe"; then return; fi
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (Debian: apt-get install debootstrap)"
  log "assembling $DEBIAN_IMAGE: debootstrap --variant=minbase $DEBIAN_RELEASE"
  local work=$scratch/debian
  mkdir -p -- "$work"
  debootstrap --variant=minbase "$DEBIAN_RELEASE" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  # As Debian's official slim images: no documentation, manual pages or translations, now or in
  # packages installed later (dpkg's path-exclude); copyright files kept.
  cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
SLIM
  find "$work/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$work/rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$work/rootfs/usr/share/"{man,groff,info,lintian,linda,locale}/*
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
  made "$DEBIAN_IMAGE" "$debian_recipe"
  rm -rf -- "$work"
}

rust_base() {
  local recipe
  recipe=$({ cat deploy/images/rust.Dockerfile; echo "$RUST_VERSION $debian_recipe"; } | sha256sum | cut -c1-16)
  if made_from "$RUST_IMAGE" "$recipe"; then return; fi
  log "assembling $RUST_IMAGE: deploy/images/rust.Dockerfile (rustup, Rust $RUST_VERSION)"
  bh bud --quiet --file deploy/images/rust.Dockerfile --build-arg "RUST_VERSION=$RUST_VERSION" \
    --secret "id=build_ca,src=$BUILD_CA" --tag "$RUST_IMAGE" deploy/images >/dev/null
  made "$RUST_IMAGE" "$recipe"
}

debian_recipe=$({ declare -f debian_base; echo "$DEBIAN_MIRROR"; } | sha256sum | cut -c1-16)
debian_base
rust_base
if [[ ${1:-} == bases ]]; then exit 0; fi

# --- the daemons' images ---------------------------------------------------------------------
# --layers: each instruction's result is kept, so an unchanged Dockerfile and sources rebuild
# nothing; the cargo build's own caches are its cache mounts (under TMPDIR, see buildah.sh).
build_log=$scratch/build.log
for daemon in "${DAEMONS[@]}"; do
  log "building $(image_name "$daemon")"
  bh bud --layers --target "$daemon" --build-arg "PEDIDOS_VERSION=$PEDIDOS_VERSION" \
    --secret "id=build_ca,src=$BUILD_CA" \
    --tag "$(image_name "$daemon")" --tag "$(image_repo "$daemon"):latest" . 2>&1 | tee -a "$build_log" >&2
done
# The intermediate images of earlier builds (other sources) only take space, a full copy of the
# file system per step with vfs (layers of their own with overlay): remove every unnamed image this build neither made nor reused
# (each step's "--> ID" line).
used=$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,\}\).*/\2/p' "$build_log" | sort -u)
stale=()
while read -r id; do
  grep -q "^${id:0:11}" <<<"$used" || stale+=("$id")
done < <(bh images --all --noheading --no-trunc --filter dangling=true --format '{{.ID}}' | sed 's/^sha256://')
if ((${#stale[@]})); then
  log "removing ${#stale[@]} intermediate images of earlier builds"
  bh rmi "${stale[@]}" >/dev/null 2>&1 || true
fi
for daemon in "${DAEMONS[@]}"; do
  printf '%s\t%s\n' "$(image_name "$daemon")" "$(image_size "$(image_name "$daemon")")"
done

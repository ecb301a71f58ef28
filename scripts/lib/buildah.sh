# shellcheck shell=bash
# buildah as the image scripts run it: sourced, never run. No daemon and no registry: as root,
# images live in a vfs store under the cache (kept between runs, so base images, build layers
# and cargo's caches survive a fresh clone), and RUN steps and containers use chroot isolation
# on the host's network.
#
# PEDIDOS_CACHE            the cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos)
# PEDIDOS_IMAGE_STORE      the image store (default $PEDIDOS_CACHE/containers)
# bh ARGS…                 buildah with that store

PEDIDOS_CACHE=${PEDIDOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pedidos}
PEDIDOS_IMAGE_STORE=${PEDIDOS_IMAGE_STORE:-$PEDIDOS_CACHE/containers}
export BUILDAH_ISOLATION=chroot
mkdir -p -- "$PEDIDOS_IMAGE_STORE/tmp"

# buildah keeps `RUN --mount=type=cache` directories under $TMPDIR/buildah-cache-<uid>: pointed
# into the store, the image build's cargo registry and target directory outlive the run.
bh() {
  TMPDIR=$PEDIDOS_IMAGE_STORE/tmp buildah --root "$PEDIDOS_IMAGE_STORE/storage" \
    --runroot "$PEDIDOS_IMAGE_STORE/run" --storage-driver vfs "$@"
}

# bh_has_image NAME: whether the store holds an image of that name.
bh_has_image() {
  bh inspect --type image "$1" >/dev/null 2>&1
}

# shellcheck shell=bash
# buildah as the image scripts run it: sourced, never run. No daemon and no registry: as root,
# images live in a store under the cache (kept between runs, so base images, build layers and
# cargo's caches survive a fresh clone), and RUN steps and containers use chroot isolation on the
# host's network.
#
# PEDIDOS_CACHE            the cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/pedidos)
# PEDIDOS_IMAGE_STORE      the image store (default $PEDIDOS_CACHE/containers)
# PEDIDOS_STORAGE_DRIVER   overlay where the kernel has it, else vfs. vfs works anywhere but
#                          copies the whole file system for every layer and container: measured
#                          here, each of the four image builds spent about 3 minutes on those
#                          copies even with every step cached; overlay shares them.
# bh ARGS…                 buildah with that store

PEDIDOS_CACHE=${PEDIDOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pedidos}
PEDIDOS_IMAGE_STORE=${PEDIDOS_IMAGE_STORE:-$PEDIDOS_CACHE/containers}
if [[ -z ${PEDIDOS_STORAGE_DRIVER:-} ]]; then
  PEDIDOS_STORAGE_DRIVER=vfs
  if grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null; then
    PEDIDOS_STORAGE_DRIVER=overlay
  fi
fi
export BUILDAH_ISOLATION=chroot
mkdir -p -- "$PEDIDOS_IMAGE_STORE/tmp"

# One store per driver (a store cannot change driver). buildah keeps `RUN --mount=type=cache`
# directories under $TMPDIR/buildah-cache: pointed into the store, the image build's cargo
# registry and target directory outlive the run, whatever the driver.
bh() {
  TMPDIR=$PEDIDOS_IMAGE_STORE/tmp buildah --root "$PEDIDOS_IMAGE_STORE/storage-$PEDIDOS_STORAGE_DRIVER" \
    --runroot "$PEDIDOS_IMAGE_STORE/run-$PEDIDOS_STORAGE_DRIVER" --storage-driver "$PEDIDOS_STORAGE_DRIVER" "$@"
}

# bh_has_image NAME: whether the store holds an image of that name.
bh_has_image() {
  bh inspect --type image "$1" >/dev/null 2>&1
}

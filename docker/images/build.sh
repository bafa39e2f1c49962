#!/usr/bin/env bash
# Build, with podman and without any registry, the images docker/docker-compose.yml runs, from what a
# machine without Docker Hub access can reach (Debian mirror, PyPI, Maven Central, Go module proxy):
#   localhost/stock-lakehouse-base:bookworm   debootstrap --variant=minbase bookworm (tarball cached)
#   localhost/python:3.11-slim-bookworm       stand-in for the Dockerfile's FROM (Debian python3.11 + pip)
#   localhost/stock-lakehouse:latest          docker/Dockerfile itself, unchanged
#   localhost/stock-lakehouse-minio:latest    MinIO built from source (scripts/minio.sh) + curl
#   localhost/stock-lakehouse-postgres:15     Debian PostgreSQL 15 + an entrypoint like postgres:15's
# Idempotent: an image that exists is kept (REBUILD=1 rebuilds all but the base rootfs tarball; the project
# image is rebuilt whenever REBUILD_APP=1). Run as root. docker/compose.podman.yml points compose at these.
# Timings of each step are printed as "TIMING <image> <seconds>".
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docker/images
cache="${STOCK_LAKEHOUSE_CACHE:-$HOME/.cache/stock-lakehouse}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs_tar="$cache/debian-bookworm-minbase.tar"
# This kind of machine: runc (crun rejects the hybrid cgroup set-up), limits only lowered (no
# CAP_SYS_RESOURCE), and never a pull (the public names are not reachable).
build=(podman build --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --pull=never)

have() { podman image exists "$1" && [ "${REBUILD:-0}" != 1 ]; }
timed() { local name="$1" t0; shift; t0=$(date +%s); "$@"; echo "TIMING $name $(( $(date +%s) - t0 ))"; }

base_image() {
  mkdir -p "$cache"
  if [ ! -s "$rootfs_tar" ]; then
    local dir; dir="$(mktemp -d /tmp/stock-lakehouse-rootfs.XXXXXX)"
    debootstrap --variant=minbase bookworm "$dir" "$mirror"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
      "$mirror" "$mirror" >"$dir/etc/apt/sources.list"
    chroot "$dir" apt-get clean
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
    tar -C "$dir" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$dir"
  fi
  podman import --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$rootfs_tar" localhost/stock-lakehouse-base:bookworm >/dev/null
}

minio_image() {
  bash scripts/minio.sh install
  local ctx; ctx="$(mktemp -d /tmp/stock-lakehouse-minio.XXXXXX)"
  cp "${MINIO_BIN:-$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/minio}" "$ctx/minio"
  cp "$here/minio-entrypoint.sh" "$ctx/"
  "${build[@]}" -f "$here/minio.Containerfile" -t localhost/stock-lakehouse-minio:latest "$ctx"
  rm -rf "$ctx"
}

have localhost/stock-lakehouse-base:bookworm || timed base base_image
python_image() {
  local ctx; ctx="$(mktemp -d /tmp/stock-lakehouse-python.XXXXXX)"
  mkdir "$ctx/extra-ca"
  # The host's own CAs (e.g. a TLS-inspecting egress proxy): without them pip and Maven fail in the build.
  cp "${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  "${build[@]}" -f "$here/python.Containerfile" -t localhost/python:3.11-slim-bookworm "$ctx"
  rm -rf "$ctx"
}

have localhost/python:3.11-slim-bookworm || timed python python_image
have localhost/stock-lakehouse-minio:latest || timed minio minio_image
have localhost/stock-lakehouse-postgres:15 || timed postgres "${build[@]}" -f "$here/postgres.Containerfile" -t localhost/stock-lakehouse-postgres:15 "$here"
# The project image exactly as compose's `build:` defines it (context: the repository, docker/Dockerfile).
if [ "${REBUILD_APP:-0}" = 1 ] || ! have localhost/stock-lakehouse:latest; then
  timed app "${build[@]}" -f docker/Dockerfile -t localhost/stock-lakehouse:latest .
  podman image prune -f >/dev/null  # the replaced project image (2.5 GB each)
fi
podman images --filter reference='localhost/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'

#!/bin/sh
# As minio/minio's entrypoint: arguments that do not start with `minio` are given to minio.
set -e
if [ "${1:-}" != "minio" ]; then set -- minio "$@"; fi
exec "$@"

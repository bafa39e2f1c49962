#!/usr/bin/env bash
# Install (if missing) and start a MinIO server on loopback for tests and demos.
#
#   scripts/minio.sh start DATA_DIR [PORT]   -> prints `export ...` lines (endpoint, keys, bucket)
#   scripts/minio.sh install                  -> only build/install the binary
#
# MinIO's community edition is source-only now: `go install` at a pinned commit (Go >= 1.24).
# Credentials are generated per start and written to DATA_DIR/env (mode 600), never to the repo.
set -euo pipefail

MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"   # HEAD of 2026-02-12 (7aac2a2c5b7c)
GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
MINIO_BIN="${MINIO_BIN:-$GOBIN_DIR/minio}"

install_minio() {
  if [ -x "$MINIO_BIN" ]; then return 0; fi
  command -v go >/dev/null || { echo "Go >= 1.24 is needed to build MinIO" >&2; exit 1; }
  echo "building MinIO $MINIO_VERSION (a few minutes the first time)..." >&2
  GOFLAGS=-mod=mod go install "$MINIO_MODULE@$MINIO_VERSION" >&2
}

start_minio() {
  local data="$1" port="${2:-9000}"
  install_minio
  mkdir -p "$data/data"
  local user pass
  user="lake$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  pass="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  MINIO_ROOT_USER="$user" MINIO_ROOT_PASSWORD="$pass" MINIO_BROWSER=off \
    nohup "$MINIO_BIN" server "$data/data" --address "127.0.0.1:$port" --console-address "127.0.0.1:$((port + 1))" \
    >"$data/minio.log" 2>&1 &
  echo $! >"$data/minio.pid"
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null || { echo "MinIO did not start; see $data/minio.log" >&2; exit 1; }
  umask 077
  cat >"$data/env" <<ENV
export STOCK_LAKEHOUSE_S3_ENDPOINT=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=$user
export AWS_SECRET_ACCESS_KEY=$pass
export AWS_REGION=us-east-1
ENV
  cat "$data/env"
}

case "${1:-}" in
  install) install_minio ;;
  start) start_minio "${2:?data dir}" "${3:-9000}" ;;
  stop) kill "$(cat "${2:?data dir}/minio.pid")" ;;
  *) echo "usage: $0 install | start DATA_DIR [PORT] | stop DATA_DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# `podman-compose up -d` for podman 4.3 (Debian bookworm), service by service in compose's dependency order.
# Why not one `podman-compose up -d`: with podman < 4.6 podman-compose ignores `condition: service_healthy`
# ("Ignored minio condition check due to podman 4.3.1 doesn't support healthy!"), healthchecks never run
# on their own without systemd ("unable to get systemd connection to add healthchecks"), and starting a
# container whose --requires chain holds an exited one fails ("generating dependency graph for container
# ...: container ... depends on container ... not found in input list"). So each service is started with
# --no-deps once its dependencies are healthy (`podman healthcheck run`, i.e. compose's own healthcheck
# command) or have exited 0 (provision-store). Usage: podman-up.sh [extra podman-compose args, e.g. -p NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
pc=(${PODMAN_COMPOSE:-podman-compose} --env-file "${COMPOSE_ENV_FILE:-docker/.env}" -f docker/docker-compose.yml -f docker/compose.podman.yml "$@")
project="${COMPOSE_PROJECT:-stock-lakehouse}"

ctr() { podman ps -a --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1; }
up() { "${pc[@]}" up -d --no-deps "$@" >&2; }
wait_healthy() {
  local c; c="$(ctr "$1")"
  for _ in $(seq 1 120); do
    if podman healthcheck run "$c" >/dev/null 2>&1; then echo "$1 healthy" >&2; return 0; fi
    sleep 1
  done
  podman logs --tail 30 "$c" >&2; echo "$1 did not become healthy" >&2; return 1
}
wait_exit0() {
  local c rc; c="$(ctr "$1")"
  rc="$(podman wait "$c")"
  [ "$rc" = 0 ] || { podman logs --tail 30 "$c" >&2; echo "$1 exited $rc" >&2; return 1; }
  echo "$1 exited 0" >&2
}

up minio postgres
wait_healthy minio
up provision-store
wait_healthy postgres
up init
wait_exit0 provision-store
up engine
wait_exit0 init
wait_healthy engine
up code bi
up webserver daemon

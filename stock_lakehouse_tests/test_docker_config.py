"""The compose deployment's files checked against each other and against the code, in seconds and without
podman (``test_compose_podman.py`` runs them): service names, ports, environment variables, copied paths."""

import os
import re

import yaml

from stock_lakehouse.settings import API_KEY_ENV, OTHER_ENV_NAMES, environment_settings
from stock_lakehouse_tests.conftest import REPO

DOCKER = REPO / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_has_the_topology():
    services = compose()["services"]
    assert {"minio", "postgres", "code", "webserver", "daemon", "provision-store"} <= set(services)
    assert services["code"]["command"][:3] == ["dagster", "api", "grpc"]
    assert "stock_lakehouse.definitions" in services["code"]["command"]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]


def test_workspace_points_at_the_code_service():
    services = compose()["services"]
    (entry,) = yaml.safe_load((DOCKER / "workspace.yaml").read_text())["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] in services
    cmd = services[grpc["host"]]["command"]
    assert cmd[cmd.index("-p") + 1] == str(grpc["port"])
    for svc in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[svc]["command"]
    assert "COPY docker/workspace.yaml /opt/dagster/workspace.yaml" in (DOCKER / "Dockerfile").read_text()


def test_every_env_name_used_is_provided(monkeypatch):
    services = compose()["services"]
    instance_envs = set(re.findall(r"\{env: (\w+)\}", (DOCKER / "dagster.yaml").read_text()))
    assert instance_envs
    for svc in ("code", "webserver", "daemon"):
        provided = set(services[svc]["environment"])
        assert instance_envs <= provided, (svc, instance_envs - provided)
        # Every setting compose gives from the environment is one the settings read.
        for name in provided:
            if name.startswith("STOCK_LAKEHOUSE_") and name not in OTHER_ENV_NAMES:
                with monkeypatch.context() as env:
                    for other in [n for n in os.environ if n.startswith("STOCK_LAKEHOUSE_")]:
                        env.delenv(other)
                    env.setenv(name, "NVDA")
                    assert environment_settings(), name
        assert API_KEY_ENV in provided and "AWS_ACCESS_KEY_ID" in provided
    referenced = set(re.findall(r"\$\{(\w+)", (DOCKER / "docker-compose.yml").read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert referenced - {"MINIO_IMAGE"} <= example, referenced - example


def test_dockerfile_copies_existing_paths_and_fetches_jars():
    text = (DOCKER / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", text, flags=re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    assert "stock-lakehouse setup-jars" in text
    instance = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    assert {instance[k]["module"] for k in ("run_storage", "schedule_storage")} == {
        "dagster_postgres.run_storage",
        "dagster_postgres.schedule_storage",
    }
    assert instance["event_log_storage"]["class"] == "PostgresEventLogStorage"


def test_secure_defaults_loopback_ports_required_secrets_non_root():
    services = compose()["services"]
    published = [port for svc in services.values() for port in svc.get("ports", [])]
    assert published and all(p.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:") for p in published), published
    text = (DOCKER / "docker-compose.yml").read_text()
    for secret in (
        "MINIO_ROOT_PASSWORD",
        "DAGSTER_POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "LAKE_S3_ACCESS_KEY",
        "LAKE_S3_SECRET_KEY",
        "BI_PASSWORD",
    ):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (secret, uses)  # compose refuses to start without
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert example["MINIO_ROOT_PASSWORD"] == "" and example["DAGSTER_POSTGRES_PASSWORD"] == ""
    assert example["LAKE_S3_SECRET_KEY"] == "" and example["BI_PASSWORD"] == ""
    # The SQL endpoint listens beyond its container's loopback: with the login, from the environment.
    bi = services["bi"]
    assert bi["command"][:2] == ["stock-lakehouse", "bi-server"] and "0.0.0.0" in bi["command"]
    assert bi["environment"]["STOCK_LAKEHOUSE_BI_PASSWORD"].startswith("${BI_PASSWORD:?")
    # MinIO's root login reaches MinIO and the one-shot provisioning only; the pipeline has its own user.
    holders = {name for name, svc in services.items() if "MINIO_ROOT_PASSWORD" in str(svc.get("environment"))}
    assert holders == {"minio", "provision-store"}, holders
    for name in ("code", "webserver", "daemon", "init"):
        assert services[name]["environment"]["AWS_ACCESS_KEY_ID"].startswith("${LAKE_S3_ACCESS_KEY:?"), name
    assert services["provision-store"]["command"] == ["stock-lakehouse", "provision-store"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, flags=re.M)
    assert user not in ("root", "0")


def test_every_service_has_its_podman_override():
    """podman on this machine kind starts a container only with runc and lowered ulimits (compose.podman.yml):
    a service without them fails `make test-compose` with "error setting rlimit type 7"."""
    override = yaml.safe_load((DOCKER / "compose.podman.yml").read_text())["services"]
    assert set(override) == set(compose()["services"])
    assert all(svc.get("runtime") == "runc" and "nofile" in svc.get("ulimits", {}) for svc in override.values())


def test_the_engine_is_on_the_compose_network_only_and_the_code_location_uses_it():
    """Spark Connect 3.5 has no login: the engine publishes no port; every run (the code service's processes)
    is its client, and the code service starts only once the engine answers (also in podman-up.sh's order)."""
    services = compose()["services"]
    engine = services["engine"]
    assert "ports" not in engine and "network_mode" not in engine
    assert engine["command"][:2] == ["stock-lakehouse", "engine"] and "--any-client" in engine["command"]
    port = engine["command"][engine["command"].index("--port") + 1]
    assert str(port) in " ".join(engine["healthcheck"]["test"])
    assert services["code"]["environment"]["STOCK_LAKEHOUSE_SPARK_REMOTE"] == f"sc://engine:{port}"
    assert services["code"]["depends_on"]["engine"] == {"condition": "service_healthy"}
    order = (DOCKER / "images" / "podman-up.sh").read_text()
    assert order.index("wait_healthy engine") < order.index("up code")


def test_postgres_is_healthy_only_when_it_answers_over_tcp():
    """The postgres image initialises a new data folder with a temporary server on its Unix socket only; a
    socket pg_isready passes then, and init's TCP connection was refused (CI failed that way). Every client
    of the store connects over TCP, so the healthcheck must too."""
    postgres = compose()["services"]["postgres"]
    test = " ".join(postgres["healthcheck"]["test"])
    assert "pg_isready" in test and re.search(r"-h\s+127\.0\.0\.1\b", test), test
    assert f"-p {compose()['x-lakehouse-env']['DAGSTER_POSTGRES_PORT']}" in test

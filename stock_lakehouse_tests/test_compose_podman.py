"""``docker/docker-compose.yml`` run for real, with podman, on a machine that cannot pull public images.

``docker/images/build.sh`` builds the images from the Debian mirror, PyPI, Maven Central and the Go module
proxy (the project image from ``docker/Dockerfile`` unchanged); ``docker/compose.podman.yml`` is the one
place that substitutes anything (local MinIO/PostgreSQL images, runc, lowered ulimits);
``docker/images/podman-up.sh`` starts the services in compose's order (podman 4.3 ignores healthy
conditions). Then: a 2 symbols x 3 days backfill through the webserver's GraphQL, gold read from MinIO
and compared with a local run of the same partitions, the runs read from Postgres, the daemon's freshness
sensor reading the lake (its clock set inside the backfilled session), the asset graph in headless
Chromium; ``down`` and ``up`` again (tables and run history kept); ``down -v``.

Opt-in (minutes, root, podman): ``make test-compose``. Timings are
written to ``<tmp>/compose-timings.json`` and printed (``-s``).
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from datetime import date
from unittest import mock

import dagster as dg
import httpx
import pandas as pd
import pytest

from stock_lakehouse.assets.keys import TABLES, writer_pool
from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.runs.backfill import launch_backfill, wait_backfill
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse_tests.conftest import REPO
from stock_lakehouse_tests.services import (
    assert_freshness_tick_read_fresh_data,
    chromium,
    dismiss_community_dialog,
    graphql,
    wait_for_text,
)

# Deselected by `make test` (-m 'not compose'), selected by `make test-compose`.
pytestmark = pytest.mark.compose

PROJECT = "stock-lakehouse-test"
URL = "http://127.0.0.1:3000"
SYMBOLS = ["AAA", "BBB"]
START, END = date(2024, 3, 4), date(2024, 3, 6)  # Mon..Wed: 3 trading days
POOLS = [writer_pool(dg.AssetKey(path)) for path in TABLES.values()]


def _podman_compose() -> str:
    found = os.environ.get("PODMAN_COMPOSE") or shutil.which("podman-compose")
    if not found:
        pytest.fail("podman-compose not found: set PODMAN_COMPOSE or install it (pip install podman-compose)")
    return found


def _run(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _ctr(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def _wait_loaded(timeout: float = 300) -> float:
    """Seconds until the webserver answers and shows the code location loaded (not a load error)."""
    t0 = time.monotonic()
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, AssertionError, TypeError):
            entries = graphql(f"{URL}/graphql", query)["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"code location not loaded after {timeout}s"
        time.sleep(1)


_PSQL = ["podman", "exec", _ctr("postgres"), "psql", "-U", "dagster", "-d", "dagster", "-tAc"]


def _psql(sql: str) -> list[str]:
    return _run([*_PSQL, sql]).split()


def _diagnose() -> None:
    """What a failure here needs to be understood after the stack is gone (CI keeps only pytest's output):
    the containers' states, the runs, the first step failures, the image user's thread count (compose.podman.yml
    caps nproc) and the last lines of the services that launch and execute runs."""
    project = f"label=com.docker.compose.project={PROJECT}"
    parts = {
        "containers": ["podman", "ps", "-a", "--filter", project, "--format", "{{.Names}} {{.Status}}"],
        "runs": [*_PSQL, "SELECT run_id, status, create_timestamp, update_timestamp FROM runs"],
        "step failures": [
            *_PSQL,
            "SELECT substr(event, 1, 3000) FROM event_logs WHERE dagster_event_type = 'STEP_FAILURE' LIMIT 2",
        ],
    }
    lines = []
    for title, cmd in parts.items():
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        lines.append(f"--- {title}:\n{done.stdout}{done.stderr}")
    inspect = ["podman", "container", "inspect", "--format", "{{.Config.User}}", _ctr("engine")]
    user = subprocess.run(inspect, capture_output=True, text=True).stdout.strip()
    threads = subprocess.run(["ps", "-eLo", "uid="], capture_output=True, text=True).stdout.split()
    lines.append(f"--- threads of the image's user (uid {user}): {threads.count(user)}")
    for service in ("daemon", "code", "engine"):
        log = subprocess.run(["podman", "logs", "--tail", "400", _ctr(service)], capture_output=True, text=True)
        # The daemon's sensor ticks every few seconds would push everything else out of the tail.
        kept = [line for line in (log.stdout + log.stderr).splitlines() if "SensorDaemon" not in line][-40:]
        lines.append(f"--- {service} log:\n" + "\n".join(line[:400] for line in kept))
    print("\n".join(lines))  # whole on the terminal (-s): pytest shortens what it reports itself


def _gold(env: dict):
    keys = {"AWS_ACCESS_KEY_ID": env["LAKE_S3_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": env["LAKE_S3_SECRET_KEY"]}
    with mock.patch.dict(os.environ, keys | {"AWS_REGION": "us-east-1"}):
        return read_table("s3a://lake/lake", "gold", s3=S3Location(endpoint="http://127.0.0.1:9000"))


def _kill_code_server_mid_run(env: dict) -> float:
    """Kill the code container during a run and start it again; returns seconds from the restart until
    the dead run is FAILURE (by the recovery sensor) and its partitions' re-run has succeeded."""
    day = date(2024, 3, 7)
    backfill_id = launch_backfill(f"{URL}/graphql", SYMBOLS, day, day, title="killed mid-run")
    deadline = time.monotonic() + 600
    while True:  # started, with its worker recorded (the code container's host name, "code")
        rows = _psql(
            "SELECT r.run_id FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
            "WHERE r.status = 'STARTED' AND t.key = 'stock_lakehouse/worker_run' AND t.value = r.run_id"
        )
        if rows:
            (dead,) = rows
            break
        assert time.monotonic() < deadline, "no run of the backfill started"
        time.sleep(0.5)
    _run(["podman", "kill", _ctr("code")])
    restarted = time.monotonic()
    _run(["podman", "start", _ctr("code")])
    while _psql(f"SELECT status FROM runs WHERE run_id = '{dead}'") != ["FAILURE"]:
        assert time.monotonic() - restarted < 300, "the killed run is not failed 300 s after the restart"
        time.sleep(2)
    recovered = time.monotonic() - restarted
    failure = dg.DagsterEventType.RUN_FAILURE.value  # stored under its old name, PIPELINE_FAILURE
    message = " ".join(
        _psql(f"SELECT event FROM event_logs WHERE run_id = '{dead}' AND dagster_event_type = '{failure}'")
    )
    assert "recover_dead_runs sensor" in message, message
    wait_backfill(f"{URL}/graphql", backfill_id, timeout=600)  # ends (failed: its run died)
    again = launch_backfill(f"{URL}/graphql", SYMBOLS, day, day, title="after the restart")
    status = wait_backfill(f"{URL}/graphql", again, timeout=900)
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
    gold = _gold(env)
    assert sorted(gold[gold.trade_date == day].symbol) == SYMBOLS
    return recovered


def test_compose_runs_with_podman(tmp_path, dagster_home, clean_env):
    for port in (3000, 9000, 9001):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"127.0.0.1:{port} is in use; compose publishes 3000, 9000 and 9001")
    timings: dict[str, float] = {}
    pc = _podman_compose()
    # The reference: the same partitions run locally by the CLI's path, before the stack takes the cores.
    ok, _, error = run_materialize(SYMBOLS, START, END, {"lake_root": str(tmp_path / "lake"), "source": "synthetic"})
    assert ok, error
    local_gold = read_table(str(tmp_path / "lake"), "gold")
    t0 = time.monotonic()
    # The project image always from this tree (its dependency layer stays cached while pyproject.toml does).
    _run(["bash", "docker/images/build.sh"], env=os.environ | {"REBUILD_APP": "1"}, timeout=3600)
    timings["build_sh"] = time.monotonic() - t0

    env = {
        "MINIO_ROOT_USER": "lakeadmin",
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
        "LAKE_BUCKET": "lake",
        "LAKE_S3_ACCESS_KEY": "stock-lakehouse",
        "LAKE_S3_SECRET_KEY": secrets.token_urlsafe(24),
        "DAGSTER_POSTGRES_USER": "dagster",
        "DAGSTER_POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "DAGSTER_POSTGRES_DB": "dagster",
        "STOCK_LAKEHOUSE_SOURCE": "synthetic",  # the bundled replay sample holds NVDA only
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(SYMBOLS),
        "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC": "2024-03-06T19:00:00Z",  # 14:00 New York, last backfilled day
        "PUBLISH_ADDRESS": "127.0.0.1",
        "BI_USER": "analyst",
        "BI_PASSWORD": secrets.token_urlsafe(24),
    }
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    files = ["--env-file", str(env_file), "-f", "docker/docker-compose.yml", "-f", "docker/compose.podman.yml"]
    down = [pc, *files, "-p", PROJECT, "down"]
    up_env = os.environ | {"PODMAN_COMPOSE": pc, "COMPOSE_ENV_FILE": str(env_file), "COMPOSE_PROJECT": PROJECT}

    def up() -> None:
        t = time.monotonic()
        _run(["bash", "docker/images/podman-up.sh", "-p", PROJECT], env=up_env, timeout=600)
        timings.setdefault("up_started", []).append(time.monotonic() - t)
        timings.setdefault("up_until_location_loaded", []).append(time.monotonic() - t + _wait_loaded())

    try:
        up()
        # The init service registered the symbols and created every writer pool before any run (without
        # the pools, two first runs on a new PostgreSQL instance race to create one: dagster#33552).
        assert set(_psql("SELECT concurrency_key FROM concurrency_limits")) >= set(POOLS)

        t = time.monotonic()
        backfill_id = launch_backfill(f"{URL}/graphql", SYMBOLS, START, END, title="compose-podman")
        # 150 s alone here (2026-12-07): 600 s is a hang, and CI learns it 20 minutes sooner than at 1800.
        status = wait_backfill(f"{URL}/graphql", backfill_id, timeout=600)
        timings["backfill_2x3"] = time.monotonic() - t
        assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
        assert len(status["runs"]) == 2 and all(r["status"] == "SUCCESS" for r in status["runs"]), status

        gold = _gold(env)
        assert sorted(set(gold.symbol)) == SYMBOLS and len(gold) == 6 and (gold.bar_count == 390).all(), gold
        pd.testing.assert_frame_equal(gold, local_gold, check_exact=False, rtol=1e-12)
        assert_freshness_tick_read_fresh_data(f"{URL}/graphql")  # both symbols' bars, read from MinIO
        run_ids = sorted(r["runId"] for r in status["runs"])
        assert sorted(_psql("SELECT run_id FROM runs WHERE status = 'SUCCESS'")) == run_ids
        # Every run was a client of the engine service: none started a Spark of its own (SESSION_STARTED).
        assert _psql("SELECT count(*) FROM event_logs WHERE event LIKE '%Spark session started in%'") == ["0"]

        with chromium() as driver:
            driver.get(f"{URL}/asset-groups")
            time.sleep(3)
            dismiss_community_dialog(driver)
            wait_for_text(driver, ["Global asset lineage", "bronze", "silver", "gold"])
            driver.get(f"{URL}/locations/__repository__@stock_lakehouse/asset-groups/gold")
            time.sleep(3)
            dismiss_community_dialog(driver)
            wait_for_text(driver, ["daily_kpis", "bi_stock_daily"])
            driver.save_screenshot(str(tmp_path / "compose-asset-graph.png"))

        # down (volumes kept) and up again: the tables and the run history are still there.
        t = time.monotonic()
        _run(down, timeout=600)
        timings["down"] = time.monotonic() - t
        assert not _run(["podman", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]).strip()
        up()
        assert len(_gold(env)) == 6
        assert sorted(_psql("SELECT run_id FROM runs WHERE status = 'SUCCESS'")) == run_ids
        listed = graphql(f"{URL}/graphql", "{ runsOrError { ... on Runs { results { runId status } } } }")
        runs = listed["runsOrError"]["results"]
        assert sorted(r["runId"] for r in runs if r["status"] == "SUCCESS") == run_ids

        # The code server's container killed while it executes a run (its run workers die with it), then
        # restarted: the recover_dead_runs sensor fails the run, and the same backfill then completes.
        t = time.monotonic()
        timings["code_killed_mid_run"] = _kill_code_server_mid_run(env)
        timings["crash_recovery_total"] = time.monotonic() - t
    except BaseException:
        _diagnose()
        raise
    finally:
        subprocess.run([*down, "-v"], cwd=REPO, capture_output=True, timeout=600)
        (tmp_path / "compose-timings.json").write_text(json.dumps(timings, indent=1))
        print("compose timings (s):", json.dumps(timings))
    volumes = _run(["podman", "volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}"])
    assert not volumes.strip(), volumes

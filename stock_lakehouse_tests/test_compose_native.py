"""The compose topology without Docker: MinIO, Postgres (Debian), ``dagster api grpc`` code server,
webserver and daemon as processes, configured by the files compose mounts (``docker/dagster.yaml``,
``docker/workspace.yaml`` with the service host replaced by loopback). A backfill is launched through the
webserver's GraphQL, executed by the daemon through the queued run coordinator, and its tables are
checked on MinIO. The daemon's freshness sensor, its clock set inside the backfilled session, then reads
the new bars from MinIO and finds the symbol fresh."""

import contextlib
import os
import secrets
import subprocess
import time
from datetime import date
from unittest import mock

import dagster as dg
import pytest
import yaml

from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.partitions import sync_symbols
from stock_lakehouse.runs.backfill import launch_backfill, wait_backfill
from stock_lakehouse_tests.conftest import REPO
from stock_lakehouse_tests.services import (
    assert_freshness_tick_read_fresh_data,
    bin_path,
    free_port,
    logged_process,
    postgres_server,
    wait_http,
)

# MinIO comes from its fixture (conftest.py); the rest starts in the test: PostgreSQL, a code server, the
# webserver and the daemon, whose runs start JVMs.
pytestmark = [pytest.mark.spark, pytest.mark.postgres, pytest.mark.daemon]


def test_compose_topology_runs_natively(minio, tmp_path):
    with postgres_server() as pg_env:
        home = tmp_path / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "docker" / "dagster.yaml").read_text())
        grpc_port, web_port = free_port(), free_port()
        workspace = yaml.safe_load((REPO / "docker" / "workspace.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=grpc_port)
        (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_")}
        env |= (
            minio
            | pg_env
            | {
                "DAGSTER_HOME": str(home),
                "STOCK_LAKEHOUSE_CONFIG": str(REPO / "config" / "stock_lakehouse.yaml"),
                "STOCK_LAKEHOUSE_LAKE_ROOT": "s3a://compose-lake/lake",
                "STOCK_LAKEHOUSE_SOURCE": "synthetic",
                "STOCK_LAKEHOUSE_SYMBOLS": "CMP",
                # 14:00 New York on the last backfilled day: the sensor checks the session (not a weekend).
                "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC": "2024-03-05T19:00:00Z",
            }
        )
        # As compose: the one-shot provision-store service alone gets MinIO's root login and gives the
        # application's keys a user allowed this bucket only; every other process runs with those keys.
        env |= {"AWS_ACCESS_KEY_ID": "compose-app", "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24)}
        root = {"MINIO_ROOT_USER": minio["AWS_ACCESS_KEY_ID"], "MINIO_ROOT_PASSWORD": minio["AWS_SECRET_ACCESS_KEY"]}
        provisioned = subprocess.run(
            [bin_path("stock-lakehouse"), "provision-store"], env=env | root, capture_output=True, text=True
        )
        assert provisioned.returncode == 0, provisioned.stderr[-2000:]
        logs = tmp_path / "logs"
        logs.mkdir()
        ws = str(tmp_path / "workspace.yaml")
        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.dict(os.environ, env))  # this process reads the same (Postgres) instance
            sync_symbols(dg.DagsterInstance.get(), ["CMP"])
            grpc = ["-h", "127.0.0.1", "-p", str(grpc_port)]
            code = stack.enter_context(
                logged_process(
                    [bin_path("dagster"), "api", "grpc", *grpc, "-m", "stock_lakehouse.definitions"],
                    logs / "code.log",
                    env,
                )
            )
            # Like compose's depends_on: the webserver and daemon start once the code server answers.
            deadline = time.monotonic() + 180
            while subprocess.run(
                [bin_path("dagster"), "api", "grpc-health-check", *grpc], env=env, capture_output=True
            ).returncode:
                assert code.poll() is None and time.monotonic() < deadline, (logs / "code.log").read_text()[-3000:]
                time.sleep(1)
            web_cmd = [bin_path("dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", ws]
            web = stack.enter_context(logged_process(web_cmd, logs / "webserver.log", env))
            stack.enter_context(logged_process([bin_path("dagster-daemon"), "run", "-w", ws], logs / "daemon.log", env))
            url = f"http://127.0.0.1:{web_port}"
            wait_http(f"{url}/server_info", timeout=180, proc=web)
            backfill_id = launch_backfill(
                f"{url}/graphql", ["CMP"], date(2024, 3, 4), date(2024, 3, 5), title="compose-native"
            )
            status = wait_backfill(f"{url}/graphql", backfill_id, timeout=900)
            assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (
                status,
                (logs / "daemon.log").read_text()[-3000:],
            )
            gold = read_table(
                "s3a://compose-lake/lake", "gold", s3=S3Location(endpoint=minio["STOCK_LAKEHOUSE_S3_ENDPOINT"])
            )
            assert list(gold.trade_date.astype(str)) == ["2024-03-04", "2024-03-05"] and (gold.bar_count == 390).all()
            assert_freshness_tick_read_fresh_data(f"{url}/graphql")  # CMP's bars, read from MinIO
            runs = dg.DagsterInstance.get().get_runs()
            assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS  # stored in Postgres

"""The warm engine (``stock-lakehouse engine``, Spark Connect) with real processes: a run on it writes what a
run with its own Spark writes and starts no JVM; the engine killed mid-run fails the run in one line naming
the engine, leaves every table readable, and a re-run on a restarted engine gives the same tables; clients
beyond loopback are refused.

The runs are the CLI's, in subprocesses: a process holds either its own Spark or a Connect client, never
both (pyspark refuses), and the test process may hold its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.local_processes import bin_path, engine_process
from stock_lakehouse_tests.conftest import NVDA_SAMPLE, REPO, environment_without_settings

pytestmark = pytest.mark.spark

#: Columns that say when a row was written and which lake's landing file it came from, not what it holds.
WRITE_COLUMNS = {"fetched_at", "ingested_at", "payload_uri"}
TABLES = ("bronze", "silver", "gold", "bi", "signals")


def materialize_args(replay: Path, lake: Path) -> list[str]:
    return [
        bin_path("stock-lakehouse"),
        *("--config", str(REPO / "config" / "stock_lakehouse.yaml"), "materialize", "--symbols", "NVDA"),
        *("--start", "2024-03-01", "--end", "2024-03-12", "--source", "replay", "--replay-dir", str(replay)),
        *("--lake-root", str(lake)),
    ]


def run_env(home: Path, remote: str | None = None) -> dict[str, str]:
    extra = {"DAGSTER_HOME": str(home)}
    if remote:
        extra["STOCK_LAKEHOUSE_SPARK_REMOTE"] = remote
    return environment_without_settings(**extra)


def assert_same_tables(lake: Path, reference: Path) -> None:
    for table in TABLES:
        ours, theirs = (read_table(str(x), table) for x in (lake, reference))
        columns = sorted(set(ours.columns) - WRITE_COLUMNS)
        key = [c for c in ("symbol", "trade_date", "ts", "ts_utc") if c in columns]
        ours, theirs = (f[columns].sort_values(key).reset_index(drop=True) for f in (ours, theirs))
        assert len(ours), f"{table}: no rows"
        try:
            pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-9, obj=table)
        except AssertionError as exc:  # pandas lists every value: the first lines say which column differs
            raise AssertionError("\n".join(str(exc).splitlines()[:3])[:1000]) from None


def check_outcomes(home: Path) -> dict[tuple[str, str | None], tuple[bool, object, object]]:
    """Every check evaluation the instance at ``home`` holds: (check, partition) -> (passed, Soda's value,
    outcome). On the engine Soda's queries take another path (``soda_runner._LazySql``): same answers."""
    import dagster as dg

    out = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            for record in events.records:
                ev = record.event_log_entry.dagster_event.event_specific_data
                meta = {k: getattr(v, "value", v) for k, v in ev.metadata.items()}
                out[(ev.check_name, ev.partition)] = (ev.passed, meta.get("soda_value"), meta.get("outcome"))
    return out


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("replay")
    (folder / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    return folder


@pytest.fixture(scope="module")
def reference_lake(tmp_path_factory, replay) -> Path:
    """The same run with its own Spark (the embedded default)."""
    work = tmp_path_factory.mktemp("in_process")
    done = subprocess.run(
        materialize_args(replay, work / "lake"), env=run_env(work / "home"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spark sessions: 1" in done.stdout
    return work / "lake"


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("engine")
    env = environment_without_settings(DAGSTER_HOME=str(work / "home"))
    with engine_process(work / "engine.log", env, ["--no-warm-up"]) as (url, _):
        yield url


def test_a_run_on_the_engine_starts_no_spark_and_writes_what_its_own_spark_writes(
    tmp_path, replay, reference_lake, engine
):
    done = subprocess.run(
        materialize_args(replay, tmp_path / "lake"),
        env=run_env(tmp_path / "home", remote=engine),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "runs: 1   spark sessions: 0" in done.stdout, done.stdout
    assert_same_tables(tmp_path / "lake", reference_lake)
    ours, theirs = check_outcomes(tmp_path / "home"), check_outcomes(reference_lake.parent / "home")
    assert ours == theirs
    assert sum(value is not None for _, value, _ in ours.values()) > 50, "Soda measured (almost) nothing"
    assert not [key for key, (_, _, outcome) in ours.items() if outcome == "not evaluated"]


def test_the_engine_killed_mid_run_fails_it_in_one_line_and_a_rerun_on_a_new_engine_repairs(
    tmp_path, replay, reference_lake
):
    lake = tmp_path / "lake"
    env = environment_without_settings(DAGSTER_HOME=str(tmp_path / "engine_home"))
    with engine_process(tmp_path / "engine1.log", env, ["--no-warm-up"]) as (url, proc):
        run = subprocess.Popen(
            materialize_args(replay, lake),
            env=run_env(tmp_path / "home", remote=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first_commit = lake / "bronze" / "intraday_bars" / "_delta_log" / f"{0:020d}.json"
        deadline = time.monotonic() + 300
        while not first_commit.is_file() and run.poll() is None:  # killed while silver is being made
            assert time.monotonic() < deadline, "bronze never written"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = run.communicate(timeout=120)
        took = time.monotonic() - killed
    assert run.returncode == 1, out + err
    # Bounded: the client retries a dead engine for about 5 s (ENGINE_RETRY), not Spark's ten minutes.
    assert took < 60, f"the run took {took:.0f} s to fail after the engine died"
    first = next(line for line in (out + err).splitlines() if line.startswith("error: "))
    assert "Spark engine" in first and url.removeprefix("sc://") in first, first
    assert "Traceback" not in err and "_InactiveRpcError" not in err, err[-2000:]
    assert len(read_table(str(lake), "bronze")) > 0  # what was committed stays readable
    for table in TABLES[1:]:  # the rest is readable or was never created (a first commit cut short)
        with contextlib.suppress(FileNotFoundError):
            read_table(str(lake), table)
    with engine_process(tmp_path / "engine2.log", env, ["--no-warm-up"]) as (url, _):
        done = subprocess.run(
            materialize_args(replay, lake),
            env=run_env(tmp_path / "home", remote=url),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_tables(lake, reference_lake)


def _non_loopback_address() -> str | None:
    """An address of this machine beyond loopback (the interface of the default route), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_the_engine_refuses_clients_beyond_loopback(engine):
    address = _non_loopback_address()
    assert address, "this machine has no address beyond loopback to test from"
    port = engine.rsplit(":", 1)[1]
    probe = (
        "import sys; from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.remote(sys.argv[1]).getOrCreate()\n"
        "s.client._retry_policy.update(max_retries=0)\n"
        "print(s.sql('SELECT 41 + 1').collect()[0][0])\n"
    )
    outside = subprocess.run(
        [sys.executable, "-c", probe, f"sc://{address}:{port}"], capture_output=True, text=True, timeout=120
    )
    assert outside.returncode != 0 and "PERMISSION_DENIED" in outside.stderr, outside.stderr[-2000:]
    assert "loopback clients only" in outside.stderr
    inside = subprocess.run([sys.executable, "-c", probe, engine], capture_output=True, text=True, timeout=120)
    assert inside.returncode == 0 and inside.stdout.strip() == "42", inside.stderr[-2000:]


@pytest.mark.daemon
def test_make_dev_runs_the_ui_with_the_engine_and_stops_it_with_dagster(tmp_path):
    """`make dev`'s command: the engine and `dagster dev` start together, a partition launched as the UI
    launches it runs on the engine (no Spark of its own), and when `dagster dev` ends the engine ends too."""
    import dagster as dg

    from stock_lakehouse.lakehouse.spark import SESSION_STARTED
    from stock_lakehouse.local_processes import descendants, logged_process, wait_http, wait_line
    from stock_lakehouse.ports import free_port, wait_listening
    from stock_lakehouse.runs.backfill import launch_partition_run, wait_run

    home = tmp_path / "home"
    env = environment_without_settings(DAGSTER_HOME=str(home), STOCK_LAKEHOUSE_LAKE_ROOT=str(tmp_path / "lake"))
    assert subprocess.run([bin_path("stock-lakehouse"), "sync-symbols"], env=env, cwd=tmp_path).returncode == 0
    engine_port, ui_port = free_port(), free_port()
    cmd = [bin_path("stock-lakehouse"), "dev", "--engine-port", str(engine_port), "-h", "127.0.0.1", "-p", str(ui_port)]
    with logged_process(cmd, tmp_path / "dev.log", env) as dev:
        wait_line(home / "engine.log", "Spark engine on", timeout=300, proc=dev)
        wait_http(f"http://127.0.0.1:{ui_port}/server_info", timeout=300, proc=dev)
        graphql = f"http://127.0.0.1:{ui_port}/graphql"
        status = wait_run(graphql, launch_partition_run(graphql, "NVDA", date(2024, 3, 4)), timeout=600)
        assert status == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]
        instance = dg.DagsterInstance.from_config(str(home))
        (run,) = instance.get_runs()
        messages = [r.user_message for r in instance.all_logs(run.run_id)]
        started = SESSION_STARTED.split("{")[0]
        assert messages and not any(started in m for m in messages)  # the run's Spark was the engine
        assert len(read_table(str(tmp_path / "lake"), "gold")) == 1
        # `dagster dev` ends (as on Ctrl+C): `stock-lakehouse dev` stops the engine and exits.
        (dagster,) = [
            p
            for p in descendants(dev.pid)
            if "dagster dev" in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")
        ]
        os.kill(dagster, signal.SIGTERM)
        dev.wait(timeout=120)
        assert not wait_listening("127.0.0.1", engine_port, timeout=1)

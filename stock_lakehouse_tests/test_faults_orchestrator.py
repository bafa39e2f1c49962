"""A crash of the whole orchestrator never stops the platform (issue 28).

``dagster dev`` (webserver, daemon, code server and the run workers it launched) is killed with SIGKILL
while a UI-style backfill's two runs execute, as a power cut or an OOM kill of a container would. After
``dagster dev`` comes back on the same instance, the ``recover_dead_runs`` sensor fails both dead runs and
frees their pool slots; with ``max_concurrent_runs: 2`` the dead runs would otherwise hold both run slots
forever, so the new backfill launched right after the restart only completes because of the recovery.
Its tables equal those of a clean run. The ``backfill`` CLI that was waiting on the killed webserver ends
with one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse.assets.keys import ensure_writer_pools
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.partitions import sync_symbols
from stock_lakehouse.runs.backfill import launch_backfill, wait_backfill
from stock_lakehouse.runs.instance_home import write_instance_config
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.runs.recovery import PID_TAG, WORKER_RUN_TAG, process_alive
from stock_lakehouse_tests.services import REPO, bin_path, dagster_dev_process, descendants

pytestmark = [pytest.mark.spark, pytest.mark.daemon, pytest.mark.faults]

SYMBOLS = ["AAA", "BBB", "CCC"]
# 3 symbols x 2 dates: Dagster splits the backfill by the smaller dimension, one run per date, and the two
# runs execute at once. BI's windows and the signals of 03-05 reach 03-04's gold, written by the other run:
# the later date follows whichever run writes 03-04 last (``partitions_after``), so the tables still equal
# a one-shot run's.
START, END = date(2024, 3, 4), date(2024, 3, 5)
#: What the README promises: dead runs failed and their slots freed this long after `dagster dev` restarts.
RECOVERY_BOUND_S = 120


def _recorded_and_in_a_step(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The started runs whose worker recorded itself, once one of them holds a pool slot; else []."""
    runs = [
        r
        for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if r.tags.get(WORKER_RUN_TAG) == r.run_id
    ]
    holding = set(instance.event_log_storage.get_concurrency_run_ids())
    return runs if len(runs) == 2 and holding & {r.run_id for r in runs} else []


def _held_slots(instance: dg.DagsterInstance, run_ids: set[str]) -> list[str]:
    storage = instance.event_log_storage
    return [
        f"{key}: {slot.run_id}"
        for key in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(key).claimed_slots
        if slot.run_id in run_ids
    ]


#: Where a bar came from, not what it is: a synthetic payload covers the dates of its run, so its refresh
#: time and hash depend on how the backfill was split into runs (per date here, one range in the reference).
PROVENANCE = ["ingested_at", "last_refreshed", "payload_hash"]


def _tables(lake) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("silver", "gold", "bi", "signals"):
        df = read_table(str(lake), table).drop(columns=PROVENANCE, errors="ignore")
        out[table] = df.sort_values(list(df.columns[:3])).reset_index(drop=True)
    return out


def test_a_killed_dagster_dev_fails_its_runs_frees_their_slots_and_new_runs_start(
    spark, tmp_path, dagster_home, clean_env
):
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    write_instance_config(home)  # the project's dagster.yaml: max_concurrent_runs 2, one slot per table pool
    instance = dg.DagsterInstance.from_config(str(home))
    sync_symbols(instance, SYMBOLS)
    ensure_writer_pools(instance)  # as `make dev` does
    env = {
        "STOCK_LAKEHOUSE_CONFIG": str(REPO / "config" / "stock_lakehouse.yaml"),
        "STOCK_LAKEHOUSE_SOURCE": "synthetic",
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(SYMBOLS),
        "STOCK_LAKEHOUSE_LAKE_ROOT": str(lake),
    }
    days = ["--start", START.isoformat(), "--end", END.isoformat()]

    with dagster_dev_process(home, env) as (url, dev):
        # The CLI's backfill, waiting on the webserver as a user's terminal would.
        cli = subprocess.Popen(
            [bin_path("stock-lakehouse"), "backfill", "--url", url, "--symbols", ",".join(SYMBOLS), *days],
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 300
        while not (dead := _recorded_and_in_a_step(instance)):
            assert time.monotonic() < deadline, "the backfill's two runs never ran a step"
            assert cli.poll() is None, cli.communicate()[0]
            time.sleep(0.3)
        # A power cut: every process of dagster dev at once, run workers included.
        doomed = [dev.pid, *descendants(dev.pid)]
        os.killpg(dev.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dev.wait(timeout=30)
    workers = {r.run_id: int(r.tags[PID_TAG]) for r in dead}
    # SIGKILL is delivered asynchronously: a JVM's many threads take a moment to be torn down.
    gone_by = time.monotonic() + 15
    while any(process_alive(pid) for pid in workers.values()) and time.monotonic() < gone_by:
        time.sleep(0.2)
    assert not any(process_alive(pid) for pid in workers.values()), workers
    out, _ = cli.communicate(timeout=60)
    lines = out.strip().splitlines()
    assert cli.returncode != 0 and "Traceback" not in out, out
    assert lines[-1].startswith("Error: Dagster webserver at") and "unreachable" in lines[-1], out

    dead_ids = set(workers)
    assert {r.status for r in instance.get_runs(dg.RunsFilter(run_ids=list(dead_ids)))} == {dg.DagsterRunStatus.STARTED}
    restarted = time.monotonic()
    with dagster_dev_process(home, env, "dagster_dev_2.log") as (url, _):
        # Launched at once: with both run slots held by the dead runs, it can start only after recovery.
        backfill_id = launch_backfill(f"{url}/graphql", SYMBOLS, START, END, title="after the crash")
        while True:
            runs = instance.get_runs(dg.RunsFilter(run_ids=list(dead_ids)))
            if all(r.status == dg.DagsterRunStatus.FAILURE for r in runs) and not _held_slots(instance, dead_ids):
                break
            assert time.monotonic() - restarted < RECOVERY_BOUND_S, (runs, _held_slots(instance, dead_ids))
            time.sleep(1)
        recovered_after = time.monotonic() - restarted
        print(f"dead runs failed and slots freed {recovered_after:.1f}s after dagster dev was restarted")
        for run_id, pid in workers.items():
            (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert f"pid {pid} on" in failure.dagster_event.message, failure.dagster_event.message
            assert "recover_dead_runs sensor" in failure.dagster_event.message
        status = wait_backfill(f"{url}/graphql", backfill_id, timeout=900)
        assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
        assert len(status["runs"]) == 2 and all(r["status"] == "SUCCESS" for r in status["runs"]), status
    assert not set(instance.event_log_storage.get_concurrency_run_ids()) & dead_ids

    # The tables equal a clean run's over the same partitions (the synthetic source is deterministic).
    reference = tmp_path / "reference"
    ok, _, error = run_materialize(SYMBOLS, START, END, {"lake_root": str(reference), "source": "synthetic"})
    assert ok, error
    got, expected = _tables(lake), _tables(reference)
    for table in expected:
        pd.testing.assert_frame_equal(got[table], expected[table], check_exact=True, obj=table)

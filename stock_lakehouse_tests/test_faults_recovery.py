"""A CLI run killed with -9 (Python and its JVM) inside the silver step blocks nothing afterwards.

The console script runs in separate processes with a fresh instance (the repository's ``dagster.yaml``:
one slot per table pool) and lake. Before the fix the dead run stayed STARTED holding silver's slot,
and the next run waited for it forever; the killed JVM's 277 MB of temp files stayed in /tmp.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.spark import process_spark_dir, remove_dead_spark_dirs, spark_tmp_root
from stock_lakehouse.runs.instance_home import write_instance_config
from stock_lakehouse.runs.recovery import (
    HOST_TAG,
    PID_TAG,
    PROCESS_START_TAG,
    WORKER_RUN_TAG,
    RunWorker,
    boot_id,
    process_start_ticks,
    process_tags,
    recover_dead_runs,
)
from stock_lakehouse_tests.conftest import REPO

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="kills processes and reads /proc (Linux)"),
]

EXE = Path(sys.executable).with_name("stock-lakehouse")
SILVER_STEP = "silver__stock_clean"
TABLES = ("bronze", "silver", "gold", "bi")
#: Differ between any two runs (clock, lake path), whatever happened.
VOLATILE = ["ingested_at", "fetched_at", "payload_uri"]
#: Provenance of the request a bar came in: the first run's request covered one more day than the re-run's.
REQUEST = ["bar_seq", "request_fingerprint", "payload_hash", "last_refreshed"]


def _cmd(start: str, end: str) -> list[str]:
    return [str(EXE), "materialize", "--source", "synthetic", "--symbols", "AAA", "--start", start, "--end", end]


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    """An instance (the repository's dagster.yaml), a lake and a temp dir of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_")}
    if "STOCK_LAKEHOUSE_IVY_DIR" in os.environ:
        env["STOCK_LAKEHOUSE_IVY_DIR"] = os.environ["STOCK_LAKEHOUSE_IVY_DIR"]
    home = tmp_path / name / "home"
    home.mkdir(parents=True)
    write_instance_config(home)
    (tmp_path / name / "tmp").mkdir()
    env.update(
        DAGSTER_HOME=str(home),
        STOCK_LAKEHOUSE_CONFIG=str(REPO / "config" / "stock_lakehouse.yaml"),
        STOCK_LAKEHOUSE_LAKE_ROOT=str(tmp_path / name / "lake"),
        TMPDIR=str(tmp_path / name / "tmp"),
    )
    return env


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (the CLI's Python and its JVM) and wait until all of it is gone."""
    if not _group_gone(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while not _group_gone(proc.pid):
        assert time.monotonic() < deadline, "the killed process group did not die"
        time.sleep(0.2)


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run the CLI in its own process group; kill the whole group and fail the test after ``timeout``."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=env["DAGSTER_HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[1:])} did not finish in {timeout:.0f}s\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _rows(env: dict[str, str], table: str, start: str, end: str) -> pd.DataFrame:
    df = read_table(
        env["STOCK_LAKEHOUSE_LAKE_ROOT"], table, ["AAA"], date.fromisoformat(start), date.fromisoformat(end)
    )
    return df.drop(columns=VOLATILE, errors="ignore")


def _wait_inside_silver(proc: subprocess.Popen, instance: dg.DagsterInstance, before: set[str], log: Path) -> str:
    """Block until the CLI's new run (not in ``before``) has started the silver step, which it does
    once it holds silver's pool slot; its run id."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run to kill ended by itself (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
        for run in instance.get_runs():
            if run.run_id in before:
                continue
            starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if any(e.step_key == SILVER_STEP for e in starts):
                return run.run_id
        time.sleep(0.25)
    pytest.fail(f"no silver STEP_START within 600s:\n{log.read_text()[-3000:]}")


def _held_slots(instance: dg.DagsterInstance) -> dict[str, list]:
    storage = instance.event_log_storage
    infos = {key: storage.get_concurrency_info(key) for key in storage.get_concurrency_keys()}
    return {key: [*i.claimed_slots, *i.pending_steps] for key, i in infos.items() if i.claimed_slots or i.pending_steps}


def _dead_pid() -> tuple[int, int]:
    """A pid whose process has ended (and was reaped), with its start ticks."""
    proc = subprocess.Popen(["sleep", "60"])
    ticks = process_start_ticks(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, ticks


def test_recovery_fails_only_dead_runs_of_this_host_and_frees_their_slots(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    write_instance_config(home)
    instance = dg.DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    me = {k: v for k, v in process_tags("-").items() if k != WORKER_RUN_TAG}
    dead_pid, dead_ticks = _dead_pid()
    dead = {**me, PID_TAG: str(dead_pid), PROCESS_START_TAG: f"{boot_id()}:{dead_ticks}"}
    runs = {
        "dead": dead,
        # This process's pid, but another start time: the pid was reused, the run's process is gone.
        "reused_pid": {**me, PROCESS_START_TAG: f"{boot_id()}:{process_start_ticks(os.getpid()) - 1}"},
        "earlier_boot": {**me, PROCESS_START_TAG: f"another-boot:{process_start_ticks(os.getpid())}"},
        "alive": me,
        "other_host": {**dead, HOST_TAG: "elsewhere"},
        # A re-execution's copy of its parent's tags names the parent's worker, not its own...
        "reexecution": {**dead, WORKER_RUN_TAG: "dead", "dagster/parent_run_id": "dead"},
        # ...as did copies made before worker tags named their run.
        "legacy_reexecution": {**dead, "dagster/parent_run_id": "dead"},
        # A re-execution whose own worker recorded itself, then died.
        "reexecution_recorded": {**dead, "dagster/parent_run_id": "dead"},
        "untagged": {},
    }
    for run_id in ("dead", "reused_pid", "earlier_boot", "alive", "other_host", "reexecution_recorded"):
        runs[run_id] = {**runs[run_id], WORKER_RUN_TAG: run_id}
    for run_id, tags in runs.items():
        instance.add_run(dg.DagsterRun(job_name="j", run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags))
        key = f"delta_{run_id}"
        storage.initialize_concurrency_limit_to_default(key)
        assert storage.claim_concurrency_slot(key, run_id, "step").is_claimed
    # A finished run of a dead process that still holds a slot (e.g. recovery cut off before freeing it).
    finished_tags = {**dead, WORKER_RUN_TAG: "finished"}
    instance.add_run(
        dg.DagsterRun(job_name="j", run_id="finished", status=dg.DagsterRunStatus.FAILURE, tags=finished_tags)
    )
    storage.initialize_concurrency_limit_to_default("delta_finished")
    assert storage.claim_concurrency_slot("delta_finished", "finished", "step").is_claimed

    recovered = recover_dead_runs(instance)

    assert {r.run_id: r.previous_status for r in recovered} == {
        "dead": "STARTED",
        "reused_pid": "STARTED",
        "earlier_boot": "STARTED",
        "reexecution_recorded": "STARTED",
        "finished": "FAILURE",
    }
    status = {r.run_id: r.status for r in instance.get_runs()}
    held = {r: bool(storage.get_concurrency_info(f"delta_{r}").claimed_slots) for r in status}
    for run_id in ("dead", "reused_pid", "earlier_boot", "reexecution_recorded", "finished"):
        assert status[run_id] == dg.DagsterRunStatus.FAILURE and not held[run_id], run_id
    for run_id in ("alive", "other_host", "reexecution", "legacy_reexecution", "untagged"):
        assert status[run_id] == dg.DagsterRunStatus.STARTED and held[run_id], run_id
    (failure,) = instance.all_logs("dead", of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"pid {dead_pid} on" in failure.dagster_event.message
    assert instance.all_logs("finished", of_type=dg.DagsterEventType.RUN_FAILURE) == []
    assert recover_dead_runs(instance) == []


def test_spark_temp_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    root = spark_tmp_root()
    assert root.parent == tmp_path
    dead_pid, dead_ticks = _dead_pid()
    dead = root / f"{dead_pid}-{dead_ticks}"
    reused = root / f"{os.getpid()}-{process_start_ticks(os.getpid()) - 1}"
    mine, other = process_spark_dir(), root / "not-a-process-folder"
    for folder in (dead, reused, mine, other):
        (folder / "spark-x").mkdir(parents=True)
        (folder / "spark-x" / "f.jar").write_bytes(b"x")
    assert sorted(remove_dead_spark_dirs()) == sorted([dead, reused])
    assert sorted(root.iterdir()) == sorted([mine, other])


@pytest.mark.spark
def test_run_killed_inside_silver_is_failed_frees_its_slot_and_its_spark_temp_folder(tmp_path):
    timings: dict[str, float] = {}
    env = _env(tmp_path, "main")
    t0 = time.monotonic()
    first = _run(_cmd("2024-03-01", "2024-03-06"), env, timeout=600)
    timings["first run"] = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    untouched = {t: _rows(env, t, "2024-03-01", "2024-03-01") for t in TABLES}
    assert len(untouched["bronze"]) > 0 and len(untouched["gold"]) == 1
    # What a run without a crash made of the range the victim rewrites (the synthetic source is
    # deterministic, so the re-run after the kill must reproduce it exactly).
    reference = {t: _rows(env, t, "2024-03-04", "2024-03-06") for t in TABLES}
    assert len(reference["gold"]) == 3

    # The victim: same range, killed with its JVM while the silver step holds silver's pool slot.
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    before = {r.run_id for r in instance.get_runs()}
    victim_log = tmp_path / "victim.log"
    t0 = time.monotonic()
    with open(victim_log, "w") as log:
        victim = subprocess.Popen(
            _cmd("2024-03-04", "2024-03-06"),
            env=env,
            cwd=env["DAGSTER_HOME"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        dead_run = _wait_inside_silver(victim, instance, before, victim_log)
        timings["victim until silver"] = time.monotonic() - t0
        spark_dir = Path(env["TMPDIR"]) / spark_tmp_root().name / f"{victim.pid}-{process_start_ticks(victim.pid)}"
        jvms = subprocess.run(["pgrep", "-g", str(victim.pid), "java"], capture_output=True, text=True).stdout.split()
        jvm_cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") for pid in jvms]
        assert SILVER_STEP in [s.step_key for s in _held_slots(instance)["delta_silver_stock_clean"]]
    finally:
        _kill_group(victim)
    assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.STARTED
    # What the dead JVM left behind: Spark's scratch folders, blocks, native libraries; no jar copies,
    # since a local session puts the jars on its class path instead of copying them (277 MB before).
    left = list(spark_dir.rglob("*"))
    jar_copies = [f for f in left if f.suffix == ".jar"]
    timings["left by the dead JVM, MB"] = sum(f.stat().st_size for f in left if f.is_file()) / 1e6

    # The same command again: it must finish, recovering the dead run first (before the fix it waited for
    # silver's slot forever). The bound grows with the machine's load, seen in the first run.
    t0 = time.monotonic()
    again = _run(_cmd("2024-03-04", "2024-03-06"), env, timeout=max(300.0, 3 * timings["first run"]))
    timings["re-run"] = time.monotonic() - t0
    print(timings)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "recovered:" in again.stdout and dead_run in again.stdout, again.stdout
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.FAILURE
    (failure,) = instance.all_logs(dead_run, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"pid {victim.pid}" in failure.dagster_event.message
    assert [r.status for r in instance.get_runs()] == [
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.SUCCESS,
    ]
    assert _held_slots(instance) == {}

    # The killed JVM kept all its temp files in its process's folder, which the re-run removed.
    assert len(jvm_cmdlines) == 1 and f"-Djava.io.tmpdir={spark_dir}" in jvm_cmdlines[0], jvm_cmdlines
    assert left and not jar_copies, (len(left), jar_copies[:3])
    assert not spark_dir.exists()

    # Every table: the re-run's partitions equal the first run's (no crash), its other partitions unchanged.
    for table in TABLES:
        got = _rows(env, table, "2024-03-04", "2024-03-06")
        assert len(got) > 0, table
        pd.testing.assert_frame_equal(
            got.drop(columns=REQUEST, errors="ignore"),
            reference[table].drop(columns=REQUEST, errors="ignore"),
            check_like=True,
            obj=table,
        )
        pd.testing.assert_frame_equal(
            _rows(env, table, "2024-03-01", "2024-03-01"), untouched[table], check_like=True, obj=table
        )


def test_every_run_records_its_worker_when_its_resources_start(tmp_path):
    """A run launched anywhere (here: in process, as the daemon's run worker executes it) names its worker
    in its tags before its first step: RunWorker's setup, which the IO manager and every op job depend on."""
    home = tmp_path / "home"
    home.mkdir()
    write_instance_config(home)
    instance = dg.DagsterInstance.from_config(str(home))
    seen: dict[str, str] = {}

    @dg.op
    def first_step(context, run_worker: RunWorker) -> None:
        seen.update(instance.get_run_by_id(context.run_id).tags)

    @dg.job(resource_defs={"run_worker": RunWorker()}, executor_def=dg.in_process_executor)
    def job():
        first_step()

    result = job.execute_in_process(
        instance=instance, tags={**process_tags("the-parent"), "dagster/parent_run_id": "p"}
    )
    assert seen[WORKER_RUN_TAG] == result.run_id and seen[PID_TAG] == str(os.getpid())
    assert seen[PROCESS_START_TAG] == process_tags(result.run_id)[PROCESS_START_TAG]
    # The definitions wire it where every run passes: the IO manager and each op job.
    from stock_lakehouse.settings import load_settings
    from stock_lakehouse.wiring import build_definitions

    defs = build_definitions(load_settings(overrides={"lake_root": str(tmp_path / "lake")}))
    resources = defs.resources
    assert resources["io_manager"].worker is resources["run_worker"]
    for name in ("ranged_backfill", "delta_maintenance"):
        job_def = defs.resolve_job_def(name)
        assert all("run_worker" in node.definition.required_resource_keys for node in job_def.graph.nodes), name


def test_the_recovery_sensor_fails_dead_runs_and_says_so(tmp_path):
    """The always-on sensor, server-free: a tick with a dead worker's run fails it and frees its slot; a
    tick with nothing dead says so (a sensor that silently did nothing would fail both)."""
    from stock_lakehouse.automation.sensors import build_dead_run_sensor

    home = tmp_path / "home"
    home.mkdir()
    write_instance_config(home)
    instance = dg.DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    dead_pid, dead_ticks = _dead_pid()
    tags = {**process_tags("dead"), PID_TAG: str(dead_pid), PROCESS_START_TAG: f"{boot_id()}:{dead_ticks}"}
    instance.add_run(dg.DagsterRun(job_name="j", run_id="dead", status=dg.DagsterRunStatus.STARTED, tags=tags))
    storage.initialize_concurrency_limit_to_default("delta_bronze_intraday_bars")
    assert storage.claim_concurrency_slot("delta_bronze_intraday_bars", "dead", "step").is_claimed
    live = process_tags("live")
    instance.add_run(dg.DagsterRun(job_name="j", run_id="live", status=dg.DagsterRunStatus.STARTED, tags=live))
    sensor = build_dead_run_sensor()
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    result = sensor(dg.build_sensor_context(instance=instance))

    assert (
        isinstance(result, dg.SkipReason) and "failed 1 run(s)" in result.skip_message and "dead" in result.skip_message
    )
    assert instance.get_run_by_id("dead").status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id("live").status == dg.DagsterRunStatus.STARTED
    assert not storage.get_concurrency_info("delta_bronze_intraday_bars").claimed_slots
    (failure,) = instance.all_logs("dead", of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "recover_dead_runs sensor" in failure.dagster_event.message
    again = sensor(dg.build_sensor_context(instance=instance))
    assert "has a live worker" in again.skip_message

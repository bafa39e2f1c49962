"""Runs whose worker process died: marked failed, their concurrency-pool slots freed, without a person.

When the process executing a run dies without a chance to report (``kill -9``, the OOM killer, a power
cut, a crash of the whole ``dagster dev`` process group or of the code server's container), the run
stays STARTED in the instance and keeps the pool slot of the step it was in. Dagster does not clean this
up: the daemon's run monitoring checks worker health only through launchers that support it
(``DefaultRunLauncher`` does not), and frees slots only of *finished* runs. With one slot per table pool
and ``max_concurrent_runs`` counting the dead runs (``dagster.yaml``), every later run waits forever.

So every run records the host, pid and start token of its worker (:func:`process_tags`; the pid alone
could belong to a later process by now) and the run they belong to: CLI runs when they are created,
daemon-launched runs (UI, backfills, schedules, the ranged job) as soon as their worker initializes its
resources (:class:`RunWorker`, a dependency of the IO manager and of every op job). Then
:func:`recover_dead_runs` marks failed the unfinished runs of this host whose worker is gone and frees
their slots. It runs before every CLI run and on every tick of the ``recover_dead_runs`` sensor, which
the daemon evaluates in the code server, on the host of the runs it launched.

The rules: runs of other hosts are left alone (their processes cannot be seen from here); a host is its
host name (a container has its own), so processes sharing a host name must share one pid namespace. A
run whose worker has not recorded itself yet is left to Dagster's own start timeout
(``run_monitoring.start_timeout_seconds``, STARTING runs). A re-execution copies its parent's tags, which
name the parent's worker until its own records itself (:data:`WORKER_RUN_TAG` tells them apart).

The same process identity names the per-process Spark temp folders (``lakehouse/spark.py``).

Process start times come from ``/proc`` (Linux). Elsewhere only the pid is compared.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

logger = logging.getLogger(__name__)

HOST_TAG = "stock_lakehouse/host"
PID_TAG = "stock_lakehouse/pid"
#: ``<boot id>:<start time in clock ticks after boot>`` of the process: unique per process and boot.
PROCESS_START_TAG = "stock_lakehouse/process_start"
#: The run whose worker the three tags above describe.
WORKER_RUN_TAG = "stock_lakehouse/worker_run"


@dataclass(frozen=True)
class RecoveredRun:
    """A run whose process was found dead, now FAILURE with its slots freed.

    Attributes:
        run_id: the run.
        pid: the dead process (on this host).
        previous_status: the run's status before recovery (e.g. ``STARTED``); ``FAILURE`` etc. when the
            run had already finished and only its slots were left.
    """

    run_id: str
    pid: int
    previous_status: str


def boot_id() -> str:
    """The kernel's boot id, or ``""`` where there is none (not Linux)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3), or None without such a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces and ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks after boot (``/proc/<pid>/stat`` field 22), or None."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def process_alive(pid: int, start_ticks: int | None = None, boot: str | None = None) -> bool:
    """Whether process ``pid`` still runs and is the one that started at ``start_ticks`` in ``boot``.

    A zombie (dead, not yet reaped) counts as dead; a pid that now belongs to a later process, or a
    token of an earlier boot, counts as dead. Without ``/proc`` only the pid's existence is checked.
    """
    if pid <= 0:
        return False
    if boot and boot_id() and boot != boot_id():
        return False
    fields = _proc_stat(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):
            return False
        return start_ticks is None or int(fields[19]) == start_ticks
    if Path("/proc/self/stat").exists():
        return False  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_tags(run_id: str) -> dict[str, str]:
    """Run tags naming this process as ``run_id``'s worker: host, pid, start token and the run."""
    pid = os.getpid()
    ticks = process_start_ticks(pid)
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(pid),
        PROCESS_START_TAG: f"{boot_id()}:{ticks}" if ticks is not None else "",
        WORKER_RUN_TAG: run_id,
    }


def record_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Record this process as the worker of ``run_id`` in its tags (replacing tags a re-execution copied)."""
    instance.add_run_tags(run_id, process_tags(run_id))


class RunWorker(dg.ConfigurableResource):
    """Records which process executes the run, when the run's resources are initialized.

    Under the in-process executor every resource a run needs is initialized once, before its first step,
    in the run worker: the earliest point of a run that user code reaches whatever launched it (the UI, a
    backfill, a schedule, a sensor). The IO manager and every op job depend on this resource, so every run
    of the code location records its worker (see the module docstring for what recovery does with it).
    """

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Built outside a run (direct invocation, a sensor's resources) there is no run to record.
        if context.instance is None or not context.run_id:
            return
        run = context.dagster_run
        if run is not None and process_tags(context.run_id).items() <= run.tags.items():
            return  # created with this process's tags (a CLI run): nothing to record again
        record_worker(context.instance, context.run_id)


def _owner_alive(tags: dict[str, str], run_id: str) -> bool | None:
    """Whether the worker named by a run's tags is alive; None when the tags name no worker of this run."""
    if tags.get(WORKER_RUN_TAG, run_id) != run_id:
        return None  # the parent's worker, copied by a re-execution whose worker has not recorded itself
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return None
    boot, _, ticks = tags.get(PROCESS_START_TAG, "").rpartition(":")
    start_ticks = int(ticks) if ticks.isdigit() else None
    return process_alive(pid, start_ticks, boot or None)


def recover_dead_runs(instance: dg.DagsterInstance, by: str = "the next stock-lakehouse run") -> list[RecoveredRun]:
    """Mark failed the runs of this host whose worker process is gone, and free their pool slots.

    Looks at unfinished runs tagged with this host (:func:`process_tags`), and at finished ones that
    still hold or wait for pool slots (a process that died between the two steps of an earlier
    recovery). Skipped: runs of other hosts, runs whose worker lives, and runs whose tags name another
    run's worker (a re-execution's copy of its parent's tags; runs recorded before ``WORKER_RUN_TAG``
    existed are judged the old way: re-executions skipped).

    Args:
        instance: the Dagster instance the runs are recorded in.
        by: who recovers, named in the failure message (the CLI, the sensor).

    Returns:
        One entry per recovered run, oldest first; empty when there was nothing to do.
    """
    from stock_lakehouse.dagster_internals import PARENT_RUN_ID_TAG, JobFailureData, RunFailureReason

    host = socket.gethostname()
    unfinished = [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    records = {
        r.dagster_run.run_id: r
        for r in instance.get_run_records(dg.RunsFilter(statuses=unfinished, tags={HOST_TAG: host}))
    }
    storage = instance.event_log_storage
    slots = storage.supports_global_concurrency_limits
    if slots:
        holders = [run_id for run_id in storage.get_concurrency_run_ids() if run_id not in records]
        if holders:
            more = instance.get_run_records(dg.RunsFilter(run_ids=holders, tags={HOST_TAG: host}))
            records.update({r.dagster_run.run_id: r for r in more})
    recovered: list[RecoveredRun] = []
    for record in sorted(records.values(), key=lambda r: r.create_timestamp):
        run = record.dagster_run
        legacy_copy = WORKER_RUN_TAG not in run.tags and PARENT_RUN_ID_TAG in run.tags
        if legacy_copy or _owner_alive(dict(run.tags), run.run_id) is not False:
            continue
        pid = int(run.tags[PID_TAG])
        current = instance.get_run_by_id(run.run_id) or run
        if not current.is_finished:
            instance.report_run_failed(
                current,
                f"The worker process of this run (pid {pid} on {host}) is gone: killed or crashed before it "
                f"could report. Marked failed and its pool slots freed by {by} on this host.",
                JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
            )
        if slots:
            storage.free_concurrency_slots_for_run(run.run_id)
        logger.info("recovered run %s of dead pid %s (was %s)", run.run_id, pid, current.status.value)
        recovered.append(RecoveredRun(run.run_id, pid, current.status.value))
    return recovered

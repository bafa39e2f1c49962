"""Runs of a crashed CLI process: marked failed, their concurrency-pool slots freed.

``stock-lakehouse materialize`` executes its runs inside its own process (``execute_in_process``): no
run launcher owns them. When that process dies without a chance to report (``kill -9``, the OOM
killer, a power cut), the run stays STARTED in the instance and keeps the pool slot of the step it was
in. Dagster does not clean this up: the daemon's run monitoring checks worker health only for runs its
launcher started (and ``DefaultRunLauncher`` has no health check), and frees slots only of *finished*
runs. With one slot per table pool (``dagster.yaml``), the next run writing that table waits forever.

So every CLI run carries the host, pid and start token of its process (:func:`process_tags`; the pid
alone could belong to a later process by now), and before a CLI run starts, :func:`recover_dead_runs`
marks failed the unfinished runs of this host whose process is gone and frees their slots. Runs of
other hosts are left alone: their processes cannot be seen from here. A host is its host name (a
container has its own), so processes sharing a host name must share one pid namespace.

The same process identity names the per-process Spark temp folders (``lakehouse/spark.py``).

Process start times come from ``/proc`` (Linux). Elsewhere only the pid is compared.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

logger = logging.getLogger(__name__)

HOST_TAG = "stock_lakehouse/host"
PID_TAG = "stock_lakehouse/pid"
#: ``<boot id>:<start time in clock ticks after boot>`` of the process: unique per process and boot.
PROCESS_START_TAG = "stock_lakehouse/process_start"


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


def process_tags() -> dict[str, str]:
    """Run tags naming this process: host, pid and start token (see :func:`recover_dead_runs`)."""
    pid = os.getpid()
    ticks = process_start_ticks(pid)
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(pid),
        PROCESS_START_TAG: f"{boot_id()}:{ticks}" if ticks is not None else "",
    }


def _owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process named by a run's tags is alive; None when the tags name no process."""
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return None
    boot, _, ticks = tags.get(PROCESS_START_TAG, "").rpartition(":")
    start_ticks = int(ticks) if ticks.isdigit() else None
    return process_alive(pid, start_ticks, boot or None)


def recover_dead_runs(instance: dg.DagsterInstance) -> list[RecoveredRun]:
    """Mark failed the runs of this host whose CLI process is gone, and free their pool slots.

    Looks at unfinished runs tagged with this host (:func:`process_tags`), and at finished ones that
    still hold or wait for pool slots (a process that died between the two steps of an earlier
    recovery). Re-executions and retries of such runs (``dagster/parent_run_id``) copy the tags but
    run elsewhere, so they are skipped, as are runs of other hosts and runs whose process lives.

    Args:
        instance: the Dagster instance the CLI records its runs in.

    Returns:
        One entry per recovered run, oldest first; empty when there was nothing to do.
    """
    import dagster as dg
    from dagster._core.events import JobFailureData, RunFailureReason
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

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
        if PARENT_RUN_ID_TAG in run.tags or _owner_alive(dict(run.tags)) is not False:
            continue
        pid = int(run.tags[PID_TAG])
        current = instance.get_run_by_id(run.run_id) or run
        if not current.is_finished:
            instance.report_run_failed(
                current,
                f"The process of this run (pid {pid} on {host}) is gone: killed or crashed before it could "
                "report. Marked failed and its pool slots freed by the next stock-lakehouse run on this host.",
                JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
            )
        if slots:
            storage.free_concurrency_slots_for_run(run.run_id)
        logger.info("recovered run %s of dead pid %s (was %s)", run.run_id, pid, current.status.value)
        recovered.append(RecoveredRun(run.run_id, pid, current.status.value))
    return recovered

"""Where a Dagster run's time goes, read back from its event log.

A backfill launched from the UI becomes many runs, and each pays fixed costs before it touches a bar:
the run queue, a new process that imports the code and loads the definitions, a new Spark JVM (with the
JIT compiling Spark's hot paths again), and one event write per partition and step. The benchmark sums
these per run so the fixed costs can be told apart from the work. Everything here comes from records
Dagster already keeps (run lifecycle events, step events, check metadata) plus the run-log line a new
Spark session writes (``lakehouse.spark.SESSION_STARTED``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import dagster as dg
from dagster import DagsterEventType

from stock_lakehouse.lakehouse.spark import SESSION_STARTED

_SESSION_RE = re.compile(re.escape(SESSION_STARTED.split("{seconds")[0]) + r"(?P<s>[0-9.]+)s")
_ENDED = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED)


@dataclass
class RunCost:
    """One run's time, split by what it was spent on (seconds; ``None`` when the run never got there).

    Attributes:
        queued_s: enqueued until the run coordinator dequeued it (waiting for a run slot).
        launch_s: dequeued until the run worker's first event: process start, imports, definitions load.
        execution_s: the run worker's first event until the run ended.
        spark_start_s: the Spark session's start-up (JVM, jars) if this run started one.
        steps_s: step key -> seconds from its start to its end (includes waiting for a pool slot).
        soda_scan_s: check step key -> seconds of its Soda scan (inside that step's time).
        events: event-log entries the run wrote (each one a storage write).
    """

    run_id: str
    queued_s: float | None = None
    launch_s: float | None = None
    execution_s: float | None = None
    spark_start_s: float | None = None
    steps_s: dict[str, float] = field(default_factory=dict)
    soda_scan_s: dict[str, float] = field(default_factory=dict)
    events: int = 0


def run_cost(instance: dg.DagsterInstance, run_id: str) -> RunCost:
    """Read one run's event log and split its time (see :class:`RunCost`)."""
    cost = RunCost(run_id=run_id)
    first: dict[DagsterEventType, float] = {}
    step_start: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        cost.events += 1
        event = entry.dagster_event
        if event is None:
            match = _SESSION_RE.match(entry.user_message or "")
            if match and cost.spark_start_s is None:
                cost.spark_start_s = float(match["s"])
            continue
        first.setdefault(event.event_type, entry.timestamp)
        if event.event_type == DagsterEventType.STEP_START:
            step_start[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            if event.step_key in step_start:
                cost.steps_s[event.step_key] = round(entry.timestamp - step_start[event.step_key], 3)
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            seconds = event.event_specific_data.metadata.get("scan_seconds")
            if seconds is not None:
                cost.soda_scan_s[event.step_key] = float(seconds.value)
    enqueued, starting = first.get(DagsterEventType.RUN_ENQUEUED), first.get(DagsterEventType.RUN_STARTING)
    started = first.get(DagsterEventType.RUN_START)
    ended = next((first[t] for t in _ENDED if t in first), None)
    if enqueued is not None and starting is not None:
        cost.queued_s = round(starting - enqueued, 3)
    if starting is not None and started is not None:
        cost.launch_s = round(started - starting, 3)
    if started is not None and ended is not None:
        cost.execution_s = round(ended - started, 3)
    return cost


def summarize(costs: Sequence[RunCost]) -> dict[str, object]:
    """Totals over runs: how many runs and JVMs, and the seconds of each kind of cost summed over runs.

    The sums are run-seconds, not wall time: runs that overlap count twice.
    """

    def total(values: Iterable[float | None]) -> float:
        return round(sum(v for v in values if v is not None), 2)

    steps: dict[str, float] = {}
    for cost in costs:
        for step, seconds in cost.steps_s.items():
            steps[step] = round(steps.get(step, 0.0) + seconds, 2)
    return {
        "runs": len(costs),
        "jvms_started": sum(1 for c in costs if c.spark_start_s is not None),
        "queued_s": total(c.queued_s for c in costs),
        "launch_s": total(c.launch_s for c in costs),
        "execution_s": total(c.execution_s for c in costs),
        "spark_start_s": total(c.spark_start_s for c in costs),
        "soda_scan_s": total(s for c in costs for s in c.soda_scan_s.values()),
        "events": sum(c.events for c in costs),
        "steps_s": steps,
        "per_run": [asdict(c) for c in costs],
    }

"""Ranged runs of the asset job in this process: one run per group of neighbouring symbols over a date
range, each recorded in the instance, with a summary of what they wrote and checked.

Why apart from ``materialize``: the ``ranged_backfill`` job (inside the definitions) executes the same
runs. It is given a ``RangeRunner`` resource by the definitions, so this module needs neither the
definitions nor the settings loader: the job and the settings are its inputs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd

from stock_lakehouse.lakehouse.tables import TABLES, step_name
from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.partitions import is_empty, is_follow_on
from stock_lakehouse.quality.partition_results import aggregate
from stock_lakehouse.runs.event_storage import enable_event_batching
from stock_lakehouse.runs.recovery import RecoveredRun, process_tags, recover_dead_runs

if TYPE_CHECKING:
    import dagster as dg

    from stock_lakehouse.runs.progress import RunProgress
    from stock_lakehouse.settings import Settings

#: (table, step writing it) in the order a run writes them.
LAYERS = tuple((table, step_name(table)) for table in TABLES)
#: Who launched a run, as a tag (the Runs list filters by it): the CLI's ``materialize`` (and the benchmark),
#: or the ``ranged_backfill`` run (its id) whose step executes the range.
CLI_TAGS: Mapping[str, str] = {"stock_lakehouse/cli": "materialize"}
RANGED_BACKFILL_TAG = "stock_lakehouse/ranged_backfill"


class MaterializeError(ValueError):
    """The request cannot run as given (dates, symbols); the message says which and why."""


@dataclass
class Summary:
    runs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    #: check name -> (passed, severity, metadata) of the last run that evaluated it
    checks: dict[str, tuple[bool, str, dict[str, object]]] = field(default_factory=dict)
    #: step key -> seconds, summed over runs
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: partitions withheld from gold and BI by the row-quality gate, described (key, share, rules)
    withheld: list[str] = field(default_factory=list)
    #: runs of dead processes on this host marked failed (and their pool slots freed) before the runs
    recovered: list[RecoveredRun] = field(default_factory=list)


def weekdays_to_run(settings: Settings, start: date, end: date) -> list[date]:
    """The weekdays of [start, end], once the range and the lake are found usable (cheap: before any run).

    Raises:
        MaterializeError: start after end, before ``partitions_start`` or in the future, no weekday, or a
            lake that cannot be reached (a wrong or dead S3 endpoint fails here in seconds, not after
            minutes of Spark retries).
    """
    if start > end:
        raise MaterializeError(f"start {start} is after end {end}")
    if start < date.fromisoformat(settings.partitions_start):
        raise MaterializeError(
            f"start {start} is before partitions_start {settings.partitions_start} (set it in the config file)"
        )
    today = datetime.now(ZoneInfo(EXCHANGE_TZ)).date()
    if end > today:
        raise MaterializeError(
            f"end {end} is in the future: today is {today:%a %Y-%m-%d} in New York; "
            "bars of a later day do not exist yet"
        )
    days = [d.date() for d in pd.bdate_range(start, end)]
    if not days:
        raise MaterializeError(f"no weekday between {start} and {end}")
    problem = settings.lake.probe()
    if problem:
        raise MaterializeError(problem)
    return days


def run_ranges(
    job: dg.JobDefinition,
    settings: Settings,
    instance: dg.DagsterInstance,
    symbols: list[str] | None,
    days: list[date],
    log_level: str = "WARNING",
    progress: RunProgress | None = None,
    launched_by: Mapping[str, str] = CLI_TAGS,
) -> tuple[bool, Summary, str]:
    """Materialize every table for symbols x ``days`` (from ``weekdays_to_run``) through ``job``, recorded in
    ``instance``; each run tagged with ``launched_by`` (the Runs list's filter: the CLI, or the
    ``ranged_backfill`` run that started it).

    Returns:
        (ok, summary, error): ``error``'s first line is the cause (the failing step's root cause); the next
        lines name the step, the run and its partitions. ``progress`` follows each run's events.
    """
    from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_groups, rectangle_selection, sync_symbols

    symbols = symbols or settings.all_symbols
    enable_event_batching()  # the runs execute in this process, which stores their events
    recovered = recover_dead_runs(instance)  # else a dead run's pool slot blocks this run forever
    sync_symbols(instance, symbols)
    summary = Summary(recovered=recovered)
    ordered = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
    if progress is not None:
        progress.plan(len(symbols) * len(days))
    for group in contiguous_groups(symbols, ordered):
        partition_key, range_tags = rectangle_selection(group, days[0].isoformat(), days[-1].isoformat())
        run_id = str(uuid.uuid4())  # known before the run starts, for the progress display and its tags
        kwargs: dict[str, object] = {
            "instance": instance,
            "raise_on_error": False,
            "run_id": run_id,
            "partition_key": partition_key,
            "tags": {**launched_by, **process_tags(run_id), **range_tags},
            "run_config": {"loggers": {"console": {"config": {"log_level": log_level}}}},
        }
        watching = progress.watch(instance, str(kwargs["run_id"])) if progress else contextlib.nullcontext()
        with watching:
            result = job.execute_in_process(**kwargs)
        summary.runs.append(result.run_id)
        for event in result.all_events:
            if event.is_step_success:
                secs = event.event_specific_data.duration_ms / 1000.0
                summary.step_seconds[event.step_key] = summary.step_seconds.get(event.step_key, 0.0) + secs
        by_check: dict[str, list[tuple[bool, str, dict[str, object]]]] = {}
        for ev in result.get_asset_check_evaluations():
            meta = {k: v.value for k, v in ev.metadata.items()}
            by_check.setdefault(ev.asset_check_key.name, []).append((ev.passed, ev.severity.value, meta))
        for name, evaluations in by_check.items():
            summary.checks[name] = aggregate(evaluations)
            for described in summary.checks[name][2].get("withheld_partitions") or []:
                if described not in summary.withheld:
                    summary.withheld.append(described)
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            causes = [(e.step_key, _root_cause(e.step_failure_data.error)) for e in failures]
            where = f"run {result.run_id} ({group[0]}..{group[-1]} x {days[0]}..{days[-1]})"
            lines = [f"{causes[0][1]}", f"step {causes[0][0]} failed in {where}"] if causes else [f"{where} failed"]
            lines += [f"step {step} also failed: {cause}" for step, cause in causes[1:]]
            return False, summary, "\n".join(lines)
        for layer, node in LAYERS:
            # A window asset also reports the later partitions it rewrote: not the run's partitions.
            mats = [m for m in result.asset_materializations_for_node(node) if not is_follow_on(m.metadata)]
            # Trading days left with no rows are not recorded as materialized (partitions.EMPTY).
            empty = {o.partition for o in result.asset_observations_for_node(node) if is_empty(o.metadata)}
            if mats:
                meta = mats[0].metadata
                # A step that wrote nothing (every partition kept or withheld) has no row count or version.
                summary.rows[layer] = summary.rows.get(layer, 0) + int(
                    meta["run_row_count"].value if "run_row_count" in meta else 0
                )
                summary.partitions[layer] = summary.partitions.get(layer, 0) + sum(
                    m.partition not in empty for m in mats
                )
                if "delta_version" in meta:
                    summary.versions[layer] = int(meta["delta_version"].value)
                summary.metadata[layer] = {k: v.value for k, v in meta.items()}
    return True, summary, ""


@dataclass(frozen=True)
class RangeRunner:
    """``run_ranges`` bound to a code location's settings and asset job: the resource the ``ranged_backfill``
    job is given (the job is resolved on first use, from the definitions that hold this resource)."""

    settings: Settings
    job: Callable[[], dg.JobDefinition]

    def __call__(
        self, symbols: list[str] | None, start: date, end: date, instance: dg.DagsterInstance, outer_run: str
    ) -> tuple[bool, Summary, str]:
        """Runs tagged with the ``ranged_backfill`` run ``outer_run`` that asked for them. Raises
        MaterializeError for a range ``weekdays_to_run`` refuses."""
        days = weekdays_to_run(self.settings, start, end)
        tags = {RANGED_BACKFILL_TAG: outer_run}
        return run_ranges(self.job(), self.settings, instance, symbols, days, launched_by=tags)


def _root_cause(error) -> str:
    """One line naming the cause of a step failure: the asset's own error (Dagster wraps it in step-level
    errors), with the Java root cause of a Spark error (see ``root_cause.py``)."""
    from stock_lakehouse.runs.root_cause import error_info_root_cause

    return error_info_root_cause(error)

"""One materialization of all layers for symbols x a date range, in this process: what the CLI's
``materialize``/``demo`` and the benchmark run.

Runs go through the same Dagster job the UI uses and are recorded in the instance at ``$DAGSTER_HOME``
(default ``./.dagster_home``), so ``dagster dev`` shows them. A symbol list x date range becomes one
ranged run per group of neighbouring symbols (one Spark session for all of them in this process).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd

from stock_lakehouse.lakehouse.tables import TABLES, step_name
from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.partitions import is_follow_on
from stock_lakehouse.quality.partition_results import aggregate
from stock_lakehouse.recovery import RecoveredRun, process_tags, recover_dead_runs
from stock_lakehouse.settings import PACKAGE_DIR, load_settings

if TYPE_CHECKING:
    import dagster as dg

    from stock_lakehouse.progress import RunProgress

#: (table, step writing it) in the order a run writes them.
LAYERS = tuple((table, step_name(table)) for table in TABLES)


class MaterializeError(ValueError):
    """The request cannot run as given (dates, symbols); the message says which and why."""


def write_instance_config(home: Path) -> None:
    """``home/dagster.yaml`` from the project's ``dagster.yaml`` (the working directory's, else the
    repository's), with the event log folder written out (``event_storage.pin_event_log_folder``)."""
    from stock_lakehouse.event_storage import pin_event_log_folder

    for candidate in (Path("dagster.yaml"), PACKAGE_DIR.parent / "dagster.yaml"):
        if candidate.is_file():
            (home / "dagster.yaml").write_text(pin_event_log_folder(candidate.read_text(), home))
            return


def ensure_dagster_home() -> Path:
    """``$DAGSTER_HOME``, defaulting to ``./.dagster_home`` with the project's ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        write_instance_config(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


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


def run_materialize(
    symbols: list[str] | None,
    start: date,
    end: date,
    overrides: dict[str, object],
    log_level: str = "WARNING",
    progress: RunProgress | None = None,
    instance: dg.DagsterInstance | None = None,
) -> tuple[bool, Summary, str]:
    """Materialize all layers for symbols x weekdays in [start, end]; returns (ok, summary, error).

    ``error``'s first line is the cause (the failing step's root cause); the next lines name the step, the
    run and its partitions. ``progress`` follows each run's events while it executes. ``instance`` is the
    one to record the runs in (default: the one at ``$DAGSTER_HOME``, created with the project's
    ``dagster.yaml`` if missing).

    Raises:
        MaterializeError: dates outside the partitions, or no weekday in the range.
        SettingsError: the settings (file, environment, ``overrides``) are invalid.
    """
    import dagster as dg

    from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_groups, rectangle_selection, sync_symbols
    from stock_lakehouse.wiring import build_definitions, lakehouse_job

    settings = load_settings(overrides=overrides)
    symbols = symbols or settings.all_symbols
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
    # Pre-flight: a wrong or dead S3 endpoint fails here in seconds, not after minutes of Spark retries.
    problem = settings.lake.probe()
    if problem:
        raise MaterializeError(problem)
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    recovered = recover_dead_runs(instance)  # else a dead run's pool slot blocks this run forever
    sync_symbols(instance, symbols)
    job = lakehouse_job(build_definitions(settings))
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
            "tags": {"stock_lakehouse/cli": "materialize", **process_tags(run_id), **range_tags},
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
            if mats:
                meta = mats[0].metadata
                # A step that wrote nothing (every partition kept or withheld) has no row count or version.
                summary.rows[layer] = summary.rows.get(layer, 0) + int(
                    meta["run_row_count"].value if "run_row_count" in meta else 0
                )
                summary.partitions[layer] = summary.partitions.get(layer, 0) + len(mats)
                if "delta_version" in meta:
                    summary.versions[layer] = int(meta["delta_version"].value)
                summary.metadata[layer] = {k: v.value for k, v in meta.items()}
    return True, summary, ""


def _root_cause(error) -> str:
    """One line naming the cause of a step failure: the asset's own error (Dagster wraps it in step-level
    errors), with the Java root cause of a Spark error (see ``root_cause.py``)."""
    from stock_lakehouse.root_cause import error_info_root_cause

    return error_info_root_cause(error)

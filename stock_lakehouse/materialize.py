"""One materialization of all layers for symbols x a date range, in this process: what the CLI's
``materialize``/``demo`` and the benchmark run.

Runs go through the same Dagster job the UI uses and are recorded in the instance at ``$DAGSTER_HOME``
(default ``./.dagster_home``), so ``dagster dev`` shows them. A symbol list x date range becomes one
ranged run per group of neighbouring symbols (one Spark session for all of them in this process).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.settings import PACKAGE_DIR, load_settings

LAYERS = (
    ("bronze", "bronze__intraday_bars"),
    ("silver", "silver__stock_clean"),
    ("gold", "gold__daily_kpis"),
    ("bi", "gold__bi_stock_daily"),
)


class MaterializeError(ValueError):
    """The request cannot run as given (dates, symbols); the message says which and why."""


def ensure_dagster_home() -> Path:
    """``$DAGSTER_HOME``, defaulting to ``./.dagster_home`` with the project's ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        for candidate in (Path("dagster.yaml"), PACKAGE_DIR.parent / "dagster.yaml"):
            if candidate.is_file():
                shutil.copyfile(candidate, cfg)
                break
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


def run_materialize(
    symbols: list[str] | None, start: date, end: date, overrides: dict[str, object], log_level: str = "WARNING"
) -> tuple[bool, Summary, str]:
    """Materialize all layers for symbols x weekdays in [start, end]; returns (ok, summary, error).

    Raises:
        MaterializeError: dates outside the partitions, or no weekday in the range.
        SettingsError: the settings (file, environment, ``overrides``) are invalid.
    """
    import dagster as dg

    from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_groups, rectangle_selection, sync_symbols
    from stock_lakehouse.wiring import LAKEHOUSE_JOB, build_definitions

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
            f"end {end} is in the future: the last date partition is today ({today}, New York); "
            "bars of a later day do not exist yet"
        )
    days = [d.date() for d in pd.bdate_range(start, end)]
    if not days:
        raise MaterializeError(f"no weekday between {start} and {end}")
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    sync_symbols(instance, symbols)
    job = build_definitions(settings).resolve_job_def(LAKEHOUSE_JOB)
    summary = Summary()
    ordered = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
    for group in contiguous_groups(symbols, ordered):
        partition_key, range_tags = rectangle_selection(group, days[0].isoformat(), days[-1].isoformat())
        kwargs: dict[str, object] = {
            "instance": instance,
            "raise_on_error": False,
            "partition_key": partition_key,
            "tags": {"stock_lakehouse/cli": "materialize", **range_tags},
            "run_config": {"loggers": {"console": {"config": {"log_level": log_level}}}},
        }
        result = job.execute_in_process(**kwargs)
        summary.runs.append(result.run_id)
        for event in result.all_events:
            if event.is_step_success:
                secs = event.event_specific_data.duration_ms / 1000.0
                summary.step_seconds[event.step_key] = summary.step_seconds.get(event.step_key, 0.0) + secs
        for ev in result.get_asset_check_evaluations():
            summary.checks[ev.asset_check_key.name] = (
                ev.passed,
                ev.severity.value,
                {k: v.value for k, v in ev.metadata.items()},
            )
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            detail = "; ".join(f"step {e.step_key}: {_root_cause(e.step_failure_data.error)}" for e in failures)
            return (
                False,
                summary,
                f"run {result.run_id} ({group[0]}..{group[-1]}) failed: {detail or 'see the run log'}",
            )
        for layer, node in LAYERS:
            mats = result.asset_materializations_for_node(node)
            if mats:
                meta = mats[0].metadata
                summary.rows[layer] = summary.rows.get(layer, 0) + int(meta["row_count"].value)
                summary.partitions[layer] = summary.partitions.get(layer, 0) + len(mats)
                summary.versions[layer] = int(meta["delta_version"].value)
                summary.metadata[layer] = {k: v.value for k, v in meta.items()}
    return True, summary, ""


def _root_cause(error) -> str:
    """The innermost error message: Dagster wraps the asset's own exception in step-level errors."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()

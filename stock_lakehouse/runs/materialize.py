"""One materialization of all layers for symbols x a date range, in this process: what the CLI's
``materialize``/``demo`` and the benchmark run. It loads the settings and builds the definitions (the
composition the commands need), then hands the job to ``ranged_runs``.

Runs go through the same Dagster job the UI uses and are recorded in the instance at ``$DAGSTER_HOME``
(default ``./.dagster_home``), so ``dagster dev`` shows them. A symbol list x date range becomes one
ranged run per group of neighbouring symbols (one Spark session for all of them in this process).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from stock_lakehouse.runs.instance_home import open_instance
from stock_lakehouse.runs.ranged_runs import LAYERS, MaterializeError, Summary, run_ranges, weekdays_to_run
from stock_lakehouse.settings import Settings, load_settings

if TYPE_CHECKING:
    import dagster as dg

    from stock_lakehouse.runs.progress import RunProgress

#: What callers of the run service import from here.
__all__ = ["LAYERS", "MaterializeError", "Summary", "run_materialize"]


def run_materialize(
    symbols: list[str] | None,
    start: date,
    end: date,
    overrides: dict[str, object] | None = None,
    log_level: str = "WARNING",
    progress: RunProgress | None = None,
    instance: dg.DagsterInstance | None = None,
    settings: Settings | None = None,
) -> tuple[bool, Summary, str]:
    """Materialize all layers for symbols x weekdays in [start, end]; returns (ok, summary, error).

    ``error``'s first line is the cause (the failing step's root cause); the next lines name the step, the
    run and its partitions. ``progress`` follows each run's events while it executes. ``instance`` is the
    one to record the runs in (default: ``instance_home.open_instance``). ``settings``: the command's,
    loaded once (default: loaded here, with ``overrides`` applied).

    Raises:
        MaterializeError: dates outside the partitions, or no weekday in the range.
        SettingsError: the settings (file, environment, ``overrides``) are invalid.
    """
    from stock_lakehouse.wiring import build_definitions, lakehouse_job

    settings = settings or load_settings(overrides=overrides)
    days = weekdays_to_run(settings, start, end)  # refused before any instance or definitions exist
    instance = instance or open_instance()
    job = lakehouse_job(build_definitions(settings))
    return run_ranges(job, settings, instance, symbols, days, log_level=log_level, progress=progress)

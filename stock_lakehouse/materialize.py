"""One materialization of all layers for symbols x a date range, in this process: what the CLI's
``materialize``/``demo`` and the benchmark run. It loads the settings and builds the definitions (the
composition the commands need), then hands the job to ``ranged_runs``.

Runs go through the same Dagster job the UI uses and are recorded in the instance at ``$DAGSTER_HOME``
(default ``./.dagster_home``), so ``dagster dev`` shows them. A symbol list x date range becomes one
ranged run per group of neighbouring symbols (one Spark session for all of them in this process).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from stock_lakehouse.ranged_runs import LAYERS, MaterializeError, Summary, run_ranges, weekdays_to_run
from stock_lakehouse.settings import PACKAGE_DIR, load_settings

if TYPE_CHECKING:
    import dagster as dg

    from stock_lakehouse.progress import RunProgress

#: What callers of the run service import from here.
__all__ = ["LAYERS", "MaterializeError", "Summary", "ensure_dagster_home", "run_materialize"]


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

    from stock_lakehouse.wiring import build_definitions, lakehouse_job

    settings = load_settings(overrides=overrides)
    days = weekdays_to_run(settings, start, end)  # refused before any instance or definitions exist
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    job = lakehouse_job(build_definitions(settings))
    return run_ranges(job, settings, instance, symbols, days, log_level=log_level, progress=progress)

"""Where the Dagster instance of the commands lives: ``$DAGSTER_HOME``, else ``./.dagster_home`` created
with the project's ``dagster.yaml``. Stated here once: the commands, the run service and the failure logs
ask for it, and the environment is only read (the folder is passed on, never written into ``$DAGSTER_HOME``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from stock_lakehouse.settings import PACKAGE_DIR

if TYPE_CHECKING:
    import dagster as dg


def dagster_home() -> Path:
    """The instance folder: ``$DAGSTER_HOME``, else ``./.dagster_home`` (resolved; may not exist yet)."""
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


def write_instance_config(home: Path) -> None:
    """``home/dagster.yaml`` from the project's ``dagster.yaml`` (the working directory's, else the
    repository's), with the event log folder written out (``event_storage.pin_event_log_folder``)."""
    from stock_lakehouse.runs.event_storage import pin_event_log_folder

    for candidate in (Path("dagster.yaml"), PACKAGE_DIR.parent / "dagster.yaml"):
        if candidate.is_file():
            (home / "dagster.yaml").write_text(pin_event_log_folder(candidate.read_text(), home))
            return


def ensure_dagster_home() -> Path:
    """:func:`dagster_home`, created with the project's ``dagster.yaml`` if it has none."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        write_instance_config(home)
    return home


def open_instance() -> dg.DagsterInstance:
    """The instance at :func:`ensure_dagster_home` (what ``DagsterInstance.get()`` would open, without
    requiring ``$DAGSTER_HOME`` to be set)."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(ensure_dagster_home()))

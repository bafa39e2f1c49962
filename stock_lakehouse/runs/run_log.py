"""The CLI's log files: full details of a failure, so the terminal can stay at one line of cause.

``$DAGSTER_HOME/logs/<UTC stamp>-<run id>.log`` holds the failing run's whole event log with every
error's chain and stack (Dagster's step failure, the asset's exception, the Java stack of a Spark
error) and, for a failure outside a run, the Python traceback. Secrets are redacted
(``root_cause.redact``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from stock_lakehouse.runs.root_cause import redact


def log_dir() -> Path:
    from stock_lakehouse.runs.instance_home import dagster_home

    return dagster_home() / "logs"


def write_failure_log(
    headline: list[str], instance=None, run_id: str | None = None, exc: BaseException | None = None
) -> Path:
    """Write the details of a failure and return the file's path.

    Args:
        headline: the lines the terminal showed (cause first).
        instance: the Dagster instance holding ``run_id``'s event log.
        run_id: the failed run, whose events are written in full.
        exc: an exception raised outside a run, written with its traceback.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = log_dir() / f"{stamp}-{run_id or 'cli'}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        f"stock-lakehouse failure log, {datetime.now(UTC).isoformat(timespec='seconds')}",
        "command: " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "",
        *headline,
    ]
    if run_id and instance is not None:
        parts += ["", f"== event log of run {run_id} ==", *_event_lines(instance, run_id)]
    if exc is not None:
        parts += ["", "== traceback ==", "".join(traceback.format_exception(exc)).rstrip()]
    path.write_text(redact("\n".join(parts)) + "\n")
    return path


def run_warnings(instance, run_id: str) -> list[str]:
    """The warnings the run's code logged (``context.log.warning``), as ``step: message`` lines."""
    out = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is None and _level(entry.level) == logging.WARNING:
            first = next((ln for ln in (entry.user_message or "").splitlines() if ln.strip()), "")
            out.append(redact(f"{entry.step_key or 'run'}: {first}"))
    return out


def _event_lines(instance, run_id: str) -> list[str]:
    lines = []
    for entry in instance.all_logs(run_id):
        when = datetime.fromtimestamp(entry.timestamp, UTC).strftime("%H:%M:%S.%f")[:-3]
        event = entry.dagster_event
        kind = event.event_type_value if event is not None else "LOG"
        level = logging.getLevelName(_level(entry.level))
        lines.append(f"{when} {level:<7} {entry.step_key or '-'} {kind}: {entry.user_message}".rstrip())
        error = getattr(getattr(event, "event_specific_data", None), "error", None) or entry.error_info
        if error is not None:
            lines += ["    " + ln for ln in error.to_string().rstrip().splitlines()]
    return lines


def _level(level: str | int) -> int:
    return level if isinstance(level, int) else logging.getLevelName(str(level).upper())

"""``ranged_backfill``: a symbols x dates backfill launched from the UI as one run, the CLI's way.

Why: a backfill launched from the asset graph ("Materialize", a symbols x dates selection) becomes one run
per value of the dimension with fewer selected keys (Dagster groups multi-partition ranges that way: 50
symbols x 21 days is 21 runs), and every run pays its own process, definitions load and Spark JVM,
whose JIT starts cold each time. Dagster >= 1.5 hides the dialog's "single run" option (the backfill
policy decides), and a multi-partition range cannot be widened to a rectangle from the dialog. This job
takes the selection as Launchpad config instead (symbols, first and last date) and executes it as the
CLI's ``materialize`` does (``ranged_runs``, given as a resource), inside its own run: one ranged run of
the asset job per group of neighbouring symbols, all in this process, sharing one Spark session. Those
runs are ordinary asset-job runs in the run list (range tags, per-partition materializations and check
results), so nothing downstream can tell them from any other backfill.

Terminating the job terminates its inner run: the inner runs execute on a worker thread, so Dagster's
interrupt reaches this op's thread, which marks the inner run CANCELING, cancels its Spark jobs and
interrupts the worker. Dagster then records the inner run CANCELED (executed on the interrupted thread
itself, it would be FAILURE, "No user initiated termination request was found", and every partition it
had not written would show Failed with its rows intact); a canceled run's partitions keep their status.
"""

import ctypes
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import TypeVar

import dagster as dg
from pydantic import Field

from stock_lakehouse.runs.ranged_runs import MaterializeError, RangeRunner
from stock_lakehouse.runs.recovery import WORKER_RUN_TAG, RunWorker, process_tags
from stock_lakehouse.symbols import validate_symbols

RANGED_BACKFILL_JOB = "ranged_backfill"
#: How long a terminated job waits for its inner run to record CANCELED before the process ends.
CANCEL_GRACE_SECONDS = 60.0

T = TypeVar("T")


class RangedBackfillConfig(dg.Config):
    """What to backfill: symbols x every weekday in [start, end]."""

    symbols: list[str] = Field(
        default=[], description="Symbols to backfill (empty: every configured symbol); new ones are registered."
    )
    start: str = Field(description="First trade date, YYYY-MM-DD.")
    end: str = Field(default="", description="Last trade date, YYYY-MM-DD (empty: start).")
    confirm_large: bool = Field(
        default=False,
        description="Required for a selection of more than automation.ranged_backfill_max_partitions partitions.",
    )


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(f"{field} {value[:40]!r} is not a date YYYY-MM-DD") from None


@dg.op(description="Materialize every table for the configured symbols x dates as ranged runs of the asset job.")
def materialize_ranges(
    context: dg.OpExecutionContext,
    config: RangedBackfillConfig,
    run_worker: RunWorker,
    range_runner: dg.ResourceParam[RangeRunner],
) -> None:
    """Run the selection through ``range_runner`` in this process; fail naming the first cause.

    ``run_worker`` records this process as the run's worker (its inner runs record it too): a crash
    of the process fails them all through recovery (``recovery.py``). ``range_runner`` holds the code
    location's settings and asset job."""
    import numpy as np

    from stock_lakehouse.symbols import InvalidSymbolError

    try:
        symbols = validate_symbols(config.symbols, "ranged_backfill config symbols") or None
    except InvalidSymbolError as exc:
        raise dg.Failure(str(exc)) from None
    start = _parse_day(config.start, "start")
    end = _parse_day(config.end, "end") if config.end else start
    # Refused here, before any Spark session starts: a mistyped year must not start hours of work (nor
    # cost more than this step's process).
    settings = range_runner.settings
    cap = settings.automation.ranged_backfill_max_partitions
    # Weekdays by numpy's day arithmetic: pandas' nanosecond timestamps overflow past 2262 (a typed year).
    weekdays = int(np.busday_count(start, end + timedelta(days=1))) if start <= end else 0
    selected = len(symbols or settings.all_symbols)
    count = selected * weekdays
    if count > cap and not config.confirm_large:
        raise dg.Failure(
            f"{count:,} partitions ({selected} symbol(s) x {start}..{end}) is more "
            f"than automation.ranged_backfill_max_partitions={cap:,}: set confirm_large: true to run it"
        )
    try:
        ok, summary, error = run_cancelable(
            context, lambda: range_runner(symbols, start, end, context.instance, context.run_id)
        )
    except MaterializeError as exc:
        raise dg.Failure(str(exc)) from None
    rows = ", ".join(f"{table} {n:,}" for table, n in summary.rows.items())
    context.log.info(f"{len(summary.runs)} ranged run(s) {', '.join(summary.runs)}: rows {rows or 'none'}")
    if summary.withheld:
        context.log.warning(f"withheld by the quality gate: {'; '.join(summary.withheld)}")
    if not ok:
        raise dg.Failure(description=error, metadata={"runs": ", ".join(summary.runs)})


def run_cancelable(context: dg.OpExecutionContext, work: Callable[[], T]) -> T:
    """``work()`` (inner runs) on a worker thread; a termination of this run cancels them (module docstring).

    Raises:
        dg.DagsterExecutionInterruptedError: this run was terminated (after the inner runs were canceled).
    """
    box: dict[str, object] = {}
    # An Event, not Thread.join: a join interrupted by the signal marks the still-running thread stopped
    # (CPython's bpo-45274 handling in 3.11), and the grace wait below would return at once.
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the op's thread
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"{RANGED_BACKFILL_JOB}-runs", daemon=True)
    worker.start()
    try:
        while not done.wait(0.2):
            pass
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        canceled = cancel_inner_runs(context.instance, context.run_id)
        context.log.warning(f"terminated: canceling inner run(s) {', '.join(canceled) or '(none running)'}")
        if not done.is_set():  # else its id may already name another thread
            _interrupt_thread(worker)
            done.wait(CANCEL_GRACE_SECONDS)
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def cancel_inner_runs(instance: dg.DagsterInstance, outer_run_id: str) -> list[str]:
    """Mark CANCELING the unfinished runs this process executes besides ``outer_run_id``; their ids.

    Found by the worker tags every run records (``recovery.py``): this host, pid and process start, so an
    old run of a dead process that had the same pid is never touched."""
    tags = {k: v for k, v in process_tags(outer_run_id).items() if k != WORKER_RUN_TAG}
    unfinished = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    runs = instance.get_runs(dg.RunsFilter(tags=tags, statuses=unfinished))
    inner = [r for r in runs if r.run_id != outer_run_id]
    for run in inner:
        instance.report_run_canceling(run, message=f"{RANGED_BACKFILL_JOB} run {outer_run_id} was terminated")
    return [r.run_id for r in inner]


def _interrupt_thread(worker: threading.Thread) -> None:
    """Stop the inner run on ``worker``: its Spark jobs cancelled, then a KeyboardInterrupt raised in it."""
    from stock_lakehouse.lakehouse.spark import cancel_running_jobs

    if worker.ident is None:
        return
    # The thread takes the exception at its next Python instruction: after the cancelled action returns.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(KeyboardInterrupt))
    cancel_running_jobs()


@dg.job(
    name=RANGED_BACKFILL_JOB,
    description=(
        "Backfill symbols x dates as ranged runs of the asset job in one process and one Spark session "
        "(the CLI's materialize): launch it from the Launchpad with symbols, start and end."
    ),
    executor_def=dg.in_process_executor,
)
def ranged_backfill_job() -> None:
    materialize_ranges()

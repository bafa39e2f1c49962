"""Schedules: intraday refresh while NYSE is open (early closes included) and an end-of-day run.

Each evaluation asks for today's partitions of every configured symbol, as one ranged run per group
of neighbouring symbols (one Spark session per run). Outside the session (weekends, holidays, before
the open, after the close) nothing runs. On a simulated session's running ``Clock`` a tick's time
is the clock's reading, so its ticks ask for the simulated day.

A tick never starts a second writer of today's partitions: while an earlier refresh run is queued or
running, the tick is skipped with a reason naming that run. Nothing is lost by skipping: the next tick
fetches everything published since the last refresh that landed (the live source catches up).
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.market_calendar import EXCHANGE_TZ, session_bounds
from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_groups, rectangle_selection

#: Tag of every scheduled refresh run, valued by the schedule that asked for it.
REFRESH_TAG = "stock_lakehouse/refresh"


def todays_run_requests(
    instance: dg.DagsterInstance, symbols: Sequence[str], when: datetime, kind: str
) -> list[dg.RunRequest]:
    """Run requests for ``when``'s trading date, one per group of neighbouring partition symbols."""
    local = when.astimezone(ZoneInfo(EXCHANGE_TZ))
    day = local.date().isoformat()
    known = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
    wanted = [s for s in symbols if s in known]
    requests = []
    for i, group in enumerate(contiguous_groups(wanted, known)):
        partition_key, range_tags = rectangle_selection(group, day, day)
        tags = {REFRESH_TAG: kind, **range_tags}
        requests.append(
            dg.RunRequest(run_key=f"{kind}-{local:%Y%m%dT%H%M}-{i}", partition_key=partition_key, tags=tags)
        )
    return requests


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def unfinished_refresh(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """The oldest scheduled refresh run (intraday or end of day) that has not ended, if any."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=_UNFINISHED, tags={REFRESH_TAG: ["intraday", "end_of_day"]})
    )
    return min(runs, key=lambda r: r.run_id) if runs else None


def build_intraday_schedule(
    job_name: str,
    symbols: Sequence[str],
    every_minutes: int,
    calendar: str,
    over_budget: str | None = None,
    every_day: bool = False,
) -> dg.ScheduleDefinition:
    """``over_budget``: why the API budget cannot pay for this cadence (``Settings.intraday_cost_refusal``);
    then every tick skips saying so instead of spending the day's requests by noon. ``every_day``: tick on
    every real day (a simulated clock's trading day may fall on a real weekend)."""

    @dg.schedule(
        name="intraday_refresh",
        job_name=job_name,
        cron_schedule=f"*/{every_minutes} * * * {'*' if every_day else '1-5'}",
        execution_timezone=EXCHANGE_TZ,
        description=f"Every {every_minutes} minutes while NYSE is open (and once just after the close): "
        "today's partitions of all configured symbols from the latest data."
        + (f" Skips every tick: {over_budget}." if over_budget else ""),
    )
    def intraday_refresh(context: dg.ScheduleEvaluationContext, clock: Clock):
        if over_budget:
            return dg.SkipReason(over_budget)
        when = clock.tick_time(context.scheduled_execution_time)
        bounds = session_bounds(when.astimezone(ZoneInfo(EXCHANGE_TZ)).date(), calendar)
        if bounds is None:
            return dg.SkipReason(f"market closed on {when.astimezone(ZoneInfo(EXCHANGE_TZ)).date()}")
        open_, close = bounds
        if not (open_ <= when <= close + timedelta(minutes=every_minutes)):
            return dg.SkipReason(f"outside the session ({open_:%H:%M}-{close:%H:%M} UTC)")
        busy = unfinished_refresh(context.instance)
        if busy is not None:
            return dg.SkipReason(
                f"tick of {when.astimezone(UTC):%H:%M:%S} UTC skipped: refresh run {busy.run_id[:8]} "
                f"({busy.tags.get(REFRESH_TAG)}, {busy.status.value}) still writes today's partitions; the next "
                "tick fetches what this one would have"
            )
        return todays_run_requests(context.instance, symbols, when, "intraday") or dg.SkipReason("no symbol partitions")

    return intraday_refresh


def build_end_of_day_schedule(
    job_name: str, symbols: Sequence[str], calendar: str, at: str = "20:15"
) -> dg.ScheduleDefinition:
    hour, minute = (int(x) for x in at.split(":"))

    @dg.schedule(
        name="end_of_day",
        job_name=job_name,
        cron_schedule=f"{minute} {hour} * * 1-5",
        execution_timezone=EXCHANGE_TZ,
        description=f"At {at} New York on trading days: rebuild today's partitions from the complete day.",
    )
    def end_of_day(context: dg.ScheduleEvaluationContext, clock: Clock):
        when = clock.tick_time(context.scheduled_execution_time)
        if session_bounds(when.astimezone(ZoneInfo(EXCHANGE_TZ)).date(), calendar) is None:
            return dg.SkipReason("market closed today")
        return todays_run_requests(context.instance, symbols, when, "end_of_day") or dg.SkipReason(
            "no symbol partitions"
        )

    return end_of_day

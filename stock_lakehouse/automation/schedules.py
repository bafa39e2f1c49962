"""Schedules: intraday refresh while NYSE is open (early closes included) and an end-of-day run.

Each evaluation asks for today's partitions of every configured symbol, as one ranged run per group
of neighbouring symbols (one Spark session per run). Outside the session (weekends, holidays, before
the open, after the close) nothing runs.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from stock_lakehouse.market_calendar import EXCHANGE_TZ, session_bounds
from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_groups, rectangle_selection


def todays_run_requests(
    instance: dg.DagsterInstance, symbols: Sequence[str], when: datetime, kind: str
) -> list[dg.RunRequest]:
    """Run requests for ``when``'s trading date, one per group of neighbouring partition symbols."""
    day = when.astimezone(ZoneInfo(EXCHANGE_TZ)).date().isoformat()
    known = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
    wanted = [s for s in symbols if s in known]
    requests = []
    for i, group in enumerate(contiguous_groups(wanted, known)):
        partition_key, range_tags = rectangle_selection(group, day, day)
        tags = {"stock_lakehouse/refresh": kind, **range_tags}
        requests.append(dg.RunRequest(run_key=f"{kind}-{when:%Y%m%dT%H%M}-{i}", partition_key=partition_key, tags=tags))
    return requests


def build_intraday_schedule(
    job_name: str, symbols: Sequence[str], every_minutes: int, calendar: str, over_budget: str | None = None
) -> dg.ScheduleDefinition:
    """``over_budget``: why the API budget cannot pay for this cadence (``Settings.intraday_cost_refusal``);
    then every tick skips saying so instead of spending the day's requests by noon."""

    @dg.schedule(
        name="intraday_refresh",
        job_name=job_name,
        cron_schedule=f"*/{every_minutes} * * * 1-5",
        execution_timezone=EXCHANGE_TZ,
        description=f"Every {every_minutes} minutes while NYSE is open (and once just after the close): "
        "today's partitions of all configured symbols from the latest data."
        + (f" Skips every tick: {over_budget}." if over_budget else ""),
    )
    def intraday_refresh(context: dg.ScheduleEvaluationContext):
        if over_budget:
            return dg.SkipReason(over_budget)
        when = context.scheduled_execution_time
        bounds = session_bounds(when.astimezone(ZoneInfo(EXCHANGE_TZ)).date(), calendar)
        if bounds is None:
            return dg.SkipReason(f"market closed on {when.astimezone(ZoneInfo(EXCHANGE_TZ)).date()}")
        open_, close = bounds
        if not (open_ <= when <= close + timedelta(minutes=every_minutes)):
            return dg.SkipReason(f"outside the session ({open_:%H:%M}-{close:%H:%M} UTC)")
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
    def end_of_day(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time
        if session_bounds(when.astimezone(ZoneInfo(EXCHANGE_TZ)).date(), calendar) is None:
            return dg.SkipReason("market closed today")
        return todays_run_requests(context.instance, symbols, when, "end_of_day") or dg.SkipReason(
            "no symbol partitions"
        )

    return end_of_day

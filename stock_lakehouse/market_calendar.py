"""Exchange sessions (NYSE by default) from ``exchange_calendars``, which works offline."""

from __future__ import annotations

from datetime import date, time
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

EXCHANGE_TZ = "America/New_York"
PRE_OPEN = time(4, 0)
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)


@lru_cache(maxsize=4)
def _calendar(name: str) -> xcals.ExchangeCalendar:
    # 2000-01 is the oldest month Alpha Vantage serves intraday data for.
    return xcals.get_calendar(name, start="2000-01-03")


def check_calendar(name: str) -> tuple[str, date, date]:
    """Calendar ``name`` as the pipeline builds it: its exchange_calendars name (``xnys`` is ``XNYS``),
    first and last session. The ``calendar`` setting's check at load: a run would otherwise fail on it
    after writing its landing files.

    Raises:
        ValueError: no such calendar (naming the closest names), or one that cannot cover the dates
            the pipeline needs.
    """
    import difflib

    names = xcals.get_calendar_names(include_aliases=True)
    if name not in names:
        same = [n for n in names if n.lower() == name.strip().lower()]
        if len(same) != 1:
            close = difflib.get_close_matches(name.strip().upper(), names, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else " (e.g. XNYS, XNAS, XLON)"
            raise ValueError(f"{name!r} is not an exchange_calendars calendar{hint}")
        name = same[0]
    try:
        cal = _calendar(name)
    except ValueError as exc:  # e.g. a calendar that starts after 2000
        raise ValueError(f"{name!r} cannot be used: {str(exc).splitlines()[0][:200]}") from None
    return name, cal.first_session.date(), cal.last_session.date()


def is_trading_day(day: date, calendar: str = "XNYS") -> bool:
    """True when the exchange holds a session on ``day``."""
    return bool(_calendar(calendar).is_session(pd.Timestamp(day)))


def regular_close(day: date, calendar: str = "XNYS") -> time:
    """Local (New York) time of the regular close on ``day``: 16:00, or the early close."""
    cal = _calendar(calendar)
    ts = pd.Timestamp(day)
    if not cal.is_session(ts):
        return REGULAR_CLOSE
    return cal.session_close(ts).tz_convert(EXCHANGE_TZ).time()


def trading_days(start: date, end: date, calendar: str = "XNYS") -> list[date]:
    """Sessions between ``start`` and ``end`` inclusive."""
    sessions = _calendar(calendar).sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    return [s.date() for s in sessions]


def session_bounds(day: date, calendar: str = "XNYS") -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """UTC open and close of the regular session on ``day`` (early closes included), or None when closed."""
    cal = _calendar(calendar)
    ts = pd.Timestamp(day)
    if not cal.is_session(ts):
        return None
    return cal.session_open(ts), cal.session_close(ts)

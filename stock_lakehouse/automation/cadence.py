"""What the intraday refresh costs in API requests, so a cadence the key cannot pay for is refused.

Why: every tick of ``intraday_refresh`` asks the API for each configured symbol's latest bars (one
request per symbol), and the end-of-day run asks once more. A free Alpha Vantage key allows 25 requests a
day: a 15-minute cadence for one symbol already needs 28. Without this arithmetic the schedule would
spend the day's budget by early afternoon and fail every later tick.
"""

from dataclasses import dataclass

#: The regular session of a full trading day, minutes after midnight in New York (09:30-16:00).
SESSION_MINUTES = (9 * 60 + 30, 16 * 60)


def ticks_per_day(every_minutes: int) -> int:
    """Ticks of ``*/every_minutes`` cron minutes from the open to one cadence after the close (the schedule's
    window: its last tick takes the closing bars)."""
    first, last = SESSION_MINUTES[0], SESSION_MINUTES[1] + every_minutes
    return sum(1 for m in range(first, last + 1) if (m % 60) % every_minutes == 0)


@dataclass(frozen=True)
class CadenceCost:
    """Requests a day of the intraday refresh plus the end-of-day run for ``symbols`` symbols."""

    symbols: int
    every_minutes: int

    @property
    def requests_per_day(self) -> int:
        return self.symbols * (ticks_per_day(self.every_minutes) + 1)

    @property
    def requests_per_minute(self) -> float:
        """Requests a minute while the session runs: each tick asks once per symbol."""
        return self.symbols / self.every_minutes

    def refusal(self, per_day: int, per_minute: int = 0) -> str | None:
        """Why a budget of ``per_day`` and ``per_minute`` requests cannot pay for it (None when it can; 0: no
        limit)."""
        if 0 < per_minute < self.requests_per_minute:
            return (
                f"automation.intraday_every_minutes={self.every_minutes} needs {self.requests_per_minute:g} requests "
                f"a minute ({self.symbols} symbol(s) every {self.every_minutes} min) but "
                f"alphavantage.budget.per_minute is {per_minute}: a tick would wait for the budget past the next "
                "one; raise the budget to your plan's limit, lengthen the cadence or configure fewer symbols"
            )
        if per_day <= 0 or self.requests_per_day <= per_day:
            return None
        return (
            f"automation.intraday_every_minutes={self.every_minutes} needs {self.requests_per_day:,} requests a "
            f"day ({self.symbols} symbol(s) x ({ticks_per_day(self.every_minutes)} ticks + 1 end-of-day run)) but "
            f"alphavantage.budget.per_day is {per_day:,} (a free key allows 25): raise the budget to your plan's "
            "limit, lengthen the cadence or configure fewer symbols"
        )

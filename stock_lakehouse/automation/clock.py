"""The time the schedules, sensors and the live source see: the wall clock, a fixed instant, or a simulated
session's clock that runs from a chosen instant.

Why one resource: a replayed or simulated session is only consistent when every part asks the same clock
which day "today" is and which minute has closed (the intraday schedule, the freshness sensor, the live
source's choice between today's latest bars and a month). The settings state the clock once
(``automation.clock_*``); wiring hands this resource to each of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from stock_lakehouse.settings import Settings


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class Clock(dg.ConfigurableResource):
    """``now()`` in UTC.

    Attributes:
        fixed_utc: ISO 8601: without ``anchor_utc``, the clock stands still at this instant (tests, checking
            a deployment's sensors outside market hours).
        anchor_utc: ISO 8601: the clock reads ``fixed_utc`` at this real instant and runs ``speed`` times as
            fast as the wall clock from there (a simulated session; 1 for honest timings).
        speed: simulated seconds per real second.
    """

    fixed_utc: str | None = None
    anchor_utc: str | None = None
    speed: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Clock:
        """The clock ``automation.clock_*`` describes."""
        auto = settings.automation
        return cls(fixed_utc=auto.clock_utc, anchor_utc=auto.clock_anchor_utc, speed=auto.clock_speed)

    @property
    def running(self) -> bool:
        """A simulated session's clock (an anchor is set): the schedules then tick on every real day, since the
        simulated day may be a trading day when the real one is not."""
        return bool(self.fixed_utc and self.anchor_utc)

    def tick_time(self, scheduled: datetime) -> datetime:
        """A schedule tick's time: on a running clock its reading at the tick; otherwise the tick's own time
        (a fixed clock is for the sensors, and the UI's "Test schedule" at a chosen instant means that one)."""
        return self.at(scheduled) if self.running else scheduled

    def at(self, real: datetime) -> datetime:
        """The clock's reading at the real instant ``real`` (a schedule's tick time, a Delta commit)."""
        if not self.fixed_utc:
            return real.astimezone(UTC)
        start = _instant(self.fixed_utc)
        if not self.anchor_utc:
            return start
        return start + (real - _instant(self.anchor_utc)) * self.speed

    def now(self) -> datetime:
        return self.at(datetime.now(UTC))

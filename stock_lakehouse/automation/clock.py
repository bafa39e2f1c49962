"""The time sensors and schedules see: the wall clock, or a fixed instant for tests and replays."""

from datetime import UTC, datetime

import dagster as dg


class Clock(dg.ConfigurableResource):
    """``now()`` in UTC. Set ``fixed_utc`` (ISO 8601) to evaluate as of another instant."""

    fixed_utc: str | None = None

    def now(self) -> datetime:
        if self.fixed_utc:
            fixed = datetime.fromisoformat(self.fixed_utc)
            return fixed if fixed.tzinfo else fixed.replace(tzinfo=UTC)
        return datetime.now(UTC)

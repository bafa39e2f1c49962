"""A request budget shared by every process on the machine (per second, minute and day).

Each request is recorded in a small SQLite file; ``BEGIN IMMEDIATE`` makes check-and-record atomic
across processes, so concurrent Dagster runs never exceed the key's limits together. Short windows
wait; an exhausted daily budget fails at once (retrying for hours helps nobody).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from stock_lakehouse.ingestion.errors import IngestionError

DAY = 86400.0


class BudgetExhaustedError(IngestionError):
    """The daily request budget is spent."""


@dataclass
class RequestBudget:
    """Sliding-window limits for one API key (identified by a fingerprint, never the key itself).

    Attributes:
        path: SQLite file shared by all processes using the key.
        per_second, per_minute, per_day: limits; 0 disables one.
        key_id: which key the requests count against.
    """

    path: Path
    per_second: int = 1
    per_minute: int = 0
    per_day: int = 25
    key_id: str = "default"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS requests (key_id TEXT NOT NULL, ts REAL NOT NULL)")
        conn.execute("CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_id, ts)")
        return conn

    def used(self, window: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._connect() as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM requests WHERE key_id = ? AND ts > ?", (self.key_id, now - window)
            ).fetchone()
        return int(n)

    def acquire(self, what: str, max_wait: float = 120.0) -> None:
        """Record one request, waiting for the per-second/minute windows; fail fast on the daily one.

        Raises:
            BudgetExhaustedError: the daily limit is reached (names ``what`` and when it frees up).
        """
        deadline = time.monotonic() + max_wait
        while True:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                now = time.time()
                wait = 0.0
                for window, limit in ((DAY, self.per_day), (60.0, self.per_minute), (1.0, self.per_second)):
                    if not limit:
                        continue
                    rows = conn.execute(
                        "SELECT ts FROM requests WHERE key_id = ? AND ts > ? ORDER BY ts",
                        (self.key_id, now - window),
                    ).fetchall()
                    if len(rows) >= limit:
                        frees_at = rows[len(rows) - limit][0] + window
                        if window == DAY:
                            conn.execute("ROLLBACK")
                            hours = (frees_at - now) / 3600
                            raise BudgetExhaustedError(
                                f"{what}: the daily budget of {limit} requests is used up "
                                f"(next slot in {hours:.1f} h); raise alphavantage.budget.per_day for a premium key"
                            )
                        wait = max(wait, frees_at - now)
                if wait <= 0:
                    conn.execute("INSERT INTO requests (key_id, ts) VALUES (?, ?)", (self.key_id, now))
                    conn.execute("DELETE FROM requests WHERE ts < ?", (now - 2 * DAY,))
                    conn.execute("COMMIT")
                    return
                conn.execute("ROLLBACK")
            finally:
                conn.close()
            if time.monotonic() + wait > deadline:
                raise IngestionError(f"{what}: waited {max_wait:.0f}s for a request slot; the budget is saturated")
            time.sleep(min(wait + 0.01, 5.0))

"""A simulated market session served as Alpha Vantage serves it: a real HTTP server on loopback whose
intraday series grows as the session's clock advances.

Why: the lag from a bar's close to its row in gold can only be measured against a feed that publishes
bars as time passes. Real recordings are fixed files, so this feed serves the synthetic generator's bars
(deterministic per seed, symbol and day) and cuts each answer at the bars published by "now": a bar
(labelled by its start, New York time) is published ``delay_seconds`` after its interval has closed, as a
real feed publishes it some seconds after the minute. The clock is a callable, so the bench runs the
feed on the same ``Clock`` the pipeline's processes read (``automation.clock_*``) and a test steps it.

It answers ``TIME_SERIES_INTRADAY`` only (stocks), like the API: ``outputsize=compact`` is the latest
100 published bars, ``full`` the trailing 30 days, ``month=YYYY-MM`` that month up to now. A wrong key,
function, symbol, interval or month gets the API's ``Error Message`` body.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

from stock_lakehouse.ingestion.sources import COMPACT_BARS
from stock_lakehouse.ingestion.synthetic import bars_payload, day_bars
from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.symbols import INTERVAL_MINUTES, validate_interval, validate_month, validate_symbol

_NY = ZoneInfo(EXCHANGE_TZ)


def bar_close(label: str, interval: str) -> datetime:
    """The UTC instant a bar labelled ``label`` (its start, New York wall clock) closes."""
    start = datetime.strptime(label, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_NY)
    return (start + timedelta(minutes=INTERVAL_MINUTES[interval])).astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _day(symbol: str, day: date, interval: str, seed: int, extended_hours: bool) -> tuple[tuple[tuple, ...], tuple]:
    bars = tuple(day_bars(symbol, day, interval, seed=seed, extended_hours=extended_hours))
    return bars, tuple(bar_close(b[0], interval) for b in bars)


class SessionFeed:
    """The feed; ``with SessionFeed(...) as feed:`` serves at ``feed.url`` until the block ends.

    Args:
        now: the session's clock (UTC).
        api_key: the key requests must carry.
        seed: the synthetic generator's seed (the same bars for every run of the same seed).
        delay_seconds: from a bar's close to its publication.
    """

    def __init__(
        self,
        now: Callable[[], datetime],
        api_key: str,
        *,
        seed: int = 11,
        delay_seconds: float = 5.0,
        extended_hours: bool = True,
    ) -> None:
        self.now, self.api_key, self.seed = now, api_key, seed
        self.delay = timedelta(seconds=delay_seconds)
        self.extended_hours = extended_hours
        self.requests: Counter[str] = Counter()  # by kind: compact, full, month, refused
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/query"

    def __enter__(self) -> SessionFeed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def published(self, symbol: str, days: list[date], interval: str, now: datetime) -> list[tuple]:
        """Bars of ``days`` (oldest first) published by ``now``."""
        out: list[tuple] = []
        for d in sorted(days):
            bars, closes = _day(symbol, d, interval, self.seed, self.extended_hours)
            out.extend(b for b, c in zip(bars, closes, strict=True) if c + self.delay <= now)
        return out

    def answer(self, q: dict[str, str]) -> tuple[str, bytes]:
        """(kind of request, body) for the query parameters ``q``."""
        if q.get("apikey") != self.api_key:
            return "refused", _error("the parameter apikey is invalid or missing.")
        if q.get("function") != "TIME_SERIES_INTRADAY":
            return "refused", _error("Invalid API call. This feed serves TIME_SERIES_INTRADAY only.")
        try:
            symbol = validate_symbol(q.get("symbol", ""), "the symbol parameter")
            interval = validate_interval(q.get("interval", ""), "the interval parameter")
            month = q.get("month") and validate_month(q["month"], "the month parameter")
            if interval == "daily":
                raise ValueError("interval 'daily' is no intraday interval")
        except ValueError as e:
            return "refused", _error(f"Invalid API call: {e}")
        now = self.now()
        today = now.astimezone(_NY).date()
        if month:
            first = date.fromisoformat(f"{month}-01")
            last = min(today, (first + timedelta(days=31)).replace(day=1) - timedelta(days=1))
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            kind, bars = "month", self.published(symbol, days, interval, now)
        elif q.get("outputsize", "compact") == "full":
            days = [today - timedelta(days=i) for i in range(30)]
            kind, bars = "full", self.published(symbol, days, interval, now)
        else:  # the latest 100 bars: at most 100 minutes, so the last week holds them
            days = [today - timedelta(days=i) for i in range(7)]
            kind, bars = "compact", self.published(symbol, days, interval, now)[-COMPACT_BARS:]
        return kind, bars_payload(symbol, bars, interval, empty_last=f"{today} 04:00:00")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                kind, body = feed.answer(q)
                with feed._lock:
                    feed.requests[kind] += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:  # request lines carry the key
                pass

        return Handler


def _error(message: str) -> bytes:
    return json.dumps({"Error Message": message}).encode()

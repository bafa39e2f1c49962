"""Offline bar sources, as Dagster resources with one interface: ``fetch(dates_by_symbol, interval)``.

Each yields ``(Payload, ParsedPayload)`` pairs; the bronze asset keeps the bars of the requested
(symbol, date) partitions. The live Alpha Vantage source follows the same interface.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import dagster as dg

from stock_lakehouse.ingestion.errors import IngestionError
from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_payload
from stock_lakehouse.ingestion.synthetic import intraday_payload

Fetched = tuple[Payload, ParsedPayload]


def fingerprint(*parts: str) -> str:
    """A stable id of a request (function, symbol, interval, month, ...), never including the key."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _parse_file(path: str, mtime_ns: int, size: int) -> tuple[Payload, ParsedPayload]:
    raw = Path(path).read_bytes()
    fetched_at = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    parsed = parse_payload(raw, path)
    payload = Payload(
        raw=raw,
        origin=path,
        source="replay",
        fetched_at=fetched_at,
        request_fingerprint=fingerprint("replay", parsed.function, parsed.symbol, parsed.interval, Path(path).name),
    )
    return payload, parsed


class BarSource(dg.ConfigurableResource):
    """Where bars come from. Subclasses yield ``(Payload, ParsedPayload)`` for the requested partitions."""

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        raise NotImplementedError


class ReplaySource(BarSource):
    """Recorded Alpha Vantage JSON responses from a folder (the offline default).

    Every ``*.json`` file under ``folder`` (any name, any depth) is read; its symbol and interval come
    from its ``Meta Data``. Several files may cover the same symbol: silver keeps, per bar, the one from
    the most recently refreshed response. A file that is not a time-series response is an error that
    names the file.
    """

    folder: str

    def files(self) -> list[Path]:
        root = Path(self.folder).expanduser()
        if not root.is_dir():
            raise IngestionError(f"replay folder {root} does not exist or is not a folder")
        return sorted(p for p in root.rglob("*.json") if p.is_file())

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        """Yield the recorded payloads of the requested symbols at ``interval``."""
        for path in self.files():
            stat = path.stat()
            payload, parsed = _parse_file(str(path), stat.st_mtime_ns, stat.st_size)
            if parsed.symbol in dates_by_symbol and parsed.interval == interval:
                yield payload, parsed


class SyntheticSource(BarSource):
    """Deterministic synthetic bars in the API's format: any symbol, any trading day, any scale.

    Like a ``month=YYYY-MM`` request, one payload is made per (symbol, month), covering the requested
    days of that month.
    """

    seed: int = 7
    extended_hours: bool = True

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        """Yield one generated payload per (symbol, month) of the request."""
        for symbol, days in dates_by_symbol.items():
            by_month: dict[str, list[date]] = defaultdict(list)
            for d in days:
                by_month[d.strftime("%Y-%m")].append(d)
            for month, month_days in sorted(by_month.items()):
                raw = intraday_payload(symbol, month_days, interval, seed=self.seed, extended_hours=self.extended_hours)
                origin = f"synthetic:TIME_SERIES_INTRADAY:{symbol}:{interval}:{month}"
                parsed = parse_payload(raw, origin)
                payload = Payload(
                    raw=raw,
                    origin=origin,
                    source="synthetic",
                    fetched_at=datetime.now(UTC),
                    request_fingerprint=fingerprint(
                        "synthetic", "TIME_SERIES_INTRADAY", symbol, interval, month, str(self.seed)
                    ),
                )
                yield payload, parsed

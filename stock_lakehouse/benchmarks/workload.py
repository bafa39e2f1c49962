"""Workloads as folders of API-format payloads, generated once and replayed by every contender, so
generation is outside the measurements while parsing (part of the real cost) is inside."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from stock_lakehouse.ingestion.synthetic import intraday_payload
from stock_lakehouse.market_calendar import trading_days


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


def month_workload(folder: Path, n_symbols: int, start: date, end: date, interval: str = "1min", seed: int = 7) -> int:
    """One month payload per symbol (like ``month=YYYY-MM`` calls); returns the number of bars."""
    folder.mkdir(parents=True, exist_ok=True)
    days = trading_days(start, end)
    bars = 0
    for sym in symbols(n_symbols):
        path = folder / f"{sym}_{start:%Y-%m}.json"
        if not path.exists():
            path.write_bytes(intraday_payload(sym, days, interval, seed=seed))
        bars += len(json.loads(path.read_bytes())[f"Time Series ({interval})"])
    return bars


def compact_workload(folder: Path, n_symbols: int, day: date, interval: str = "1min", seed: int = 7) -> int:
    """The latest 100 bars of ``day`` per symbol (``outputsize=compact``), as an intraday refresh sees."""
    folder.mkdir(parents=True, exist_ok=True)
    for sym in symbols(n_symbols):
        doc = json.loads(intraday_payload(sym, [day], interval, seed=seed))
        key = f"Time Series ({interval})"
        latest = dict(list(doc[key].items())[:100])
        doc[key] = latest
        doc["Meta Data"]["5. Output Size"] = "Compact"
        (folder / f"{sym}_compact.json").write_text(json.dumps(doc))
    return 100 * n_symbols

"""Deterministic synthetic bars in Alpha Vantage's JSON layout, for demos and benchmarks at any scale.

Bars are a seeded random walk per (symbol, day): the same seed, symbol and day always give the same
bytes. Extended hours (04:00-20:00 New York) carry pre and post-market bars with thin volume; the regular
session follows the exchange calendar, early closes included. Timestamps label the bar's start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np

from stock_lakehouse.market_calendar import is_trading_day, regular_close

_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}


def _rng(seed: int, symbol: str, day: date) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{symbol}:{day.isoformat()}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _base_price(seed: int, symbol: str) -> float:
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    return 20.0 + (int.from_bytes(digest[:4], "little") % 98000) / 100.0


def day_bars(symbol: str, day: date, interval: str, *, seed: int, extended_hours: bool = True) -> list[tuple]:
    """Bars of one trading day, oldest first: ``(label, open, high, low, close, volume)``."""
    if not is_trading_day(day):
        return []
    step = _MINUTES[interval]
    close_t = regular_close(day)
    start = datetime.combine(day, datetime.min.time()) + (
        timedelta(hours=4) if extended_hours else timedelta(hours=9, minutes=30)
    )
    end = datetime.combine(day, datetime.min.time()) + (
        timedelta(hours=20) if extended_hours else timedelta(hours=close_t.hour, minutes=close_t.minute)
    )
    n = int((end - start).total_seconds() // 60 // step)
    rng = _rng(seed, symbol, day)
    price = _base_price(seed, symbol) * float(np.exp(rng.normal(0, 0.02)))
    rets = rng.normal(0, 0.0008 * np.sqrt(step), size=n)
    wiggle = np.abs(rng.normal(0, 0.0005 * np.sqrt(step), size=(n, 2)))
    vol_noise = rng.lognormal(0, 0.5, size=n)
    out = []
    for i in range(n):
        ts = start + timedelta(minutes=i * step)
        t = ts.time()
        regular = (t.hour, t.minute) >= (9, 30) and t < close_t
        o = price
        c = price * float(np.exp(rets[i]))
        h = max(o, c) * (1 + wiggle[i, 0])
        lo = min(o, c) * (1 - wiggle[i, 1])
        v = int((20000 if regular else 800) * step * vol_noise[i])
        out.append((ts.strftime("%Y-%m-%d %H:%M:%S"), f"{o:.4f}", f"{h:.4f}", f"{lo:.4f}", f"{c:.4f}", str(v)))
        price = float(f"{c:.4f}")
    return out


def intraday_payload(
    symbol: str, days: Iterable[date], interval: str, *, seed: int, extended_hours: bool = True
) -> bytes:
    """A TIME_SERIES_INTRADAY JSON body (newest first, values as strings) covering ``days``."""
    bars = [b for d in sorted(days) for b in day_bars(symbol, d, interval, seed=seed, extended_hours=extended_hours)]
    bars.reverse()
    last = bars[0][0] if bars else f"{max(days)} 20:00:00"
    doc = {
        "Meta Data": {
            "1. Information": f"Intraday ({interval}) open, high, low, close prices and volume",
            "2. Symbol": symbol,
            "3. Last Refreshed": last,
            "4. Interval": interval,
            "5. Output Size": "Full size",
            "6. Time Zone": "US/Eastern",
        },
        f"Time Series ({interval})": {
            b[0]: {"1. open": b[1], "2. high": b[2], "3. low": b[3], "4. close": b[4], "5. volume": b[5]} for b in bars
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()

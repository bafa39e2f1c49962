"""Deterministic synthetic bars in Alpha Vantage's JSON layout, for demos and benchmarks at any scale.

Bars are a seeded random walk per (symbol, day): the same seed, symbol and day always give the same
bytes. Extended hours (04:00-20:00 New York) carry pre and post-market bars with thin volume; the regular
session follows the exchange calendar, early closes included. Timestamps label the bar's start. FX and
crypto layouts (for the fake API server and tests) trade around the clock in UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

import numpy as np

from stock_lakehouse.market_calendar import is_trading_day, regular_close

_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}


def _rng(seed: int, symbol: str, day: date) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{symbol}:{day.isoformat()}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _base_price(seed: int, symbol: str) -> float:
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    return 20.0 + (int.from_bytes(digest[:4], "little") % 98000) / 100.0


def day_bars(
    symbol: str,
    day: date,
    interval: str,
    *,
    seed: int,
    extended_hours: bool = True,
    kind: str = "equity",
) -> list[tuple]:
    """Bars of one day, oldest first: ``(label, open, high, low, close, volume)``.

    Equities trade on exchange sessions (04:00-20:00 New York with extended hours); FX trades around
    the clock on weekdays and crypto every day (00:00-24:00 UTC), FX without volume.
    """
    step = _MINUTES[interval]
    midnight = datetime.combine(day, datetime.min.time())
    if kind == "equity":
        if not is_trading_day(day):
            return []
        close_t = regular_close(day)
        start = midnight + (timedelta(hours=4) if extended_hours else timedelta(hours=9, minutes=30))
        end = midnight + (
            timedelta(hours=20) if extended_hours else timedelta(hours=close_t.hour, minutes=close_t.minute)
        )
    else:
        if kind == "fx" and day.weekday() >= 5:
            return []
        close_t = time(23, 59, 59)
        start, end = midnight, midnight + timedelta(days=1)
    n = int((end - start).total_seconds() // 60 // step)
    rng = _rng(seed, symbol, day)
    price = _base_price(seed, symbol) * float(np.exp(rng.normal(0, 0.02)))
    if kind == "fx":
        price = 0.5 + price / 1000.0
    rets = rng.normal(0, 0.0008 * np.sqrt(step), size=n)
    wiggle = np.abs(rng.normal(0, 0.0005 * np.sqrt(step), size=(n, 2)))
    vol_noise = rng.lognormal(0, 0.5, size=n)
    out = []
    for i in range(n):
        ts = start + timedelta(minutes=i * step)
        t = ts.time()
        regular = kind != "equity" or ((t.hour, t.minute) >= (9, 30) and t < close_t)
        o = price
        c = price * float(np.exp(rets[i]))
        h = max(o, c) * (1 + wiggle[i, 0])
        lo = min(o, c) * (1 - wiggle[i, 1])
        units = (20000 if regular else 800) * step * vol_noise[i]
        # Shares are whole; coins trade in fractions (8 decimals, as the API sends them); FX has no volume.
        v = None if kind == "fx" else f"{units / 1000:.8f}" if kind == "crypto" else str(int(units))
        out.append((ts.strftime("%Y-%m-%d %H:%M:%S"), f"{o:.5f}", f"{h:.5f}", f"{lo:.5f}", f"{c:.5f}", v))
        price = float(f"{c:.5f}")
    return out


def intraday_payload(
    symbol: str,
    days: Iterable[date],
    interval: str,
    *,
    seed: int,
    extended_hours: bool = True,
    kind: str = "equity",
    quote: str = "USD",
) -> bytes:
    """A JSON body in the layout of TIME_SERIES_INTRADAY, FX_INTRADAY or CRYPTO_INTRADAY (by ``kind``),
    newest first, values as strings, covering ``days``. For FX and crypto ``symbol`` is the base
    currency or coin and ``quote`` the quote currency or market."""
    days = sorted(days)
    bars = [b for d in days for b in day_bars(symbol, d, interval, seed=seed, extended_hours=extended_hours, kind=kind)]
    return bars_payload(symbol, bars, interval, kind=kind, quote=quote, empty_last=f"{days[-1]} 20:00:00")


def bars_payload(
    symbol: str, bars: list[tuple], interval: str, *, kind: str = "equity", quote: str = "USD", empty_last: str = ""
) -> bytes:
    """``bars`` (``day_bars`` rows, oldest first) as a body of the API's layout for ``kind``, newest first;
    ``empty_last`` is the "Last Refreshed" of a body without bars."""
    bars = bars[::-1]
    last = bars[0][0] if bars else empty_last
    names = ("1. open", "2. high", "3. low", "4. close", "5. volume")
    series = {b[0]: {k: v for k, v in zip(names, b[1:], strict=True) if v is not None} for b in bars}
    if kind == "fx":
        meta = {
            "1. Information": f"FX Intraday ({interval}) Time Series",
            "2. From Symbol": symbol,
            "3. To Symbol": quote,
            "4. Last Refreshed": last,
            "5. Interval": interval,
            "6. Output Size": "Full size",
            "7. Time Zone": "UTC",
        }
        series_key = f"Time Series FX ({interval})"
    elif kind == "crypto":
        meta = {
            "1. Information": f"Crypto Intraday ({interval}) Time Series",
            "2. Digital Currency Code": symbol,
            "3. Digital Currency Name": symbol,
            "4. Market Code": quote,
            "5. Market Name": quote,
            "6. Last Refreshed": last,
            "7. Interval": interval,
            "8. Output Size": "Full size",
            "9. Time Zone": "UTC",
        }
        series_key = f"Time Series Crypto ({interval})"
    else:
        meta = {
            "1. Information": f"Intraday ({interval}) open, high, low, close prices and volume",
            "2. Symbol": symbol,
            "3. Last Refreshed": last,
            "4. Interval": interval,
            "5. Output Size": "Full size",
            "6. Time Zone": "US/Eastern",
        }
        series_key = f"Time Series ({interval})"
    return json.dumps({"Meta Data": meta, series_key: series}, separators=(",", ":")).encode()

"""An independent pandas implementation of DESIGN §6, to check the Spark transforms against.

Written straight from the definitions (not from the Spark code) and fed from the raw JSON.
"""

from __future__ import annotations

import json
import math
from datetime import date, time
from pathlib import Path

import numpy as np
import pandas as pd

from stock_lakehouse.market_calendar import regular_close


def bars_from_json(path: Path) -> pd.DataFrame:
    doc = json.loads(Path(path).read_text())
    symbol = doc["Meta Data"]["2. Symbol"]
    key = next(k for k in doc if k.startswith("Time Series"))
    rows = [
        {
            "symbol": symbol,
            "ts": pd.Timestamp(ts),
            "open": float(v["1. open"]),
            "high": float(v["2. high"]),
            "low": float(v["3. low"]),
            "close": float(v["4. close"]),
            "volume": int(v["5. volume"]),
        }
        for ts, v in doc[key].items()
    ]
    df = pd.DataFrame(rows).sort_values("ts").reset_index(drop=True)
    df["trade_date"] = df["ts"].dt.date
    return df


def bars_from_payloads(paths: list[Path], interval_minutes: int = 1) -> pd.DataFrame:
    """Bars of several recorded responses, one per (symbol, instant), as DESIGN §6 and §13 say.

    Every entry is read, repeated keys included (``object_pairs_hook``), and its label read as the instant it
    names (``pd.Timestamp``). Of entries naming one instant, the response with the newest ``Last Refreshed``
    wins, and inside one response the later entry. ``on_grid`` and ``whole_volume`` say whether the label
    lies on the interval's grid and the volume is a whole number (both required of a valid stock bar).
    """
    entries = []
    for path in paths:
        doc = dict(json.loads(Path(path).read_text(), object_pairs_hook=list))
        meta = dict(doc["Meta Data"])
        refreshed = pd.Timestamp(meta["3. Last Refreshed"])
        key = next(k for k in doc if k.startswith("Time Series"))
        for position, (label, fields) in enumerate(doc[key]):
            v = dict(fields)
            volume = float(v["5. volume"])
            entries.append(
                {
                    "symbol": meta["2. Symbol"],
                    "ts": pd.Timestamp(label),
                    "refreshed": refreshed,
                    "position": position,
                    "open": float(v["1. open"]),
                    "high": float(v["2. high"]),
                    "low": float(v["3. low"]),
                    "close": float(v["4. close"]),
                    "volume": volume,
                    "whole_volume": volume.is_integer(),
                }
            )
    df = pd.DataFrame(entries).sort_values(["symbol", "ts", "refreshed", "position"])
    df = df.drop_duplicates(["symbol", "ts"], keep="last").reset_index(drop=True)
    minutes = df.ts.dt.hour * 60 + df.ts.dt.minute
    df["on_grid"] = (df.ts.dt.second == 0) & (df.ts.dt.microsecond == 0) & (minutes % interval_minutes == 0)
    df["trade_date"] = df["ts"].dt.date
    return df.drop(columns=["refreshed", "position"])


def _session(ts: pd.Timestamp, close: time) -> str:
    t = ts.time()
    if t < time(9, 30):
        return "pre"
    return "regular" if t < close else "post"


def _valid(r) -> bool:
    vals = [r.open, r.high, r.low, r.close]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) or v <= 0 for v in vals):
        return False
    if r.volume is None or r.volume < 0:
        return False
    if not getattr(r, "on_grid", True) or not getattr(r, "whole_volume", True):
        return False
    eps = 1e-4 * r.close
    return r.low <= r.high and r.low <= min(r.open, r.close) + eps and max(r.open, r.close) <= r.high + eps


def gold_reference(bars: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (sym, day), g in bars.groupby(["symbol", "trade_date"]):
        g = g.sort_values("ts")
        close_t = regular_close(day)
        g = g.assign(session=[_session(t, close_t) for t in g.ts], valid=[_valid(r) for r in g.itertuples()])
        reg = g[g.valid & (g.session == "regular")]
        if reg.empty:
            continue
        typical = (reg.high + reg.low + reg.close) / 3
        rets = np.log(reg.close.values[1:] / reg.close.values[:-1])
        out.append(
            {
                "symbol": sym,
                "trade_date": day,
                "open": reg.open.iloc[0],
                "high": reg.high.max(),
                "low": reg.low.min(),
                "close": reg.close.iloc[-1],
                "volume": int(reg.volume.sum()),
                "vwap": float((typical * reg.volume).sum() / reg.volume.sum()),
                "avg_price": reg.close.mean(),
                "price_change": reg.close.iloc[-1] - reg.open.iloc[0],
                "intraday_change_pct": 100 * (reg.close.iloc[-1] - reg.open.iloc[0]) / reg.open.iloc[0],
                "bar_count": len(reg),
                "invalid_bar_count": int((~g.valid).sum()),
                "intraday_volatility": float(np.std(rets, ddof=1)) if len(rets) > 1 else None,
            }
        )
    return pd.DataFrame(out)


def bi_reference(gold: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for _, g in gold.sort_values(["symbol", "trade_date"]).groupby("symbol"):
        g = g.reset_index(drop=True).copy()
        closes = g.close.tolist()
        prev = [None] + closes[:-1]
        g["prev_close"] = prev
        g["price_change_pct"] = [None if p is None else 100 * (c / p - 1) for c, p in zip(closes, prev, strict=True)]
        rets = [None if p is None else math.log(c / p) for c, p in zip(closes, prev, strict=True)]
        c7, v7, vol = [], [], []
        for i in range(len(g)):
            lo = max(0, i - 6)
            c7.append(float(np.mean(closes[lo : i + 1])))
            v7.append(float(np.mean(g.volume.iloc[lo : i + 1])))
            window = [r for r in rets[lo : i + 1] if r is not None]
            vol.append(100 * math.sqrt(252) * float(np.std(window, ddof=1)) if len(window) >= 2 else None)
        g["close_7d_avg"], g["volume_7d_avg"], g["volatility_score"] = c7, v7, vol
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str], rel: float = 1e-9) -> None:
    """Row-by-row comparison on (symbol, trade_date) with relative tolerance; None equals None/NaN."""
    a = actual.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    e = expected.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert list(a.symbol) == list(e.symbol)
    assert [pd.Timestamp(d).date() for d in a.trade_date] == [
        pd.Timestamp(d).date() if not isinstance(d, date) else d for d in e.trade_date
    ]
    for col in columns:
        for i, (x, y) in enumerate(zip(a[col], e[col], strict=True)):
            x_missing = x is None or (isinstance(x, float) and math.isnan(x))
            y_missing = y is None or (isinstance(y, float) and math.isnan(y))
            assert x_missing == y_missing, f"{col} row {i}: {x} vs {y}"
            if not x_missing:
                assert math.isclose(float(x), float(y), rel_tol=rel, abs_tol=1e-12), f"{col} row {i}: {x} vs {y}"

"""The signal feed ``gold/signals``: technical indicators per symbol over its gold rows (DataFrame in,
DataFrame out; no I/O, no Dagster).

Windows count a symbol's gold rows (trading days with data) in trade-date order. EMA, MACD and RSI are
recursive from the symbol's first gold row, so each symbol's whole history is computed in one pandas
function (``applyInPandas``; one small row per day fits in memory) and gives the same values whatever
range a run asks for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pyspark.sql import DataFrame

from stock_lakehouse.lakehouse import schemas

RSI_PERIOD = 14


def _rolling(x: np.ndarray, n: int, fn) -> np.ndarray:
    """``fn`` over this and the previous ``n - 1`` values; NaN with fewer."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = fn(sliding_window_view(x, n), axis=1)
    return out


def _std(w: np.ndarray, axis: int) -> np.ndarray:
    return np.std(w, axis=axis, ddof=1)


def _ema(x: pd.Series, n: int) -> np.ndarray:
    return x.ewm(span=n, adjust=False).mean().to_numpy()


def _rsi(close: np.ndarray, n: int = RSI_PERIOD) -> np.ndarray:
    """Wilder's RSI: plain means of the first ``n`` changes, then (prev * (n - 1) + current) / n."""
    out = np.full(len(close), np.nan)
    if len(close) <= n:
        return out
    d = np.diff(close)
    gain, loss = np.maximum(d, 0.0), np.maximum(-d, 0.0)
    avg_gain, avg_loss = gain[:n].mean(), loss[:n].mean()
    for i in range(n, len(close)):  # row i carries change d[i - 1]
        if i > n:
            avg_gain = (avg_gain * (n - 1) + gain[i - 1]) / n
            avg_loss = (avg_loss * (n - 1) + loss[i - 1]) / n
        out[i] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return out


def indicators(gold: pd.DataFrame) -> pd.DataFrame:
    """The signal rows of one symbol's gold rows (any order), in ``schemas.SIGNALS`` column order."""
    g = gold.sort_values("trade_date", kind="stable").reset_index(drop=True)
    close = g["close"].astype("float64")
    c, v = close.to_numpy(), g["volume"].astype("float64").to_numpy()
    out = g[["symbol", "trade_date", "close", "volume"]].copy()
    out["sma_5"] = _rolling(c, 5, np.mean)
    out["sma_20"] = _rolling(c, 20, np.mean)
    out["ema_12"], out["ema_26"] = _ema(close, 12), _ema(close, 26)
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = _ema(out["macd"], 9)
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    out["rsi_14"] = _rsi(c)
    sd20 = _rolling(c, 20, _std)
    out["bb_upper"] = out["sma_20"] + 2.0 * sd20
    out["bb_lower"] = out["sma_20"] - 2.0 * sd20
    vsd = _rolling(v, 20, _std)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["volume_z_20"] = np.where(vsd > 0, (v - _rolling(v, 20, np.mean)) / vsd, np.nan)
    s5, s20 = out["sma_5"], out["sma_20"]
    p5, p20 = s5.shift(), s20.shift()
    flags = {
        "golden_cross": (s5 > s20) & (p5 <= p20),
        "death_cross": (s5 < s20) & (p5 >= p20),
        "overbought": out["rsi_14"] > 70,
        "oversold": out["rsi_14"] < 30,
    }
    out["signal"] = [";".join(n for n, f in flags.items() if f.iat[i]) or None for i in range(len(out))]
    return out[schemas.SIGNALS.fieldNames()]


def to_signals(gold_history: DataFrame) -> DataFrame:
    """Signal rows for every row of ``gold_history`` (rows of ``gold/daily_kpis``).

    ``gold_history`` must hold each symbol's gold rows from its first one: EMA, MACD and RSI depend on
    the whole history. Callers keep the dates they asked for.
    """
    rows = gold_history.select("symbol", "trade_date", "close", "volume")
    return schemas.conform(rows.groupBy("symbol").applyInPandas(indicators, schemas.SIGNALS), schemas.SIGNALS)

"""What the dashboard shows, computed from table rows: pure pandas functions (frames in, frame out).

Why apart from the layout: these carry the meaning (which columns make a chart, what counts as
quarantined or withheld, what "latest" is); kept free of Dash and of the lake, they are unit-tested with
small hand-made frames. The rules themselves are not restated: anomalies are ``find_anomalies``'s, and
withheld partitions arrive as the quality gate's ``Verdict``s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import pandas as pd

from stock_lakehouse.automation.anomalies import find_anomalies
from stock_lakehouse.quality.gates import Verdict

#: Columns of ``daily_view``: one row per trade date of one symbol.
DAILY_COLUMNS = [
    "trade_date",
    "close",
    "vwap",
    "sma_5",
    "sma_20",
    "bb_upper",
    "bb_lower",
    "volume",
    "volume_7d_avg",
    "volatility_score",
    "rsi_14",
]
_BI_COLUMNS = ["close", "vwap", "volume", "volume_7d_avg", "volatility_score"]
_SIGNAL_COLUMNS = ["sma_5", "sma_20", "bb_upper", "bb_lower", "rsi_14"]
ANOMALY_COLUMNS = ["trade_date", "symbol", "rule", "detail"]
PARTITION_COLUMNS = ["symbol", "trade_date", "bars", "quarantined", "reasons", "gate_failing", "share", "withheld"]
QUARANTINED_BAR_COLUMNS = ["trade_date", "ts_local", "session", "open", "high", "low", "close", "volume", "dq_reason"]
FRESHNESS_COLUMNS = ["table", "latest_trade_date", "latest_bar_time"]


def daily_view(bi: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """One symbol's days for the charts: BI's close, VWAP, volume and volatility beside the signals' SMAs,
    Bollinger bands and RSI, by trade date (ascending).

    A day present in only one table keeps its row (the other table's columns null): BI and signals are
    written by different steps, and a chart with a gap says more than a missing day.

    Args:
        bi: rows of ``gold/bi_stock_daily`` for one symbol.
        signals: rows of ``gold/signals`` for the same symbol.

    Returns:
        ``DAILY_COLUMNS``, ``trade_date`` as datetime64.
    """
    left = bi.reindex(columns=["trade_date", *_BI_COLUMNS])
    right = signals.reindex(columns=["trade_date", "close", *_SIGNAL_COLUMNS]).rename(columns={"close": "_close"})
    for frame in (left, right):
        frame["trade_date"] = pd.to_datetime(frame["trade_date"])
    out = left.merge(right, on="trade_date", how="outer")
    out["close"] = out["close"].fillna(out.pop("_close"))
    return out.sort_values("trade_date").reset_index(drop=True)[DAILY_COLUMNS]


def on_trading_days(daily: pd.DataFrame, days: Iterable[date]) -> pd.DataFrame:
    """``daily_view``'s rows on each of ``days`` too: a trading day without a gold row (withheld by the
    quality gate, or never delivered) gets a row of nulls, so the charts leave a gap at that day instead
    of drawing a line across it. Rows of ``daily`` outside ``days`` stay; without rows, ``daily`` stays
    empty (the charts then say there is nothing in the range).

    Args:
        daily: ``daily_view``'s rows.
        days: the trading days of the range shown (the exchange's sessions and silver's days).

    Returns:
        ``DAILY_COLUMNS``, one row per day of ``days`` and of ``daily``, ascending.
    """
    if daily.empty:
        return daily
    index = pd.DatetimeIndex(pd.to_datetime(sorted(set(days)))).union(pd.DatetimeIndex(daily["trade_date"]))
    out = daily.set_index("trade_date").reindex(index.rename("trade_date"))
    return out.reset_index()[DAILY_COLUMNS]


def anomaly_table(bi: pd.DataFrame, price_change_pct: float, volume_multiple: float) -> pd.DataFrame:
    """The anomalies of ``bi``'s rows by ``find_anomalies`` (the rule the alert sensor applies), most recent
    first.

    Args:
        bi: rows of ``gold/bi_stock_daily``.
        price_change_pct: ``automation.anomaly_price_change_pct``.
        volume_multiple: ``automation.anomaly_volume_multiple``.

    Returns:
        ``ANOMALY_COLUMNS``: the day, the symbol, which rule (``price_change`` or ``volume``) and the
        alert's text.
    """
    if bi.empty:
        return pd.DataFrame(columns=ANOMALY_COLUMNS)
    rows = []
    for alert in find_anomalies(bi, price_change_pct, volume_multiple):
        # The alert key is ``anomaly:<symbol>:<day>:<rule>``; symbols never contain ':'.
        _, symbol, day, rule = alert.key.split(":")
        rows.append({"trade_date": pd.Timestamp(day), "symbol": symbol, "rule": rule, "detail": alert.text})
    out = pd.DataFrame(rows, columns=ANOMALY_COLUMNS)
    return out.sort_values(["trade_date", "symbol", "rule"], ascending=[False, True, True]).reset_index(drop=True)


def verdict_frame(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The quality gate's verdicts as rows: ``symbol, trade_date, bars, gate_failing, share, withheld,
    failing_rules`` (``share`` as a fraction; ``failing_rules`` as in ``Verdict.describe``)."""
    rows = [
        {
            "symbol": v.partition.symbol,
            "trade_date": pd.Timestamp(v.partition.trade_date),
            "bars": v.bars,
            "gate_failing": v.invalid,
            "share": v.share,
            "withheld": v.withheld,
            "failing_rules": ", ".join(f"{name} {n}" for name, n in sorted(v.by_rule.items())),
        }
        for v in verdicts
    ]
    columns = ["symbol", "trade_date", "bars", "gate_failing", "share", "withheld", "failing_rules"]
    return pd.DataFrame(rows, columns=columns)


def quarantine_table(quarantine: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per partition, its quarantined bars (silver's ``is_valid = false``) and the row-quality gate's
    verdict; only partitions with a quarantined bar or a bar failing the gate, most recent first.

    The two counts differ on purpose: ``quarantined`` counts every flagged bar (``dq_reason``), the gate
    only its ``gate: partition`` rules (e.g. a low above the open is flagged but passes the gate).

    Args:
        quarantine: rows of the ``quarantine`` view (``symbol, trade_date, dq_reason``).
        verdicts: ``verdict_frame``'s rows for the same symbols and dates.

    Returns:
        ``PARTITION_COLUMNS``; ``reasons`` counts each ``dq_reason`` part (``missing_close 2, ...``).
    """
    keys = ["symbol", "trade_date"]
    q = quarantine.reindex(columns=[*keys, "dq_reason"])
    q = q.assign(symbol=q["symbol"].astype(str), trade_date=pd.to_datetime(q["trade_date"]))
    counted = q.groupby(keys).size().rename("quarantined").reset_index()
    parts = q.assign(reason=q["dq_reason"].fillna("unknown").astype(str).str.split(";")).explode("reason")
    reasons = parts.groupby(keys)["reason"].agg(
        lambda s: ", ".join(f"{r} {n}" for r, n in sorted(s.value_counts().items()))
    )
    counted = counted.merge(reasons.rename("reasons").reset_index(), on=keys)
    v = verdicts.reindex(columns=[*keys, "bars", "gate_failing", "share", "withheld"])
    v = v.assign(symbol=v["symbol"].astype(str), trade_date=pd.to_datetime(v["trade_date"]))
    out = v.merge(counted, on=keys, how="outer")
    # A quarantined bar of a partition without a verdict (no rule file) still shows, with zero failing.
    out["quarantined"] = pd.to_numeric(out["quarantined"]).fillna(0).astype(int)
    out["gate_failing"] = pd.to_numeric(out["gate_failing"]).fillna(0).astype(int)
    out["withheld"] = out["withheld"].astype("boolean").fillna(False).astype(bool)
    out["reasons"] = out["reasons"].fillna("").astype(str)
    out = out[(out["quarantined"] > 0) | (out["gate_failing"] > 0) | out["withheld"]]
    out = out.sort_values(["trade_date", "symbol"], ascending=[False, True]).reset_index(drop=True)
    return out[PARTITION_COLUMNS]


def quarantined_bars(quarantine: pd.DataFrame, limit: int = 100) -> pd.DataFrame:
    """The latest ``limit`` quarantined bars with their prices and ``dq_reason``, most recent first."""
    if quarantine.empty:
        return pd.DataFrame(columns=QUARANTINED_BAR_COLUMNS)
    out = quarantine.reindex(columns=[*QUARANTINED_BAR_COLUMNS, "ts_utc"])
    out = out.sort_values(["trade_date", "ts_utc"], ascending=False, na_position="last")
    return out[QUARANTINED_BAR_COLUMNS].head(limit).reset_index(drop=True)


def freshness_table(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per table, the latest trade date and the latest bar time (New York wall clock).

    Args:
        frames: table name -> its rows' ``trade_date`` and ``bar_time`` (a timestamp or bronze's label
            string; null for daily tables).

    Returns:
        ``FRESHNESS_COLUMNS``, one row per table in the given order; NaT where a table has no rows or no
        bar times.
    """
    rows = []
    for table, df in frames.items():
        dates = (
            pd.to_datetime(df["trade_date"]) if "trade_date" in df and len(df) else pd.Series(dtype="datetime64[ns]")
        )
        times = (
            pd.to_datetime(df["bar_time"], errors="coerce")
            if "bar_time" in df and len(df)
            else pd.Series(dtype="datetime64[ns]")
        )
        rows.append({"table": table, "latest_trade_date": dates.max(), "latest_bar_time": times.max()})
    return pd.DataFrame(rows, columns=FRESHNESS_COLUMNS)


def _span(seconds: float) -> str:
    """A duration as a reader says it: seconds, minutes, hours or days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:,.0f} days"


def lag_line(freshness: pd.DataFrame, now: pd.Timestamp, refresh_seconds: int) -> str:
    """When the page read the lake, how far silver's newest bar (its start, New York time) is behind, and
    when the page reads again.

    Args:
        freshness: ``freshness_table``'s frame (its ``silver`` row is used).
        now: the time of the read, New York wall clock (naive, like the bar times).
        refresh_seconds: the page's re-read interval; 0: only on reload.
    """
    read = f"read {now:%Y-%m-%d %H:%M:%S} New York"
    again = f"re-read every {refresh_seconds} s" if refresh_seconds > 0 else "re-read on reload"
    silver = freshness.loc[freshness["table"] == "silver", "latest_bar_time"]
    newest = silver.iloc[0] if len(silver) else pd.NaT
    if pd.isna(newest):
        return f"{read}; no bar in silver yet; {again}"
    behind = max((now - newest).total_seconds(), 0.0)
    return f"{read}; newest silver bar {newest:%Y-%m-%d %H:%M}, {_span(behind)} behind; {again}"

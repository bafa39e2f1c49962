"""Anomaly rules over the BI view (pure: rows in, alerts out).

A day is anomalous when ``|price_change_pct| > price_change_pct`` (default 8 %: the close moved that
much from the previous trading day's close), or when ``volume > volume_multiple x volume_7d_avg``
(default 3; the 7-day average includes the day itself, so a single row can never trigger it).
"""

from __future__ import annotations

import pandas as pd

from stock_lakehouse.automation.alerts import Alert


def _amount(volume: float) -> str:
    # Whole for stocks, with the coin's decimals for crypto: never 1.2e+11, never a trailing ".0".
    return f"{volume:,.8f}".rstrip("0").rstrip(".")


def find_anomalies(bi: pd.DataFrame, price_change_pct: float = 8.0, volume_multiple: float = 3.0) -> list[Alert]:
    """Alerts for the rows of ``bi`` (columns of ``gold/bi_stock_daily``) that break a rule."""
    alerts = []
    for row in bi.sort_values(["symbol", "trade_date"]).itertuples(index=False):
        day = pd.Timestamp(row.trade_date).date().isoformat()
        if pd.notna(row.price_change_pct) and abs(row.price_change_pct) > price_change_pct:
            alerts.append(
                Alert(
                    "anomaly",
                    f"anomaly:{row.symbol}:{day}:price_change",
                    f"{row.symbol} {day}: close {row.close:.2f} is {row.price_change_pct:+.2f} % from the previous "
                    f"close {row.prev_close:.2f} (threshold {price_change_pct:g} %)",
                )
            )
        if pd.notna(row.volume_7d_avg) and row.volume_7d_avg > 0 and row.volume > volume_multiple * row.volume_7d_avg:
            alerts.append(
                Alert(
                    "anomaly",
                    f"anomaly:{row.symbol}:{day}:volume",
                    f"{row.symbol} {day}: volume {_amount(row.volume)} is {row.volume / row.volume_7d_avg:.1f}x its "
                    f"7-day average {row.volume_7d_avg:,.0f} (threshold {volume_multiple:g}x)",
                )
            )
    return alerts

"""Everything the dashboard reads from the lake, in one small module.

Why one module: the dashboard asks the ``Lake`` resource (``lakehouse/lake.py``) for tables, like every
other reader; should that change, this file alone follows. The layout and the shaping
functions never see settings, paths or stores: they get frames.

Reads go through delta-rs (``Lake.read`` / ``Lake.dataset``): no Spark, a local folder or an ``s3a://`` lake alike.
Keys stay in the environment, where delta-rs reads them; nothing here puts them in a frame or a message.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.market_calendar import trading_days
from stock_lakehouse.quality.gates import QualityGate, Verdict, judge_partitions_duckdb
from stock_lakehouse.settings import Settings

#: Tables whose freshness is shown, with the column holding a bar's New York time (None: daily rows).
FRESHNESS_TABLES: dict[str, str | None] = {
    "bronze": "ts",
    "silver": "ts_local",
    "gold": None,
    "bi": None,
    "signals": None,
}


@dataclass(frozen=True)
class LakeData:
    """Read access to one lake for the dashboard, with the settings the page applies.

    Attributes:
        lake: the lake (where, and how to reach its store; no keys).
        anomaly_price_change_pct: ``automation.anomaly_price_change_pct``.
        anomaly_volume_multiple: ``automation.anomaly_volume_multiple``.
        gate: silver's row-quality gate (its rules file and ``quality.max_invalid_share``).
        calendar: the exchange calendar (``calendar``): the trading days the daily charts lay out.
        refresh_seconds: the page re-reads the lake and redraws this often (0: only on reload), so a
            view of today follows the session.
        clock: the deployment's clock (``automation.clock_*``): the lag shown is against its "now".
    """

    lake: Lake
    anomaly_price_change_pct: float
    anomaly_volume_multiple: float
    gate: QualityGate
    calendar: str = "XNYS"
    refresh_seconds: int = 60
    clock: Clock = field(default_factory=Clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeData:
        """The lake, thresholds and quality gate of ``settings`` (the one place naming settings)."""
        return cls(
            lake=settings.lake,
            anomaly_price_change_pct=settings.automation.anomaly_price_change_pct,
            anomaly_volume_multiple=settings.automation.anomaly_volume_multiple,
            gate=QualityGate(
                rules_file=str(Path(settings.quality.dir) / "silver.yml"),
                max_invalid_share=settings.quality.max_invalid_share,
            ),
            calendar=settings.calendar,
            clock=Clock.from_settings(settings),
        )

    @property
    def max_invalid_share(self) -> float:
        return self.gate.max_invalid_share

    def read(self, table: str, symbol: str | None, start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Rows of ``table`` for a symbol (None: all) and a trade-date range; empty when the table does not
        exist yet (nothing materialized).

        Raises:
            OSError: the store cannot be read (unreachable, access denied).
        """
        try:
            return self.lake.read(table, [symbol] if symbol else None, start, end)
        except FileNotFoundError as exc:
            if self._dataset(table) is None:
                return pd.DataFrame()
            # The table is there but a file it lists is not (deleted, or a broken copy): no "no data".
            raise OSError(f"cannot read table {table} under {self.lake.uri}: {exc}") from None

    def _dataset(self, table: str) -> pads.Dataset | None:
        try:
            return self.lake.dataset(table)
        except FileNotFoundError:
            return None

    @staticmethod
    def _partitions(dataset: pads.Dataset | None, symbol: str | None = None) -> list[tuple[str, date]]:
        """(symbol, trade_date) of each data file of a table, from the Delta log alone: no data file is
        opened, so this stays cheap on a large lake and on S3 (one request per file otherwise)."""
        if dataset is None:
            return []
        where = pads.field("symbol") == symbol if symbol else None
        keys = [pads.get_partition_keys(f.partition_expression) for f in dataset.get_fragments(filter=where)]
        return [(k["symbol"], k["trade_date"]) for k in keys]

    def symbols(self) -> list[str]:
        """Symbols with bars in silver, sorted. Silver rather than BI: a symbol whose every day was withheld
        has no BI row, but its quarantined bars are what there is to look at."""
        return sorted({symbol for symbol, _ in self._partitions(self._dataset("silver"))})

    def trade_dates(self, symbol: str) -> list[date]:
        """The trade dates with bars of ``symbol`` in silver, ascending (from the Delta log alone)."""
        return sorted({day for _, day in self._partitions(self._dataset("silver"), symbol)})

    def date_bounds(self, symbol: str) -> tuple[date | None, date | None]:
        """First and last trade date of ``symbol`` in silver (None, None without bars)."""
        days = self.trade_dates(symbol)
        return (days[0], days[-1]) if days else (None, None)

    def sessions(self, start: date, end: date) -> list[date]:
        """The exchange's trading days from ``start`` to ``end`` inclusive; none for dates outside the years
        the calendar covers (the charts then lay out silver's days alone)."""
        try:
            return trading_days(start, end, self.calendar)
        except ValueError:
            return []

    def verdicts(self, symbol: str, start: date | None, end: date | None) -> list[Verdict]:
        """The row-quality gate's verdict for each partition of ``symbol`` with bars in the range.

        The same rules and threshold as a run's, judged by DuckDB over silver as it is now; silver keeps
        every bar, so this is the verdict the last run of each partition reached (unless the rules or the
        share were changed since).

        Raises:
            RulesError: a rule's condition cannot be evaluated without Spark.
        """
        dataset = self._dataset("silver")
        if dataset is None:
            return []
        conds = [pads.field("symbol") == symbol]
        if start is not None:
            conds.append(pads.field("trade_date") >= start)
        if end is not None:
            conds.append(pads.field("trade_date") <= end)
        # Arrow, not pandas: a NaN price must stay a NaN (not a null) to fail the rule it fails in Spark.
        rows = dataset.to_table(filter=functools.reduce(operator.and_, conds))
        verdicts = judge_partitions_duckdb(rows, self.gate.rules(), self.gate.max_invalid_share)
        return sorted(verdicts.values(), key=lambda v: v.partition)

    def freshness(self, symbol: str) -> dict[str, pd.DataFrame]:
        """Per table, ``symbol``'s latest trade date with its bars' times (``trade_date``, ``bar_time``; one
        null time for daily tables). Only the latest partition's time column is read. A table not
        materialized yet, or without rows of the symbol, maps to an empty frame."""
        out = {}
        for table, bar_col in FRESHNESS_TABLES.items():
            dataset = self._dataset(table)
            days = [day for _, day in self._partitions(dataset, symbol)]
            if not days:
                out[table] = pd.DataFrame({"trade_date": [], "bar_time": []})
            elif bar_col is None:
                out[table] = pd.DataFrame({"trade_date": [max(days)], "bar_time": [pd.NaT]})
            else:
                where = (pads.field("symbol") == symbol) & (pads.field("trade_date") == max(days))
                times = dataset.to_table(columns=["trade_date", bar_col], filter=where).to_pandas()
                out[table] = times.rename(columns={bar_col: "bar_time"})
        return out

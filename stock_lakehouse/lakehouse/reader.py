"""Reading tables without Spark (delta-rs), for the CLI and for BI tools' style of access."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from datetime import date

import pandas as pd
import pyarrow.dataset as pads
from deltalake import DeltaTable

from stock_lakehouse.lakehouse.object_store import S3Location, is_s3

TABLES = {
    "bronze": "bronze/intraday_bars",
    "silver": "silver/stock_clean",
    "gold": "gold/daily_kpis",
    "bi": "gold/bi_stock_daily",
    "signals": "gold/signals",
    "quarantine": "silver/stock_clean",  # a view: silver's invalid rows
}


def table_path(lake_uri: str, table: str) -> str:
    """Folder of a table given its short name (bronze/silver/gold/bi) or its path."""
    rel = TABLES.get(table, table)
    return f"{lake_uri.rstrip('/')}/{rel}"


def table_dataset(lake_uri: str, table: str, version: int | None = None, s3: S3Location | None = None) -> pads.Dataset:
    """The pyarrow dataset of a table (short name or path), local or ``s3a://``; optionally as of a version.

    Raises:
        FileNotFoundError: no Delta table at that path.
    """
    path = table_path(lake_uri, table)
    options = None
    if is_s3(path):
        # delta-rs speaks s3://; S3A's s3a:// names the same objects.
        path = "s3://" + path.split("://", 1)[1]
        options = (s3 or S3Location()).delta_rs_options()
    try:
        dt = DeltaTable(path, version=version, storage_options=options)
    except Exception as exc:  # delta-rs raises TableNotFoundError for missing or non-Delta folders
        raise FileNotFoundError(f"no Delta table at {path} ({type(exc).__name__}: {str(exc)[:200]})") from None
    return dt.to_pyarrow_dataset()


def read_table(
    lake_uri: str,
    table: str,
    symbols: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    version: int | None = None,
    s3: S3Location | None = None,
) -> pd.DataFrame:
    """Rows of a table for symbols and a trade-date range, sorted; optionally as of a Delta version.

    ``s3`` tells how to reach an ``s3a://`` lake (keys come from the environment).

    Raises:
        FileNotFoundError: no Delta table at that path.
    """
    dataset = table_dataset(lake_uri, table, version, s3)
    conds = []
    if table == "quarantine":
        conds.append(~pads.field("is_valid"))
    if symbols:
        conds.append(pads.field("symbol").isin(list(symbols)))
    if start is not None:
        conds.append(pads.field("trade_date") >= start)
    if end is not None:
        conds.append(pads.field("trade_date") <= end)
    expr = functools.reduce(operator.and_, conds) if conds else None
    table = dataset.to_table(filter=expr)
    df = table.to_pandas()
    order = [c for c in ("symbol", "trade_date", "ts_utc", "ts", "bar_seq") if c in df.columns]
    return df.sort_values(order, kind="stable").reset_index(drop=True) if order else df

"""Reading tables without Spark (delta-rs), for the CLI, sensors and BI tools' style of access.

Code holding the ``Lake`` resource calls ``Lake.read`` / ``Lake.dataset``; these functions take the
lake's URI and store explicitly for tests and tools that have no Dagster resources.
"""

from __future__ import annotations

import atexit
import functools
import gc
import operator
import re
from collections.abc import Sequence
from datetime import date, datetime

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from stock_lakehouse.lakehouse.object_store import S3Location, is_s3
from stock_lakehouse.lakehouse.tables import VIEW_FALSE_COLUMN, table_folder

# A pyarrow dataset scan leaves C++ state behind Python objects that can sit in reference cycles; collected
# only at the interpreter's teardown, after Arrow's thread pools are gone, they abort the process with
# "terminate called without an active exception" (apache/arrow#34314): `stock-lakehouse show` printed its
# rows and exited -6 once in CI. A collection at exit, while Arrow still works, releases them first.
atexit.register(gc.collect)


def table_path(lake_uri: str, table: str | dg.AssetKey) -> str:
    """Folder of a table given its short name (bronze/silver/gold/bi/signals/quarantine) or its path."""
    return f"{lake_uri.rstrip('/')}/{table_folder(table)}"


def _location(path: str, s3: S3Location | None) -> tuple[str, dict[str, str] | None]:
    """A table folder's path and storage options as delta-rs takes them."""
    if is_s3(path):
        # delta-rs speaks s3://; S3A's s3a:// names the same objects.
        return "s3://" + path.split("://", 1)[1], (s3 or S3Location()).delta_rs_options()
    return path, None


def is_delta_table(uri: str, s3: S3Location | None = None) -> bool:
    """Whether the folder at ``uri`` holds a Delta table (its log is read, no data file)."""
    path, options = _location(uri, s3)
    return DeltaTable.is_deltatable(path, storage_options=options)


def last_commit(uri: str, s3: S3Location | None = None) -> dict:
    """The newest commit of the table at ``uri``: ``version``, ``operation``, ``operationMetrics`` (strings),
    ... as Delta wrote them (the log's last commit file; no data file is read)."""
    path, options = _location(uri, s3)
    return DeltaTable(path, storage_options=options).history(1)[0]


def _delta_table(lake_uri: str, table: str | dg.AssetKey, version: int | None, s3: S3Location | None) -> DeltaTable:
    path, options = _location(table_path(lake_uri, table), s3)
    try:
        return DeltaTable(path, version=version, storage_options=options)
    except TableNotFoundError as exc:  # a missing or non-Delta folder
        raise FileNotFoundError(f"no Delta table at {path} ({str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:
        # Anything else (store unreachable, access denied) is not "no data": callers must not take it for that.
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # delta-rs colours its error chains
        detail = " ".join(line.strip() for line in plain.splitlines()[:3])[:300]
        raise OSError(f"cannot read the Delta table at {path}: {type(exc).__name__}: {detail}") from None


def partition_stats(
    lake_uri: str, table: str | dg.AssetKey, s3: S3Location | None = None
) -> dict[tuple[str, date], tuple[int, datetime | None]]:
    """Rows and newest bar time (``ts_utc``, for tables that have it) per (symbol, trade_date) of a table's
    current version, from the Delta log's file statistics: no data file is read.

    Raises:
        FileNotFoundError: no Delta table at that path.
        OSError: the store cannot be read.
    """
    actions = pa.table(_delta_table(lake_uri, table, None, s3).get_add_actions(flatten=True))
    n = actions.num_rows
    newest = actions.column("max.ts_utc").to_pylist() if "max.ts_utc" in actions.column_names else [None] * n
    stats: dict[tuple[str, date], tuple[int, datetime | None]] = {}
    for symbol, day, rows, ts in zip(
        actions.column("partition.symbol").to_pylist(),
        actions.column("partition.trade_date").to_pylist(),
        actions.column("num_records").to_pylist(),
        newest,
        strict=True,
    ):
        before_rows, before_ts = stats.get((symbol, day), (0, None))
        latest = max((t for t in (before_ts, ts) if t is not None), default=None)
        stats[(symbol, day)] = (before_rows + int(rows or 0), latest)
    return stats


def table_dataset(
    lake_uri: str, table: str | dg.AssetKey, version: int | None = None, s3: S3Location | None = None
) -> pads.Dataset:
    """The pyarrow dataset of a table (short name or path), local or ``s3a://``; optionally as of a version.

    Raises:
        FileNotFoundError: no Delta table at that path.
        OSError: the store cannot be read (unreachable, access denied).
    """
    dt = _delta_table(lake_uri, table, version, s3)
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
    if table in VIEW_FALSE_COLUMN:
        conds.append(~pads.field(VIEW_FALSE_COLUMN[table]))
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

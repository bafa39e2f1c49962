"""Asset keys; each key's path is also the table's folder under the lake root."""

from datetime import timedelta

import dagster as dg
from pyspark.sql import types as T

BRONZE = dg.AssetKey(["bronze", "intraday_bars"])
SILVER = dg.AssetKey(["silver", "stock_clean"])
GOLD = dg.AssetKey(["gold", "daily_kpis"])
BI = dg.AssetKey(["gold", "bi_stock_daily"])
SIGNALS = dg.AssetKey(["gold", "signals"])

#: Shared by every table asset: one run (one Spark session) per backfill range, kinds for the UI, and
#: a coarse UI freshness policy (some materialization by 20:30 New York each weekday). Dagster evaluates
#: it per asset, not per partition or symbol, and knows no holidays: the market-aware, per-symbol
#: measure is the ``freshness_alerts`` sensor.
TABLE_ASSET_ARGS = {
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "kinds": {"spark", "delta"},
    "freshness_policy": dg.FreshnessPolicy.cron(
        deadline_cron="30 20 * * 1-5", lower_bound_delta=timedelta(hours=16), timezone="America/New_York"
    ),
}
PARTITION_EXPR = {"partition_expr": {"symbol": "symbol", "date": "trade_date"}}


def table_metadata(schema: T.StructType) -> dict[str, object]:
    """Definition metadata of a table asset: how partitions map to columns, and the column schema the
    UI shows (from ``lakehouse/schemas.py``, the schema enforced on write)."""
    columns = [
        dg.TableColumn(
            f.name,
            f.dataType.simpleString(),
            constraints=dg.TableColumnConstraints(nullable=f.nullable),
        )
        for f in schema.fields
    ]
    return {
        **PARTITION_EXPR,
        "dagster/column_schema": dg.TableSchema(columns=columns),
    }


def layer(key: dg.AssetKey) -> str:
    """The asset group, shown as a box in the UI's graph: the layer (bronze, silver, gold)."""
    return key.path[0]


def writer_pool(key: dg.AssetKey) -> str:
    """The Dagster concurrency pool of the step writing ``key``'s table: one writer per Delta table
    (``dagster.yaml`` sets every pool's limit to 1), since Delta on S3 is only safe with one writing
    driver at a time. Bronze's pool also bounds concurrent Alpha Vantage calls."""
    return "delta_" + "_".join(key.path)

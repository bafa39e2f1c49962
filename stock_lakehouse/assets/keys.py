"""Asset keys (from ``lakehouse/lake.py``'s table names: each key's path is the table's folder) and
what every table asset shares."""

import dagster as dg
from pyspark.sql import types as T

from stock_lakehouse.lakehouse.tables import TABLES

BRONZE = dg.AssetKey(TABLES["bronze"])
SILVER = dg.AssetKey(TABLES["silver"])
GOLD = dg.AssetKey(TABLES["gold"])
BI = dg.AssetKey(TABLES["bi"])
SIGNALS = dg.AssetKey(TABLES["signals"])

#: Shared by every table asset: one run (one Spark session) per backfill range, and kinds for the UI.
#: No Dagster FreshnessPolicy: it measures when an asset was written, not how new its data is (a 2024
#: backfill written a minute ago read "Passing"). The data's freshness is each partition's
#: ``newest_bar_utc`` metadata and, per symbol during the session, the ``freshness_alerts`` sensor.
TABLE_ASSET_ARGS = {
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "kinds": {"spark", "delta"},
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


def ensure_writer_pools(instance: dg.DagsterInstance) -> list[str]:
    """Give every table's writer pool its limit now (the instance's ``pools.default_limit``); the pools
    created. A no-op for pools that exist (a limit set by hand stays).

    Why: Dagster creates a pool's limit row lazily, when the first step claims a slot, and two first runs
    of a fresh PostgreSQL instance racing to create the same row fail one run (``UniqueViolation`` on
    ``concurrency_limits``, dagster-io/dagster#33552). Seen with the compose stack's first backfill."""
    storage = instance.event_log_storage
    existing = storage.get_concurrency_keys()
    created = []
    for table in TABLES.values():
        pool = writer_pool(dg.AssetKey(table))
        if pool not in existing and storage.initialize_concurrency_limit_to_default(pool):
            created.append(pool)
    return created

"""Silver: typed, de-duplicated bars with trading session and validity flags."""

import dagster as dg

from stock_lakehouse.assets.keys import BRONZE, SILVER, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.lakehouse.transforms import to_silver
from stock_lakehouse.market_calendar import regular_close
from stock_lakehouse.partitions import parse_keys


def build_silver_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=SILVER,
        pool=writer_pool(SILVER),
        partitions_def=partitions_def,
        group_name=layer(SILVER),
        ins={"bronze": dg.AssetIn(key=BRONZE)},
        metadata=table_metadata(schemas.SILVER),
        description="One row per (symbol, bar): typed prices and volume, UTC and New York timestamps, "
        "session (pre/regular/post), is_valid and dq_reason.",
        **TABLE_ASSET_ARGS,
    )
    def stock_clean(context: dg.AssetExecutionContext, bronze: DataFrame, ingestion: IngestionConfig) -> DataFrame:
        days = {p.trade_date for p in parse_keys(context.partition_keys)}
        closes = {d: regular_close(d, ingestion.calendar) for d in days}
        return to_silver(bronze, closes)

    return stock_clean

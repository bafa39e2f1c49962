"""BI view: gold plus previous close and 7-trading-day windows, for dashboard tools."""

import dagster as dg
from pyspark.sql import DataFrame

from stock_lakehouse.assets.keys import BI, GOLD, PARTITION_EXPR, TABLE_ASSET_ARGS, writer_pool
from stock_lakehouse.lakehouse.transforms import to_bi
from stock_lakehouse.partitions import parse_keys, partition_predicate


def build_bi_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=BI,
        pool=writer_pool(BI),
        partitions_def=partitions_def,
        group_name="lakehouse",
        # Windows reach back over earlier trading days with data, however far: load each symbol's gold
        # history up to the latest requested date (gold is one small row per day).
        ins={"gold": dg.AssetIn(key=GOLD, metadata={"history": True})},
        metadata=PARTITION_EXPR,
        description="bi_stock_daily: gold columns plus prev_close, price_change_pct, close_7d_avg, "
        "volume_7d_avg and volatility_score over the last 7 trading days with data.",
        **TABLE_ASSET_ARGS,
    )
    def bi_stock_daily(context: dg.AssetExecutionContext, gold: DataFrame) -> DataFrame:
        return to_bi(gold).where(partition_predicate(parse_keys(context.partition_keys)))

    return bi_stock_daily

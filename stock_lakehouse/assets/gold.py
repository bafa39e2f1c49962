"""Gold: daily KPIs per symbol over valid regular-session bars."""

import dagster as dg
from pyspark.sql import DataFrame

from stock_lakehouse.assets.keys import GOLD, PARTITION_EXPR, SILVER, TABLE_ASSET_ARGS, writer_pool
from stock_lakehouse.lakehouse.transforms import to_gold


def build_gold_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=GOLD,
        pool=writer_pool(GOLD),
        partitions_def=partitions_def,
        group_name="lakehouse",
        ins={"silver": dg.AssetIn(key=SILVER)},
        metadata=PARTITION_EXPR,
        description="Daily open/high/low/close, volume, VWAP, average price, change, bar counts and "
        "intraday volatility per (symbol, trade_date).",
        **TABLE_ASSET_ARGS,
    )
    def daily_kpis(silver: DataFrame) -> DataFrame:
        return to_gold(silver)

    return daily_kpis

"""Gold: daily KPIs per symbol over valid regular-session bars, for the partitions the quality gate passes."""

import dagster as dg
from pyspark.sql import DataFrame

from stock_lakehouse.assets.keys import GOLD, SILVER, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.io_manager import TableWrite
from stock_lakehouse.lakehouse.transforms import to_gold
from stock_lakehouse.partitions import parse_keys, partition_predicate
from stock_lakehouse.quality.gates import QualityGate


def build_gold_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=GOLD,
        pool=writer_pool(GOLD),
        partitions_def=partitions_def,
        group_name=layer(GOLD),
        ins={"silver": dg.AssetIn(key=SILVER)},
        metadata=table_metadata(schemas.GOLD),
        description="Daily open/high/low/close, volume, VWAP, average price, change, bar counts and "
        "intraday volatility per (symbol, trade_date). Partitions withheld by silver's row-quality gate "
        "keep their previous rows.",
        **TABLE_ASSET_ARGS,
    )
    def daily_kpis(context: dg.AssetExecutionContext, silver: DataFrame, quality: QualityGate) -> TableWrite:
        parts = parse_keys(context.partition_keys)
        withheld = quality.withheld(context.run_id, silver, parts)
        if withheld:
            context.log.warning(
                f"withheld {len(withheld)} partition(s) from gold (above {quality.max_invalid_share:.2%} invalid "
                "bars; their previous rows stay): " + "; ".join(v.describe() for v in withheld[:10])
            )
            context.add_output_metadata({"withheld_partitions": [v.describe() for v in withheld[:100]]})
            silver = silver.where(f"NOT ({partition_predicate([v.partition for v in withheld])})")
        return TableWrite(to_gold(silver), skip=tuple(v.partition for v in withheld))

    return daily_kpis

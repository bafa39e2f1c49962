"""BI view: gold plus previous close and 7-trading-day windows, for dashboard tools."""

import dagster as dg

from stock_lakehouse.assets.keys import BI, GOLD, SILVER, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.assets.windows import follow_on
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.lakehouse.io_manager import TableWrite
from stock_lakehouse.lakehouse.transforms import BI_WINDOW_ROWS, to_bi
from stock_lakehouse.partitions import parse_keys, partition_predicate
from stock_lakehouse.quality.gates import QualityGate


def build_bi_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=BI,
        pool=writer_pool(BI),
        partitions_def=partitions_def,
        group_name=layer(BI),
        # Windows reach back over earlier trading days with data, however far, and later days' windows reach
        # the run's: load each symbol's whole gold history (one small row per day). Silver is read only
        # for the row-quality gate's verdicts (one grouped query, shared with gold within a run).
        ins={"gold": dg.AssetIn(key=GOLD, metadata={"history": True}), "silver": dg.AssetIn(key=SILVER)},
        metadata=table_metadata(schemas.BI),
        description="bi_stock_daily: gold columns plus prev_close, price_change_pct, close_7d_avg, "
        "volume_7d_avg and volatility_score over the last 7 trading days with data. A run also rewrites the "
        "next 6 dates with data after its own (their windows reach it). Partitions withheld by silver's "
        "row-quality gate keep their previous rows and count as days without data.",
        **TABLE_ASSET_ARGS,
    )
    def bi_stock_daily(
        context: dg.AssetExecutionContext, gold: DataFrame, silver: DataFrame, quality: QualityGate
    ) -> TableWrite:
        parts = parse_keys(context.partition_keys)
        withheld = [v.partition for v in quality.withheld(context.run_id, silver, parts)]
        if withheld:
            gold = gold.where(f"NOT ({partition_predicate(withheld)})")
        wanted = [p for p in parts if p not in set(withheld)] or parts
        later = follow_on(gold, wanted, BI_WINDOW_ROWS - 1)
        return TableWrite(
            to_bi(gold).where(partition_predicate([*wanted, *later])), skip=tuple(withheld), follow_on=later
        )

    return bi_stock_daily

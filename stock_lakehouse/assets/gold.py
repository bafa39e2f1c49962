"""Gold: daily KPIs per symbol over valid regular-session bars, for the partitions the quality gate passes."""

import dagster as dg

from stock_lakehouse.assets.keys import GOLD, SILVER, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.lakehouse.io_manager import TableWrite
from stock_lakehouse.lakehouse.transforms import to_gold
from stock_lakehouse.partitions import describe_partitions, parse_keys, partition_predicate
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
    def daily_kpis(
        context: dg.AssetExecutionContext, silver: DataFrame, quality: QualityGate, ingestion: IngestionConfig
    ) -> TableWrite:
        parts = parse_keys(context.partition_keys)
        verdicts = quality.verdicts(context.run_id, silver, parts)  # also counts each partition's bars
        trading = [p for p in parts if ingestion.is_trading_day(p.symbol, p.trade_date)]
        no_rows = [p for p in trading if p not in verdicts]
        if no_rows:
            problem = (
                f"silver/stock_clean has no rows for {len(no_rows)} trading-day partition(s) "
                f"({describe_partitions(no_rows)}), so gold has none for them"
            )
            if len(no_rows) == len(trading):
                # Nothing to compute at all: a green partition without a row would be a lie.
                raise dg.Failure(description=f"{problem}; materialize silver/stock_clean (and bronze) for them first")
            context.log.warning(problem)
            context.add_output_metadata({"partitions_without_silver_rows": [str(p.key) for p in no_rows[:100]]})
        withheld = quality.withheld(context.run_id, silver, parts)  # the same cached verdicts
        if withheld:
            context.log.warning(
                f"withheld {len(withheld)} partition(s) from gold (above {quality.max_invalid_share:.2%} invalid "
                "bars; their previous rows stay): " + "; ".join(v.describe() for v in withheld[:10])
            )
            context.add_output_metadata({"withheld_partitions": [v.describe() for v in withheld[:100]]})
            silver = silver.where(f"NOT ({partition_predicate([v.partition for v in withheld])})")
        return TableWrite(to_gold(silver), skip=tuple(v.partition for v in withheld))

    return daily_kpis

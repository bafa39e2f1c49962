"""Signals: technical indicators per (symbol, trade_date) over gold, the feed for strategies."""

import dagster as dg
from pyspark.sql import DataFrame

from stock_lakehouse.assets.keys import GOLD, SIGNALS, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.signals import to_signals
from stock_lakehouse.partitions import parse_keys, partition_predicate


def build_signals_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=SIGNALS,
        pool=writer_pool(SIGNALS),
        partitions_def=partitions_def,
        group_name=layer(SIGNALS),
        # EMA, MACD and RSI are recursive from a symbol's first gold row: load each symbol's whole gold
        # history up to the latest requested date (one small row per day).
        ins={"gold": dg.AssetIn(key=GOLD, metadata={"history": True})},
        metadata=table_metadata(schemas.SIGNALS),
        description="signals: SMA 5/20, EMA 12/26, MACD, RSI 14 (Wilder), Bollinger bands, volume z-score "
        "and cross/overbought/oversold signals over each symbol's gold rows (trading days with data).",
        **TABLE_ASSET_ARGS,
    )
    def signals(context: dg.AssetExecutionContext, gold: DataFrame) -> DataFrame:
        return to_signals(gold).where(partition_predicate(parse_keys(context.partition_keys)))

    return signals

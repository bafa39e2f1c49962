"""Signals: technical indicators per (symbol, trade_date) over gold, the feed for strategies."""

import dagster as dg

from stock_lakehouse.assets.keys import GOLD, SIGNALS, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.assets.windows import follow_on
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.lakehouse.io_manager import TableWrite
from stock_lakehouse.lakehouse.signals import to_signals
from stock_lakehouse.partitions import parse_keys, partition_predicate


def build_signals_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=SIGNALS,
        pool=writer_pool(SIGNALS),
        partitions_def=partitions_def,
        group_name=layer(SIGNALS),
        # EMA, MACD and RSI are recursive from a symbol's first gold row, and every later row depends on the
        # run's: load each symbol's whole gold history (one small row per day).
        ins={"gold": dg.AssetIn(key=GOLD, metadata={"history": True})},
        metadata=table_metadata(schemas.SIGNALS),
        description="signals: SMA 5/20, EMA 12/26, MACD, RSI 14 (Wilder), Bollinger bands, volume z-score "
        "and cross/overbought/oversold signals over each symbol's gold rows (trading days with data). A run "
        "also rewrites every later date of its symbols (the indicators are recursive).",
        **TABLE_ASSET_ARGS,
    )
    def signals(context: dg.AssetExecutionContext, gold: DataFrame) -> TableWrite:
        parts = parse_keys(context.partition_keys)
        later = follow_on(gold, parts, None)
        return TableWrite(to_signals(gold).where(partition_predicate([*parts, *later])), follow_on=later)

    return signals

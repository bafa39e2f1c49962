"""The table assets: bronze -> silver -> gold -> BI, all partitioned by (symbol, trading date)."""

import dagster as dg

from stock_lakehouse.assets.bi import build_bi_asset
from stock_lakehouse.assets.bronze import build_bronze_asset
from stock_lakehouse.assets.gold import build_gold_asset
from stock_lakehouse.assets.signals import build_signals_asset
from stock_lakehouse.assets.silver import build_silver_asset


def build_table_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The table assets over ``partitions_def``."""
    return [
        build_bronze_asset(partitions_def),
        build_silver_asset(partitions_def),
        build_gold_asset(partitions_def),
        build_bi_asset(partitions_def),
        build_signals_asset(partitions_def),
    ]

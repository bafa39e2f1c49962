"""The table assets: bronze -> silver -> gold -> BI, all partitioned by (symbol, trading date)."""

import dagster as dg

from stock_lakehouse.assets.bi import build_bi_asset
from stock_lakehouse.assets.bronze import build_bronze_asset
from stock_lakehouse.assets.gold import build_gold_asset
from stock_lakehouse.assets.signals import build_signals_asset
from stock_lakehouse.assets.silver import build_silver_asset
from stock_lakehouse.lakehouse.lake import short_name


def build_table_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The table assets over ``partitions_def``; each description ends with the command that shows a
    partition's rows (the UI has a preview only for runs of up to 20 partitions)."""
    assets = [
        build_bronze_asset(partitions_def),
        build_silver_asset(partitions_def),
        build_gold_asset(partitions_def),
        build_bi_asset(partitions_def),
        build_signals_asset(partitions_def),
    ]
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(description=f"{spec.description}\n\n{show_command(spec.key)}"), assets
    )


def show_command(key: dg.AssetKey) -> str:
    """How to see a partition's rows of the table ``key`` from a terminal."""
    return (
        f"Rows of a partition: `stock-lakehouse show {short_name(key)} --symbols NVDA "
        "--start 2024-03-04 --end 2024-03-04` (any symbols and dates)."
    )

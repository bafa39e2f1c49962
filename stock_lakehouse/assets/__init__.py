"""The table assets: bronze -> silver -> gold -> BI, all partitioned by (symbol, trading date)."""

import dagster as dg

from stock_lakehouse.assets.bi import build_bi_asset
from stock_lakehouse.assets.bronze import build_bronze_asset
from stock_lakehouse.assets.gold import build_gold_asset
from stock_lakehouse.assets.signals import build_signals_asset
from stock_lakehouse.assets.silver import build_silver_asset
from stock_lakehouse.lakehouse.tables import short_name


def build_table_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The table assets over ``partitions_def``; each description names the path for large backfills (the
    Materialize dialog's preview text cannot be changed from here) and ends with the command that shows a
    partition's rows (the UI has a preview only for runs of up to 20 partitions)."""
    assets = [
        build_bronze_asset(partitions_def),
        build_silver_asset(partitions_def),
        build_gold_asset(partitions_def),
        build_bi_asset(partitions_def),
        build_signals_asset(partitions_def),
    ]
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(
            description=f"{spec.description}\n\n{LARGE_SELECTIONS}\n\n{show_command(spec.key)}"
        ),
        assets,
    )


#: Where users backfill (the asset's Materialize dialog) the faster path must be named: the dialog says
#: "Backfills all partitions in a single run" and makes one run per date (or per symbol), each paying a
#: process and a Spark JVM.
LARGE_SELECTIONS = (
    "Large backfills (many symbols x dates): the Materialize dialog makes one run per date or per symbol. "
    "The `ranged_backfill` job (Jobs > ranged_backfill > Launchpad: symbols, start, end) runs the whole "
    "selection in one run and one Spark session."
)


def show_command(key: dg.AssetKey) -> str:
    """How to see a partition's rows of the table ``key`` from a terminal."""
    return (
        f"Rows of a partition: `stock-lakehouse show {short_name(key)} --symbols NVDA "
        "--start 2024-03-04 --end 2024-03-04` (any symbols and dates)."
    )

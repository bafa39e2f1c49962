"""Asset keys; each key's path is also the table's folder under the lake root."""

import dagster as dg

BRONZE = dg.AssetKey(["bronze", "intraday_bars"])
SILVER = dg.AssetKey(["silver", "stock_clean"])
GOLD = dg.AssetKey(["gold", "daily_kpis"])
BI = dg.AssetKey(["gold", "bi_stock_daily"])

#: Shared by every table asset: one run (one Spark session) per backfill range, kinds for the UI.
TABLE_ASSET_ARGS = {
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "kinds": {"spark", "delta"},
}
PARTITION_EXPR = {"partition_expr": {"symbol": "symbol", "date": "trade_date"}}

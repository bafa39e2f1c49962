"""Operations against real processes: ``dagster dev`` (webserver + daemon), a GraphQL backfill, and
the UI in headless Chromium. Screenshots go to ``docs/``."""

import time
from datetime import date

import dagster as dg
import pytest

from stock_lakehouse.backfill import launch_backfill, wait_backfill
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.partitions import sync_symbols
from stock_lakehouse_tests.services import REPO, chromium, dagster_dev, graphql

pytestmark = pytest.mark.spark

SYMBOLS = ["AAA", "BBB"]
CHECK_STATUSES = """
query {
  assetNodes(assetKeys: [{path: ["silver", "stock_clean"]}]) {
    assetChecksOrError { ... on AssetChecks { checks { name
      partitionStatuses { ... on AssetCheckMultiPartitionStatuses { ranges { primaryDimStartKey primaryDimEndKey
        secondaryDim { __typename ... on AssetCheckDefaultPartitionStatuses {
          succeededPartitions failedPartitions skippedPartitions inProgressPartitions
          executionFailedPartitions } } } } }
    } } }
  }
}"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    home, lake = root / "home", root / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 2\n"
    )
    sync_symbols(dg.DagsterInstance.from_config(str(home)), SYMBOLS)
    env = {
        "STOCK_LAKEHOUSE_CONFIG": str(REPO / "config" / "stock_lakehouse.yaml"),
        "STOCK_LAKEHOUSE_SOURCE": "synthetic",
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(SYMBOLS),
        "STOCK_LAKEHOUSE_LAKE_ROOT": str(lake),
    }
    with dagster_dev(home, env) as url:
        yield url, home, lake


def test_backfill_launched_like_the_ui_runs_on_the_daemon(deployment):
    url, home, lake = deployment
    backfill_id = launch_backfill(f"{url}/graphql", SYMBOLS, date(2024, 3, 4), date(2024, 3, 6), title="e2e")
    status = wait_backfill(f"{url}/graphql", backfill_id, timeout=900)
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
    # 2 symbols x 3 dates with single_run: one run per symbol (the smaller dimension).
    assert len(status["runs"]) == 2 and all(r["status"] == "SUCCESS" for r in status["runs"])
    gold = read_table(str(lake), "gold")
    assert sorted(zip(gold.symbol, gold.trade_date.astype(str), strict=True)) == [
        (s, d) for s in SYMBOLS for d in ("2024-03-04", "2024-03-05", "2024-03-06")
    ]
    instance = dg.DagsterInstance.from_config(str(home))
    silver_keys = instance.get_materialized_partitions(dg.AssetKey(["silver", "stock_clean"]))
    assert len(silver_keys) == 6
    check = dg.AssetCheckKey(dg.AssetKey(["silver", "stock_clean"]), "silver_has_rows")
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    assert latest is not None and latest.status.value == "SUCCEEDED"
    # What the check's Partitions view shows: every partition of the ranged runs passed, none "skipped".
    data = graphql(f"{url}/graphql", CHECK_STATUSES)
    (checks,) = [n["assetChecksOrError"]["checks"] for n in data["assetNodes"]]
    (statuses,) = [c["partitionStatuses"] for c in checks if c["name"] == "silver_has_rows"]
    ranges = []
    for r in statuses["ranges"]:
        per_symbol = {k: v for k, v in r["secondaryDim"].items() if k != "__typename"}
        ranges.append((r["primaryDimStartKey"], r["primaryDimEndKey"], per_symbol))
    assert [(a, b, set(st["succeededPartitions"])) for a, b, st in ranges] == [
        ("2024-03-04", "2024-03-06", set(SYMBOLS))
    ], ranges
    other = [p for _, _, st in ranges for k, v in st.items() if k != "succeededPartitions" for p in v]
    assert not other, statuses


def _dismiss_community_dialog(driver) -> None:
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):
        if button.text.strip() == "Skip":
            button.click()
            time.sleep(0.5)
            return


def _wait_for_text(driver, texts, timeout=60.0) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(t in body for t in texts):
            return body
        time.sleep(1)
    raise AssertionError(f"page never showed {texts}; it shows: {body[:800]}")


def test_ui_shows_the_asset_graph_and_silver_partitions(deployment):
    url, _, _ = deployment
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    with chromium() as driver:
        # The global lineage shows one group per layer; each group's own graph shows its tables.
        driver.get(f"{url}/asset-groups")
        time.sleep(3)
        _dismiss_community_dialog(driver)
        _wait_for_text(driver, ["Global asset lineage", "bronze", "silver", "gold"])
        for group, assets in (
            ("bronze", ["intraday_bars"]),
            ("silver", ["stock_clean"]),
            ("gold", ["daily_kpis", "bi_stock_daily", "signals"]),
        ):
            driver.get(f"{url}/locations/__repository__@stock_lakehouse/asset-groups/{group}")
            time.sleep(3)
            _dismiss_community_dialog(driver)
            _wait_for_text(driver, assets)
        time.sleep(2)
        driver.save_screenshot(str(docs / "ui-asset-graph.png"))  # the gold group
        driver.get(f"{url}/assets/silver/stock_clean?view=partitions")
        time.sleep(3)
        _dismiss_community_dialog(driver)
        # The partitions view counts the 2 symbols x 3 days the backfill materialized.
        _wait_for_text(driver, ["Materialized (6)", "AAA", "BBB"])
        time.sleep(2)
        driver.save_screenshot(str(docs / "ui-silver-partitions.png"))

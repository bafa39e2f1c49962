"""Operations against real processes: ``dagster dev`` (webserver + daemon), a GraphQL backfill, and
the UI in headless Chromium. Screenshots go to the test's temp folder; `make screenshots` puts them in ``docs/``."""

import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from stock_lakehouse.benchmarks.run_costs import run_cost, summarize
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.tables import TABLES, step_name
from stock_lakehouse.partitions import RANGE_END_TAG, RANGE_START_TAG, sync_symbols
from stock_lakehouse.runs.backfill import (
    BackfillError,
    launch_backfill,
    launch_partition_run,
    launch_ranged_backfill,
    launch_schedule_tick,
    wait_backfill,
    wait_run,
)
from stock_lakehouse.runs.instance_home import write_instance_config
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.runs.ranged_runs import RANGED_BACKFILL_TAG
from stock_lakehouse.wiring import LAKEHOUSE_JOB
from stock_lakehouse_tests.services import (
    REPO,
    chromium,
    click_text,
    dagster_dev,
    dismiss_community_dialog,
    graphql,
    lines_after,
    tick_log_showing,
    wait_for_text,
)
from stock_lakehouse_tests.test_quality_gates import day_payload, three_broken_bars

pytestmark = pytest.mark.spark

SYMBOLS = ["AAA", "BBB"]
FRESHNESS_CLOCK = "2024-03-07T18:00:00+00:00"
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
    write_instance_config(home)  # the instance `make dev` makes: two runs at a time, one writer per table
    sync_symbols(dg.DagsterInstance.from_config(str(home)), SYMBOLS)
    env = {
        "STOCK_LAKEHOUSE_CONFIG": str(REPO / "config" / "stock_lakehouse.yaml"),
        "STOCK_LAKEHOUSE_SOURCE": "synthetic",
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(SYMBOLS),
        "STOCK_LAKEHOUSE_LAKE_ROOT": str(lake),
        # The sensors' clock: 13:00 New York on a trading day none of the tests writes (freshness alerts).
        "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC": FRESHNESS_CLOCK,
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
    # The backfill's runs carry the job name the CLI's runs carry.
    assert {instance.get_run_by_id(r["runId"]).job_name for r in status["runs"]} == {LAKEHOUSE_JOB}
    # Each of its runs paid a queue slot, a process with a definitions load and a JVM of its own.
    costs = [run_cost(instance, r["runId"]) for r in status["runs"]]
    for cost in costs:
        assert cost.launch_s > 0 and cost.spark_start_s > 0 and cost.execution_s > cost.spark_start_s, cost
        assert set(cost.steps_s) >= {step_name(t) for t in TABLES} and len(cost.soda_scan_s) == len(TABLES), cost
    assert summarize(costs)["jvms_started"] == 2
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


@pytest.mark.browser
def test_ui_shows_the_asset_graph_and_silver_partitions(deployment, screenshot_dir):
    url, _, _ = deployment
    with chromium() as driver:
        # The global lineage shows one group per layer; each group's own graph shows its tables.
        driver.get(f"{url}/asset-groups")
        time.sleep(3)
        dismiss_community_dialog(driver)
        wait_for_text(driver, ["Global asset lineage", "bronze", "silver", "gold"])
        for group, assets in (
            ("bronze", ["intraday_bars"]),
            ("silver", ["stock_clean"]),
            ("gold", ["daily_kpis", "bi_stock_daily", "signals"]),
        ):
            driver.get(f"{url}/locations/__repository__@stock_lakehouse/asset-groups/{group}")
            time.sleep(3)
            dismiss_community_dialog(driver)
            wait_for_text(driver, assets)
        time.sleep(2)
        driver.save_screenshot(str(screenshot_dir / "ui-asset-graph.png"))  # the gold group
        driver.get(f"{url}/assets/silver/stock_clean?view=partitions")
        time.sleep(3)
        dismiss_community_dialog(driver)
        # The partitions view counts the 2 symbols x 3 days the backfill materialized.
        wait_for_text(driver, ["Materialized (6)", "AAA", "BBB"])
        time.sleep(2)
        driver.save_screenshot(str(screenshot_dir / "ui-silver-partitions.png"))


@pytest.mark.browser
def test_ui_check_pages_agree_per_partition(deployment, spark, tmp_path, monkeypatch, clean_env, screenshot_dir):
    """A CLI run over XYZ x 03-04..06 with 03-04 broken, into the deployment's instance: every check page
    of the UI tells the same story per partition (issues 15 and 25), for warning rules as for blocking ones;
    the withheld partition shows a failed check on gold, BI and signals and is not materialized in gold; the
    check failure alert names only the broken day; the run has the UI's job name."""
    url, home, lake = deployment
    rec = tmp_path / "rec"
    rec.mkdir()
    days = ("2024-03-04", "2024-03-05", "2024-03-06")
    clean = day_payload("XYZ", 60, {}, days)
    (rec / "xyz.json").write_text(day_payload("XYZ", 60, three_broken_bars(clean), days))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ok, summary, error = run_materialize(
        ["XYZ"], date(2024, 3, 4), date(2024, 3, 6),
        {"source": "replay", "replay_dir": str(rec), "lake_root": str(lake)},
    )  # fmt: skip
    assert ok, error
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_run_by_id(summary.runs[0]).job_name == LAKEHOUSE_JOB
    silver = {name: result for name, result in summary.checks.items() if name.startswith("silver_")}
    failed = sorted(name for name, (passed, _, _) in silver.items() if not passed)
    assert "silver_low_not_above_high" in failed and "silver_has_rows" not in failed
    assert silver["silver_low_not_above_high"][2]["failing_partitions"] == ["2024-03-04|XYZ"]
    assert [w for w in summary.withheld if "2024-03-04|XYZ" in w] == summary.withheld != [], summary.withheld

    from selenium.webdriver.common.by import By

    with chromium() as driver:
        # The check failure alert names the broken day only, in its sensor tick's log. First: the daemon ticks
        # every 30 s, and after the pages below (minutes on a busy machine) the alert's tick is no longer among
        # the newest.
        alert = "check silver_invalid_bars on silver/stock_clean failed"
        sensor = f"{url}/locations/__repository__@stock_lakehouse/sensors/check_failure_alerts"
        (line,) = [row for row in tick_log_showing(driver, sensor, alert).splitlines() if alert in row]
        assert "2024-03-04|XYZ" in line and "2024-03-05" not in line and "2024-03-06" not in line, line
        driver.save_screenshot(str(screenshot_dir / "ui-check-failure-alert.png"))
        # The lineage node of silver counts the checks that passed on every partition.
        driver.get(f"{url}/locations/__repository__@stock_lakehouse/asset-groups/silver")
        time.sleep(3)
        dismiss_community_dialog(driver)
        body = wait_for_text(driver, ["Asset checks", f" / {len(silver)} Passed"])  # once loaded
        assert lines_after(body, "Asset checks") == [f"{len(silver) - len(failed)} / {len(silver)} Passed"], body
        # The Checks list: failed where a partition failed, succeeded elsewhere.
        driver.get(f"{url}/assets/silver/stock_clean?view=checks")
        time.sleep(3)
        dismiss_community_dialog(driver)
        body = wait_for_text(driver, [f"Checks ({len(silver)})"])
        for name in ("silver_low_not_above_high", "silver_has_rows"):
            expected = "Failed" if name in failed else "Succeeded"
            assert lines_after(body, name) == [expected], (name, body)
        # The check's detail: "Latest execution" is the evaluation of silver's latest materialization, one
        # partition, named there, with that partition's own result.
        outcome = {"2024-03-04|XYZ": "Failed", "2024-03-05|XYZ": "Passed", "2024-03-06|XYZ": "Passed"}
        click_text(driver, "silver_low_not_above_high")
        body = wait_for_text(driver, ["Latest execution", "Evaluation result"])
        (shown,) = lines_after(body, "Partition")
        assert lines_after(body, "Evaluation result") == [outcome[shown]], body
        # Its execution history: one row per partition, each with its own result.
        click_text(driver, "Execution history")
        body = wait_for_text(driver, list(outcome))
        rows = body.splitlines()
        result_of = {rows[i + 3]: rows[i] for i, row in enumerate(rows) if row in ("Passed", "Failed")}
        assert {k: result_of[k] for k in outcome} == outcome, rows
        driver.save_screenshot(str(screenshot_dir / "ui-check-history.png"))
        # Its Partitions view: the 6 backfilled partitions and XYZ 03-05, 03-06 passed, XYZ 03-04 failed.
        click_text(driver, "Partitions", last=True)
        wait_for_text(driver, ["Failed (1)", "Passed (8)", "Skipped (0)"])
        driver.save_screenshot(str(screenshot_dir / "ui-check-partitions.png"))
        # A warning rule is judged per partition too: only the broken day failed, the clean ones passed.
        driver.get(f"{url}/assets/silver/stock_clean?view=checks")
        time.sleep(3)
        click_text(driver, "silver_invalid_bars")
        wait_for_text(driver, ["Latest execution"])
        click_text(driver, "Partitions", last=True)
        wait_for_text(driver, ["Failed (1)", "Passed (8)", "Skipped (0)"])
        # The withheld day is marked where it is: a failed check on gold, BI and signals.
        for path, check in (
            ("gold/daily_kpis", "gold_partition_withheld"),
            ("gold/bi_stock_daily", "bi_partition_withheld"),
            ("gold/signals", "signals_partition_withheld"),
        ):
            driver.get(f"{url}/assets/{path}?view=checks")
            time.sleep(3)
            body = wait_for_text(driver, [check])
            assert lines_after(body, check) == ["Failed"], (check, body)
        # The withheld day has no rows in gold: recorded as missing there, not materialized (issue 25).
        driver.get(f"{url}/assets/gold/daily_kpis?view=partitions")
        time.sleep(3)
        wait_for_text(driver, ["Materialized (8)"])
        # Selecting a partition of silver shows that partition's own row count beside the run's total.
        driver.get(f"{url}/assets/silver/stock_clean?view=partitions")
        time.sleep(3)
        dismiss_community_dialog(driver)
        wait_for_text(driver, ["Materialized (9)"])
        driver.find_element(By.XPATH, "//input[@placeholder='Filter by date…']").send_keys("2024-03-04")
        time.sleep(2)
        click_text(driver, "2024-03-04")
        click_text(driver, "XYZ", last=True)
        body = wait_for_text(driver, ["2024-03-04|XYZ", "row_count", "partition_status"])
        assert lines_after(body, "row_count") == ["60"] and lines_after(body, "run_row_count") == ["180"], body
        assert lines_after(body, "partition_status") == ["written"], body
        assert lines_after(body, "preview") == ["[Show Markdown]"], body  # 5 rows of the partition
        driver.save_screenshot(str(screenshot_dir / "ui-partition-metadata.png"))
        # The asset's overview shows its column schema (from lakehouse/schemas.py) and how to see its rows.
        driver.get(f"{url}/assets/silver/stock_clean")
        time.sleep(3)
        wait_for_text(driver, ["Columns", "dq_reason", "is_valid", "stock-lakehouse show silver"])


@pytest.mark.browser
def test_ui_shows_a_freshness_alert_in_its_tick_logs(deployment, screenshot_dir):
    """At the deployment's sensor clock (2024-03-07 13:00 New York) the configured symbols have no bar that
    day: the freshness sensor's tick alerts, and the alert's text is readable on the sensor's page."""
    url, _, _ = deployment
    expected = "freshness: AAA: no new bar since the open on 2024-03-07"
    with chromium() as driver:
        driver.get(f"{url}/locations/__repository__@stock_lakehouse/sensors/freshness_alerts")
        time.sleep(3)
        dismiss_community_dialog(driver)
        wait_for_text(driver, ["View logs"], timeout=180)  # the daemon's first tick
        # Newest first: the alert is in the first tick's logs (the cursor then holds the stale symbols).
        click_text(driver, "View logs", last=True)
        wait_for_text(driver, [expected, "freshness: BBB"])
        driver.save_screenshot(str(screenshot_dir / "ui-freshness-tick-logs.png"))


def test_ranged_backfill_from_the_launchpad_is_one_process_and_one_jvm(deployment):
    """The ``ranged_backfill`` job launched with the config its Launchpad sends: one process executes the
    2 x 2 selection as one ranged asset-job run, where the asset backfill above took a run per symbol."""
    url, home, lake = deployment
    cli = str(Path(sys.executable).with_name("stock-lakehouse"))
    args = [
        "backfill",
        "--url",
        url,
        "--ranged",
        "--symbols",
        "CCC,DDD",
        "--start",
        "2024-03-07",
        "--end",
        "2024-03-08",
    ]
    done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].endswith(": SUCCESS"), done.stdout
    run_id = done.stdout.split()[2].rstrip(":")
    instance = dg.DagsterInstance.from_config(str(home))
    ranged = [
        r
        for r in instance.get_runs(dg.RunsFilter(job_name=LAKEHOUSE_JOB))
        if r.tags.get(RANGE_START_TAG) == "2024-03-07|CCC"
    ]
    assert len(ranged) == 1 and ranged[0].tags[RANGE_END_TAG] == "2024-03-08|DDD", ranged
    # Tagged with the run that launched it (the Runs list's filter), not as the CLI's.
    assert ranged[0].tags[RANGED_BACKFILL_TAG] == run_id and "stock_lakehouse/cli" not in ranged[0].tags
    assert ranged[0].status == dg.DagsterRunStatus.SUCCESS
    gold = read_table(str(lake), "gold")
    assert sorted((s, str(d)) for s, d in zip(gold.symbol, gold.trade_date, strict=True) if s in ("CCC", "DDD")) == [
        (s, d) for s in ("CCC", "DDD") for d in ("2024-03-07", "2024-03-08")
    ]
    # Every partition is recorded as materialized, as after any backfill.
    silver = instance.get_materialized_partitions(dg.AssetKey(["silver", "stock_clean"]))
    assert {"2024-03-07|CCC", "2024-03-08|DDD"} <= {str(k) for k in silver}
    costs = summarize([run_cost(instance, run_id), run_cost(instance, ranged[0].run_id)])
    assert costs["jvms_started"] == 1 and costs["steps_s"][step_name("silver")] > 0, costs


TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on PythonError { message } ... on TerminateRunFailure { message } }
}"""
PARTITION_STATS = """
query Stats($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) { assetKey { path } partitionStats { numMaterialized numFailed numMaterializing } }
}"""


def test_terminating_ranged_backfill_cancels_its_inner_run(deployment):
    """Terminate from the UI (its GraphQL mutation) while the inner run executes: both runs end CANCELED,
    and the partitions the inner run had not written are not marked Failed."""
    url, home, lake = deployment
    keys = [{"path": list(TABLES[t])} for t in ("bronze", "silver", "gold")]

    def failed_partitions() -> dict[str, int]:
        nodes = graphql(f"{url}/graphql", PARTITION_STATS, {"keys": keys})["assetNodes"]
        assert all(n["partitionStats"]["numMaterializing"] == 0 for n in nodes), nodes
        return {"/".join(n["assetKey"]["path"]): n["partitionStats"]["numFailed"] for n in nodes}

    failed_before = failed_partitions()
    outer = launch_ranged_backfill(f"{url}/graphql", ["EEE", "FFF"], date(2024, 4, 1), date(2024, 4, 12))
    instance = dg.DagsterInstance.from_config(str(home))
    inner = None
    deadline = time.monotonic() + 600
    while inner is None and time.monotonic() < deadline:
        for run in instance.get_runs(dg.RunsFilter(job_name=LAKEHOUSE_JOB, tags={RANGE_START_TAG: "2024-04-01|EEE"})):
            steps = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
            if any(r.event_log_entry.step_key == step_name("silver") for r in steps):
                inner = run.run_id  # bronze written, silver executing
        time.sleep(0.5)
    assert inner, "the inner run never reached its silver step"
    asked = time.monotonic()
    assert graphql(f"{url}/graphql", TERMINATE, {"runId": outer})["terminateRun"]["__typename"] == (
        "TerminateRunSuccess"
    )
    assert wait_run(f"{url}/graphql", outer, timeout=300) == "CANCELED"
    assert wait_run(f"{url}/graphql", inner, timeout=120) == "CANCELED"
    assert time.monotonic() - asked < 120
    failures = instance.get_records_for_run(inner, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert not failures, [r.event_log_entry.message for r in failures]
    assert failed_partitions() == failed_before
    # What was written before the termination stays recorded: bronze has the 20 partitions of the range.
    bronze = instance.get_materialized_partitions(dg.AssetKey(list(TABLES["bronze"])))
    assert {f"2024-04-{d:02d}|{s}" for d in (1, 12) for s in ("EEE", "FFF")} <= {str(k) for k in bronze}


def test_one_partition_launched_as_a_click_materializes_every_table_with_its_checks(deployment):
    """What the bench's ``ui_single_partition`` times: one (symbol, date) of every table, launched with a
    partition's tags as the asset graph's Materialize does, is a run of that partition with its checks."""
    url, home, lake = deployment
    run_id = launch_partition_run(f"{url}/graphql", "AAA", date(2024, 3, 11))
    assert wait_run(f"{url}/graphql", run_id, timeout=600) == "SUCCESS"
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_run_by_id(run_id).tags["dagster/partition"] == "2024-03-11|AAA"
    for table in TABLES:
        keys = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(list(TABLES[table])))}
        assert "2024-03-11|AAA" in keys, table
    checks = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    assert len(checks) >= len(TABLES), len(checks)
    gold = read_table(str(lake), "gold")
    assert list(gold[gold.trade_date == date(2024, 3, 11)].symbol) == ["AAA"]


def test_an_intraday_tick_launched_as_test_schedule_refreshes_that_day_of_every_symbol(deployment):
    """What the bench's ``intraday_tick_daemon`` times: the intraday schedule evaluated at 14:00 New York on a
    trading day (the UI's Test schedule) asks for that day of both symbols in one ranged run; launched, the
    daemon runs it and gold holds both."""
    url, home, lake = deployment
    when = datetime(2024, 3, 12, 14, 0, tzinfo=ZoneInfo("America/New_York"))
    run_ids = launch_schedule_tick(f"{url}/graphql", "intraday_refresh", when, LAKEHOUSE_JOB)
    assert len(run_ids) == 1  # AAA and BBB are neighbours: one ranged run
    assert wait_run(f"{url}/graphql", run_ids[0], timeout=600) == "SUCCESS"
    run = dg.DagsterInstance.from_config(str(home)).get_run_by_id(run_ids[0])
    assert run.tags["stock_lakehouse/refresh"] == "intraday"
    gold = read_table(str(lake), "gold")
    assert sorted(gold[gold.trade_date == date(2024, 3, 12)].symbol) == SYMBOLS
    with pytest.raises(BackfillError, match="requested nothing .*outside the session"):
        launch_schedule_tick(f"{url}/graphql", "intraday_refresh", when.replace(hour=20), LAKEHOUSE_JOB)

"""Schedules and sensors driven through time (evaluation times, cursors), alerts to a real webhook."""

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse.automation.alerts import AlertSink
from stock_lakehouse.automation.anomalies import find_anomalies
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.partitions import sync_symbols
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import LAKEHOUSE_JOB, build_definitions, lakehouse_job
from stock_lakehouse_tests.services import WebhookReceiver

NY = ZoneInfo("America/New_York")


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


@pytest.fixture()
def defs(lake, clean_env):
    return build_definitions(
        load_settings(overrides={"symbols": "AAA,BBB", "lake_root": str(lake), "source": "synthetic"})
    )


@pytest.fixture()
def receiver():
    with WebhookReceiver() as r:
        yield r


def evaluate_schedule(defs, name, when, instance):
    schedule = defs.resolve_schedule_def(name)
    clock = {"clock": defs.resources["clock"]}
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=clock) as context:
        result = schedule(context)
    return result if isinstance(result, list) else []


def test_intraday_schedule_follows_the_nyse_calendar(defs, dagster_home):
    instance = dg.DagsterInstance.get()
    sync_symbols(instance, ["AAA", "BBB"])
    cases = {
        ny(2024, 11, 23, 10, 0): 0,  # Saturday
        ny(2024, 11, 27, 8, 0): 0,  # before the open
        ny(2024, 11, 27, 10, 0): 1,
        ny(2024, 11, 27, 16, 15): 1,  # one refresh right after the close
        ny(2024, 11, 27, 16, 30): 0,
        ny(2024, 11, 28, 10, 0): 0,  # Thanksgiving
        ny(2024, 11, 29, 12, 45): 1,
        ny(2024, 11, 29, 13, 15): 1,  # early close at 13:00, last refresh
        ny(2024, 11, 29, 13, 30): 0,
    }
    for when, expected in cases.items():
        requests = evaluate_schedule(defs, "intraday_refresh", when, instance)
        assert len(requests) == expected, when
    (req,) = evaluate_schedule(defs, "intraday_refresh", ny(2024, 11, 29, 12, 45), instance)
    assert req.tags["dagster/asset_partition_range_start"] == "2024-11-29|AAA"
    assert req.tags["dagster/asset_partition_range_end"] == "2024-11-29|BBB"
    assert len(evaluate_schedule(defs, "end_of_day", ny(2024, 11, 28, 20, 15), instance)) == 0
    assert len(evaluate_schedule(defs, "end_of_day", ny(2024, 11, 29, 20, 15), instance)) == 1
    # Scheduled runs are runs of the job the UI launches (one job name however a run starts).
    for name in ("intraday_refresh", "end_of_day"):
        assert defs.resolve_schedule_def(name).job_name == lakehouse_job(defs).name == LAKEHOUSE_JOB == "__ASSET_JOB"


def freshness(defs, receiver, when, cursor):
    sensor = defs.resolve_sensor_def("freshness_alerts")
    ctx = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "alerts": AlertSink(webhook_url=receiver.url),
            "clock": Clock(fixed_utc=when.isoformat()),
            "lake": defs.resources["lake"],
        },
    )
    sensor(ctx)
    return ctx.cursor


@pytest.mark.spark
def test_freshness_alerts_once_resolves_once_and_sleeps_when_closed(spark, defs, lake, dagster_home, receiver):
    job = lakehouse_job(defs)
    instance = dg.DagsterInstance.get()
    sync_symbols(instance, ["AAA", "BBB"])
    # A scheduled request is a runnable run: AAA's data for 11-27 arrives through it.
    (req,) = evaluate_schedule(defs, "intraday_refresh", ny(2024, 11, 27, 10, 0), instance)
    aaa_only = {**req.tags, "dagster/asset_partition_range_end": "2024-11-27|AAA"}
    assert job.execute_in_process(instance=instance, tags=aaa_only).success

    cursor = freshness(defs, receiver, ny(2024, 11, 27, 10, 30), None)
    assert receiver.kinds() == ["freshness"] and "BBB" in receiver.messages[0]["text"]
    cursor = freshness(defs, receiver, ny(2024, 11, 27, 10, 45), cursor)  # still stale: no repeat
    assert len(receiver.messages) == 1

    assert job.execute_in_process(instance=instance, tags=req.tags).success  # BBB arrives
    cursor = freshness(defs, receiver, ny(2024, 11, 27, 11, 0), cursor)
    assert receiver.kinds() == ["freshness", "freshness_resolved"] and "BBB" in receiver.messages[1]["text"]

    for closed in (ny(2024, 11, 28, 11, 0), ny(2024, 11, 30, 11, 0), ny(2024, 11, 29, 13, 30), ny(2024, 11, 29, 9, 45)):
        cursor = freshness(defs, receiver, closed, cursor)  # holiday, Saturday, after the early close, too early
    assert len(receiver.messages) == 2
    freshness(defs, receiver, ny(2024, 11, 29, 12, 0), cursor)  # no data at all for 11-29 yet
    assert receiver.kinds()[2:] == ["freshness", "freshness"]


@pytest.mark.spark
def test_a_failing_rule_and_a_failed_run_each_alert_once(spark, defs, lake, dagster_home, receiver, tmp_path):
    from stock_lakehouse_tests.conftest import NVDA_SAMPLE

    rec = tmp_path / "rec"
    rec.mkdir()
    doc = json.loads(NVDA_SAMPLE.read_text())
    series = doc["Time Series (1min)"]
    series["2024-03-04 10:02:00"]["5. volume"] = "-500"  # a bad bar: with a zero share the day is withheld
    series["2024-03-04 25:99:00"] = series.pop("2024-03-04 10:03:00")  # no time: a table rule blocks the run
    (rec / "bad.json").write_text(json.dumps(doc))
    ok, summary, _ = run_materialize(
        ["NVDA"],
        date(2024, 3, 4),
        date(2024, 3, 4),
        {"lake_root": str(lake), "source": "replay", "replay_dir": str(rec), "quality.max_invalid_share": 0.0},
    )
    assert not ok
    failed = sorted(n for n, c in summary.checks.items() if not c[0])
    assert {"silver_volume_not_negative", "silver_ts_parsed"} <= set(failed)

    instance = dg.DagsterInstance.get()
    sink = {"alerts": AlertSink(webhook_url=receiver.url)}
    check_sensor = defs.resolve_sensor_def("check_failure_alerts")
    ctx = dg.build_sensor_context(instance=instance, resources=sink)
    check_sensor(ctx)
    check_sensor(dg.build_sensor_context(instance=instance, cursor=ctx.cursor, resources=sink))  # nothing new
    texts = [m["text"] for m in receiver.messages]
    assert receiver.kinds() == ["check_failure"] * len(failed)
    for name in failed:
        assert sum(f"check {name} " in t for t in texts) == 1
    assert any("ERROR check silver_ts_parsed" in t and "measured 1" in t for t in texts)
    (volume,) = [t for t in texts if "check silver_volume_not_negative " in t]
    assert "ERROR" in volume and "measured 1" in volume and "withheld ['2024-03-04|NVDA: 1 of 960 bars" in volume

    (run,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    failure = next(
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    run_sensor = defs.resolve_sensor_def("run_failure_alerts")
    rctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources=sink,
    ).for_run_failure()
    before = len(receiver.messages)
    run_sensor(rctx)
    assert receiver.kinds()[before:] == ["run_failure"]
    assert run.run_id[:8] in receiver.messages[-1]["text"]


def test_anomaly_rules():
    bi = pd.DataFrame(
        {
            "symbol": ["A", "A", "A", "B"],
            "trade_date": [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 6)],
            "close": [100.0, 109.0, 110.0, 50.0],
            "prev_close": [None, 100.0, 109.0, None],
            "price_change_pct": [None, 9.0, 0.9174, None],
            "volume": [1000, 1000, 10000, 500],
            "volume_7d_avg": [1000.0, 1000.0, 4000.0, 500.0],
        }
    )
    keys = [a.key for a in find_anomalies(bi, price_change_pct=8, volume_multiple=2)]
    assert keys == ["anomaly:A:2024-03-05:price_change", "anomaly:A:2024-03-06:volume"]
    assert find_anomalies(bi, price_change_pct=10, volume_multiple=3) == []


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"symbols": ["AAA", "X') OR 1=1 --"], "start": "2024-03-04"}, '"X\') OR 1=1 --"'),
        ({"symbols": ["../../etc"], "start": "2024-03-04"}, "'../../etc'"),
        ({"symbols": ["AAA"], "start": "2024-03-04' OR '1'='1"}, "start \"2024-03-04' OR '1'='1\""),
        ({"symbols": ["AAA"], "start": "2024-03-05", "end": "2024-03-04"}, "start 2024-03-05 is after end 2024-03-04"),
    ],
)
def test_ranged_backfill_refuses_hostile_launchpad_config_before_touching_anything(defs, lake, config, named):
    """The Launchpad's config is outside input: a bad symbol or date fails the run naming it, and no
    partition is registered and no table written."""
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ranged_backfill").execute_in_process(
        instance=instance,
        run_config={"ops": {"materialize_ranges": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert named in message.splitlines()[0], message
    assert instance.get_dynamic_partitions("symbols") == [] and not lake.exists()


def test_ranged_backfill_refuses_a_selection_over_the_cap_before_any_spark(defs, lake, monkeypatch):
    """3 years of 2 symbols asks for confirm_large: refused in the step's first lines, no JVM started (the
    test process has none, and has none after), nothing registered or written; confirmed, it proceeds to
    the run service (which then refuses dates before partitions_start, also before any Spark)."""
    from pyspark import SparkContext

    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_RANGED_BACKFILL_MAX_PARTITIONS", "1500")
    job = defs.resolve_job_def("ranged_backfill")
    instance = dg.DagsterInstance.ephemeral()
    config = {"symbols": ["AAA", "BBB"], "start": "2021-01-04", "end": "2023-12-29"}
    had_jvm = SparkContext._active_spark_context is not None
    result = job.execute_in_process(
        instance=instance, run_config={"ops": {"materialize_ranges": {"config": config}}}, raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    first = failure.step_failure_data.error.message.splitlines()[0]
    assert "1,560 partitions (2 symbol(s) x 2021-01-04..2023-12-29)" in first, first  # 156 weeks x 5 x 2
    assert "ranged_backfill_max_partitions=1,500: set confirm_large: true" in first, first
    assert (SparkContext._active_spark_context is not None) == had_jvm
    assert instance.get_dynamic_partitions("symbols") == [] and not lake.exists()
    confirmed = {**config, "end": "2999-01-01", "confirm_large": True}
    result = job.execute_in_process(
        instance=instance, run_config={"ops": {"materialize_ranges": {"config": confirmed}}}, raise_on_error=False
    )
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "is before partitions_start" in failure.step_failure_data.error.message  # past the cap

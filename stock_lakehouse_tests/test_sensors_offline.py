"""Every sensor and schedule of the definitions, evaluated the way the daemon evaluates a tick (``evaluate_tick``
on a built context) against a prepared instance and lake: no webserver, no daemon, no JVM.

Each test drives the cursor and asserts what a tick produces (run requests, partition requests, skip reasons,
alerts to a webhook on loopback): a sensor or schedule that silently skips turns it red. Tables are written
with delta-rs, which is how the sensors read them (``Lake.read``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from stock_lakehouse.assets.keys import BI, SILVER
from stock_lakehouse.automation.alerts import AlertSink
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.tables import TABLES
from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, BarPartition, sync_symbols
from stock_lakehouse.quality.partition_results import Outcome, emit
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import LAKEHOUSE_JOB, build_definitions
from stock_lakehouse_tests.services import WebhookReceiver

NY = ZoneInfo("America/New_York")

#: The sensors and schedules this module tests; ``recover_dead_runs`` is tested in test_faults_recovery.py.
TESTED_HERE = {
    "sync_configured_symbols",
    "freshness_alerts",
    "run_failure_alerts",
    "check_failure_alerts",
    "bi_anomaly_alerts",
    "intraday_refresh",
    "end_of_day",
    "weekly_delta_maintenance",
}
TESTED_ELSEWHERE = {"recover_dead_runs"}


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


@pytest.fixture()
def defs(lake, clean_env):
    overrides = {
        "symbols": "AAA,BBB",
        "lake_root": str(lake),
        "source": "synthetic",
        "interval": "1min",
        "automation.freshness_max_lag_minutes": 30,
        "automation.anomaly_price_change_pct": 8.0,
        "automation.anomaly_volume_multiple": 3.0,
    }
    return build_definitions(load_settings(overrides=overrides))


@pytest.fixture()
def instance(dagster_home):
    """The instance a deployment of this project uses (its dagster.yaml: our event log storage)."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture()
def receiver():
    with WebhookReceiver() as r:
        yield r


def tick(defs, name: str, instance=None, cursor: str | None = None, **resources) -> dg.SensorExecutionData:
    """One evaluation of sensor ``name``, as the daemon makes it."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=defs.get_repository_def(), resources=resources or None
    )
    return defs.resolve_sensor_def(name).evaluate_tick(context)


def schedule_tick(defs, name: str, instance, when: datetime) -> dg.ScheduleExecutionData:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
        resources={"clock": defs.resources["clock"]},
    ) as context:
        return defs.resolve_schedule_def(name).evaluate_tick(context)


def append_rows(lake: Lake, table: str, df: pd.DataFrame) -> None:
    write_deltalake(
        lake.table_uri(table),
        pa.Table.from_pandas(df, preserve_index=False),
        partition_by=["symbol", "trade_date"],
        mode="append",
    )


def test_every_sensor_and_schedule_has_a_server_free_test(defs):
    names = {s.name for s in defs.sensors or []} | {s.name for s in defs.schedules or []}
    assert names == TESTED_HERE | TESTED_ELSEWHERE, "a new sensor or schedule needs a test here"


# ---------------------------------------------------------------- symbols


def test_symbol_sync_adds_missing_configured_symbols_once_and_keeps_the_uis(defs, instance):
    first = tick(defs, "sync_configured_symbols", instance)
    (request,) = first.dynamic_partitions_requests
    assert request.partitions_def_name == SYMBOLS_PARTITIONS_NAME and list(request.partition_keys) == ["AAA", "BBB"]
    # The daemon applies the request; a symbol added from the UI meanwhile is kept, a removed one comes back.
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["AAA", "ZZZ"])
    second = tick(defs, "sync_configured_symbols", instance)
    (request,) = second.dynamic_partitions_requests
    assert list(request.partition_keys) == ["BBB"]
    assert all(isinstance(r, dg.AddDynamicPartitionsRequest) for r in second.dynamic_partitions_requests)
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["BBB"])
    done = tick(defs, "sync_configured_symbols", instance)
    assert not done.dynamic_partitions_requests and done.skip_message == "all configured symbols are partitions"
    assert instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME) == ["AAA", "ZZZ", "BBB"]


def test_symbol_sync_reads_the_config_file_at_every_tick(tmp_path, clean_env, monkeypatch, instance):
    """A symbol added to the code location's config file becomes a partition at the next tick, without
    "Reload definitions": the definitions the daemon loaded once re-read the file."""
    from stock_lakehouse.wiring import build_definitions

    config = tmp_path / "stock_lakehouse.yaml"
    config.write_text(f"symbols: [AAA]\nlake_root: {tmp_path / 'lake'}\nsource: synthetic\n")
    monkeypatch.setenv("STOCK_LAKEHOUSE_CONFIG", str(config))
    loaded = build_definitions()  # as definitions.py does: the code location's own config
    (request,) = tick(loaded, "sync_configured_symbols", instance).dynamic_partitions_requests
    assert list(request.partition_keys) == ["AAA"]
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["AAA"])
    config.write_text(config.read_text().replace("[AAA]", "[AAA, NEWCO]"))
    (request,) = tick(loaded, "sync_configured_symbols", instance).dynamic_partitions_requests
    assert list(request.partition_keys) == ["NEWCO"]


# ---------------------------------------------------------------- freshness


def silver_bars(*bars: tuple[str, datetime], valid: bool = True) -> pd.DataFrame:
    rows = [(sym, at.astimezone(NY).date(), at.astimezone(UTC).replace(tzinfo=None)) for sym, at in bars]
    return pd.DataFrame(rows, columns=["symbol", "trade_date", "ts_utc"]).assign(is_valid=valid)


def test_freshness_alerts_once_resolves_once_and_sleeps_outside_the_session(defs, receiver):
    lake = defs.resources["lake"]
    alerts = AlertSink(webhook_url=receiver.url)

    def at(when: datetime, cursor: str | None) -> dg.SensorExecutionData:
        clock = Clock(fixed_utc=when.isoformat())
        return tick(defs, "freshness_alerts", cursor=cursor, alerts=alerts, clock=clock, lake=lake)

    # No silver table yet: every symbol is late since the open (not an error, not "all fine").
    first = at(ny(2024, 11, 27, 10, 30), None)
    assert receiver.kinds() == ["freshness", "freshness"]
    assert [m["text"].split(":")[0] for m in receiver.messages] == ["AAA", "BBB"]
    assert "no new bar since the open on 2024-11-27, 60 min behind (limit 30 min)" in receiver.messages[0]["text"]
    assert first.skip_message == "2 alert(s); stale now: ['AAA', 'BBB']"

    # AAA's bars arrive; BBB has an old valid bar, a newer invalid one and a fresh bar of another day.
    append_rows(lake, "silver", silver_bars(("AAA", ny(2024, 11, 27, 9, 30)), ("AAA", ny(2024, 11, 27, 10, 25))))
    append_rows(lake, "silver", silver_bars(("BBB", ny(2024, 11, 27, 9, 35)), ("BBB", ny(2024, 11, 26, 15, 59))))
    append_rows(lake, "silver", silver_bars(("BBB", ny(2024, 11, 27, 10, 29)), valid=False))
    second = at(ny(2024, 11, 27, 10, 31), first.cursor)
    assert receiver.kinds()[2:] == ["freshness_resolved"]
    assert receiver.messages[2]["text"] == "AAA: data is fresh again (newest bar 15:25 UTC)"
    assert second.skip_message == "1 alert(s); stale now: ['BBB']"
    third = at(ny(2024, 11, 27, 10, 45), second.cursor)  # BBB still stale: no repeat
    assert len(receiver.messages) == 3 and third.skip_message == "0 alert(s); stale now: ['BBB']"

    append_rows(lake, "silver", silver_bars(("BBB", ny(2024, 11, 27, 10, 40))))
    fourth = at(ny(2024, 11, 27, 10, 50), third.cursor)
    assert receiver.kinds()[3:] == ["freshness_resolved"] and receiver.messages[3]["text"].startswith("BBB:")
    assert fourth.skip_message == "1 alert(s); stale now: none"
    # AAA's newest bar (10:25, one minute long) is 34 min old at 11:00: stale again, a new alert.
    fifth = at(ny(2024, 11, 27, 11, 0), fourth.cursor)
    assert receiver.kinds()[4:] == ["freshness"]
    assert receiver.messages[4]["text"] == "AAA: no new bar since 15:25 UTC on 2024-11-27, 34 min behind (limit 30 min)"

    # Outside the checked session nothing is read or sent, and the cursor (AAA stale) is kept.
    closed = {
        ny(2024, 11, 28, 11, 0): "market closed on 2024-11-28",  # Thanksgiving
        ny(2024, 11, 30, 11, 0): "market closed on 2024-11-30",  # Saturday
        ny(2024, 11, 29, 13, 30): "outside the checked part of the session",  # after the 13:00 early close
        ny(2024, 11, 29, 9, 45): "outside the checked part of the session",  # before the open + 30 min
    }
    for when, reason in closed.items():
        quiet = at(when, fifth.cursor)
        assert quiet.skip_message == reason and quiet.cursor == fifth.cursor, when
    assert len(receiver.messages) == 5


# ---------------------------------------------------------------- run and check failures


def test_run_failure_alerts_name_the_run_its_job_and_the_cause(defs, instance, receiver):
    @dg.op
    def write_gold():
        raise RuntimeError("No space left on device\nwhile writing gold/daily_kpis")

    @dg.job(name=LAKEHOUSE_JOB)
    def job():
        write_gold()

    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    sensor = defs.resolve_sensor_def("run_failure_alerts")
    assert isinstance(sensor, dg.RunStatusSensorDefinition) and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"alerts": AlertSink(webhook_url=receiver.url)},
    ).for_run_failure()
    sensor(context)
    (message,) = receiver.messages
    assert message["kind"] == "run_failure" and message["key"] == f"run:{run.run_id}"
    assert message["text"].startswith(f"Run {run.run_id[:8]} of {LAKEHOUSE_JOB} failed: ")
    assert "write_gold" in message["text"] and "\n" not in message["text"]
    # The first failed step's own cause, and the partitions (none: the job is not partitioned).
    assert "step write_gold: No space left on device" in message["text"], message["text"]
    assert message["text"].endswith("; partitions -"), message["text"]


def test_run_failure_alerts_name_the_partitions_from_the_run_tags():
    from stock_lakehouse.automation.sensors import run_partitions
    from stock_lakehouse.partitions import RANGE_END_TAG, RANGE_START_TAG

    ranged = {RANGE_START_TAG: "2024-03-04|AAA", RANGE_END_TAG: "2024-03-08|AAA"}
    assert run_partitions(dg.DagsterRun(job_name="j", tags=ranged)) == "2024-03-04|AAA..2024-03-08|AAA"
    assert run_partitions(dg.DagsterRun(job_name="j", tags={"dagster/partition": "2024-03-04|AAA"})) == (
        "2024-03-04|AAA"
    )


def run_silver_checks(instance, outcomes: dict[str, dict[BarPartition, Outcome]]) -> str:
    """A run evaluating silver's checks ``outcomes`` (one evaluation per partition, as the Soda step does);
    its run id. The asset stands in for silver: the sensor reads check records, not tables."""
    specs = [dg.AssetCheckSpec(name, asset=SILVER) for name in outcomes]

    @dg.asset(key=SILVER)
    def silver() -> None:
        return None

    @dg.multi_asset_check(specs=specs)
    def soda():
        for spec in specs:
            per_partition = outcomes[spec.name]
            yield from emit(spec, Outcome(all(o.passed for o in per_partition.values())), per_partition, {})

    result = dg.materialize([silver, soda], instance=instance)
    return result.run_id


def test_check_failures_alert_once_per_check_and_run_naming_the_partitions(defs, instance, receiver):
    d4, d5, d6 = (BarPartition("XYZ", date(2024, 3, day)) for day in (4, 5, 6))
    sink = {"alerts": AlertSink(webhook_url=receiver.url)}

    def negative_volume(count: int, withheld: bool = False) -> Outcome:
        meta = {"soda_value": count, "scope": "partition"}
        if withheld:
            meta["withheld_partitions"] = [f"{BarPartition('XYZ', date(2024, 3, 4)).key}: 1 of 60 bars"]
        return Outcome(count == 0, dg.AssetCheckSeverity.ERROR, meta)

    empty = tick(defs, "check_failure_alerts", instance, **sink)  # nothing evaluated yet
    assert empty.skip_message == "0 check failure alert(s)" and receiver.messages == []

    # One run: two partitions fail one rule (one alert naming both), a third passes; another rule passes.
    first_run = run_silver_checks(
        instance,
        {
            "silver_volume_not_negative": {
                d4: negative_volume(1, withheld=True),
                d5: negative_volume(2),
                d6: negative_volume(0),
            },
            "silver_close_present": {d4: Outcome(True), d5: Outcome(True), d6: Outcome(True)},
        },
    )
    first = tick(defs, "check_failure_alerts", instance, empty.cursor, **sink)
    assert first.skip_message == "1 check failure alert(s)"
    (message,) = receiver.messages
    assert message["kind"] == "check_failure"
    assert message["key"] == f"check:silver/stock_clean:silver_volume_not_negative:{first_run}"
    assert message["text"] == (
        "ERROR check silver_volume_not_negative on silver/stock_clean failed: measured 3; "
        "partitions ['2024-03-04|XYZ', '2024-03-05|XYZ']; withheld ['2024-03-04|XYZ: 1 of 60 bars']"
    )
    again = tick(defs, "check_failure_alerts", instance, first.cursor, **sink)  # nothing new: no repeat
    assert again.skip_message == "0 check failure alert(s)" and len(receiver.messages) == 1

    # A passing run alerts nothing; a later failing one (a WARN rule) alerts once more.
    run_silver_checks(instance, {"silver_volume_not_negative": {d4: negative_volume(0)}})
    warn = Outcome(False, dg.AssetCheckSeverity.WARN, {"soda_value": 1, "scope": "partition"})
    run_silver_checks(instance, {"silver_close_present": {d6: warn}})
    last = tick(defs, "check_failure_alerts", instance, again.cursor, **sink)
    assert last.skip_message == "1 check failure alert(s)"
    assert receiver.messages[1]["text"].startswith(
        "WARN check silver_close_present on silver/stock_clean failed: measured 1; partitions ['2024-03-06|XYZ']"
    )
    assert tick(defs, "check_failure_alerts", instance, last.cursor, **sink).skip_message == "0 check failure alert(s)"
    assert len(receiver.messages) == 2


# ---------------------------------------------------------------- BI anomalies


def test_bi_anomalies_alert_for_newly_materialized_partitions_once(defs, instance, receiver):
    lake = defs.resources["lake"]
    days = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
    bi = pd.DataFrame(
        {
            "symbol": ["AAA"] * 3 + ["BBB"] * 3,
            "trade_date": days * 2,
            "close": [100.0, 111.0, 111.5, 50.0, 50.5, 50.0],
            "prev_close": [None, 100.0, 111.0, None, 50.0, 50.5],
            "price_change_pct": [None, 11.0, 0.45, None, 1.0, -0.99],
            "volume": [1000, 1100, 1000, 1000, 5000, 1000],
            "volume_7d_avg": [1000.0, 1050.0, 1033.3, 1000.0, 1000.0, 1000.0],
        }
    )
    append_rows(lake, "bi", bi)
    resources = {"alerts": AlertSink(webhook_url=receiver.url), "lake": lake}

    def materialized(symbol: str, day: date) -> None:
        key = str(BarPartition(symbol, day).key)
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=BI, partition=key))

    idle = tick(defs, "bi_anomaly_alerts", instance, **resources)
    assert idle.skip_message == "no new BI materializations" and idle.cursor is None

    for day in days:
        materialized("AAA", day)  # BBB's anomalous row is in the table but not (yet) materialized
    first = tick(defs, "bi_anomaly_alerts", instance, idle.cursor, **resources)
    assert first.skip_message == "1 anomaly alert(s)"
    assert [m["key"] for m in receiver.messages] == ["anomaly:AAA:2024-03-05:price_change"]
    assert receiver.messages[0]["text"].startswith("AAA 2024-03-05: close 111.00 is +11.00 % from the previous close")

    quiet = tick(defs, "bi_anomaly_alerts", instance, first.cursor, **resources)
    assert quiet.skip_message == "no new BI materializations"
    materialized("AAA", days[1])  # re-materialized: the same condition, no repeat
    repeat = tick(defs, "bi_anomaly_alerts", instance, quiet.cursor or first.cursor, **resources)
    assert repeat.skip_message == "0 anomaly alert(s)" and len(receiver.messages) == 1

    materialized("BBB", days[1])
    last = tick(defs, "bi_anomaly_alerts", instance, repeat.cursor, **resources)
    assert last.skip_message == "1 anomaly alert(s)"
    assert receiver.messages[1]["key"] == "anomaly:BBB:2024-03-05:volume"
    assert "volume 5,000 is 5.0x its 7-day average 1,000 (threshold 3x)" in receiver.messages[1]["text"]


# ---------------------------------------------------------------- schedules


def test_intraday_and_end_of_day_say_why_they_skip_and_split_runs_at_ui_symbols(defs, instance):
    assert schedule_tick(defs, "intraday_refresh", instance, ny(2024, 11, 27, 10, 0)).skip_message == (
        "no symbol partitions"
    )
    # A symbol added from the UI between the configured ones: a run over AAA..BBB would sweep it in.
    sync_symbols(instance, ["AAA"])
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["MID"])
    sync_symbols(instance, ["BBB"])
    skipped = {
        ny(2024, 11, 23, 10, 0): "market closed on 2024-11-23",
        ny(2024, 11, 28, 10, 0): "market closed on 2024-11-28",
        ny(2024, 11, 27, 8, 0): "outside the session (14:30-21:00 UTC)",
        ny(2024, 11, 29, 13, 30): "outside the session (14:30-18:00 UTC)",
    }
    for when, reason in skipped.items():
        data = schedule_tick(defs, "intraday_refresh", instance, when)
        assert not data.run_requests and data.skip_message == reason, when
    data = schedule_tick(defs, "intraday_refresh", instance, ny(2024, 11, 29, 12, 45))
    assert [r.partition_key for r in data.run_requests] == ["2024-11-29|AAA", "2024-11-29|BBB"]
    assert [r.run_key for r in data.run_requests] == ["intraday-20241129T1245-0", "intraday-20241129T1245-1"]
    assert {r.tags["stock_lakehouse/refresh"] for r in data.run_requests} == {"intraday"}

    assert schedule_tick(defs, "end_of_day", instance, ny(2024, 11, 28, 20, 15)).skip_message == "market closed today"
    eod = schedule_tick(defs, "end_of_day", instance, ny(2024, 11, 29, 20, 15)).run_requests
    assert [(r.partition_key, r.tags["stock_lakehouse/refresh"]) for r in eod] == [
        ("2024-11-29|AAA", "end_of_day"),
        ("2024-11-29|BBB", "end_of_day"),
    ]


def test_a_tick_while_a_refresh_run_is_unfinished_is_skipped_naming_it(defs, instance):
    from stock_lakehouse.automation.schedules import REFRESH_TAG

    sync_symbols(instance, ["AAA", "BBB"])
    when = ny(2024, 11, 29, 12, 45)
    other = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags={"dagster/backfill": "b1"})
    instance.add_run(other)  # a backfill's run is no refresh: it waits for the writer pools, not for the schedule
    assert len(schedule_tick(defs, "intraday_refresh", instance, when).run_requests) == 1
    busy = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags={REFRESH_TAG: "intraday"})
    instance.add_run(busy)
    data = schedule_tick(defs, "intraday_refresh", instance, when)
    assert not data.run_requests
    assert data.skip_message == (
        f"tick of 17:45:00 UTC skipped: refresh run {busy.run_id[:8]} (intraday, STARTED) still writes today's "
        "partitions; the next tick fetches what this one would have"
    )
    instance.report_run_failed(busy)
    assert len(schedule_tick(defs, "intraday_refresh", instance, when).run_requests) == 1


def test_intraday_refresh_a_free_key_cannot_pay_for_skips_every_tick_with_the_arithmetic(lake, clean_env, instance):
    # The default cadence (15 minutes) with the live source and a free key's 25 requests a day: settings
    # load (materialize and backfills still work), and the schedule says at every tick why it does not run.
    overrides = {"symbols": "AAA,BBB", "lake_root": str(lake), "source": "alphavantage"}
    free = build_definitions(load_settings(overrides=overrides))
    sync_symbols(instance, ["AAA", "BBB"])
    data = schedule_tick(free, "intraday_refresh", instance, ny(2024, 11, 29, 12, 45))
    assert not data.run_requests
    assert data.skip_message.startswith("automation.intraday_every_minutes=15 needs 58 requests a day (2 symbol(s)")
    assert "alphavantage.budget.per_day is 25" in data.skip_message
    # A plan that pays for it: the same tick asks for the runs.
    paid = build_definitions(load_settings(overrides={**overrides, "alphavantage.budget.per_day": 75}))
    assert len(schedule_tick(paid, "intraday_refresh", instance, ny(2024, 11, 29, 12, 45)).run_requests) == 1


def test_weekly_maintenance_requests_its_job_on_sunday_mornings(defs, instance):
    from dagster._utils.schedules import cron_string_iterator

    schedule = defs.resolve_schedule_def("weekly_delta_maintenance")
    job = defs.resolve_job_def(schedule.job_name)
    assert job.name == "delta_maintenance"
    assert {op.name for op in job.graph.node_defs} == {f"maintain_{'_'.join(path)}" for path in TABLES.values()}
    ticks = cron_string_iterator(ny(2024, 11, 27).timestamp(), schedule.cron_schedule, schedule.execution_timezone)
    assert [next(ticks) for _ in range(2)] == [ny(2024, 12, 1, 3, 0), ny(2024, 12, 8, 3, 0)]  # Sundays, 03:00 NY
    data = schedule_tick(defs, "weekly_delta_maintenance", instance, ny(2024, 12, 1, 3, 0))
    (request,) = data.run_requests
    assert request.job_name in (None, "delta_maintenance") and data.skip_message is None
    assert request.tags["dagster/schedule_name"] == "weekly_delta_maintenance"

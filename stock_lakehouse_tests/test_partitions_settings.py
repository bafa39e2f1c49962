from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
import yaml

from stock_lakehouse.market_calendar import is_trading_day, regular_close
from stock_lakehouse.partitions import (
    BarPartition,
    contiguous_groups,
    parse_keys,
    partition_predicate,
    partitions_after,
)
from stock_lakehouse.settings import SettingsError, load_settings


def test_parse_keys_accepts_strings_and_multi_keys_and_sorts():
    keys = ["2024-03-04|NVDA", dg.MultiPartitionKey({"symbol": "AMD", "date": "2024-03-05"}), "2024-03-01|NVDA"]
    assert parse_keys(keys) == [
        BarPartition("AMD", date(2024, 3, 5)),
        BarPartition("NVDA", date(2024, 3, 1)),
        BarPartition("NVDA", date(2024, 3, 4)),
    ]
    with pytest.raises(ValueError, match="not of the form"):
        parse_keys(["NVDA"])


def test_predicate_selects_exact_keys_not_the_bounding_rectangle():
    parts = parse_keys(["2024-03-01|AMD", "2024-03-04|NVDA", "2024-03-05|NVDA"])
    pred = partition_predicate(parts)
    assert pred == (
        "(symbol = 'AMD' AND trade_date = DATE '2024-03-01') OR "
        "(symbol = 'NVDA' AND trade_date IN (DATE '2024-03-04', DATE '2024-03-05'))"
    )
    assert partition_predicate(parts, history=True) == "(symbol = 'AMD') OR (symbol = 'NVDA')"


def test_partitions_after_are_the_later_days_whose_windows_reach_a_written_one():
    days = [date(2024, 3, d) for d in (1, 4, 5, 6, 7, 8, 11, 12, 13)]
    present = [BarPartition("NVDA", d) for d in days] + [BarPartition("AMD", d) for d in days]
    run = [BarPartition("NVDA", date(2024, 3, 4)), BarPartition("NVDA", date(2024, 3, 6))]
    # 7-row windows: the next 6 dates with data after each written date, the written ones excluded.
    assert partitions_after(present, run, 6) == [BarPartition("NVDA", d) for d in [days[2], *days[4:9]]]
    assert partitions_after(present, run, 1) == [
        BarPartition("NVDA", date(2024, 3, 5)),
        BarPartition("NVDA", date(2024, 3, 7)),
    ]
    # Recursive indicators: every later date; other symbols and earlier dates never.
    assert partitions_after(present, run[:1], None) == [BarPartition("NVDA", d) for d in days[2:]]
    assert partitions_after(present, [BarPartition("MSFT", date(2024, 3, 1))], None) == []
    assert partitions_after(present, [BarPartition("NVDA", date(2024, 3, 13))], 6) == []


def test_contiguous_groups_follow_dimension_order():
    assert contiguous_groups(["C", "A", "B", "E"], ["A", "B", "C", "D", "E"]) == [["A", "B", "C"], ["E"]]
    with pytest.raises(ValueError, match="ZZZ"):
        contiguous_groups(["ZZZ"], ["A"])


def test_calendar_holiday_and_early_close():
    assert not is_trading_day(date(2024, 11, 28))
    assert is_trading_day(date(2024, 11, 29))
    assert regular_close(date(2024, 11, 29)).hour == 13
    assert regular_close(date(2024, 11, 27)).hour == 16


def test_settings_env_overrides_and_errors(tmp_path, monkeypatch, clean_env):
    monkeypatch.setenv("STOCK_LAKEHOUSE_SYMBOLS", "nvda, amd,NVDA")
    monkeypatch.setenv("STOCK_LAKEHOUSE_LAKE_ROOT", str(tmp_path / "l"))
    s = load_settings()
    assert s.symbols == ["NVDA", "AMD"]
    assert s.lake.uri == str(tmp_path / "l")
    bad = tmp_path / "bad.yaml"
    bad.write_text("interval: 2min\nspark: {shuffle_partitions: 0}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(bad)
    assert (
        "bad.yaml" in str(info.value)
        and "interval" in str(info.value)
        and "spark.shuffle_partitions" in str(info.value)
    )
    monkeypatch.setenv("STOCK_LAKEHOUSE_SYMBOLS", "BRK|B")
    with pytest.raises(SettingsError, match="symbols"):
        load_settings()


def test_run_extent_and_check_outcomes_in_one_line():
    from stock_lakehouse.partitions import describe_span
    from stock_lakehouse.quality.partition_results import Outcome, describe_outcomes

    parts = [BarPartition(s, date(2024, 3, d)) for s in ("AAA", "BBB") for d in (4, 5, 6)]
    assert describe_span(parts) == "6 partition(s): AAA, BBB x 2024-03-04..2024-03-06"
    assert describe_span(parts[:1]) == "1 partition(s): AAA x 2024-03-04"
    many = [BarPartition(f"S{i}", date(2024, 3, 4)) for i in range(7)]
    assert describe_span(many) == "7 partition(s): S0, S1, S2, S3, S4 and 2 more x 2024-03-04"
    assert describe_span([]) == "0 partitions"

    ok, bad = Outcome(True), Outcome(False, dg.AssetCheckSeverity.WARN)
    results = [
        ("rows", ok, dict.fromkeys(parts, ok)),
        ("low_high", bad, {**dict.fromkeys(parts, ok), parts[4]: bad}),
        ("schema", Outcome(False), {}),  # failed for the run, no per-partition results (large run)
    ]
    assert describe_outcomes(results) == "1 passed, 2 failed: low_high (WARN) on 2024-03-05|BBB; schema (ERROR)"
    assert describe_outcomes(results[:1]) == "1 passed, 0 failed"


def test_environment_sets_any_setting_between_file_and_cli(tmp_path, monkeypatch, clean_env):
    file = tmp_path / "s.yaml"
    file.write_text(
        "symbols: [MSFT]\ninterval: 5min\ns3: {region: eu-west-1}\nquality: {max_invalid_share: 0.2}\n"
        "alphavantage: {budget: {per_day: 7, per_minute: 5}}\n"
    )
    monkeypatch.setenv("STOCK_LAKEHOUSE_INTERVAL", "15min")
    monkeypatch.setenv("STOCK_LAKEHOUSE_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("STOCK_LAKEHOUSE_QUALITY_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET", '{"per_day": 500}')
    monkeypatch.setenv("STOCK_LAKEHOUSE_FX_PAIRS", "eur/usd,GBP/JPY")
    s = load_settings(file, overrides={"interval": "30min", "s3.region": "us-east-2"})
    assert s.symbols == ["MSFT"]  # the file's
    assert s.interval == "30min"  # the CLI's over the environment's over the file's
    assert (s.s3.endpoint, s.s3.region) == ("http://127.0.0.1:9000", "us-east-2")  # blocks merge key by key
    assert (s.quality.dir, s.quality.max_invalid_share) == (str(tmp_path / "rules"), 0.2)
    assert (s.alphavantage.budget.per_day, s.alphavantage.budget.per_minute) == (500, 5)
    assert s.fx_pairs == ["EUR/USD", "GBP/JPY"]


def test_the_clock_setting_reaches_the_sensors_clock(monkeypatch, clean_env):
    from stock_lakehouse.wiring import build_definitions

    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "2024-03-06T19:00:00Z")
    clock = build_definitions(load_settings()).resources["clock"]
    assert clock.now().isoformat() == "2024-03-06T19:00:00+00:00"
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "")  # compose passes an empty value: wall clock
    defs = build_definitions(load_settings())
    assert defs.resources["clock"].now().year >= 2026
    assert defs.resolve_schedule_def("intraday_refresh").cron_schedule == "*/15 * * * 1-5"
    # A running clock (a simulated session): the schedules tick on every real day (the simulated one may be a
    # trading day when the real one is not), and the live source asks the same clock which day is today.
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "2024-03-06T15:00:00Z")
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_ANCHOR_UTC", datetime.now(UTC).isoformat())
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_SPEED", "60")
    defs = build_definitions(load_settings(overrides={"source": "alphavantage"}))
    assert defs.resolve_schedule_def("intraday_refresh").cron_schedule == "*/15 * * * *"
    start = datetime(2024, 3, 6, 15, tzinfo=UTC)
    for clock in (defs.resources["clock"], defs.resources["bar_source"].clock):
        assert start < clock.now() < start + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("STOCK_LAKEHOUSE_S3_ENDPIONT", "http://x", "s3.endpiont"),  # a typo is no silent default
        ("STOCK_LAKEHOUSE_SPARK_SHUFFLE_PARTITIONS", "4; DROP TABLE x", "spark.shuffle_partitions"),
        ("STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET", '{"per_day": -1}', "alphavantage.budget.per_day"),
        ("STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET", "{not json", "alphavantage"),
        ("STOCK_LAKEHOUSE_SYMBOLS", "NVDA,../../etc", "symbols"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "yesterday", "automation.clock_utc"),
        # Times and dates are checked at load, before anything is written.
        ("STOCK_LAKEHOUSE_AUTOMATION_END_OF_DAY_AT", "24:99", "automation.end_of_day_at: '24:99' is not a time of day"),
        ("STOCK_LAKEHOUSE_AUTOMATION_END_OF_DAY_AT", "23:60", "automation.end_of_day_at: '23:60' is not a time of day"),
        ("STOCK_LAKEHOUSE_AUTOMATION_END_OF_DAY_AT", "8pm", "automation.end_of_day_at"),
        ("STOCK_LAKEHOUSE_PARTITIONS_START", "1999-12-31", "partitions_start 1999-12-31 is outside the sessions"),
        ("STOCK_LAKEHOUSE_PARTITIONS_START", "2024-02-30", "partitions_start"),
        ("STOCK_LAKEHOUSE_PARTITIONS_START", "20240101", "partitions_start: '20240101' is not a YYYY-MM-DD date"),
        ("STOCK_LAKEHOUSE_PARTITIONS_START", "2999-01-01", "is outside the sessions calendar XNYS covers"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "2024-13-01T00:00", "automation.clock_utc"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_ANCHOR_UTC", "2026-12-07T03:00", "automation.clock_anchor_utc is set but"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_SPEED", "0", "automation.clock_speed"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_SPEED", "nan", "automation.clock_speed"),
        ("STOCK_LAKEHOUSE_INTERVAL", "2min", "interval"),
    ],
)
def test_a_wrong_environment_setting_is_named(monkeypatch, clean_env, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    first = str(info.value).splitlines()[0]
    assert named in first and "environment" in first, first


# ---------------------------------------------------------------- every setting honoured or refused

PINNED_MESSAGE = "spark.conf: 'spark.sql.session.timeZone' is pinned by the pipeline (UTC"


def test_spark_conf_cannot_set_a_pinned_key_from_the_file(tmp_path, clean_env):
    config = tmp_path / "x.yaml"
    config.write_text("spark:\n  conf:\n    spark.sql.session.timeZone: America/New_York\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"invalid settings ({config}): {PINNED_MESSAGE}"), first
    assert first.endswith("and cannot be set"), first


def test_spark_conf_cannot_set_a_pinned_key_from_the_environment(monkeypatch, clean_env):
    monkeypatch.setenv("STOCK_LAKEHOUSE_SPARK_CONF", '{"spark.sql.session.timeZone": "America/New_York"}')
    with pytest.raises(SettingsError) as info:
        load_settings()
    first = str(info.value).splitlines()[0]
    assert "environment (spark)" in first and PINNED_MESSAGE in first, first


@pytest.mark.parametrize(
    "key",
    [
        "spark.sql.session.timezone",  # a case variant: a key Spark would ignore, so the zone would stay UTC
        "SPARK.DRIVER.EXTRAJAVAOPTIONS",
        " spark.local.dir ",
        "spark.executor.extraJavaOptions",
        "spark.sql.legacy.timeParserPolicy",
        "spark.sql.extensions",
        "spark.sql.catalog.spark_catalog",
        "spark.hadoop.fs.s3a.bucket.lake.secret.key",  # a key would be shown in the UI
        "spark.master",  # has a setting of its own
    ],
)
def test_every_pinned_key_is_refused_by_name(tmp_path, clean_env, key):
    config = tmp_path / "x.yaml"
    config.write_text(yaml.safe_dump({"spark": {"conf": {key: "x", "spark.driver.defaultJavaOptions": "-Xss4m"}}}))
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    first = str(info.value).splitlines()[0]
    assert f"spark.conf: {key!r}" in first, first
    assert "'spark.driver.defaultJavaOptions'" not in first, first  # allowed: not named as refused


def test_spark_conf_keeps_the_keys_it_may_set(tmp_path, clean_env):
    config = tmp_path / "x.yaml"
    conf = {"spark.driver.defaultJavaOptions": "-XX:TieredStopAtLevel=1", "spark.sql.adaptive.enabled": "false"}
    config.write_text(yaml.safe_dump({"spark": {"conf": conf}}))
    assert load_settings(config).spark.conf == conf


def test_the_pinned_keys_are_what_the_session_is_built_with():
    """The pinned set and ``spark_conf`` agree: each pinned key is one the resource sets (the jar keys
    depending on the cache and the master), to the value the pipeline needs; no JVM is started."""
    from stock_lakehouse.lakehouse.spark import SparkResource
    from stock_lakehouse.lakehouse.spark_pins import OWN_SETTING, PINNED_CONF

    conf = SparkResource().spark_conf()
    jar_keys = {"spark.driver.extraClassPath", "spark.jars", "spark.jars.packages", "spark.jars.ivy"}
    assert set(PINNED_CONF) - set(conf) <= jar_keys
    assert set(OWN_SETTING) <= set(conf)
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "-Duser.timezone=UTC" in conf["spark.driver.extraJavaOptions"]
    assert "-Duser.timezone=UTC" in conf["spark.executor.extraJavaOptions"]
    assert f"-Djava.io.tmpdir={conf['spark.local.dir']}" in conf["spark.driver.extraJavaOptions"]


def test_spark_resource_refuses_a_pinned_key_before_any_session(monkeypatch):
    """Built in code or configured for one run from the Launchpad (run config), the resource refuses a
    pinned key when it is built: the step never runs and no Spark session is started."""
    from stock_lakehouse.lakehouse import spark as spark_module
    from stock_lakehouse.lakehouse.spark import SparkResource, sessions_started

    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(spark_module, "spark_session_from_config", no_session)
    with pytest.raises(Exception, match=r"'spark.sql.session.timeZone' is pinned by the pipeline \(UTC"):
        SparkResource(conf={"spark.sql.session.timeZone": "America/New_York"})
    assert SparkResource(conf={"spark.driver.defaultJavaOptions": ""}).conf  # the tests' own JVM option

    ran = []

    @dg.asset
    def needs_spark(spark: SparkResource) -> None:
        ran.append(True)
        spark.get_session()

    before = sessions_started()
    result = dg.materialize(
        [needs_spark],
        resources={"spark": SparkResource()},
        run_config={"resources": {"spark": {"config": {"conf": {"Spark.Local.Dir": "/tmp/elsewhere"}}}}},
        raise_on_error=False,
    )
    assert not result.success and not ran and sessions_started() == before
    failure = next(e for e in result.all_events if e.is_failure)
    assert "'Spark.Local.Dir' is pinned by the pipeline" in str(failure.event_specific_data)


@pytest.mark.parametrize(
    ("name", "named", "suggested"),
    [
        ("STOCK_LAKEHOUSE_SYMBOLZ", "STOCK_LAKEHOUSE_SYMBOLZ", "STOCK_LAKEHOUSE_SYMBOLS"),
        ("STOCK_LAKEHOUSE_LAKE_ROOOT", "STOCK_LAKEHOUSE_LAKE_ROOOT", "STOCK_LAKEHOUSE_LAKE_ROOT"),
        ("stock_lakehouse_lake_root_", "stock_lakehouse_lake_root_", "STOCK_LAKEHOUSE_LAKE_ROOT"),
        ("STOCK_LAKEHOUSE_CONFG", "STOCK_LAKEHOUSE_CONFG", "STOCK_LAKEHOUSE_CONFIG"),  # not a setting, still known
        ("STOCK_LAKEHOUSE_QUALITY_MAX_INVALID_SHAR", "quality.max_invalid_shar", "quality.max_invalid_share"),
        ("STOCK_LAKEHOUSE_SPARK_SHUFFLE_PARTITION", "spark.shuffle_partition", "spark.shuffle_partitions"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK", "automation.clock", "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC"),
        ("STOCK_LAKEHOUSE_", "STOCK_LAKEHOUSE_", None),
        ("STOCK_LAKEHOUSE_ZZZZZZZZZZ", "STOCK_LAKEHOUSE_ZZZZZZZZZZ", None),
    ],
)
def test_an_environment_name_that_is_no_setting_is_refused(monkeypatch, clean_env, name, named, suggested):
    monkeypatch.setenv(name, "")  # even empty: the name is the mistake
    with pytest.raises(SettingsError) as info:
        load_settings()
    first = str(info.value).splitlines()[0]
    assert "environment" in first and named in first, first
    if suggested:
        assert f"did you mean {suggested}" in first or f"({suggested})?" in first, first
    else:
        assert "did you mean" not in first, first


def test_the_projects_other_environment_names_are_allowed(tmp_path, monkeypatch, clean_env):
    from stock_lakehouse.settings import OTHER_ENV_NAMES

    for name in OTHER_ENV_NAMES:
        if name != "STOCK_LAKEHOUSE_CONFIG":  # clean_env set it to the repository's file
            monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("stock_lakehouse_symbols", "amd")  # settings' names are case-insensitive
    assert load_settings().symbols == ["AMD"]
    # A webhook variable of one's own: allowed once automation.alert_webhook_env names it, from any source.
    monkeypatch.setenv("STOCK_LAKEHOUSE_TEAM_HOOK", "https://hooks.example/x")
    with pytest.raises(SettingsError, match="STOCK_LAKEHOUSE_TEAM_HOOK is no setting"):
        load_settings()
    config = tmp_path / "s.yaml"
    config.write_text("automation: {alert_webhook_env: STOCK_LAKEHOUSE_TEAM_HOOK}\n")
    assert load_settings(config).automation.alert_webhook_env == "STOCK_LAKEHOUSE_TEAM_HOOK"
    assert load_settings(overrides={"automation.alert_webhook_env": "STOCK_LAKEHOUSE_TEAM_HOOK"})
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_ALERT_WEBHOOK_ENV", "STOCK_LAKEHOUSE_TEAM_HOOK")
    assert load_settings().automation.alert_webhook_env == "STOCK_LAKEHOUSE_TEAM_HOOK"
    # ... but not a name the settings would read as a setting.
    monkeypatch.delenv("STOCK_LAKEHOUSE_TEAM_HOOK")
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_ALERT_WEBHOOK_ENV", "STOCK_LAKEHOUSE_S3_ENDPOINT")
    with pytest.raises(SettingsError, match="would be read as the setting s3.endpoint"):
        load_settings()


def test_every_stock_lakehouse_name_the_project_uses_is_known():
    """Each ``STOCK_LAKEHOUSE_*`` name in the code, the deployment and the docs is a setting or one of
    ``OTHER_ENV_NAMES`` (the one list of the others), except the README's examples of refused names."""
    import re

    from stock_lakehouse.settings import OTHER_ENV_NAMES, setting_env_names, unknown_env_names
    from stock_lakehouse_tests.conftest import REPO

    refused_examples = {"STOCK_LAKEHOUSE_SYMBOLZ", "STOCK_LAKEHOUSE_LAKE_ROOOT", "STOCK_LAKEHOUSE_S3_ENDPIONT"}
    files = [REPO / "README.md", REPO / "Makefile"]
    for folder in ("stock_lakehouse", "docker", "config", "scripts", ".ci"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix not in (".png", ".json", ".pyc")]
    used = set()
    for path in files:
        used |= set(re.findall(r"STOCK_LAKEHOUSE_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")))
    assert "STOCK_LAKEHOUSE_IVY_DIR" in used and "STOCK_LAKEHOUSE_S3_ENDPOINT" in used
    known = set(setting_env_names()) | set(OTHER_ENV_NAMES)
    assert used - known == refused_examples
    assert len(unknown_env_names(dict.fromkeys(refused_examples, ""), "STOCK_LAKEHOUSE_ALERT_WEBHOOK")) == 3


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ("NYSEE", "calendar: 'NYSEE' is not an exchange_calendars calendar; did you mean NYSE"),
        ("XNYZ", "did you mean XNZE or XNYS?"),
        ("", "calendar: '' is not an exchange_calendars calendar"),
        ("AIXK", "calendar: 'AIXK' cannot be used: The earliest date"),  # exists, but not from 2000
        ("../../etc/passwd", "is not an exchange_calendars calendar"),
    ],
)
def test_a_calendar_is_checked_at_load(tmp_path, clean_env, calendar, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"calendar": calendar}))
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert message in str(info.value).splitlines()[0]


def test_calendar_names_and_dates_are_normalized(tmp_path, clean_env, monkeypatch):
    monkeypatch.setenv("STOCK_LAKEHOUSE_CALENDAR", "xlon")
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_END_OF_DAY_AT", "9:05")
    s = load_settings()
    assert (s.calendar, s.automation.end_of_day_at) == ("XLON", "09:05")
    assert is_trading_day(date(2024, 3, 4), s.calendar)


def test_a_cadence_the_key_cannot_pay_for_is_refused_with_the_arithmetic(monkeypatch, clean_env):
    from stock_lakehouse.automation.cadence import ticks_per_day

    # Cron minutes */N from 09:30 to one cadence after 16:00.
    assert [ticks_per_day(n) for n in (1, 5, 15, 30, 60)] == [392, 80, 28, 15, 8]
    monkeypatch.setenv("STOCK_LAKEHOUSE_AUTOMATION_INTRADAY_EVERY_MINUTES", "1")
    live = {"source": "alphavantage", "symbols": "AAA,BBB"}
    with pytest.raises(SettingsError) as info:
        load_settings(overrides=live)
    (line,) = str(info.value).splitlines()
    assert (
        "automation.intraday_every_minutes=1 needs 786 requests a day (2 symbol(s) x (392 ticks + 1 end-of-day "
        "run)) but alphavantage.budget.per_day is 25" in line
    )
    # A premium plan's budget pays for it; offline sources need no budget at all.
    assert load_settings(overrides={**live, "alphavantage.budget.per_day": 786}).automation.intraday_every_minutes == 1
    # A plan's per-minute limit counts too: every tick asks once per symbol.
    with pytest.raises(SettingsError) as info:
        load_settings(overrides={**live, "alphavantage.budget.per_day": 0, "alphavantage.budget.per_minute": 1})
    assert (
        "automation.intraday_every_minutes=1 needs 2 requests a minute (2 symbol(s) every 1 min) but "
        "alphavantage.budget.per_minute is 1" in str(info.value).splitlines()[0]
    )
    assert load_settings(overrides={**live, "source": "synthetic"}).intraday_cost_refusal() is None

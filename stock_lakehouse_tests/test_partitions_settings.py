from datetime import date

import dagster as dg
import pytest

from stock_lakehouse.market_calendar import is_trading_day, regular_close
from stock_lakehouse.partitions import BarPartition, contiguous_groups, parse_keys, partition_predicate
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
    assert partition_predicate(parts, history=True).endswith("(symbol = 'NVDA' AND trade_date <= DATE '2024-03-05')")


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
    assert build_definitions(load_settings()).resources["clock"].now().year >= 2026


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("STOCK_LAKEHOUSE_S3_ENDPIONT", "http://x", "s3.endpiont"),  # a typo is no silent default
        ("STOCK_LAKEHOUSE_SPARK_SHUFFLE_PARTITIONS", "4; DROP TABLE x", "spark.shuffle_partitions"),
        ("STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET", '{"per_day": -1}', "alphavantage.budget.per_day"),
        ("STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET", "{not json", "alphavantage"),
        ("STOCK_LAKEHOUSE_SYMBOLS", "NVDA,../../etc", "symbols"),
        ("STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC", "yesterday", "automation.clock_utc"),
    ],
)
def test_a_wrong_environment_setting_is_named(monkeypatch, clean_env, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    first = str(info.value).splitlines()[0]
    assert named in first and "environment" in first, first

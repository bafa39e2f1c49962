"""The live source end to end: fake Alpha Vantage on loopback -> Dagster run -> Delta tables."""

import os
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.tables import TABLES
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import build_definitions
from stock_lakehouse_tests.conftest import FIXTURES
from stock_lakehouse_tests.fake_alphavantage import FakeAlphaVantage

pytestmark = pytest.mark.spark

KEY = "SECRET-AV-KEY-7f3a9c1e55"


@pytest.fixture()
def fake():
    with FakeAlphaVantage(FIXTURES, KEY) as server:
        yield server


def write_config(tmp_path: Path, fake: FakeAlphaVantage, **extra) -> Path:
    cfg = {
        "symbols": ["AAA", "BBB", "CCC"],
        "interval": "5min",
        "source": "alphavantage",
        "alphavantage": {
            "base_url": fake.url,
            "backoff_seconds": 0.01,
            "max_retries": 1,
            "budget": {"per_second": 0, "per_day": 1000, "state_file": str(tmp_path / "budget.sqlite")},
        },
        **extra,
    }
    path = tmp_path / "stock_lakehouse.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_key_absent(where: str, text: str) -> None:
    assert KEY not in text, f"API key found in {where}"


def test_month_backfill_is_one_request_per_symbol_and_the_key_leaks_nowhere(
    spark, tmp_path, lake, dagster_home, clean_env, monkeypatch, fake, capfd
):
    monkeypatch.setenv("STOCK_LAKEHOUSE_CONFIG", str(write_config(tmp_path, fake)))
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", KEY)
    overrides = {"lake_root": str(lake)}
    ok, summary, error = run_materialize(None, date(2024, 3, 1), date(2024, 3, 28), overrides)
    assert ok, error
    assert len(summary.runs) == 1
    assert fake.count(function="TIME_SERIES_INTRADAY") == 3
    assert {r["symbol"] for r in fake.requests} == {"AAA", "BBB", "CCC"}
    assert all(r["month"] == "2024-03" for r in fake.requests)
    assert summary.rows["gold"] == 3 * 20  # 20 sessions 03-01..03-28

    # Again: every month is complete in the landing zone, so no request at all.
    # A re-run inside the month reads the landed payloads: no request (two days suffice to show it).
    ok, summary, error = run_materialize(None, date(2024, 3, 27), date(2024, 3, 28), overrides)
    assert ok, error
    assert len(fake.requests) == 3
    assert summary.rows["bronze"] == 3 * 2 * 192

    # A failing symbol: the error says what to do, without the key.
    fake.plan("DDD", ["premium"])
    ok, _, error = run_materialize(["DDD"], date(2024, 3, 4), date(2024, 3, 4), overrides)
    assert not ok and "DDD" in error and "premium key" in error
    assert_key_absent("the error", error)
    assert KEY in fake.keys_seen  # the key was really used

    # Nowhere: event log and metadata, instance files, tables, landing paths and contents, output.
    instance = dg.DagsterInstance.get()
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            assert_key_absent("the event log", dg.serialize_value(entry))
        assert_key_absent("run tags/config", dg.serialize_value(run))
    for root in (dagster_home, lake):
        for path in root.rglob("*"):
            assert_key_absent("a file path", str(path))
            # Parquet pages are compressed, so tables are checked below through their values.
            if path.is_file() and path.suffix != ".parquet":
                assert KEY.encode() not in path.read_bytes(), f"API key in {path}"
    for table in TABLES:
        df = read_table(str(lake), table)
        for col in df.columns:
            if df[col].dtype == object:
                assert not df[col].astype(str).str.contains(KEY, regex=False).any(), f"API key in {table}.{col}"
    out, err = capfd.readouterr()
    assert_key_absent("stdout", out)
    assert_key_absent("stderr", err)


def test_a_key_in_the_settings_file_is_used_and_copied_nowhere(
    spark, tmp_path, lake, dagster_home, clean_env, monkeypatch, fake
):
    config = write_config(tmp_path, fake)
    settings = yaml.safe_load(config.read_text())
    settings["alphavantage"]["api_key"] = KEY
    config.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("STOCK_LAKEHOUSE_CONFIG", str(config))
    monkeypatch.delenv("ALPHAVANTAGE_API_KEY", raising=False)
    defs = build_definitions(load_settings(overrides={"lake_root": str(lake)}))
    source = defs.resources["bar_source"]
    assert KEY not in repr(source) and KEY not in str(source.api_key)  # the UI shows resource config
    ok, _, error = run_materialize(["AAA"], date(2024, 3, 4), date(2024, 3, 4), {"lake_root": str(lake)})
    assert ok, error
    assert set(fake.keys_seen) == {KEY}  # the file's key was sent
    assert "ALPHAVANTAGE_API_KEY" not in os.environ and KEY not in repr(dict(os.environ))
    instance = dg.DagsterInstance.get()
    for run in instance.get_runs():
        assert_key_absent("run tags/config", dg.serialize_value(run))
        for entry in instance.all_logs(run.run_id):
            assert_key_absent("the event log", dg.serialize_value(entry))


def test_fx_pair_and_coin_from_the_config_file_flow_to_bronze_and_silver(
    spark, tmp_path, lake, dagster_home, clean_env, monkeypatch, fake
):
    config = write_config(tmp_path, fake, symbols=[], fx_pairs=["EUR/USD"], crypto=["BTC/USD"])
    monkeypatch.setenv("STOCK_LAKEHOUSE_CONFIG", str(config))
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", KEY)
    day = date.today() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    ok, summary, error = run_materialize(None, day, day, {"lake_root": str(lake)})
    assert ok, error
    assert fake.count(function="FX_INTRADAY", from_symbol="EUR", to_symbol="USD") == 1
    assert fake.count(function="CRYPTO_INTRADAY", symbol="BTC", market="USD") == 1
    bronze = read_table(str(lake), "bronze")
    assert set(zip(bronze.symbol, bronze.function, strict=True)) == {
        ("EURUSD", "FX_INTRADAY"),
        ("BTCUSD", "CRYPTO_INTRADAY"),
    }
    assert bronze[bronze.symbol == "EURUSD"].volume.isna().all()
    silver = read_table(str(lake), "silver")
    assert (silver.groupby("symbol").size() == 288).all()  # 24 h of 5-minute bars, in UTC
    assert (silver.session == "regular").all() and silver.is_valid.all()
    assert (silver[silver.symbol == "EURUSD"].volume == 0).all()
    assert (silver[silver.symbol == "BTCUSD"].volume > 0).all()
    # The coin's volumes keep their decimals (bronze has the API's strings) through silver and gold.
    coin_strings = bronze[bronze.symbol == "BTCUSD"].volume
    assert any(Decimal(v) % 1 for v in coin_strings)
    coin = silver[silver.symbol == "BTCUSD"].set_index("ts_local")
    exact = {pd.Timestamp(t): float(v) for t, v in zip(bronze[bronze.symbol == "BTCUSD"].ts, coin_strings, strict=True)}
    assert coin.volume.to_dict() == exact
    gold = read_table(str(lake), "gold").set_index("symbol")
    assert gold.loc["BTCUSD", "volume"] == pytest.approx(float(sum(Decimal(v) for v in coin_strings)), rel=1e-12)
    assert gold.loc["EURUSD", "bar_count"] == 288 and gold.loc["EURUSD", "vwap"] != gold.loc["EURUSD", "vwap"]  # NaN

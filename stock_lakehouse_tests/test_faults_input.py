"""Hostile and broken input destroys nothing: symbols that try to rewrite predicates or paths, empty and
mismatched sources over existing partitions, non-finite prices, odd timestamps.

Every scenario starts from a lake with data and ends by comparing every table with its state before:
the partitions the scenario did not legitimately change must be frame-equal (all columns, exact).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse.ingestion.alphavantage import AlphaVantageClient, intraday_request
from stock_lakehouse.ingestion.budget import RequestBudget
from stock_lakehouse.ingestion.errors import MalformedPayloadError
from stock_lakehouse.ingestion.landing import LandingZone
from stock_lakehouse.ingestion.parser import parse_payload
from stock_lakehouse.ingestion.synthetic import intraday_payload
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.tables import TABLES as TABLE_KEYS
from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, BarPartition, parse_keys, partition_predicate
from stock_lakehouse.runs.event_storage import instance_yaml
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.settings import SettingsError, load_settings
from stock_lakehouse.symbols import validate_symbol
from stock_lakehouse.wiring import build_definitions, lakehouse_job
from stock_lakehouse_tests.conftest import FIXTURES, NVDA_SAMPLE, REPO, clean_environment, copy_lake
from stock_lakehouse_tests.fake_alphavantage import FakeAlphaVantage
from stock_lakehouse_tests.reference import assert_frames_close, bars_from_payloads, bi_reference, gold_reference
from stock_lakehouse_tests.test_transforms import bronze_row, silver_of

pytestmark = pytest.mark.faults

TABLES = ("bronze", "silver", "gold", "bi")
HOSTILE = [
    "X') OR (TRUE) --",
    "X\\') OR (TRUE) --",
    "../../../../x",
    "A' OR '1'='1",
    "NVDA;DROP",
    "a b",
    "",
    "X" * 21,
    "-X",
    ".X",
]


def tables(lake: Path) -> dict[str, pd.DataFrame]:
    return {t: read_table(str(lake), t) for t in TABLES}


def assert_unchanged(before: dict[str, pd.DataFrame], lake: Path, *, except_: set[tuple[str, date]] = frozenset()):
    """Every row of every table outside ``except_`` partitions is as it was (all columns, exact). In BI and
    signals the later dates of those symbols are excepted too: their windows reach the changed dates, so a
    run rewrites them with its own (``partitions_after``)."""
    after = tables(lake)
    first_changed: dict[str, date] = {}
    for sym, day in except_:
        first_changed[sym] = min(day, first_changed.get(sym, day))
    for name in TABLES:
        follows = name in ("bi", "signals")

        def outside(df: pd.DataFrame, follows: bool = follows) -> pd.DataFrame:
            keep = [
                (s, d) not in except_ and not (follows and s in first_changed and d > first_changed[s])
                for s, d in zip(df["symbol"], df["trade_date"], strict=True)
            ]
            return df[keep].reset_index(drop=True)

        # dtype may differ (a null elsewhere turns an int column float), values may not
        pd.testing.assert_frame_equal(
            outside(after[name]), outside(before[name]), check_exact=True, check_dtype=False, obj=name
        )


def materialize(lake: Path, symbols, start: str, end: str, **overrides):
    return run_materialize(
        symbols, date.fromisoformat(start), date.fromisoformat(end), {"lake_root": str(lake), **overrides}
    )


@pytest.fixture(scope="module")
def nvda_lake_template(spark, tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """The bundled NVDA sample (2024-03-01..12) in all four tables, built once for the module."""
    root = tmp_path_factory.mktemp("nvda_template")
    replay, home = root / "sample", root / "dagster_home"
    replay.mkdir()
    home.mkdir()
    (replay / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    (home / "dagster.yaml").write_text(instance_yaml(home))
    with pytest.MonkeyPatch.context() as mp:
        clean_environment(mp)
        mp.setenv("DAGSTER_HOME", str(home))
        ok, _, error = materialize(
            root / "lake", ["NVDA"], "2024-03-01", "2024-03-12", source="replay", replay_dir=str(replay)
        )
    assert ok, error
    return root / "lake", tables(root / "lake")


@pytest.fixture()
def nvda_lake(nvda_lake_template, lake, dagster_home, clean_env) -> tuple[Path, dict[str, pd.DataFrame]]:
    """A lake of the test's own with the bundled NVDA sample (2024-03-01..12) in all four tables."""
    template, before = nvda_lake_template
    with dg.DagsterInstance.get() as instance:  # as the build's run left its own instance
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["NVDA"])
    return copy_lake(template, lake), {name: df.copy() for name, df in before.items()}


# --- symbols -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", HOSTILE)
def test_the_validator_refuses_hostile_symbols(raw):
    with pytest.raises(ValueError, match="invalid symbol"):
        validate_symbol(raw, "a test")


@pytest.mark.parametrize("raw", ["nvda", " BRK.B ", "BRK-B", "SHOP.TRT", "EURUSD", "7203.T"])
def test_the_validator_keeps_real_tickers(raw):
    assert validate_symbol(raw, "a test") == raw.strip().upper()


@pytest.mark.parametrize("raw", [s for s in HOSTILE if s])
def test_no_predicate_and_no_partition_key_carries_a_hostile_symbol(raw):
    with pytest.raises(ValueError, match="invalid symbol"):
        partition_predicate([BarPartition(raw, date(2024, 3, 4))])
    with pytest.raises(ValueError, match="invalid symbol"):
        parse_keys([f"2024-03-04|{raw}"])
    with pytest.raises(SettingsError, match="invalid symbol"):
        load_settings(overrides={"symbols": ["NVDA", raw]})


def test_cli_refuses_a_hostile_symbol_before_touching_the_instance(tmp_path, clean_env):
    home = tmp_path / "home"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "stock-lakehouse"), "materialize", "--source", "synthetic",
         "--symbols", "X\\') OR (TRUE) --", "--start", "2024-03-04", "--lake-root", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "invalid symbol" in proc.stderr and "--symbols" in proc.stderr
    assert not (tmp_path / "lake").exists()
    assert not home.exists() or not (home / "storage").exists()  # nothing recorded, no partition added


def test_cli_refuses_a_future_date_in_one_line(tmp_path, clean_env):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "stock-lakehouse"), "materialize", "--source", "synthetic",
         "--symbols", "AAA", "--start", "2099-01-05", "--lake-root", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "2099-01-05 is in the future" in lines[0] and len(lines) <= 3, lines
    assert not (tmp_path / "lake").exists()


@pytest.mark.spark
def test_a_partition_added_in_the_ui_with_a_hostile_symbol_changes_nothing(nvda_lake, dagster_home):
    lake, before = nvda_lake
    instance = dg.DagsterInstance.get()
    hostile = "X\\') OR (TRUE) --"
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, [hostile])  # what the UI's "add partition" does
    settings = load_settings(overrides={"lake_root": str(lake), "source": "synthetic"})
    job = lakehouse_job(build_definitions(settings))
    result = job.execute_in_process(
        instance=instance,
        partition_key=dg.MultiPartitionKey({"symbol": hostile, "date": "2024-03-04"}),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    messages = []
    while failure is not None:
        messages.append(failure.message)
        failure = failure.cause
    assert any("invalid symbol" in m for m in messages), messages
    assert_unchanged(before, lake)


# --- paths ---------------------------------------------------------------------------------------------


def traversal_payload(symbol: str = "../../../../x", interval: str = "1min") -> bytes:
    doc = json.loads(NVDA_SAMPLE.read_text())
    doc["Meta Data"]["2. Symbol"] = symbol
    doc["Meta Data"]["4. Interval"] = interval
    return json.dumps(doc).encode()


@pytest.mark.parametrize("symbol,interval", [("../../../../x", "1min"), ("NVDA", "../../x"), ("NVDA/../../y", "1min")])
def test_meta_data_cannot_name_a_path(tmp_path, symbol, interval):
    path = tmp_path / "evil.json"
    with pytest.raises(MalformedPayloadError, match=r"evil\.json.*invalid (symbol|interval)"):
        parse_payload(traversal_payload(symbol, interval), str(path))
    with pytest.raises(ValueError, match="invalid"):
        LandingZone.folder("TIME_SERIES_INTRADAY", symbol, interval, "2024-03")
    with pytest.raises(ValueError, match="invalid month"):
        LandingZone.folder("TIME_SERIES_INTRADAY", "NVDA", "1min", "../..")


@pytest.mark.spark
def test_a_replay_file_whose_meta_data_walks_out_writes_nothing_anywhere(nvda_lake, tmp_path):
    lake, before = nvda_lake
    replay = tmp_path / "evil" / "a" / "b"
    replay.mkdir(parents=True)
    (replay / "evil.json").write_bytes(traversal_payload())

    def files():  # the instance records the failed run; nothing else may appear
        return {p for p in tmp_path.rglob("*") if p.is_file() and "dagster_home" not in p.parts}

    files_before = files()
    ok, _, error = materialize(lake, ["NVDA"], "2024-03-04", "2024-03-04", source="replay", replay_dir=str(replay))
    assert not ok
    assert "evil.json" in error and "invalid symbol" in error
    assert files() == files_before
    # where lake/landing/TIME_SERIES_INTRADAY/../../../../x would have led
    assert not (tmp_path.parent / "x").exists()
    assert_unchanged(before, lake)


def test_the_live_source_refuses_a_response_for_another_symbol_or_interval(tmp_path):
    other = tmp_path / "msft.json"
    other.write_bytes(traversal_payload("MSFT", "5min"))
    with FakeAlphaVantage(FIXTURES, "K", recordings={("IBM", "2024-03"): other}) as fake:
        budget = RequestBudget(tmp_path / "budget.sqlite", per_second=0, per_minute=0, per_day=100)
        client = AlphaVantageClient("K", budget, base_url=fake.url, timeout=5, max_retries=0, backoff_seconds=0)
        with pytest.raises(MalformedPayloadError, match="MSFT 5min, not the requested TIME_SERIES_INTRADAY IBM 5min"):
            client.fetch(intraday_request("IBM", "5min", month="2024-03"))


# --- empty and mismatched sources ----------------------------------------------------------------------


@pytest.mark.spark
def test_an_empty_replay_folder_erases_nothing_and_says_why(nvda_lake, tmp_path):
    lake, before = nvda_lake
    empty = tmp_path / "empty"
    empty.mkdir()
    ok, _, error = materialize(lake, ["NVDA"], "2024-03-04", "2024-03-05", source="replay", replay_dir=str(empty))
    assert not ok
    assert str(empty) in error and "no *.json payloads" in error, error
    assert_unchanged(before, lake)


@pytest.mark.spark
def test_a_payload_of_another_interval_erases_nothing_and_says_why(nvda_lake, tmp_path):
    lake, before = nvda_lake
    replay = tmp_path / "five"
    replay.mkdir()
    (replay / "nvda_5min.json").write_bytes(
        intraday_payload("NVDA", [date(2024, 3, 4), date(2024, 3, 5)], "5min", seed=7)
    )
    ok, _, error = materialize(lake, ["NVDA"], "2024-03-04", "2024-03-05", source="replay", replay_dir=str(replay))
    assert not ok
    assert "NVDA at 5min only, but the configured interval is 1min" in error, error
    assert_unchanged(before, lake)


def one_day_of_sample(day: str) -> bytes:
    doc = json.loads(NVDA_SAMPLE.read_text())
    doc["Time Series (1min)"] = {k: v for k, v in doc["Time Series (1min)"].items() if k.startswith(day)}
    return json.dumps(doc).encode()


@pytest.mark.spark
def test_a_source_missing_some_days_keeps_their_rows_unless_told(nvda_lake, tmp_path):
    lake, before = nvda_lake
    replay = tmp_path / "partial"
    replay.mkdir()
    (replay / "only_0304.json").write_bytes(one_day_of_sample("2024-03-04"))
    ok, summary, error = materialize(
        lake, ["NVDA"], "2024-03-04", "2024-03-05", source="replay", replay_dir=str(replay)
    )
    assert ok, error
    assert summary.metadata["bronze"]["partitions_kept"] == 1
    assert summary.metadata["bronze"]["partitions_kept_keys"] == ["2024-03-05|NVDA"]
    # 03-04 was rewritten from the same bars (new ingestion time); 03-05 was not touched at all.
    assert_unchanged(before, lake, except_={("NVDA", date(2024, 3, 4))})
    after = tables(lake)
    for name in ("silver", "gold"):
        cols = [c for c in after[name].columns if c not in ("ingested_at", "payload_hash")]
        day = after[name][after[name]["trade_date"] == date(2024, 3, 4)][cols].reset_index(drop=True)
        old = before[name][before[name]["trade_date"] == date(2024, 3, 4)][cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(day, old, obj=name)

    # Asked explicitly, the same run empties 03-05.
    ok, _, error = materialize(
        lake, ["NVDA"], "2024-03-04", "2024-03-05", source="replay", replay_dir=str(replay), allow_empty_overwrite=True
    )
    assert ok, error
    bronze = read_table(str(lake), "bronze")
    assert not (bronze["trade_date"] == date(2024, 3, 5)).any()
    assert_unchanged(before, lake, except_={("NVDA", date(2024, 3, 4)), ("NVDA", date(2024, 3, 5))})
    # The day after the emptied one follows: its previous close is now 03-04's (the last day with data).
    gold, bi = (read_table(str(lake), t).set_index("trade_date") for t in ("gold", "bi"))
    assert bi.loc[date(2024, 3, 6), "prev_close"] == gold.loc[date(2024, 3, 4), "close"]


@pytest.mark.spark
def test_a_trading_day_without_rows_is_reported_empty_not_materialized(nvda_lake, tmp_path):
    """Issue 25: NVDA over 03-12..03-13, the sample ending on 03-12. 03-13 is a trading day with no rows in
    any table: each records an observation saying so and no materialization, so the UI shows it missing;
    03-12 is materialized as usual. The summary counts only what was materialized."""
    lake, _ = nvda_lake
    replay = tmp_path / "sample"
    replay.mkdir()
    (replay / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    ok, summary, error = materialize(
        lake, ["NVDA"], "2024-03-12", "2024-03-13", source="replay", replay_dir=str(replay)
    )
    assert ok, error
    assert summary.partitions == {layer: 1 for layer in TABLE_KEYS}, summary.partitions
    with dg.DagsterInstance.get() as instance:
        (run,) = summary.runs
        for layer, path in TABLE_KEYS.items():
            key = dg.AssetKey(list(path))
            materialized = {str(k) for k in instance.get_materialized_partitions(key)}
            (seen,) = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=["2024-03-13|NVDA"]), limit=5
            ).records
            assert seen.run_id == run and seen.asset_observation.metadata["partition_status"].value == "empty", layer
            assert "the source had none" in seen.asset_observation.description, layer
            # The test's instance holds this run only: exactly the day with rows.
            assert materialized == {"2024-03-12|NVDA"}, (layer, materialized)


# --- values --------------------------------------------------------------------------------------------


def crafted_day(edits: dict[str, dict[str, str]], relabel: dict[str, str] | None = None) -> bytes:
    """NVDA's 2024-03-04 with some bars' fields replaced and some labels renamed."""
    doc = json.loads(one_day_of_sample("2024-03-04"))
    series = doc["Time Series (1min)"]
    for label, fields in edits.items():
        series[label].update(fields)
    for old, new in (relabel or {}).items():
        series[new] = series.pop(old)
    return json.dumps(doc).encode()


@pytest.mark.spark
def test_non_finite_and_unreadable_prices_are_invalid(nvda_lake, tmp_path):
    lake, before = nvda_lake
    replay = tmp_path / "nan"
    replay.mkdir()
    edits = {
        "2024-03-04 10:00:00": {"4. close": "NaN"},
        "2024-03-04 10:01:00": {"2. high": "1e309"},
        "2024-03-04 10:02:00": {"1. open": "-Infinity"},
        "2024-03-04 10:03:00": {"3. low": "abc"},
        "2024-03-04 10:04:00": {"5. volume": "NaN"},
        "2024-03-04 10:05:00": {"5. volume": "1e309"},
    }
    (replay / "day.json").write_bytes(crafted_day(edits))
    ok, _, error = materialize(lake, ["NVDA"], "2024-03-04", "2024-03-04", source="replay", replay_dir=str(replay))
    # Silver is written before its checks run; row-quality rules may then block gold and BI (their
    # threshold is another issue). Either way the bars are flagged and no other partition changed.
    silver = read_table(str(lake), "silver")
    day = silver[silver["trade_date"] == date(2024, 3, 4)]
    day = day.set_index(day["ts_local"].dt.strftime("%H:%M"))
    expected = {
        "10:00": "nonfinite_close",
        "10:01": "nonfinite_high",
        "10:02": "nonfinite_open",
        "10:03": "unparseable_low",
        "10:04": "nonfinite_volume",
        "10:05": "nonfinite_volume",
    }
    for hhmm, reason in expected.items():
        assert not day.loc[hhmm, "is_valid"] and reason in day.loc[hhmm, "dq_reason"], (hhmm, day.loc[hhmm])
    assert day["is_valid"].sum() == len(day) - len(expected)
    assert_unchanged(before, lake, except_={("NVDA", date(2024, 3, 4))})
    if ok:
        gold = read_table(str(lake), "gold")
        row = gold[gold["trade_date"] == date(2024, 3, 4)]
        assert row[["open", "high", "low", "close", "vwap", "avg_price"]].notna().all(axis=None)
        assert int(row["invalid_bar_count"].iloc[0]) == len(expected)
    else:
        assert "silver" in error, error


@pytest.mark.spark
def test_transform_flags_non_finite_values(spark):
    rows = []
    for i, (o, h, low, c, v) in enumerate(
        [
            ("10", "11", "9", "10.5", "100"),
            ("10", "11", "9", "NaN", "100"),
            ("10", "1e309", "9", "10.5", "100"),
            ("10", "11", "9", "10.5", "1e309"),
            ("10", "11", "abc", "10.5", "100"),
            ("10", "11", "9", None, "100"),
        ]
    ):
        rows.append(bronze_row(f"2024-03-04 10:{i:02d}:00", o, h, low, c, v))
    silver = silver_of(spark, rows)
    got = dict(zip(silver["ts_local"].dt.strftime("%H:%M"), silver["dq_reason"], strict=True))
    assert got == {
        "10:00": None,
        "10:01": "nonfinite_close",
        "10:02": "nonfinite_high",
        "10:03": "nonfinite_volume",
        "10:04": "unparseable_low",
        "10:05": "missing_close",
    }


@pytest.mark.spark
def test_sub_second_and_odd_labels_parse_or_are_flagged(spark):
    labels = [
        "2024-03-04 12:23:00.999",
        "2024-03-04 12:24:00.5",
        "2024-03-04T12:25:00",
        "2024-03-04 12:26",
        "2024-03-04 25:99:00",
        "2024-03-04 12:27:00 EST",
    ]
    silver = silver_of(spark, [bronze_row(ts, "10", "11", "9", "10.5", "1") for ts in labels])
    parsed = silver.dropna(subset=["ts_local"])
    assert sorted(parsed["ts_local"]) == [
        pd.Timestamp(t)
        for t in ("2024-03-04 12:23:00.999", "2024-03-04 12:24:00.5", "2024-03-04 12:25", "2024-03-04 12:26")
    ]
    bad = silver[silver["ts_local"].isna()]
    assert len(bad) == 2 and (bad["dq_reason"] == "bad_timestamp").all() and not bad["is_valid"].any()
    assert (parsed["session"] == "regular").all()
    # A fraction past the minute is off a 1-minute series' grid (DESIGN §13): parsed, but not a bar of it.
    reasons = dict(zip(parsed["ts_local"].dt.strftime("%H:%M:%S.%f"), parsed["dq_reason"], strict=True))
    assert reasons == {
        "12:23:00.999000": "off_grid",
        "12:24:00.500000": "off_grid",
        "12:25:00.000000": None,
        "12:26:00.000000": None,
    }
    # the UTC instant is the New York wall clock moved by the EST offset (+5 h in March before DST)
    assert parsed["ts_utc"].min() == pd.Timestamp("2024-03-04 17:23:00.999")


# --- a partition without upstream rows -----------------------------------------------------------------


@pytest.mark.spark
def test_gold_for_a_trading_day_without_silver_rows_fails_naming_it(nvda_lake):
    """Materializing gold alone (as from the UI) for a day silver has no rows for: not a green partition."""
    lake, before = nvda_lake
    settings = load_settings(overrides={"lake_root": str(lake)})
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=[dg.AssetKey(["gold", "daily_kpis"])],
        partition_key=dg.MultiPartitionKey({"symbol": "NVDA", "date": "2024-03-13"}),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "silver/stock_clean has no rows for 1 trading-day partition(s) (NVDA 2024-03-13)" in text
    assert "materialize silver/stock_clean (and bronze) for them first" in text
    assert not result.asset_materializations_for_node("gold__daily_kpis")
    assert_unchanged(before, lake)


def test_preview_metadata_renders_hostile_values_as_text():
    from stock_lakehouse.lakehouse.io_manager import markdown_table

    hostile = pd.DataFrame({"ts": ["<img src=x onerror=alert(1)>", "[x](javascript:alert(1))"], "n": ["a|b\nc", "`x`"]})
    table = markdown_table(hostile)
    assert table.splitlines()[:2] == ["| ts | n |", "|---|---|"] and len(table.splitlines()) == 4
    cells = [line[2:-2] for line in table.splitlines()[2:]]
    for cell_line in cells:  # every Markdown/HTML character of the values is escaped
        assert not re.search(r"(?<!\\)[<>\[\]()`]", cell_line), cell_line
    assert "\\<img src=x onerror=alert\\(1\\)\\>" in table and "a\\|b c" in table


# --- what a bar is (DESIGN §13) ----------------------------------------------------------------------------


@pytest.mark.spark
def test_off_grid_bars_and_respelled_instants_never_reach_gold(nvda_lake, tmp_path):
    """Crafted recordings: bars between the 1-minute slots, one instant spelled three ways in one response
    and again in a newer response, a fractional stock volume. Gold and BI equal an independent reference
    over the on-grid, de-duplicated bars; the offenders are counted with their reason; 3 bad bars of ~960
    are under the 1% partition threshold, so the run is not blocked."""
    lake, before = nvda_lake
    replay = tmp_path / "crafted"
    replay.mkdir()
    doc = json.loads(one_day_of_sample("2024-03-04"))
    series = doc["Time Series (1min)"]
    noon = dict(series["2024-03-04 12:00:00"])
    huge = {**noon, "5. volume": "50000000"}  # would multiply the day's volume if it were summed
    series["2024-03-04 10:00:30"] = huge  # seconds past the minute
    series["2024-03-04 11:15:00.250"] = huge  # a fraction past the minute
    series["2024-03-04 12:00"] = {**noon, "5. volume": "1"}  # 12:00:00 again, a later entry...
    series["2024-03-04T12:00:00.000"] = {**noon, "4. close": noon["2. high"], "5. volume": "777"}  # ...the last
    series["2024-03-04 13:00:00"] = {**series["2024-03-04 13:00:00"], "5. volume": "12.7"}
    (replay / "day.json").write_text(json.dumps(doc))
    fourteen = dict(series["2024-03-04 14:00:00"])
    newer = {
        "Meta Data": {**doc["Meta Data"], "3. Last Refreshed": "2024-03-13 09:00:00"},
        "Time Series (1min)": {
            "2024-03-04T14:00:00": {**fourteen, "4. close": fourteen["3. low"], "5. volume": "4321"}
        },
    }
    (replay / "refresh.json").write_text(json.dumps(newer))

    ok, summary, error = materialize(
        lake, ["NVDA"], "2024-03-04", "2024-03-04", source="replay", replay_dir=str(replay)
    )
    assert ok, error
    assert not summary.withheld
    assert summary.metadata["bronze"]["duplicate_instant"] == 2  # "12:00" and "T12:00:00.000" repeat 12:00:00
    assert summary.checks["bronze_no_duplicate_bar_in_a_payload"][:2] == (False, "WARN")
    assert summary.checks["bronze_no_duplicate_bar_in_a_payload"][2]["soda_value"] == 2

    silver = read_table(str(lake), "silver")
    day = silver[silver["trade_date"] == date(2024, 3, 4)]
    assert not day.duplicated(["symbol", "ts_utc"]).any()
    by_minute = day.set_index(day["ts_local"].dt.strftime("%H:%M:%S.%f"))
    assert int(by_minute.loc["12:00:00.000000", "volume"]) == 777  # the payload's last spelling of 12:00
    assert int(by_minute.loc["14:00:00.000000", "volume"]) == 4321  # the newer response's
    reasons = day["dq_reason"].dropna().str.split(";").explode().value_counts().to_dict()
    assert reasons.get("off_grid") == 2 and reasons.get("fractional_volume") == 1, reasons
    assert by_minute.loc["13:00:00.000000", "volume"] is None or pd.isna(by_minute.loc["13:00:00.000000", "volume"])

    sample = bars_from_payloads([NVDA_SAMPLE])
    crafted = bars_from_payloads([replay / "day.json", replay / "refresh.json"])
    bars = pd.concat([sample[sample.trade_date != date(2024, 3, 4)], crafted], ignore_index=True)
    expected_gold = gold_reference(bars)
    assert int(expected_gold.set_index("trade_date").loc[date(2024, 3, 4), "invalid_bar_count"]) == 3
    gold_columns = [f for f in expected_gold.columns if f not in ("symbol", "trade_date")]
    assert_frames_close(read_table(str(lake), "gold"), expected_gold, gold_columns)
    # BI of every day: the run's, and the later ones whose windows reach it (rewritten with it)
    expected_bi = bi_reference(expected_gold)
    bi_columns = [c for c in expected_bi.columns if c not in ("symbol", "trade_date")]
    assert_frames_close(read_table(str(lake), "bi"), expected_bi, bi_columns)
    assert_unchanged(before, lake, except_={("NVDA", date(2024, 3, 4))})


@pytest.mark.spark
def test_the_grid_follows_the_interval(spark):
    rows = [
        bronze_row(ts, "10", "11", "9", "10.5", "1")
        for ts in ("2024-03-04 10:00:00", "2024-03-04 10:05:00", "2024-03-04 10:07:00", "2024-03-04 11:00:00")
    ]
    for row in rows:
        row["interval"] = "5min"
    hourly = bronze_row("2024-03-04 10:30:00", "10", "11", "9", "10.5", "1")
    hourly["interval"] = "60min"
    silver = silver_of(spark, [*rows, hourly])
    got = dict(
        zip(silver["ts_local"].dt.strftime("%H:%M") + " " + silver["interval"], silver["dq_reason"], strict=True)
    )
    assert got == {
        "10:00 5min": None,
        "10:05 5min": None,
        "10:07 5min": "off_grid",
        "11:00 5min": None,
        "10:30 60min": "off_grid",
    }

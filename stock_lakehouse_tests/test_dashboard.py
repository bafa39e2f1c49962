"""The dashboard: its shaping functions on hand-made frames, the page in a real browser over a lake built
by the pipeline, and its data access on MinIO.

One lake serves every test that needs one (module fixture): the bundled NVDA sample (2024-03-01..12) and
one day of a symbol XYZ with 3 bad bars in 60, which the row-quality gate withholds. The settings lower
the anomaly thresholds so the sample has anomalies to show.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner

from stock_lakehouse.cli import main
from stock_lakehouse.dashboard import shaping
from stock_lakehouse.quality.gates import Verdict, judge_partitions, judge_partitions_duckdb
from stock_lakehouse.quality.rules import QUALITY_DIR, load_suite
from stock_lakehouse_tests.conftest import NVDA_SAMPLE
from stock_lakehouse_tests.services import bin_path, chromium, free_port, logged_process, wait_for_text, wait_http

D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)
PRICE_PCT, VOLUME_MULTIPLE = 5.0, 1.5


def _day(d: date) -> pd.Timestamp:
    return pd.Timestamp(d)


# ---------------------------------------------------------------- (a) shaping, no lake, no browser


def bi_rows(**overrides) -> pd.DataFrame:
    rows = {
        "symbol": ["AAA"] * 3,
        "trade_date": [D1, D2, D3],
        "close": [100.0, 110.0, 109.0],
        "vwap": [99.5, 108.0, 109.5],
        "volume": [1_000, 5_000, 1_200],
        "prev_close": [float("nan"), 100.0, 110.0],
        "price_change_pct": [float("nan"), 10.0, -0.909],
        "volume_7d_avg": [1_000.0, 1_000.0, 2_400.0],
        "volatility_score": [float("nan"), float("nan"), 80.0],
    }
    rows.update(overrides)
    return pd.DataFrame(rows)


def test_daily_view_puts_bi_and_signals_side_by_side_by_date():
    signals = pd.DataFrame(
        {
            "symbol": ["AAA"] * 3,
            # D3 before D1: the view sorts; a day in signals only keeps its row with the signals' close.
            "trade_date": [D3, D1, date(2024, 3, 7)],
            "close": [109.0, 100.0, 111.0],
            "sma_5": [1.0, 2.0, 3.0],
            "sma_20": [None, None, 4.0],
            "bb_upper": [None, None, 5.0],
            "bb_lower": [None, None, 6.0],
            "rsi_14": [None, None, 70.5],
        }
    )
    daily = shaping.daily_view(bi_rows(), signals)
    assert list(daily.columns) == shaping.DAILY_COLUMNS
    assert list(daily.trade_date) == [_day(D1), _day(D2), _day(D3), _day(date(2024, 3, 7))]
    assert list(daily.close) == [100.0, 110.0, 109.0, 111.0]
    assert list(daily.vwap.fillna(-1)) == [99.5, 108.0, 109.5, -1]
    assert list(daily.sma_5.fillna(-1)) == [2.0, -1, 1.0, 3.0]
    assert daily.rsi_14.iloc[-1] == 70.5 and daily.volume.iloc[1] == 5_000


def test_daily_view_of_nothing_is_empty_with_its_columns():
    daily = shaping.daily_view(pd.DataFrame(), pd.DataFrame())
    assert daily.empty and list(daily.columns) == shaping.DAILY_COLUMNS


def test_anomaly_table_applies_find_anomalies_with_the_given_thresholds():
    table = shaping.anomaly_table(bi_rows(), price_change_pct=8.0, volume_multiple=3.0)
    # D2: +10 % > 8 % and 5,000 > 3 x 1,000; D3: -0.9 % and 1,200 < 3 x 2,400 are not anomalies.
    assert list(table.columns) == shaping.ANOMALY_COLUMNS
    assert list(zip(table.trade_date, table.symbol, table.rule, strict=True)) == [
        (_day(D2), "AAA", "price_change"),
        (_day(D2), "AAA", "volume"),
    ]
    assert (
        table.detail.iloc[0]
        == "AAA 2024-03-05: close 110.00 is +10.00 % from the previous close 100.00 (threshold 8 %)"
    )
    # Higher thresholds: nothing; an empty BI: an empty table with its columns.
    assert shaping.anomaly_table(bi_rows(), 20.0, 10.0).empty
    assert list(shaping.anomaly_table(pd.DataFrame(), 8.0, 3.0).columns) == shaping.ANOMALY_COLUMNS


def test_anomaly_table_lists_the_most_recent_first():
    bi = bi_rows(price_change_pct=[float("nan"), 10.0, -12.0])
    assert list(shaping.anomaly_table(bi, 8.0, 30.0).trade_date) == [_day(D3), _day(D2)]


def verdicts() -> list[Verdict]:
    from stock_lakehouse.partitions import BarPartition

    return [
        Verdict.of(BarPartition("AAA", D1), 60, 3, 0.01, {"silver_close_present": 1, "silver_low_not_above_high": 2}),
        Verdict.of(BarPartition("AAA", D2), 390, 1, 0.01, {"silver_low_not_above_high": 1}),
        Verdict.of(BarPartition("AAA", D3), 390, 0, 0.01),
    ]


def test_verdict_frame_keeps_the_gates_verdicts():
    frame = shaping.verdict_frame(verdicts())
    assert list(frame.withheld) == [True, False, False]  # 5 % and 0.26 % against 1 %
    assert frame.share.iloc[0] == pytest.approx(0.05)
    assert frame.failing_rules.iloc[0] == "silver_close_present 1, silver_low_not_above_high 2"


def test_quarantine_table_counts_bars_and_reasons_per_partition_with_the_verdict():
    quarantine = pd.DataFrame(
        {
            "symbol": ["AAA"] * 4,
            "trade_date": [D1, D1, D1, D2],
            "dq_reason": [
                "missing_close",
                "low_above_high;negative_volume",
                "low_above_high",
                "low_above_open_or_close",
            ],
        }
    )
    table = shaping.quarantine_table(quarantine, shaping.verdict_frame(verdicts()))
    assert list(table.columns) == shaping.PARTITION_COLUMNS
    # D3 has neither a quarantined nor a failing bar: not listed. Most recent first.
    assert list(table.trade_date) == [_day(D2), _day(D1)]
    d2, d1 = table.iloc[0], table.iloc[1]
    assert (d1.bars, d1.quarantined, d1.gate_failing, bool(d1.withheld)) == (60, 3, 3, True)
    assert d1.reasons == "low_above_high 2, missing_close 1, negative_volume 1"
    # A bar flagged invalid that passes every gate rule still counts as quarantined.
    assert (d2.quarantined, d2.gate_failing, bool(d2.withheld)) == (1, 1, False)


def test_quarantine_table_without_bad_bars_is_empty():
    clean = [v for v in verdicts() if not v.invalid]
    assert shaping.quarantine_table(pd.DataFrame(), shaping.verdict_frame(clean)).empty
    assert shaping.quarantine_table(pd.DataFrame(), shaping.verdict_frame([])).empty


def test_quarantined_bars_are_the_latest_first_and_limited():
    ts = pd.to_datetime(["2024-03-04 14:31", "2024-03-05 14:32", "2024-03-04 15:00"], utc=True)
    quarantine = pd.DataFrame(
        {"symbol": "AAA", "trade_date": [D1, D2, D1], "ts_utc": ts, "ts_local": ts.tz_localize(None), "dq_reason": "x"}
    )
    bars = shaping.quarantined_bars(quarantine, limit=2)
    assert list(bars.columns) == shaping.QUARANTINED_BAR_COLUMNS
    assert list(bars.ts_local) == [pd.Timestamp("2024-03-05 14:32"), pd.Timestamp("2024-03-04 15:00")]


def test_freshness_table_takes_the_latest_date_and_bar_per_table():
    frames = {
        "bronze": pd.DataFrame({"trade_date": [D1, D2], "bar_time": ["2024-03-04 19:59:00", "2024-03-05 09:30:00"]}),
        "silver": pd.DataFrame(
            {"trade_date": [D2, D1], "bar_time": pd.to_datetime(["2024-03-05 16:00", "2024-03-04 19:59"])}
        ),
        "gold": pd.DataFrame({"trade_date": [D1, D3], "bar_time": pd.NaT}),
        "signals": pd.DataFrame(columns=["trade_date", "bar_time"]),
    }
    table = shaping.freshness_table(frames)
    assert list(table.table) == ["bronze", "silver", "gold", "signals"]
    assert list(table.latest_trade_date.iloc[:3]) == [_day(D2), _day(D2), _day(D3)]
    assert table.latest_bar_time.iloc[0] == pd.Timestamp("2024-03-05 09:30")
    assert table.latest_bar_time.iloc[1] == pd.Timestamp("2024-03-05 16:00")
    assert pd.isna(table.latest_bar_time.iloc[2]) and pd.isna(table.latest_trade_date.iloc[3])


def test_lag_line_says_when_the_page_read_and_how_far_the_newest_silver_bar_is_behind():
    frames = {
        "bronze": pd.DataFrame({"trade_date": [D2], "bar_time": ["2024-03-05 15:59:00"]}),
        "silver": pd.DataFrame({"trade_date": [D2], "bar_time": pd.to_datetime(["2024-03-05 15:57"])}),
    }
    fresh = shaping.freshness_table(frames)
    during = shaping.lag_line(fresh, pd.Timestamp("2024-03-05 16:00:10"), 60)
    assert during == (
        "read 2024-03-05 16:00:10 New York; newest silver bar 2024-03-05 15:57, 3 min behind; re-read every 60 s"
    )
    assert "90 s behind" in shaping.lag_line(fresh, pd.Timestamp("2024-03-05 15:58:30"), 60)
    assert "17 h behind" in shaping.lag_line(fresh, pd.Timestamp("2024-03-06 09:00"), 60)
    assert "2 days behind; re-read on reload" in shaping.lag_line(fresh, pd.Timestamp("2024-03-07 16:00"), 0)
    empty = shaping.freshness_table({"silver": pd.DataFrame(columns=["trade_date", "bar_time"])})
    assert "no bar in silver yet" in shaping.lag_line(empty, pd.Timestamp("2024-03-05 10:00"), 60)


def test_the_page_measures_lag_against_the_deployments_clock(tmp_path, clean_env):
    from stock_lakehouse.dashboard.app import _now_in_new_york
    from stock_lakehouse.dashboard.data import LakeData
    from stock_lakehouse.settings import load_settings

    # A simulated session (automation.clock_*): "now" is the session's, as the schedules and sensors see it.
    overrides = {"lake_root": str(tmp_path), "automation.clock_utc": "2024-03-05T21:00:10Z"}
    data = LakeData.from_settings(load_settings(overrides=overrides))
    assert _now_in_new_york(data) == pd.Timestamp("2024-03-05 16:00:10")
    wall = LakeData.from_settings(load_settings(overrides={"lake_root": str(tmp_path)}))
    assert abs(_now_in_new_york(wall) - pd.Timestamp.now(tz="America/New_York").tz_localize(None)) < pd.Timedelta(
        "1min"
    )


def bad_bars() -> pa.Table:
    """Bars failing each kind of partition rule, with NaN and infinity kept apart from null (Arrow)."""
    nan, inf = float("nan"), float("inf")
    # The last two AAA bars are flagged by silver itself: a label off the interval's grid, and a fractional
    # stock volume (nulled there, so it must count as fractional, not as missing).
    return pa.table(
        {
            "symbol": ["AAA"] * 6 + ["BBB"] * 2 + ["AAA"] * 2,
            "trade_date": [D1] * 10,
            "open": [1.0, None, nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "high": [2.0, 2.0, 2.0, inf, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0],
            "low": [0.5, 0.5, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5],
            "close": [1.0, 1.0, 1.0, 1.0, 1.0, None, 1.0, 1.0, 1.0, 1.0],
            "volume": pa.array([1, -1, None, 2, 3, 4, 5, 6, 7, None], pa.int64()),
            "session": ["regular"] * 10,
            "dq_reason": [None] * 8 + ["off_grid", "fractional_volume"],
            "is_valid": [True] + [False] * 5 + [True] * 2 + [False] * 2,
        }
    )


def test_duckdb_verdicts_apply_the_silver_rules_without_spark():
    rules = load_suite(QUALITY_DIR / "silver.yml").partition_rules
    got = {v.partition.symbol: v for v in judge_partitions_duckdb(bad_bars(), rules, 0.01).values()}
    assert (got["AAA"].bars, got["AAA"].invalid, got["AAA"].withheld) == (8, 7, True)
    assert got["AAA"].by_rule == {
        "silver_open_high_low_present": 1,
        "silver_volume_not_negative": 1,
        "silver_volume_present": 1,  # the null volume, not the fractional one
        "silver_volume_whole": 1,
        "silver_bar_on_grid": 1,
        "silver_prices_finite": 2,  # the NaN open and the infinite high, not counted as missing
        "silver_low_not_above_high": 1,
        "silver_close_present": 1,
    }
    # Warning rules are counted per partition, apart: they withhold nothing.
    assert got["AAA"].warned == {"silver_invalid_bars": 7, "silver_bar_range_consistent": 2}
    assert (got["BBB"].invalid, got["BBB"].withheld, got["BBB"].warned) == (0, False, {})


@pytest.mark.spark
def test_duckdb_and_spark_reach_the_same_verdicts(spark):
    from pyspark.sql import types as T

    rules = load_suite(QUALITY_DIR / "silver.yml").partition_rules
    bars = bad_bars()
    schema = T.StructType(
        [T.StructField("symbol", T.StringType()), T.StructField("trade_date", T.DateType())]
        + [T.StructField(c, T.DoubleType()) for c in ("open", "high", "low", "close")]
        + [T.StructField("volume", T.LongType()), T.StructField("session", T.StringType())]
        + [T.StructField("dq_reason", T.StringType()), T.StructField("is_valid", T.BooleanType())]
    )
    # Row by row from Arrow: NaN stays NaN and null stays None on the way into Spark.
    frame = spark.createDataFrame([tuple(r[c] for c in schema.names) for r in bars.to_pylist()], schema)
    for max_share in (0.01, 0.9):
        assert judge_partitions(frame, rules, max_share) == judge_partitions_duckdb(bars, rules, max_share)


def test_errors_reach_the_page_in_one_line_without_keys(monkeypatch):
    from stock_lakehouse.dashboard.app import _problem

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-1234")
    # delta-rs colours its messages for a terminal and spreads them over lines.
    exc = OSError("cannot read s3://lake/x: \x1b[31m↳\x1b[0m GET failed\n  key s3cr3t-value-1234 refused")
    assert _problem(exc) == "OSError: cannot read s3://lake/x: ↳ GET failed key *** refused"


def test_dashboard_command_serves_on_loopback_by_default():
    params = {p.name: p for p in main.commands["dashboard"].params}
    assert (params["host"].default, params["port"].default) == ("127.0.0.1", 8050)
    assert "--lake-root" in params["lake_root"].opts


def _status(app) -> str:
    """The status line of the page's layout (built on each page load)."""

    def find(node):
        if getattr(node, "id", None) == "status":
            return node.children
        kids = getattr(node, "children", None)
        for kid in kids if isinstance(kids, list) else [kids]:
            if kid is not None and not isinstance(kid, str) and (found := find(kid)) is not None:
                return found
        return None

    return find(app.layout())


def small_lake(root: Path, silver_days: list[date], bi_days: list[date] = ()):
    """A lake written with delta-rs (no Spark): AAA's silver bars on ``silver_days`` (one valid bar a day)
    and, when given, its BI rows on ``bi_days``. Returns the ``LakeData`` and the silver table's folder."""
    from deltalake import write_deltalake

    from stock_lakehouse.dashboard.data import LakeData
    from stock_lakehouse.lakehouse.lake import Lake
    from stock_lakehouse.quality.gates import QualityGate

    n = len(silver_days)
    ts = pd.to_datetime([f"{d} 14:30" for d in silver_days], utc=True)
    bars = pa.table(
        {
            "symbol": ["AAA"] * n,
            "trade_date": silver_days,
            "ts_utc": pa.array(ts),
            "ts_local": pa.array(ts.tz_convert("America/New_York").tz_localize(None)),
            "open": [1.0] * n,
            "high": [2.0] * n,
            "low": [0.5] * n,
            "close": [1.5] * n,
            "volume": pa.array([10] * n, pa.int64()),
            "session": ["regular"] * n,
            "is_valid": [True] * n,
            "dq_reason": pa.array([None] * n, pa.string()),
        }
    )
    silver = root / "lake" / "silver" / "stock_clean"
    write_deltalake(str(silver), bars, partition_by=["symbol", "trade_date"])
    if bi_days:
        k = len(bi_days)
        bi = pa.table(
            {
                "symbol": ["AAA"] * k,
                "trade_date": list(bi_days),
                "close": [100.0 + i for i in range(k)],
                "vwap": [100.0] * k,
                "volume": pa.array([1_000] * k, pa.int64()),
                "prev_close": [None] + [100.0 + i for i in range(k - 1)],
                "price_change_pct": [None] + [1.0] * (k - 1),
                "volume_7d_avg": [1_000.0] * k,
                "volatility_score": [None] * k,
            }
        )
        write_deltalake(str(root / "lake" / "gold" / "bi_stock_daily"), bi, partition_by=["symbol", "trade_date"])
    gate = QualityGate(rules_file=str(QUALITY_DIR / "silver.yml"), max_invalid_share=0.01)
    return LakeData(Lake(root=str(root / "lake")), PRICE_PCT, VOLUME_MULTIPLE, gate), silver


def test_an_empty_view_says_why(tmp_path):
    """Start after end, no bars of the symbol in the range, no symbol at all, an unreadable lake: each
    page says so in its status line (a silver table of two days written with delta-rs, no Spark)."""
    from stock_lakehouse.dashboard.app import create_app, view
    from stock_lakehouse.dashboard.data import LakeData
    from stock_lakehouse.lakehouse.lake import Lake

    data, silver = small_lake(tmp_path, [D1, D2])
    gate = data.gate

    assert _status(create_app(data)) == ""
    assert view(data, "AAA", D1, D2)[-1] == ""  # bars to show: no note
    assert view(data, "AAA", D2, D1)[-1].startswith("the start 2024-03-05 is after the end 2024-03-04")
    assert view(data, "AAA", date(2024, 4, 1), None)[-1] == (
        "no bars of AAA from 2024-04-01 on: it has bars from 2024-03-04 to 2024-03-05"
    )
    assert view(data, "AAA", date(2024, 3, 6), date(2024, 3, 8))[-1].startswith("no bars of AAA from 2024-03-06 to")
    assert view(data, "ZZZ", None, None)[-1] == f"ZZZ has no bars in silver under {tmp_path / 'lake'}"
    # A symbol outside the grammar (only a forged request sends one) is refused before any read.
    assert view(data, "X') OR 1=1 --", None, None)[-1].startswith('invalid symbol "X\') OR 1=1 --" from the symbol')
    nowhere = LakeData(Lake(root=str(tmp_path / "nowhere")), PRICE_PCT, VOLUME_MULTIPLE, gate)
    assert _status(create_app(nowhere)) == f"no symbol has bars in silver under {tmp_path / 'nowhere'} yet"

    # A data file the log lists is gone: an error, not an empty "no data" page.
    next(silver.rglob("trade_date=2024-03-04/*.parquet")).unlink()
    status = view(data, "AAA", None, None)[-1]
    assert status.startswith("cannot read the lake: OSError: cannot read table") and "not found" in status, status
    # A log that cannot be parsed: the page (not only the charts) says so.
    next(silver.glob("_delta_log/*.json")).write_text("{not json")
    assert _status(create_app(data)).startswith("cannot read the lake: OSError: cannot read the Delta table at")


def bounds_of(symbol: str) -> tuple[date, date]:
    """Every symbol's first and last day, for ``query.resolve``."""
    return date(2024, 3, 1), date(2024, 3, 12)


#: A link's bad values and the page's notes for each, as over ``built_lake`` (NVDA 2024-03-01..12 is shown
#: first, XYZ is the other symbol).
GRAMMAR = "a symbol is 1-20 letters, digits, '.' or '-', starting with a letter or digit"
BAD_LINKS = {
    "?symbol=ZZZZ": ["unknown symbol ZZZZ: it has no bars in silver; showing NVDA instead"],
    "?symbol=%3Cscript%3Ealert(1)%3C/script%3E": [
        f"invalid symbol '<script>alert(1)</script>' from the link: {GRAMMAR}; showing NVDA instead"
    ],
    "?symbol=X%27)%20OR%201=1%20--": [
        f'invalid symbol "X\') OR 1=1 --" from the link: {GRAMMAR}; showing NVDA instead'
    ],
    "?symbol=../../etc": [f"invalid symbol '../../etc' from the link: {GRAMMAR}; showing NVDA instead"],
    "?symbol=NVDA&start=2024-13-45": [
        "invalid start date '2024-13-45' (expected YYYY-MM-DD): showing 2024-03-01 to 2024-03-12"
    ],
    "?symbol=NVDA&start=2024-03-04&end=20240308": [
        "invalid end date '20240308' (expected YYYY-MM-DD): showing 2024-03-04 to 2024-03-12"
    ],
    "?start=x&end=2024-02-30": [
        "invalid start date 'x' (expected YYYY-MM-DD): showing 2024-03-01 to 2024-03-12",
        "invalid end date '2024-02-30' (expected YYYY-MM-DD): showing 2024-03-01 to 2024-03-12",
    ],
    "?symbol=XYZ&symbol=ZZZZ&sym=NVDA&%3Cb%3E=1": [
        "symbol is given 2 times in the link: using the first",
        "ignored 'sym', '<b>' in the link: the page reads symbol, start and end",
    ],
}


@pytest.mark.parametrize("search", BAD_LINKS)
def test_a_link_value_the_page_does_not_take_gets_a_note(search):
    from stock_lakehouse.dashboard.query import resolve

    asked = resolve(search, ["NVDA", "XYZ"], "NVDA", bounds_of)
    assert list(asked.notes) == BAD_LINKS[search]
    # A refused symbol never gets past the check: the page shows one of the lake's symbols.
    assert asked.symbol in ("NVDA", "XYZ")


def test_a_link_resolves_to_a_symbol_of_the_lake_and_a_range():
    from stock_lakehouse.dashboard.query import Asked, resolve

    symbols = ["NVDA", "XYZ"]
    # Lower case is the same ticker: upper-cased by the validator, without a note.
    assert resolve("?symbol=xyz", symbols, "NVDA", bounds_of) == Asked("XYZ", date(2024, 3, 1), date(2024, 3, 12))
    assert resolve("", symbols, "NVDA", bounds_of) == Asked("NVDA", date(2024, 3, 1), date(2024, 3, 12))
    # Both dates given: the symbol's bounds are not read.
    asked = resolve("?symbol=XYZ&start=2024-03-05&end=2024-03-06", symbols, "NVDA", lambda s: 1 / 0)
    assert asked == Asked("XYZ", D2, D3)
    # A start after the end is taken as given (the view says so); a start after the symbol's last day
    # leaves the end open (the view says where the symbol has bars).
    assert resolve("?start=2024-03-08&end=2024-03-04", symbols, "NVDA", bounds_of).start == date(2024, 3, 8)
    assert resolve("?start=2024-04-01", symbols, "NVDA", bounds_of) == Asked("NVDA", date(2024, 4, 1), None)
    assert resolve("?end=2024-02-01", symbols, "NVDA", bounds_of) == Asked("NVDA", None, date(2024, 2, 1))
    # A lake without symbols: nothing to show instead, and the dates are ignored.
    assert resolve("?symbol=nvda&start=2024-13-45", [], None, bounds_of).notes == (
        "unknown symbol NVDA: it has no bars in silver; showing no symbol: the lake has none yet",
        "invalid start date '2024-13-45' (expected YYYY-MM-DD): ignored",
    )
    # A refused value is repeated at most 40 characters long.
    (note,) = resolve(f"?start={'9' * 500}", symbols, "NVDA", bounds_of).notes
    assert f"'{'9' * 40}'" in note and "9" * 41 not in note


def test_the_links_notes_show_while_the_page_shows_what_the_link_resolved_to():
    from stock_lakehouse.dashboard.app import link_notes

    asked = {"symbol": "NVDA", "start": "2024-03-01", "end": "2024-03-12", "notes": ["unknown symbol ZZZZ: ..."]}
    assert link_notes("NVDA", "2024-03-01", "2024-03-12", asked) == ["unknown symbol ZZZZ: ..."]
    assert link_notes("NVDA", "2024-03-01T00:00:00", "2024-03-12", asked) == ["unknown symbol ZZZZ: ..."]
    # Another symbol or range picked since: the link no longer describes the page.
    assert link_notes("XYZ", "2024-03-01", "2024-03-12", asked) == []
    assert link_notes("NVDA", "2024-03-04", "2024-03-12", asked) == []
    assert link_notes("NVDA", None, None, None) == []


def test_on_trading_days_gives_a_day_without_gold_rows_a_row_of_nulls():
    daily = shaping.daily_view(bi_rows(trade_date=[D1, D3, date(2024, 3, 11)]), pd.DataFrame())
    out = shaping.on_trading_days(daily, [D3, D1, D2, D3, date(2024, 3, 7)])  # any order, repeats
    assert list(out.columns) == shaping.DAILY_COLUMNS
    assert list(out.trade_date) == [_day(D1), _day(D2), _day(D3), _day(date(2024, 3, 7)), _day(date(2024, 3, 11))]
    assert list(out.close.isna()) == [False, True, False, True, False]
    assert shaping.on_trading_days(shaping.daily_view(pd.DataFrame(), pd.DataFrame()), [D1]).empty


def test_daily_charts_plot_trading_days_as_categories_with_a_gap_for_a_missing_day(tmp_path):
    """Fri 03-01 and Mon 03-04 to Wed 03-06 in silver; gold without 03-04 (withheld) and 03-05 (no bars at
    all): every trading day has its place on the axis, the weekend none, and the close breaks at both."""
    from stock_lakehouse.dashboard.app import view

    friday = date(2024, 3, 1)
    data, _ = small_lake(tmp_path, [friday, D1, D3], bi_days=[friday, D3])
    price, volume, risk, *_, status = view(data, "AAA", None, None)
    assert status == ""
    days = ["2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06"]
    for fig in (price, volume, risk):
        assert fig.layout.xaxis.type == "category"
        assert all(list(trace.x) == days for trace in fig.data)
    close = next(t for t in price.data if t.name == "close")
    assert [pd.isna(y) for y in close.y] == [False, True, True, False] and not close.connectgaps
    assert risk.layout.xaxis2.type == "category"


# ---------------------------------------------------------------- (b) the page in a real browser


@dataclass(frozen=True)
class BuiltLake:
    lake: Path
    config: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a dashboard process: this lake's settings file and nothing else of ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_")}
        return {**env, "STOCK_LAKEHOUSE_CONFIG": str(self.config), **extra}


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory) -> BuiltLake:
    """NVDA 2024-03-01..12 (the bundled sample) and XYZ on 2024-03-04 with 3 bad bars of 60 (withheld),
    materialized once for the module, in this process (its Spark session is shared with other tests)."""
    from stock_lakehouse.runs.materialize import run_materialize
    from stock_lakehouse_tests.test_quality_gates import DAY, day_payload, swap_high_low

    root = tmp_path_factory.mktemp("dashboard")
    rec, home, lake = root / "rec", root / "home", root / "lake"
    rec.mkdir()
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (rec / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    clean = day_payload("XYZ", 60, {})
    broken = {
        f"{DAY} 09:40:00": swap_high_low(clean, f"{DAY} 09:40:00"),
        f"{DAY} 09:41:00": {"5. volume": "-500"},
        f"{DAY} 09:42:00": {"4. close": None},
    }
    (rec / "xyz.json").write_text(day_payload("XYZ", 60, broken))
    config = root / "stock_lakehouse.yaml"
    settings = {
        "symbols": ["NVDA", "XYZ"],
        "source": "replay",
        "replay_dir": str(rec),
        "lake_root": str(lake),
        "automation": {"anomaly_price_change_pct": PRICE_PCT, "anomaly_volume_multiple": VOLUME_MULTIPLE},
    }
    config.write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("STOCK_LAKEHOUSE_") and name != "STOCK_LAKEHOUSE_IVY_DIR":
                mp.delenv(name)
        mp.setenv("STOCK_LAKEHOUSE_CONFIG", str(config))
        mp.setenv("DAGSTER_HOME", str(home))
        ok, summary, error = run_materialize(["NVDA", "XYZ"], date(2024, 3, 1), date(2024, 3, 12), {})
    assert ok, error
    assert [w.split(":")[0] for w in summary.withheld] == [f"{DAY}|XYZ"]
    return BuiltLake(lake, config)


@contextlib.contextmanager
def dashboard(lake_root: str, env: dict[str, str], log: Path, *options: str) -> Iterator[str]:
    """``stock-lakehouse dashboard`` as a real process on a free loopback port; yields its URL."""
    port = free_port()
    cmd = [bin_path("stock-lakehouse"), "dashboard", "--port", str(port), "--lake-root", lake_root, *options]
    started = time.monotonic()
    with logged_process(cmd, log, env) as proc:
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        print(f"dashboard answered {time.monotonic() - started:.1f}s after start")
        yield f"http://127.0.0.1:{port}"


def wait_for(driver, css: str, count: int = 1, timeout: float = 60.0) -> list:
    """The elements matching ``css`` once there are at least ``count`` of them (the page draws after load)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if len(found) >= count:
            return found
        time.sleep(0.3)
    body = driver.find_element(By.TAG_NAME, "body").text
    raise AssertionError(f"page never showed {count} x {css!r}; it shows: {body[:1500]}")


def wait_text(driver, element_id: str, expected: str, timeout: float = 30.0) -> None:
    """Wait until the element's text is ``expected`` (a note appears once the page's callbacks ran)."""
    from selenium.webdriver.common.by import By

    deadline, text = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        found = driver.find_elements(By.ID, element_id)  # none until Dash has drawn the layout
        text = found[0].text if found else None
        if text == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"#{element_id} shows {text!r}, not {expected!r}")


def table_rows(driver, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    rows = wait_for(driver, f"#{table_id} tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


@pytest.mark.browser  # starts Chromium in its body
@pytest.mark.spark
def test_the_page_shows_charts_anomalies_quarantine_and_freshness(built_lake, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    from stock_lakehouse.lakehouse.reader import read_table

    bi = read_table(str(built_lake.lake), "bi", ["NVDA"])
    expected = shaping.anomaly_table(bi, PRICE_PCT, VOLUME_MULTIPLE)
    # The settings' thresholds make three anomalies of the sample: the real rule, not a fixture's.
    assert len(expected) == 3
    log = tmp_path / "dashboard.log"
    # No timed redraw here: it would replace elements while they are read (test_the_page_re_reads_...).
    with dashboard(str(built_lake.lake), built_lake.env(), log, "--refresh-seconds", "0") as url, chromium() as driver:
        driver.set_window_size(1300, 2200)
        requested = time.monotonic()
        driver.get(f"{url}/?symbol=NVDA")
        # Six series on the price chart, drawn by Plotly as SVG; eight daily points of the close.
        traces = wait_for(driver, "#price-chart g.scatterlayer g.trace", count=6)
        print(f"page drawn {time.monotonic() - requested:.1f}s after it was requested")
        legend = {e.get_attribute("textContent") for e in wait_for(driver, "#price-chart g.legend text.legendtext", 6)}
        assert legend == {"close", "VWAP", "SMA 5", "SMA 20", "Bollinger upper", "Bollinger lower"}
        assert len(traces[-1].find_elements(By.CSS_SELECTOR, "path.point")) == 8  # close: the last trace
        assert "NVDA: close, VWAP, SMA and Bollinger bands" in driver.find_element(By.ID, "price-chart").text
        assert len(wait_for(driver, "#volume-chart g.barlayer path", count=8)) == 8
        # Trading days are the x axis' categories: every tick a date, none a time of day.
        ticks = [e.get_attribute("textContent") for e in wait_for(driver, "#price-chart g.xtick text", count=2)]
        assert all(re.fullmatch(r"2024-03-\d\d", t) for t in ticks), ticks
        assert len(wait_for(driver, "#risk-chart g.scatterlayer g.trace", count=2)) == 2
        # The anomaly table is find_anomalies' output for these settings, most recent first.
        rows = table_rows(driver, "anomalies-table")
        assert [r[-1] for r in rows] == list(expected.detail)
        assert rows[0][:3] == ["2024-03-12", "NVDA", "price_change"]
        assert any("NVDA 2024-03-08: close 875.02 is -5.58 % from the previous close 926.74" in r[-1] for r in rows)
        assert "No quarantined bars for NVDA" in driver.find_element(By.ID, "quarantine").text
        fresh = {r[0]: r[1:] for r in table_rows(driver, "freshness-table")}
        assert fresh["bronze"] == ["2024-03-12", "2024-03-12 19:59"]
        assert fresh["bi"] == ["2024-03-12", "—"]
        lag = driver.find_element(By.ID, "lag").text
        assert f"newest silver bar {fresh['silver'][1]}, " in lag and lag.endswith("re-read on reload"), lag
        time.sleep(1)  # let Plotly finish its transitions for the picture
        driver.save_screenshot(str(tmp_path / "dashboard-nvda.png"))

        # XYZ's only day is withheld: no chart data, its partition and bad bars in the quarantine table.
        driver.get(f"{url}/?symbol=XYZ")
        rows = table_rows(driver, "quarantine-table")
        assert rows == [
            [
                "XYZ",
                "2024-03-04",
                "60",
                "3",
                # the swapped bar is flagged three ways; the gate counts it once (low above high)
                "high_below_open_or_close 1, low_above_high 1, low_above_open_or_close 1, missing_close 1, "
                "negative_volume 1",
                "3",
                "5.00 %",
                "yes",
            ]
        ]
        assert "No anomalies for XYZ" in driver.find_element(By.ID, "anomalies").text
        driver.save_screenshot(str(tmp_path / "dashboard-xyz.png"))

        # A link's bad values, on the same page one after another: the page says what it did with each,
        # as text (markup stays text: no element made of it, no script run).
        started = time.monotonic()
        for search, notes in BAD_LINKS.items():
            driver.get(f"{url}/{search}")
            wait_text(driver, "link-notes", "\n".join(notes))
        assert not driver.find_elements(By.CSS_SELECTOR, "#link-notes b, #link-notes script")
        assert not driver.find_elements(By.XPATH, "//script[contains(., 'alert(1)')]")
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        # Lower case is the same symbol, without a note; a start after the end is said in the status line.
        driver.get(f"{url}/?symbol=xyz")
        wait_for_text(driver, ["XYZ: close, VWAP"])
        assert driver.find_element(By.ID, "link-notes").text == ""
        driver.get(f"{url}/?symbol=NVDA&start=2024-03-12&end=2024-03-01")
        wait_text(
            driver, "status", "the start 2024-03-12 is after the end 2024-03-01: nothing to show; pick an earlier start"
        )
        print(f"{len(BAD_LINKS) + 2} bad links read in {time.monotonic() - started:.1f}s")
    text = log.read_text()
    assert "Traceback" not in text and "cannot read the lake" not in text


@pytest.mark.browser  # starts Chromium in its body
@pytest.mark.spark
def test_the_page_re_reads_the_lake_by_itself(built_lake, tmp_path):
    """Issue 26: with ``--refresh-seconds 2`` the page redraws without a reload, and says when it read and how
    far silver's newest bar is behind (the bar from the lake itself)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    from stock_lakehouse.lakehouse.reader import read_table

    newest = read_table(str(built_lake.lake), "silver", ["NVDA"]).ts_local.max()

    def lag_text(driver) -> str:
        for _ in range(40):  # the element is replaced at each redraw
            try:
                return driver.find_element(By.ID, "lag").text
            except (NoSuchElementException, StaleElementReferenceException):
                time.sleep(0.25)
        raise AssertionError("the page shows no read line")

    options = ("--refresh-seconds", "2")
    log = tmp_path / "dashboard.log"
    with dashboard(str(built_lake.lake), built_lake.env(), log, *options) as url, chromium() as driver:
        driver.get(f"{url}/?symbol=NVDA")
        wait_for(driver, "#lag")
        first = lag_text(driver)
        assert f"newest silver bar {newest:%Y-%m-%d %H:%M}, " in first, first
        assert first.endswith("behind; re-read every 2 s"), first
        deadline = time.monotonic() + 20
        while lag_text(driver) == first and time.monotonic() < deadline:
            time.sleep(0.5)
        assert lag_text(driver) != first, "the page did not re-read the lake by itself"


# ---------------------------------------------------------------- (c) the same data from MinIO


@pytest.mark.browser  # starts Chromium in its body
@pytest.mark.spark
def test_data_access_on_minio_equals_the_local_lake(built_lake, minio, tmp_path, clean_env, monkeypatch):
    from stock_lakehouse.dashboard.data import LakeData
    from stock_lakehouse.lakehouse.object_store import S3Location
    from stock_lakehouse.settings import load_settings

    for name, value in {**minio, "STOCK_LAKEHOUSE_CONFIG": str(built_lake.config)}.items():
        monkeypatch.setenv(name, value)
    # Delta tables are plain files: copying the table folders makes the same tables on the store.
    client = S3Location(endpoint=minio["STOCK_LAKEHOUSE_S3_ENDPOINT"]).boto3_client()
    for path in sorted(built_lake.lake.rglob("*")):
        rel = path.relative_to(built_lake.lake)
        if path.is_file() and rel.parts[0] in ("bronze", "silver", "gold"):
            client.upload_file(str(path), "lake", f"dashboard/{rel.as_posix()}")
    remote_root = "s3a://lake/dashboard"
    local = LakeData.from_settings(load_settings(overrides={"lake_root": str(built_lake.lake)}))
    remote = LakeData.from_settings(load_settings(overrides={"lake_root": remote_root}))
    assert remote.lake.uri == remote_root and remote.lake.s3.endpoint == minio["STOCK_LAKEHOUSE_S3_ENDPOINT"]

    assert remote.symbols() == local.symbols() == ["NVDA", "XYZ"]
    for symbol in ("NVDA", "XYZ"):
        assert remote.date_bounds(symbol) == local.date_bounds(symbol)
        assert remote.verdicts(symbol, None, None) == local.verdicts(symbol, None, None)
        for table in ("bi", "signals", "quarantine"):
            pd.testing.assert_frame_equal(
                remote.read(table, symbol, date(2024, 3, 4), date(2024, 3, 8)),
                local.read(table, symbol, date(2024, 3, 4), date(2024, 3, 8)),
            )
        for table, frame in remote.freshness(symbol).items():
            pd.testing.assert_frame_equal(frame, local.freshness(symbol)[table])
    assert len(local.read("bi", "NVDA")) == 8 and len(local.read("quarantine", "XYZ")) == 3
    assert [v.withheld for v in remote.verdicts("XYZ", None, None)] == [True]

    # ``sql`` over the same lakes gives the same rows.
    query = "SELECT symbol, trade_date, close, volume_7d_avg FROM bi_stock_daily ORDER BY 1, 2"
    outputs = []
    for root in (str(built_lake.lake), remote_root):
        result = CliRunner().invoke(main, ["sql", "--format", "csv", "--lake-root", root, query])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1] and outputs[0].count("\nNVDA,") == 8

    # The page over MinIO: its data is there, and neither key is on the page or in the server's log.
    from selenium.webdriver.common.by import By

    log = tmp_path / "dashboard-minio.log"
    with dashboard(remote_root, built_lake.env(**minio), log) as url, chromium() as driver:
        driver.get(f"{url}/?symbol=XYZ")
        assert table_rows(driver, "quarantine-table")[0][-1] == "yes"
        assert remote_root in driver.find_element(By.ID, "lake-uri").text
        page = driver.page_source
    for secret in (minio["AWS_ACCESS_KEY_ID"], minio["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in page and secret not in log.read_text()

"""The pure Spark transforms on small hand-made frames (real Spark, no Dagster)."""

from datetime import UTC, date, datetime, time

import pandas as pd
import pytest

from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.transforms import to_bi, to_gold, to_silver
from stock_lakehouse_tests.reference import assert_frames_close, bi_reference

pytestmark = pytest.mark.spark

T0 = datetime(2024, 11, 29, 12, 0, tzinfo=UTC)


def bronze_row(
    ts,
    o,
    h,
    lo,
    c,
    v,
    *,
    symbol="ACME",
    refreshed="2024-11-29 20:00:00",
    fetched=T0,
    seq=0,
    h_="p1",
    function="TIME_SERIES_INTRADAY",
):
    return {
        "symbol": symbol,
        "trade_date": date.fromisoformat(ts[:10]),
        "ts": ts,
        "bar_seq": seq,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "source": "test",
        "function": function,
        "interval": "1min",
        "time_zone": "US/Eastern" if function == "TIME_SERIES_INTRADAY" else "UTC",
        "last_refreshed": refreshed,
        "request_fingerprint": "f",
        "payload_hash": h_,
        "payload_uri": "u",
        "fetched_at": fetched,
        "ingested_at": T0,
    }


def silver_of(spark, rows, closes=None):
    df = spark.createDataFrame([tuple(r[f.name] for f in schemas.BRONZE.fields) for r in rows], schemas.BRONZE)
    return (
        to_silver(df, closes or {date(2024, 11, 29): time(13, 0)})
        .toPandas()
        .sort_values("ts_local")
        .reset_index(drop=True)
    )


def test_silver_types_sessions_on_an_early_close_and_utc(spark):
    rows = [
        bronze_row("2024-11-29 08:00:00", "10", "11", "9", "10.5", "100"),
        bronze_row("2024-11-29 09:30:00", "10", "11", "9", "10.5", "100"),
        bronze_row("2024-11-29 12:59:00", "10", "11", "9", "10.5", "100"),
        bronze_row("2024-11-29 13:00:00", "10", "11", "9", "10.5", "100"),
    ]
    s = silver_of(spark, rows)
    assert list(s.session) == ["pre", "regular", "regular", "post"]
    # 09:30 New York in November (EST) is 14:30 UTC.
    assert s.ts_utc[1] == pd.Timestamp("2024-11-29 14:30:00")  # session time zone is UTC
    assert s.ts_local[1] == pd.Timestamp("2024-11-29 09:30:00")
    assert s.close.dtype == "float64" and s.volume.dtype == "float64"
    assert s.is_valid.all() and s.dq_reason.isna().all()


def test_silver_keeps_the_bar_of_the_latest_response(spark):
    rows = [
        bronze_row("2024-11-29 10:00:00", "10", "11", "9", "10", "1", refreshed="2024-11-29 10:05:00", h_="old"),
        bronze_row("2024-11-29 10:00:00", "20", "21", "19", "20", "2", refreshed="2024-11-29 16:00:00", h_="new"),
        # Same refresh time: the later fetch wins.
        bronze_row("2024-11-29 10:01:00", "30", "31", "29", "30", "3", fetched=T0, h_="a"),
        bronze_row(
            "2024-11-29 10:01:00", "40", "41", "39", "40", "4", fetched=datetime(2024, 11, 29, 13, tzinfo=UTC), h_="b"
        ),
        # Same payload twice (duplicate label inside it): the later one wins, like json.loads.
        bronze_row("2024-11-29 10:02:00", "50", "51", "49", "50", "5", seq=0),
        bronze_row("2024-11-29 10:02:00", "60", "61", "59", "60", "6", seq=1),
    ]
    s = silver_of(spark, rows)
    assert list(s.open) == [20.0, 40.0, 60.0]


def test_silver_flags_invalid_bars_with_reasons(spark):
    rows = [
        bronze_row("2024-11-29 10:00:00", "10", "11", "9", None, "1"),
        bronze_row("2024-11-29 10:01:00", "10", "9", "11", "10", "1"),
        bronze_row("2024-11-29 10:02:00", "10", "11", "9", "10", "-5"),
        bronze_row("2024-11-29 10:03:00", "0", "11", "9", "10", "1"),
        # Real NVDA 2024-03-05 11:22 bar: low one tenth of a cent above open is within one basis point.
        bronze_row("2024-11-29 10:04:00", "845.918", "846.5", "845.919", "846.2", "100"),
        bronze_row("2024-11-29 10:05:00", "10", "10.5", "9", "10.8", "1"),
        bronze_row("2024-11-29 10:06:00", "10", "11", "9", "10", None),
    ]
    s = silver_of(spark, rows)
    assert list(s.dq_reason) == [
        "missing_close",
        "low_above_high;low_above_open_or_close;high_below_open_or_close",
        "negative_volume",
        "nonpositive_open;low_above_open_or_close",
        None,
        "high_below_open_or_close",
        "missing_volume",
    ]
    assert list(s.is_valid) == [False, False, False, False, True, False, False]


def test_volume_is_whole_for_stocks_and_keeps_the_decimals_of_coins(spark):
    coin = {"symbol": "BTCUSD", "function": "CRYPTO_INTRADAY"}
    rows = [
        bronze_row("2024-11-29 10:00:00", "10", "11", "9", "10.5", "12.7"),  # a fraction of a share
        bronze_row("2024-11-29 10:01:00", "10", "11", "9", "10.5", "9007199254740993"),
        bronze_row("2024-11-29 15:00:00", "100", "110", "90", "105", "0.12345678", **coin),
        bronze_row("2024-11-29 15:01:00", "105", "106", "104", "105", "2.5", **coin),
    ]
    df = spark.createDataFrame([tuple(r[f.name] for f in schemas.BRONZE.fields) for r in rows], schemas.BRONZE)
    silver = to_silver(df, {date(2024, 11, 29): time(13, 0)})
    s = silver.toPandas().sort_values(["symbol", "ts_local"]).reset_index(drop=True)
    assert list(s.symbol) == ["ACME", "ACME", "BTCUSD", "BTCUSD"]
    # The stock's fraction is flagged with its volume null (never cut to 12); the coin's decimals stay.
    assert pd.isna(s.volume[0]) and s.dq_reason[0] == "fractional_volume"
    assert s.volume[1] == 9007199254740992.0  # past 2**53 a double rounds: documented, no error
    assert list(s.volume[2:]) == [0.12345678, 2.5] and s.is_valid[2:].all()
    g = to_gold(silver).toPandas().set_index("symbol")
    assert g.loc["BTCUSD", "volume"] == pytest.approx(2.62345678, rel=1e-15)
    typical = [(110 + 90 + 105) / 3, (106 + 104 + 105) / 3]
    vwap = (typical[0] * 0.12345678 + typical[1] * 2.5) / 2.62345678
    assert g.loc["BTCUSD", "vwap"] == pytest.approx(vwap, rel=1e-12)


def test_gold_uses_valid_regular_bars_and_counts_invalid_ones(spark):
    rows = [
        bronze_row("2024-11-29 09:00:00", "1", "100", "1", "50", "1000"),  # pre: ignored
        bronze_row("2024-11-29 09:30:00", "10", "12", "9", "11", "100"),
        bronze_row("2024-11-29 09:31:00", "11", "13", "10", "12", "300"),
        bronze_row("2024-11-29 09:32:00", "12", "12", "13", "12", "300"),  # invalid: low > high
        bronze_row("2024-11-29 09:33:00", "12", "14", "11", "13", "0"),
        bronze_row("2024-11-29 13:05:00", "13", "99", "1", "2", "9999"),  # post (early close): ignored
    ]
    df = spark.createDataFrame([tuple(r[f.name] for f in schemas.BRONZE.fields) for r in rows], schemas.BRONZE)
    g = to_gold(to_silver(df, {date(2024, 11, 29): time(13, 0)})).toPandas().iloc[0]
    import math

    assert (g.open, g.high, g.low, g.close, g.volume, g.bar_count, g.invalid_bar_count) == (10, 14, 9, 13, 400, 3, 1)
    assert math.isclose(g.vwap, (100 * (12 + 9 + 11) / 3 + 300 * (13 + 10 + 12) / 3) / 400, rel_tol=1e-12)
    assert math.isclose(g.avg_price, 12.0)
    assert math.isclose(g.intraday_change_pct, 30.0)
    rets = [math.log(12 / 11), math.log(13 / 12)]
    mean = sum(rets) / 2
    assert math.isclose(g.intraday_volatility, math.sqrt(sum((r - mean) ** 2 for r in rets)), rel_tol=1e-12)


def test_bi_windows_count_trading_days_with_data(spark):
    # Gold rows with a gap (no row for 01-05..01-08): windows count rows, not calendar days.
    days = [date(2024, 1, d) for d in (2, 3, 4, 9, 10, 11, 12, 16, 17)]
    gold = pd.DataFrame(
        {
            "symbol": "ACME",
            "trade_date": days,
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": [10.0, 11.0, 10.5, 12.0, 12.5, 12.1, 13.0, 12.7, 13.3],
            "volume": [100, 200, 150, 300, 250, 220, 180, 260, 310],
            "vwap": 1.0,
            "avg_price": 1.0,
            "price_change": 0.0,
            "intraday_change_pct": 0.0,
            "bar_count": 390,
            "invalid_bar_count": 0,
            "intraday_volatility": 0.001,
        }
    )
    sdf = spark.createDataFrame(gold[[f.name for f in schemas.GOLD.fields]], schemas.GOLD)
    bi = to_bi(sdf).toPandas()
    assert_frames_close(
        bi, bi_reference(gold), ["prev_close", "price_change_pct", "close_7d_avg", "volume_7d_avg", "volatility_score"]
    )
    assert pd.isna(bi.volatility_score.iloc[0]) and pd.isna(bi.volatility_score.iloc[1])
    assert bi.volatility_score.iloc[2] > 0

"""gold/signals against an independent implementation of the formulas, end to end, and the ``sql`` command."""

import statistics
from datetime import date

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stock_lakehouse.cli import main
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.signals import to_signals
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse_tests.reference import assert_frames_close

pytestmark = pytest.mark.spark

NUMERIC = [f.name for f in schemas.SIGNALS.fields if f.name not in ("symbol", "trade_date", "signal")]


def _ema(values, n):
    alpha, out = 2.0 / (n + 1), []
    for i, x in enumerate(values):
        out.append(x if i == 0 else alpha * x + (1 - alpha) * out[-1])
    return out


def _window(values, i, n, fn):
    return fn(values[i - n + 1 : i + 1]) if i >= n - 1 else None


def reference_signals(gold: pd.DataFrame) -> pd.DataFrame:
    """The design's formulas, row by row, for every symbol of ``gold``."""
    rows = []
    for symbol, g in gold.sort_values(["symbol", "trade_date"]).groupby("symbol"):
        c, v = [float(x) for x in g.close], [float(x) for x in g.volume]
        ema12, ema26 = _ema(c, 12), _ema(c, 26)
        macd = [a - b for a, b in zip(ema12, ema26, strict=True)]
        macd_signal = _ema(macd, 9)
        rsi, avg_gain, avg_loss = [None] * len(c), 0.0, 0.0
        for i in range(1, len(c)):
            gain, loss = max(c[i] - c[i - 1], 0.0), max(c[i - 1] - c[i], 0.0)
            if i <= 14:
                avg_gain, avg_loss = avg_gain + gain / 14, avg_loss + loss / 14
            else:
                avg_gain, avg_loss = (avg_gain * 13 + gain) / 14, (avg_loss * 13 + loss) / 14
            if i >= 14:
                rsi[i] = 100.0 if avg_loss == 0 else 100 - 100 / (1 + avg_gain / avg_loss)
        prev = (None, None)
        for i, day in enumerate(g.trade_date):
            sma5, sma20 = _window(c, i, 5, statistics.mean), _window(c, i, 20, statistics.mean)
            sd = _window(c, i, 20, statistics.stdev)
            vsd = _window(v, i, 20, statistics.stdev)
            labels = []
            if None not in (sma5, sma20, *prev):
                if sma5 > sma20 and prev[0] <= prev[1]:
                    labels.append("golden_cross")
                if sma5 < sma20 and prev[0] >= prev[1]:
                    labels.append("death_cross")
            if rsi[i] is not None and rsi[i] > 70:
                labels.append("overbought")
            if rsi[i] is not None and rsi[i] < 30:
                labels.append("oversold")
            prev = (sma5, sma20)
            rows.append(
                {
                    "symbol": symbol,
                    "trade_date": day,
                    "close": c[i],
                    "volume": v[i],
                    "sma_5": sma5,
                    "sma_20": sma20,
                    "ema_12": ema12[i],
                    "ema_26": ema26[i],
                    "macd": macd[i],
                    "macd_signal": macd_signal[i],
                    "macd_hist": macd[i] - macd_signal[i],
                    "rsi_14": rsi[i],
                    "bb_upper": None if sd is None else sma20 + 2 * sd,
                    "bb_lower": None if sd is None else sma20 - 2 * sd,
                    "volume_z_20": None if not vsd else (v[i] - statistics.mean(v[i - 19 : i + 1])) / vsd,
                    "signal": ";".join(labels) or None,
                }
            )
    return pd.DataFrame(rows)


def synthetic_gold(days: int = 70) -> pd.DataFrame:
    """Gold-like rows of two symbols: a random walk (AAA) and a rally then a slide with a constant volume
    for the first 25 days (BBB: zero volume stddev, overbought then oversold)."""
    rng = np.random.default_rng(7)
    dates = [d.date() for d in pd.bdate_range("2024-01-02", periods=days + 4)]
    dates = dates[:10] + dates[12:15] + dates[17:]  # gaps: windows count rows, not days
    aaa = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
    steps = np.where(np.arange(days) < 35, 0.01, -0.012) + rng.normal(0, 0.004, days)
    bbb = 50 * np.exp(np.cumsum(steps))
    bbb_volume = np.where(np.arange(days) < 25, 1_000_000, rng.integers(500_000, 1_500_000, days))
    frames = [
        pd.DataFrame({"symbol": s, "trade_date": dates, "close": c, "volume": vol.astype("int64")})
        for s, c, vol in (("AAA", aaa, rng.integers(1_000_000, 5_000_000, days)), ("BBB", bbb, bbb_volume))
    ]
    gold = pd.concat(frames, ignore_index=True)
    gold["open"] = gold.close * 0.99
    return gold


def test_signals_equal_the_formulas(spark):
    gold = synthetic_gold()
    actual = to_signals(spark.createDataFrame(gold.sample(frac=1, random_state=1))).toPandas()
    expected = reference_signals(gold)
    assert len(actual) == len(expected) == 140
    assert_frames_close(actual, expected, NUMERIC)
    a = actual.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert list(a.signal) == list(expected.signal)
    labels = set(";".join(s for s in a.signal if s).split(";"))
    assert {"golden_cross", "death_cross", "overbought", "oversold"} <= labels, labels
    bbb = a[a.symbol == "BBB"].reset_index(drop=True)
    assert bbb.volume_z_20[19:25].isna().all() and bbb.volume_z_20[30:].notna().all()
    assert a.rsi_14.notna().sum() == 2 * (70 - 14)


def test_signals_end_to_end_rerun_and_sql(spark, lake, dagster_home, clean_env):
    def run(start, end):
        ok, summary, error = run_materialize(
            ["AAA", "BBB"],
            date.fromisoformat(start),
            date.fromisoformat(end),
            {"lake_root": str(lake), "source": "synthetic"},
        )
        assert ok, error
        return summary

    summary = run("2024-02-01", "2024-03-13")
    gold = read_table(str(lake), "gold")
    days = gold.trade_date.nunique()
    assert summary.rows["signals"] == len(gold) == 2 * days and days >= 28
    before = read_table(str(lake), "signals")
    assert before.rsi_14.notna().sum() == 2 * (days - 14)
    last = max(before.trade_date)

    summary = run(last.isoformat(), last.isoformat())
    assert summary.partitions["signals"] == 2
    after = read_table(str(lake), "signals")
    pd.testing.assert_frame_equal(after, before)
    whole = to_signals(spark.read.format("delta").load(str(lake / "gold" / "daily_kpis"))).toPandas()
    whole = whole.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert_frames_close(after, whole, NUMERIC, rel=1e-12)
    assert list(after.signal) == list(whole.signal)

    cli = CliRunner()
    query = "SELECT symbol, count(*) AS n FROM bi_stock_daily GROUP BY 1 ORDER BY 1"
    result = cli.invoke(main, ["sql", query, "--format", "csv", "--lake-root", str(lake)])
    assert result.exit_code == 0, result.output
    assert result.output == f"symbol,n\nAAA,{days}\nBBB,{days}\n"
    joined = "SELECT count(*) AS n FROM signals s JOIN gold g USING (symbol, trade_date) WHERE s.close = g.close"
    result = cli.invoke(main, ["sql", joined, "--format", "json", "--lake-root", str(lake)])
    assert result.exit_code == 0 and result.output.strip() == f'[{{"n":{2 * days}}}]', result.output
    bad = cli.invoke(main, ["sql", "SELECT nope FROM bi_stock_daily", "--lake-root", str(lake)])
    assert bad.exit_code == 1
    lines = bad.output.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0], bad.output

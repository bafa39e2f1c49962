"""End to end through the Dagster job: real Spark, real Delta tables in a temporary folder."""

import shutil
import weakref
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from pyspark.sql import functions as F

from stock_lakehouse.lakehouse.reader import read_table, table_path
from stock_lakehouse.lakehouse.spark import INTERPRETED, SMALL_RUN_PARTITIONS, SparkResource, sessions_started
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse_tests.conftest import NVDA_SAMPLE
from stock_lakehouse_tests.reference import assert_frames_close, bars_from_json, bi_reference, gold_reference

pytestmark = pytest.mark.spark

GOLD_COLUMNS = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "avg_price",
    "price_change",
    "intraday_change_pct",
    "bar_count",
    "invalid_bar_count",
    "intraday_volatility",
]
BI_COLUMNS = GOLD_COLUMNS + ["prev_close", "price_change_pct", "close_7d_avg", "volume_7d_avg", "volatility_score"]


def materialize(lake, symbols, start, end, **overrides):
    ok, summary, error = run_materialize(
        symbols, date.fromisoformat(start), date.fromisoformat(end), {"lake_root": str(lake), **overrides}
    )
    assert ok, error
    return summary


def snapshot(lake, table):
    return read_table(str(lake), table).drop(columns=["ingested_at", "fetched_at", "payload_uri"], errors="ignore")


def test_replay_gold_and_bi_equal_the_definitions(spark, lake, dagster_home, clean_env, tmp_path):
    replay = tmp_path / "recordings" / "any" / "depth"
    replay.mkdir(parents=True)
    shutil.copy(NVDA_SAMPLE, replay / "whatever-name.json")
    SparkResource().session_for_run(SMALL_RUN_PARTITIONS + 1)  # the session's own settings, as a large run's
    assert spark.conf.get("spark.sql.codegen.wholeStage") != "false"
    summary = materialize(
        lake, ["NVDA"], "2024-03-01", "2024-03-12", source="replay", replay_dir=str(replay.parents[1])
    )
    assert summary.rows == {"bronze": 7680, "silver": 7680, "gold": 8, "bi": 8, "signals": 8}
    assert len(summary.runs) == 1
    # A run of 8 partitions ran its queries with Spark's interpreter, and its tables equal the reference's.
    assert {k: spark.conf.get(k) for k in INTERPRETED} == INTERPRETED
    bars = bars_from_json(NVDA_SAMPLE)
    expected_gold = gold_reference(bars)
    assert_frames_close(read_table(str(lake), "gold"), expected_gold, GOLD_COLUMNS)
    assert_frames_close(read_table(str(lake), "bi"), bi_reference(expected_gold), BI_COLUMNS)
    # Every payload is kept byte for byte in the landing zone, and bronze points to it.
    bronze = read_table(str(lake), "bronze")
    landed = set(bronze.payload_uri)
    assert len(landed) == 1 and Path(next(iter(landed))).read_bytes() == NVDA_SAMPLE.read_bytes()


#: Values of INTERPRETED's keys that compile: the tests' JVMs evaluate expressions interpreted (spark-conf/), so
#: the test gives its session these as its own settings, for each switch to show.
COMPILED = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "FALLBACK"}


def test_a_large_run_gets_the_sessions_own_settings_back_and_a_users_choice_stays(spark, monkeypatch):
    from stock_lakehouse.lakehouse import spark as spark_module

    def settings() -> dict[str, str | None]:
        return {k: spark.conf.get(k, None) for k in INTERPRETED}

    before = settings()
    monkeypatch.setattr(spark_module, "_session_defaults", weakref.WeakKeyDictionary())  # nothing recorded yet
    for key, value in COMPILED.items():
        spark.conf.set(key, value)
    res, large = SparkResource(), SMALL_RUN_PARTITIONS + 1
    try:
        assert res.session_for_run(SMALL_RUN_PARTITIONS) is spark
        assert settings() == INTERPRETED
        res.session_for_run(large)
        assert settings() == COMPILED
        # A key set in the resource's conf is the user's: no run size changes it; the other key still switches.
        for mine in INTERPRETED:
            SparkResource(conf={mine: COMPILED[mine]}).session_for_run(1)
            assert settings() == {**INTERPRETED, mine: COMPILED[mine]}
            res.session_for_run(large)
            assert settings() == COMPILED
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def test_rerun_is_idempotent_and_touches_only_its_partitions(spark, lake, dagster_home, clean_env):
    materialize(lake, ["AAA", "BBB"], "2024-03-04", "2024-03-06", source="synthetic")
    before = {t: snapshot(lake, t) for t in ("bronze", "silver", "gold", "bi")}
    counts = {t: len(df) for t, df in before.items()}
    assert counts["gold"] == 6 and counts["bronze"] == 6 * 960

    # Re-materialize one partition (AAA, 03-05): nothing else changes, counts stay the same.
    summary = materialize(lake, ["AAA"], "2024-03-05", "2024-03-05", source="synthetic")
    assert summary.partitions == {"bronze": 1, "silver": 1, "gold": 1, "bi": 1, "signals": 1}
    for table, old in before.items():
        new = snapshot(lake, table)
        assert len(new) == counts[table], table
        keep = lambda df: df[~((df.symbol == "AAA") & (df.trade_date == date(2024, 3, 5)))].reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(keep(new), keep(old), check_like=True)
    # The Delta version moved; time travel shows the table before the re-run.
    assert summary.versions["gold"] == 1
    pd.testing.assert_frame_equal(
        read_table(str(lake), "gold", version=0), read_table(str(lake), "gold"), check_exact=False, rtol=1e-12
    )


def test_an_earlier_date_written_later_rewrites_the_days_its_windows_reach(
    spark, lake, dagster_home, clean_env, tmp_path
):
    # A backfill split per date runs its dates in any order, two at once: here the later dates come first,
    # so their prev_close, 7-day windows and indicators are computed without the earlier dates.
    materialize(lake, ["AAA", "BBB"], "2024-03-07", "2024-03-08", source="synthetic")
    assert snapshot(lake, "bi").prev_close.isna().sum() == 2
    summary = materialize(lake, ["AAA"], "2024-03-04", "2024-03-06", source="synthetic")
    # The run's own partitions are counted as such; the later ones it rewrote are named apart.
    assert summary.partitions == {"bronze": 3, "silver": 3, "gold": 3, "bi": 3, "signals": 3}
    assert summary.metadata["bi"]["partitions_follow_on"] == 2
    assert summary.metadata["signals"]["partitions_follow_on"] == 2
    # Each rewritten later partition has a materialization of its own, marked as such.
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["gold", "bi_stock_daily"]), asset_partitions=["2024-03-08|AAA"]),
        limit=10,
    ).records
    statuses = [r.asset_materialization.metadata["partition_status"].value for r in records]
    assert statuses == ["follow_on", "written"]  # newest first: this run's, then its own run's
    materialize(lake, ["BBB"], "2024-03-04", "2024-03-06", source="synthetic")

    oneshot = tmp_path / "oneshot"
    materialize(oneshot, ["AAA", "BBB"], "2024-03-04", "2024-03-08", source="synthetic")
    for table in ("gold", "bi", "signals"):
        got, want = (
            snapshot(root, table).sort_values(["symbol", "trade_date"]).reset_index(drop=True)
            for root in (lake, oneshot)
        )
        assert len(got) == 10, table
        pd.testing.assert_frame_equal(got, want, check_like=True, check_exact=False, rtol=1e-9, obj=table)


def test_a_lake_written_with_integer_volumes_is_widened_once(spark, lake, dagster_home, clean_env):
    # Lakes written before crypto decimals were kept have volume bigint in silver, gold, BI and signals.
    materialize(lake, ["OLD"], "2024-03-04", "2024-03-05", source="synthetic")
    for table in ("silver", "gold"):
        uri = table_path(str(lake), table)
        old = spark.read.format("delta").load(uri).withColumn("volume", F.col("volume").cast("bigint"))
        old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(uri)
    before = snapshot(lake, "gold")
    assert str(before.volume.dtype) == "int64"
    materialize(lake, ["OLD"], "2024-03-05", "2024-03-05", source="synthetic")
    after = snapshot(lake, "gold")
    assert str(after.volume.dtype) == "float64" and len(after) == 2
    # The day not re-run kept its values, now as doubles; the version before stays readable.
    assert after.volume.iloc[0] == before.volume.iloc[0]
    assert str(read_table(str(lake), "gold", version=1).volume.dtype) == "int64"


def test_holiday_partition_materializes_zero_rows_with_market_closed(spark, lake, dagster_home, clean_env):
    summary = materialize(lake, ["HOL"], "2024-11-28", "2024-11-28", source="synthetic")
    assert summary.rows == {"bronze": 0, "silver": 0, "gold": 0, "bi": 0, "signals": 0}
    assert summary.metadata["bronze"]["market_closed"] is True
    assert summary.metadata["bronze"]["market_closed_dates"] == ["2024-11-28"]
    # A closed market's day is complete with no rows: recorded as materialized (an open day without rows is
    # not, test_faults_input), so a backfill over a range has no holes.
    assert summary.partitions == {"bronze": 1, "silver": 1, "gold": 1, "bi": 1, "signals": 1}
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey(["gold", "daily_kpis"])) == {"2024-11-28|HOL"}
    # Around it: the early close gives a short regular session, and BI's previous close skips the holiday.
    materialize(lake, ["HOL"], "2024-11-26", "2024-11-29", source="synthetic")
    gold = read_table(str(lake), "gold")
    assert list(gold.trade_date) == [date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29)]
    assert list(gold.bar_count) == [390, 390, 210]
    bi = read_table(str(lake), "bi")
    assert bi.prev_close.iloc[2] == gold.close.iloc[1]


def test_ranged_run_that_varies_in_both_dimensions(spark, lake, dagster_home, clean_env):
    # Neighbouring symbols x several dates: one run whose key range spans two symbols and two dates.
    summary = materialize(lake, ["RA", "RB"], "2024-03-07", "2024-03-08", source="synthetic")
    assert len(summary.runs) == 1
    assert summary.partitions["gold"] == 4
    gold = read_table(str(lake), "gold")
    assert sorted(zip(gold.symbol, gold.trade_date, strict=True)) == [
        ("RA", date(2024, 3, 7)),
        ("RA", date(2024, 3, 8)),
        ("RB", date(2024, 3, 7)),
        ("RB", date(2024, 3, 8)),
    ]
    assert sessions_started() == 1  # every run in this test process shared one Spark session


def test_bad_replay_file_fails_clearly_and_loses_nothing(spark, lake, dagster_home, clean_env, tmp_path):
    replay = tmp_path / "rec"
    replay.mkdir()
    shutil.copy(NVDA_SAMPLE, replay / "nvda.json")
    materialize(lake, ["NVDA"], "2024-03-01", "2024-03-01", source="replay", replay_dir=str(replay))
    gold_before = snapshot(lake, "gold")
    (replay / "broken.json").write_text('{"Meta Data": {"2. Symbol": "NVDA"')
    ok, _, error = run_materialize(
        ["NVDA"],
        date(2024, 3, 1),
        date(2024, 3, 4),
        {"lake_root": str(lake), "source": "replay", "replay_dir": str(replay)},
    )
    assert not ok
    assert "broken.json" in error and "not valid JSON" in error
    pd.testing.assert_frame_equal(snapshot(lake, "gold"), gold_before)
    # Fix the input and re-run: the run completes.
    (replay / "broken.json").unlink()
    assert (
        materialize(lake, ["NVDA"], "2024-03-01", "2024-03-04", source="replay", replay_dir=str(replay)).rows["gold"]
        == 2
    )

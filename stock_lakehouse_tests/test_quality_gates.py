"""Row-quality gates per partition: a partition with too many bad bars is withheld from gold and BI,
the others proceed; a few bad bars only warn; a broken table still blocks the run."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from stock_lakehouse.assets.keys import BI, GOLD, SIGNALS, SILVER
from stock_lakehouse.cli import main
from stock_lakehouse.ingestion.synthetic import intraday_payload
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.quality.rules import QUALITY_DIR, RulesError, load_suite
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.wiring import LAKEHOUSE_JOB
from stock_lakehouse_tests.conftest import NVDA_SAMPLE
from stock_lakehouse_tests.reference import assert_frames_close, bars_from_json, bi_reference, gold_reference
from stock_lakehouse_tests.test_pipeline import BI_COLUMNS, GOLD_COLUMNS

DAY = "2024-03-04"


def day_payload(
    symbol: str, bars: int, broken: dict[str, dict[str, str | None]], days: tuple[str, ...] = (DAY,)
) -> str:
    """``bars`` regular-session 1-minute bars of ``symbol`` on each of ``days`` (default DAY) from 09:30,
    some fields replaced (None removes the field)."""
    doc = json.loads(
        intraday_payload(symbol, [date.fromisoformat(d) for d in days], "1min", seed=3, extended_hours=False)
    )
    key = "Time Series (1min)"
    kept = [label for d in days for label in sorted(x for x in doc[key] if x.startswith(d))[:bars]]
    doc[key] = {label: doc[key][label] for label in sorted(kept, reverse=True)}
    for label, fields in broken.items():
        for name, value in fields.items():
            if value is None:
                del doc[key][label][name]
            else:
                doc[key][label][name] = value
    return json.dumps(doc)


def three_broken_bars(payload: str) -> dict[str, dict[str, str | None]]:
    """Three of DAY's bars broken (5 % of 60, above the 1 % gate): a high below its low, a negative
    volume, a missing close."""
    return {
        f"{DAY} 09:40:00": swap_high_low(payload, f"{DAY} 09:40:00"),
        f"{DAY} 09:41:00": {"5. volume": "-500"},
        f"{DAY} 09:42:00": {"4. close": None},
    }


def swap_high_low(payload: str, label: str) -> dict[str, str]:
    bar = json.loads(payload)["Time Series (1min)"][label]
    return {"2. high": bar["3. low"], "3. low": bar["2. high"]}


def reference_gold(path: Path) -> pd.DataFrame:
    return gold_reference(bars_from_json(path))


@pytest.mark.spark
def test_a_withheld_partition_never_stops_the_others(spark, tmp_path, lake, dagster_home, clean_env):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    clean = day_payload("XYZ", 60, {})
    (rec / "xyz.json").write_text(clean)
    args = ["materialize", "--symbols", "NVDA,XYZ", "--start", "2024-03-01", "--end", "2024-03-05"]
    args += ["--source", "replay", "--replay-dir", str(rec), "--lake-root", str(lake)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    before = {t: read_table(str(lake), t) for t in ("gold", "bi")}

    (rec / "xyz.json").write_text(day_payload("XYZ", 60, three_broken_bars(clean)))
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 3, second.output  # partial success: exit non-zero
    assert f"{DAY}|XYZ: 3 of 60 bars (5.00%) fail" in second.output
    assert "withheld from gold and BI" in second.output

    # Each partition of the run has its own check outcome and its own row count (what the UI shows).
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(limit=1)
    assert run.job_name == LAKEHOUSE_JOB  # the job the UI's Materialize and backfills launch
    check = dg.AssetCheckKey(SILVER, "silver_low_not_above_high")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
    status = {r.partition: r.status.value for r in history if r.run_id == run.run_id}
    assert status.pop(f"{DAY}|XYZ") == "FAILED"
    assert len(status) == 5 and set(status.values()) == {"SUCCEEDED"}, status
    # Gold, BI and signals each fail a check for the withheld partition (their rows are the previous ones),
    # and only for it.
    for asset_key, name in ((GOLD, "gold"), (BI, "bi"), (SIGNALS, "signals")):
        check = dg.AssetCheckKey(asset_key, f"{name}_partition_withheld")
        history = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
        status = {r.partition: r.status.value for r in history if r.run_id == run.run_id}
        assert status.pop(f"{DAY}|XYZ") == "FAILED", name
        assert len(status) == 5 and set(status.values()) == {"SUCCEEDED"}, (name, status)
    # A warning rule is judged per partition too: the clean days are not reported with XYZ's bars.
    warning = dg.AssetCheckKey(SILVER, "silver_invalid_bars")
    history = instance.event_log_storage.get_asset_check_execution_history(warning, limit=100)
    status = {r.partition: r.status.value for r in history if r.run_id == run.run_id}
    assert status.pop(f"{DAY}|XYZ") == "FAILED"
    assert len(status) == 5 and set(status.values()) == {"SUCCEEDED"}, status
    silver = read_table(str(lake), "silver")
    for key, (symbol, day) in {f"{DAY}|NVDA": ("NVDA", DAY), f"{DAY}|XYZ": ("XYZ", DAY)}.items():
        (mat,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SILVER, asset_partitions=[key]), limit=1
        ).records
        meta = mat.asset_materialization.metadata
        expected = int(((silver.symbol == symbol) & (silver.trade_date == date.fromisoformat(day))).sum())
        assert meta["row_count"].value == expected and expected in (960, 60), (key, meta)
        rows = silver[(silver.symbol == symbol) & (silver.trade_date == date.fromisoformat(day))]
        newest = rows.ts_utc.max().to_pydatetime().replace(tzinfo=UTC).timestamp()
        assert meta["newest_bar_utc"].value == pytest.approx(newest, abs=0.001)  # Delta stats keep ms
        preview = meta["preview"].value
        assert f"{expected} rows; all of them: `stock-lakehouse show silver --symbols {symbol}" in preview
        assert preview.count(f"| {symbol} |") == 5, preview
        assert meta["run_row_count"].value == len(silver[silver.trade_date <= date(2024, 3, 5)])

    # The run log filtered at INFO (Dagster's own events are DEBUG) is a short story of the run: per table
    # the partitions, rows and time written, then its check outcomes naming the failing partition.
    info = [e.user_message for e in instance.all_logs(run.run_id) if e.level >= logging.INFO and not e.dagster_event]
    span = "6 partition(s): NVDA, XYZ x 2024-03-01..2024-03-05"
    run_rows = meta["run_row_count"].value
    assert any(m.startswith(f"silver/stock_clean: wrote {span}, {run_rows:,} rows, Delta version ") for m in info), info
    (silver_checks,) = [m for m in info if m.startswith(f"silver/stock_clean checks over {span}: ")]
    assert f"silver_low_not_above_high (ERROR) on {DAY}|XYZ" in silver_checks and "0 failed" not in silver_checks
    assert any(m.startswith("gold/daily_kpis: ") and "withheld 1 (quality gate)" in m for m in info), info
    assert sum(m.startswith("bronze/intraday_bars") for m in info) == 2  # write + checks
    assert len(info) <= 15, info

    # NVDA's gold and BI are written and equal the reference; XYZ's rows are those of before.
    gold, bi = read_table(str(lake), "gold"), read_table(str(lake), "bi")
    nvda_gold = reference_gold(NVDA_SAMPLE)
    nvda_gold = nvda_gold[nvda_gold.trade_date <= date(2024, 3, 5)]
    assert_frames_close(gold[gold.symbol == "NVDA"], nvda_gold, GOLD_COLUMNS)
    assert_frames_close(bi[bi.symbol == "NVDA"], bi_reference(nvda_gold), BI_COLUMNS)
    for name, df in (("gold", gold), ("bi", bi)):
        pd.testing.assert_frame_equal(
            df[df.symbol == "XYZ"].reset_index(drop=True),
            before[name][before[name].symbol == "XYZ"].reset_index(drop=True),
        )

    # The check names the partition, its share and the reasons; it is ERROR but did not block.
    ok, summary, error = run_materialize(
        ["XYZ"], date.fromisoformat(DAY), date.fromisoformat(DAY),
        {"source": "replay", "replay_dir": str(rec), "lake_root": str(lake)},
    )  # fmt: skip
    assert ok, error
    passed, severity, meta = summary.checks["silver_low_not_above_high"]
    assert (passed, severity) == (False, "ERROR")
    assert meta["withheld_partitions"] == [
        f"{DAY}|XYZ: 3 of 60 bars (5.00%) fail silver_close_present 1, silver_low_not_above_high 1, "
        "silver_volume_not_negative 1"
    ]
    assert summary.withheld == meta["withheld_partitions"]
    quarantine = read_table(str(lake), "quarantine", ["XYZ"])
    assert len(quarantine) == 3 and {"low_above_high", "negative_volume", "missing_close"} <= set(
        r for reasons in quarantine.dq_reason for r in reasons.split(";")
    )

    # Correcting the source releases the partition.
    (rec / "xyz.json").write_text(clean)
    third = CliRunner().invoke(main, [*args[:2], "XYZ", *args[3:]])
    assert third.exit_code == 0, third.output
    assert "withheld from gold" not in third.output


@pytest.mark.spark
def test_one_bad_bar_in_390_warns_and_proceeds(spark, tmp_path, lake, dagster_home, clean_env):
    rec = tmp_path / "rec"
    rec.mkdir()
    clean = day_payload("ONE", 390, {})
    label = f"{DAY} 12:00:00"
    path = rec / "one.json"
    path.write_text(day_payload("ONE", 390, {label: swap_high_low(clean, label)}))
    ok, summary, error = run_materialize(
        ["ONE"], date.fromisoformat(DAY), date.fromisoformat(DAY),
        {"source": "replay", "replay_dir": str(rec), "lake_root": str(lake)},
    )  # fmt: skip
    assert ok, error
    assert summary.withheld == []
    passed, severity, meta = summary.checks["silver_low_not_above_high"]
    assert (passed, severity, meta["soda_value"], meta["outcome"]) == (False, "WARN", 1, "warn")
    assert meta["warned_partitions"] == [f"{DAY}|ONE: 1 of 390 bars (0.26%) fail silver_low_not_above_high 1"]
    expected = reference_gold(path)  # the reference drops the invalid bar on its own
    assert int(expected.bar_count.iloc[0]) == 389
    assert_frames_close(read_table(str(lake), "gold"), expected, GOLD_COLUMNS)


@pytest.mark.spark
def test_a_table_integrity_failure_still_blocks_the_run(spark, tmp_path, lake, dagster_home, clean_env):
    rec = tmp_path / "rec"
    rec.mkdir()
    doc = json.loads(day_payload("BAD", 60, {}))
    series = doc["Time Series (1min)"]
    series[f"{DAY} 25:99:00"] = series.pop(f"{DAY} 09:45:00")  # a label that is no time: ts_utc null
    (rec / "bad.json").write_text(json.dumps(doc))
    ok, summary, error = run_materialize(
        ["BAD"], date.fromisoformat(DAY), date.fromisoformat(DAY),
        {"source": "replay", "replay_dir": str(rec), "lake_root": str(lake)},
    )  # fmt: skip
    assert not ok and "blocking" in error.lower()
    assert summary.checks["silver_ts_parsed"][:2] == (False, "ERROR")
    assert "gold" not in summary.rows and not (lake / "gold").exists()


def test_partition_rules_must_say_which_bar_fails(tmp_path):
    bad = tmp_path / "silver.yml"
    bad.write_text("checks for silver_stock_clean:\n  - row_count > 0:\n      name: r\n      gate: partition\n")
    with pytest.raises(RulesError, match="'gate: partition' rule must be"):
        load_suite(bad)
    suite = load_suite(QUALITY_DIR / "silver.yml")
    conditions = {r.name: r.failing_bar for r in suite.partition_rules}
    assert conditions["silver_close_present"] == "(close IS NULL)"
    assert conditions["silver_volume_not_negative"] == "(volume IS NOT NULL AND (volume < 0.0))"
    assert conditions["silver_low_not_above_high"] == "(low > high)"
    assert "silver_schema" not in conditions and "silver_ts_parsed" not in conditions


def test_a_warning_rule_is_counted_per_partition_and_withholds_nothing():
    """Bars failing only warning rules (here: off their range by more than a basis point, flagged invalid)
    are counted per partition, and however many there are, the partition is not withheld."""
    import pyarrow as pa

    from stock_lakehouse.quality.gates import judge_partitions_duckdb

    n = 10
    bars = pa.table(
        {
            "symbol": ["AAA"] * n + ["BBB"] * n,
            "trade_date": [date.fromisoformat(DAY)] * (2 * n),
            "open": [10.0] * (2 * n),
            "high": [10.5] * n + [11.0] * n,  # AAA: close 11 above high 10.5
            "low": [9.0] * (2 * n),
            "close": [11.0] * n + [10.5] * n,
            "volume": pa.array([100] * (2 * n), pa.int64()),
            "session": ["regular"] * (2 * n),
            "dq_reason": ["high_below_open_or_close"] * n + [None] * n,
            "is_valid": [False] * n + [True] * n,
        }
    )
    rules = load_suite(QUALITY_DIR / "silver.yml").partition_rules
    got = {v.partition.symbol: v for v in judge_partitions_duckdb(bars, rules, 0.01).values()}
    assert got["AAA"].warned == {"silver_invalid_bars": n, "silver_bar_range_consistent": n}
    assert (got["AAA"].invalid, got["AAA"].withheld, got["AAA"].by_rule) == (0, False, {})
    assert (got["BBB"].warned, got["BBB"].withheld) == ({}, False)

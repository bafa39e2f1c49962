"""Soda rules as asset checks: pass on good data, block on bad data, follow the YAML files."""

import json
import shutil
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse.assets import keys
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.quality.rules import QUALITY_DIR, load_suite
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import build_definitions
from stock_lakehouse_tests.conftest import NVDA_SAMPLE

LAYERS = {"bronze": keys.BRONZE, "silver": keys.SILVER, "gold": keys.GOLD, "bi": keys.BI, "signals": keys.SIGNALS}


def rule_names(folder=QUALITY_DIR):
    return {layer: [r.name for r in load_suite(folder / f"{layer}.yml").rules] for layer in LAYERS}


def defined_checks(defs: dg.Definitions) -> dict[dg.AssetKey, set[str]]:
    out: dict[dg.AssetKey, set[str]] = {}
    for checks_def in defs.asset_checks or []:
        for key in checks_def.check_keys:
            out.setdefault(key.asset_key, set()).add(key.name)
    return out


#: The checks written in Python beside each table's SodaCL rules (``quality/checks.py``).
PYTHON_CHECKS = {
    "silver": {"silver_regular_bars_every_trading_day"},
    **{layer: {f"{layer}_partition_withheld"} for layer in ("gold", "bi", "signals")},
}


def test_every_sodacl_rule_is_one_check(clean_env):
    checks = defined_checks(build_definitions(load_settings()))
    for layer, names in rule_names().items():
        assert checks[LAYERS[layer]] == set(names) | PYTHON_CHECKS.get(layer, set())


def test_adding_a_rule_to_a_yaml_file_adds_a_check(tmp_path, clean_env, monkeypatch):
    rules = tmp_path / "rules"
    shutil.copytree(QUALITY_DIR, rules, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with (rules / "gold.yml").open("a") as f:
        f.write("  - max(volume) < 100000000000:\n      name: gold_volume_plausible\n")
    monkeypatch.setenv("STOCK_LAKEHOUSE_QUALITY_DIR", str(rules))
    checks = defined_checks(build_definitions(load_settings()))
    assert "gold_volume_plausible" in checks[keys.GOLD]
    assert (
        "gold_volume_plausible"
        not in defined_checks(build_definitions(load_settings(overrides={"quality.dir": str(QUALITY_DIR)})))[keys.GOLD]
    )


@pytest.mark.spark
def test_new_rule_is_evaluated_in_a_run(spark, tmp_path, lake, dagster_home, clean_env, monkeypatch):
    rules = tmp_path / "rules"
    shutil.copytree(QUALITY_DIR, rules, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with (rules / "gold.yml").open("a") as f:
        f.write("  - max(volume) < 1000:\n      name: gold_volume_tiny\n      warn: when >= 1000\n")
    ok, summary, error = run_materialize(
        ["QA"],
        date(2024, 3, 4),
        date(2024, 3, 4),
        {"lake_root": str(lake), "source": "synthetic", "quality.dir": str(rules)},
    )
    assert ok, error  # a warning never blocks
    passed, severity, meta = summary.checks["gold_volume_tiny"]
    assert not passed and severity == "WARN" and meta["soda_value"] > 1000


def bad_payload() -> str:
    """The NVDA sample with crafted faults on 2024-03-04 (text edits, so the duplicate key survives)."""
    text = NVDA_SAMPLE.read_text()
    doc = json.loads(text)
    series = doc["Time Series (1min)"]
    series["2024-03-04 10:00:00"]["4. close"] = None  # null close
    bar = series["2024-03-04 10:01:00"]
    bar["2. high"], bar["3. low"] = bar["3. low"], bar["2. high"]  # high < low
    series["2024-03-04 10:02:00"]["5. volume"] = "-500"  # negative volume
    del series["2024-03-04 10:03:00"]["5. volume"]  # a bar missing a field
    out = json.dumps(doc, indent=1)
    # Duplicate bar with different values: repeat a key inside the series object.
    values = {"1. open": "1.0", "2. high": "1.0", "3. low": "1.0", "4. close": "1.0", "5. volume": "1"}
    dup = '"2024-03-04 11:00:00": ' + json.dumps(values) + ","
    return out.replace('"2024-03-04 11:00:00": {', dup + '\n  "2024-03-04 11:00:00": {', 1)


@pytest.mark.spark
def test_sample_passes_and_bad_payload_is_withheld_from_gold(spark, tmp_path, lake, dagster_home, clean_env):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(NVDA_SAMPLE, rec / "nvda.json")
    overrides = {"lake_root": str(lake), "source": "replay", "replay_dir": str(rec)}
    ok, summary, error = run_materialize(["NVDA"], date(2024, 3, 1), date(2024, 3, 5), overrides)
    assert ok, error
    expected = {n for names in rule_names().values() for n in names} | set().union(*PYTHON_CHECKS.values())
    assert set(summary.checks) == expected
    assert all(passed for passed, _, _ in summary.checks.values()), {
        n: c for n, c in summary.checks.items() if not c[0]
    }
    assert summary.checks["silver_has_rows"][2]["soda_value"] == 3 * 960
    assert summary.checks["silver_has_rows"][2]["partitions_evaluated"] == 3
    gold_before, bi_before = read_table(str(lake), "gold"), read_table(str(lake), "bi")

    # 4 bad bars of 960 (0.42 %): with a 0.1 % gate the partition is withheld from gold and BI.
    (rec / "nvda.json").write_text(bad_payload())
    strict = {**overrides, "quality.max_invalid_share": 0.001}
    ok, summary, error = run_materialize(["NVDA"], date(2024, 3, 4), date(2024, 3, 4), strict)
    assert ok, error  # row-quality rules never block the run
    assert len(summary.withheld) == 1 and summary.withheld[0].startswith("2024-03-04|NVDA: 4 of 960 bars (0.42%)")
    measured = {n: (c[0], c[1], c[2].get("soda_value")) for n, c in summary.checks.items()}
    assert measured["bronze_no_duplicate_bar_in_a_payload"] == (False, "WARN", 1)
    assert measured["silver_close_present"] == (False, "ERROR", 1)
    assert measured["silver_low_not_above_high"] == (False, "ERROR", 1)
    assert measured["silver_volume_not_negative"] == (False, "ERROR", 1)
    assert measured["silver_volume_present"] == (False, "ERROR", 1)
    assert measured["silver_invalid_bars"][:2] == (False, "WARN") and measured["silver_invalid_bars"][2] >= 4
    assert measured["silver_one_row_per_symbol_and_ts"] == (True, "ERROR", 0)  # silver collapsed the duplicate
    assert summary.checks["silver_close_present"][2]["partition_keys"] == ["2024-03-04|NVDA"]
    # Gold and BI kept their rows for the withheld partition: the tables did not change.
    assert summary.metadata["gold"]["partitions_withheld"] == 1
    pd.testing.assert_frame_equal(read_table(str(lake), "gold"), gold_before)
    pd.testing.assert_frame_equal(read_table(str(lake), "bi"), bi_before)
    # With the default 1 % gate the same day proceeds from its valid bars, with warnings.
    ok, summary, error = run_materialize(["NVDA"], date(2024, 3, 4), date(2024, 3, 4), overrides)
    assert ok and not summary.withheld, error
    assert summary.checks["silver_close_present"][:2] == (False, "WARN")
    gold = read_table(str(lake), "gold")
    assert int(gold[gold.trade_date == date(2024, 3, 4)].invalid_bar_count.iloc[0]) >= 4
    # People can inspect the bad bars.
    quarantine = read_table(str(lake), "quarantine")
    assert set(quarantine.dq_reason) >= {"missing_close", "missing_volume", "negative_volume"}
    assert (quarantine.trade_date == date(2024, 3, 4)).all()


CHECKS_QUERY = """
query {
  assetNodes {
    assetKey { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } }
  }
}
"""


@pytest.mark.daemon  # a dagster-webserver
def test_webserver_lists_one_check_per_rule(dagster_home, clean_env):
    from stock_lakehouse_tests.services import dagster_webserver, graphql

    with dagster_webserver(dagster_home) as url:
        nodes = graphql(url, CHECKS_QUERY)["assetNodes"]
    listed = {tuple(n["assetKey"]["path"]): n["assetChecksOrError"]["checks"] for n in nodes}
    for layer, names in rule_names().items():
        checks = {c["name"]: c["blocking"] for c in listed[tuple(LAYERS[layer].path)]}
        for rule in load_suite(QUALITY_DIR / f"{layer}.yml").rules:
            assert checks[rule.name] is (not rule.warn_only and rule.gate == "table"), rule.name
        assert set(checks) - set(names) <= PYTHON_CHECKS.get(layer, set())

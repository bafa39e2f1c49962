"""The console script as a user runs it: a separate process, a fresh instance and lake."""

import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse_tests.conftest import NVDA_SAMPLE, REPO

pytestmark = pytest.mark.spark


def cli(*args, env, cwd):
    exe = Path(sys.executable).with_name("stock-lakehouse")
    return subprocess.run([str(exe), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_one_symbol_eight_days_is_one_run_and_one_spark_session(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_") or k == "STOCK_LAKEHOUSE_IVY_DIR"
    }
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    env["STOCK_LAKEHOUSE_LAKE_ROOT"] = str(tmp_path / "lake-from-env")
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    done = cli(
        "--config",
        str(REPO / "config" / "stock_lakehouse.yaml"),
        "materialize",
        "--symbols",
        "NVDA",
        "--start",
        "2024-03-01",
        "--end",
        "2024-03-12",
        "--source",
        "replay",
        "--replay-dir",
        str(rec),
        "--lake-root",
        str(tmp_path / "lake"),
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "runs: 1   spark sessions: 1" in done.stdout
    assert any(line.split()[:3] == ["bronze", "7680", "8"] for line in done.stdout.splitlines())
    assert any(line.split()[:3] == ["gold", "8", "8"] for line in done.stdout.splitlines())
    # The CLI option beat the environment variable, and the run is recorded in the instance.
    assert (tmp_path / "lake" / "gold" / "daily_kpis" / "_delta_log").is_dir()
    assert not (tmp_path / "lake-from-env").exists()
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    mats = instance.fetch_materializations(dg.AssetKey(["bronze", "intraday_bars"]), limit=100).records
    assert len(mats) == 8
    assert len({m.asset_materialization.metadata["spark_app_id"].value for m in mats}) == 1

    shown = cli(
        "show",
        "gold",
        "--symbols",
        "nvda",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-05",
        "--format",
        "csv",
        "--lake-root",
        str(tmp_path / "lake"),
        env=env,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    gold = pd.read_csv(io.StringIO(shown.stdout))
    assert list(gold.trade_date) == ["2024-03-04", "2024-03-05"] and (gold.bar_count == 390).all()


def test_cli_errors_name_the_problem(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    missing = cli("show", "gold", "--lake-root", str(tmp_path / "nowhere"), env=env, cwd=tmp_path)
    assert missing.returncode != 0 and "no Delta table at" in missing.stderr and "nowhere" in missing.stderr
    bad_date = cli("materialize", "--start", "2024-13-01", env=env, cwd=tmp_path)
    assert bad_date.returncode != 0 and "'2024-13-01' is not a YYYY-MM-DD date" in bad_date.stderr
    bad_cfg = tmp_path / "c.yaml"
    bad_cfg.write_text("source: ftp\n")
    wrong = cli("--config", str(bad_cfg), "materialize", "--start", "2024-03-01", env=env, cwd=tmp_path)
    assert wrong.returncode != 0 and "c.yaml" in wrong.stderr and "source" in wrong.stderr


def test_sync_symbols_prepares_a_new_instance_once(dagster_home, clean_env, monkeypatch):
    """Symbols become partitions and every writer pool gets the instance's default limit up front (two first
    runs racing to create a pool row fail one run on PostgreSQL); a second call changes nothing, and a
    limit set by hand stays."""
    from click.testing import CliRunner

    from stock_lakehouse.assets.keys import TABLES, writer_pool
    from stock_lakehouse.cli import main
    from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME

    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
    )
    monkeypatch.setenv("STOCK_LAKEHOUSE_SYMBOLS", "AAA,BBB")
    pools = [writer_pool(dg.AssetKey(path)) for path in TABLES.values()]
    first = CliRunner().invoke(main, ["sync-symbols"])
    assert first.exit_code == 0, first.output
    assert "added: AAA, BBB" in first.output and f"writer pools created: {', '.join(pools)}" in first.output
    instance = dg.DagsterInstance.get()
    assert instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME) == ["AAA", "BBB"]
    storage = instance.event_log_storage
    assert storage.get_concurrency_keys() >= set(pools)
    assert {p: storage.get_concurrency_info(p).slot_count for p in pools} == dict.fromkeys(pools, 1)
    storage.set_concurrency_slots(pools[0], 3)
    second = CliRunner().invoke(main, ["sync-symbols"])
    assert second.exit_code == 0 and "added: none" in second.output and "pools created" not in second.output
    assert storage.get_concurrency_info(pools[0]).slot_count == 3

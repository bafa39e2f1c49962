"""The console script as a user runs it: a separate process, a fresh instance and lake."""

import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from stock_lakehouse_tests.conftest import NVDA_SAMPLE, REPO, environment_without_settings


def cli(*args, env, cwd, timeout=600):
    exe = Path(sys.executable).with_name("stock-lakehouse")
    return subprocess.run([str(exe), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.spark
def test_cli_one_symbol_eight_days_is_one_run_and_one_spark_session(tmp_path):
    env = environment_without_settings()
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


def test_backfill_without_a_webserver_ends_in_one_line(tmp_path):
    """The GraphQL client's connection errors (no webserver, or one that went away while `backfill` waited
    on it: the orchestrator crash test covers that) are one line, not httpx's traceback."""
    from stock_lakehouse_tests.services import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = cli(
        "backfill", "--url", url, "--symbols", "NVDA", "--start", "2024-03-04", env=settings_env(tmp_path), cwd=REPO
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: Dagster webserver at {url}/graphql unreachable"), line


PINNED_TZ = '{"spark.sql.session.timeZone": "America/New_York"}'

#: Each command that loads settings, with a wrong setting (environment, or the file's text) and what its
#: one line must say.
BAD_SETTING_RUNS = [
    (["show", "gold"], {"STOCK_LAKEHOUSE_LAKE_ROOOT": "x"}, None, "STOCK_LAKEHOUSE_LAKE_ROOOT is no setting"),
    (["sql", "SELECT 1"], {}, "calendar: NYSEE\n", "calendar: 'NYSEE' is not an exchange_calendars calendar"),
    (["dashboard", "--port", "0"], {"STOCK_LAKEHOUSE_SPARK_CONF": PINNED_TZ}, None, "'spark.sql.session.timeZone' is"),
    (["dashboard"], {"STOCK_LAKEHOUSE_AUTOMATION_END_OF_DAY_AT": "24:99"}, None, "automation.end_of_day_at: '24:99'"),
    (["materialize", "--start", "2024-03-01"], {}, "symbols: [NVDA\n", "c.yaml): not valid YAML at line 2, column 1"),
    (["demo"], {"STOCK_LAKEHOUSE_QUALITY_MAX_INVALID_SHAR": "0.1"}, None, "(quality.max_invalid_shar)"),
    (["sync-symbols"], {"STOCK_LAKEHOUSE_SYMBOLZ": "NVDA"}, None, "did you mean STOCK_LAKEHOUSE_SYMBOLS"),
    (["provision-store"], {}, "partitions_start: '1999-01-01'\n", "partitions_start 1999-01-01 is outside"),
    (["backfill", "--start", "2024-03-01", "--no-wait"], {}, "calendar: AIXK\n", "calendar: 'AIXK' cannot be used"),
    (["bi-server", "--port", "1"], {"STOCK_LAKEHOUSE_BI_PASSWORT": "x"}, None, "STOCK_LAKEHOUSE_BI_PASSWORT is no"),
    (
        ["engine", "--port", "1"],
        {"STOCK_LAKEHOUSE_SPARK_REMOTE": "sc://h:1;token=k"},
        None,
        "spark.remote 'sc://h:1;tok",
    ),
    (["dev"], {}, "spark:\n  remote: http://h:1\n", "spark.remote 'http://h:1' is not sc://host:port"),
]


def settings_env(tmp_path, **extra) -> dict[str, str]:
    ours = {k for k in os.environ if k.startswith("STOCK_LAKEHOUSE_") and k != "STOCK_LAKEHOUSE_IVY_DIR"}
    return {**{k: v for k, v in os.environ.items() if k not in ours}, "DAGSTER_HOME": str(tmp_path / "home"), **extra}


@pytest.mark.parametrize(("args", "env", "config", "expected"), BAD_SETTING_RUNS, ids=lambda v: str(v)[:30])
def test_every_command_reports_a_wrong_setting_in_one_line(tmp_path, args, env, config, expected):
    options = []
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        options = ["--config", str(tmp_path / "c.yaml")]
    done = cli(*options, *args, env=settings_env(tmp_path, **env), cwd=tmp_path, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 1 and len(lines) == 1, (done.returncode, lines)
    assert lines[0].startswith("error: invalid settings (") and expected in lines[0], lines[0]


def test_every_command_loading_settings_is_covered():
    """A command added later that loads settings gets a case above (the one-line report is the group's)."""
    from stock_lakehouse.cli import main

    without_settings = {"bench", "setup-jars"}  # the benchmark's own workloads; the jars only
    assert set(main.commands) - without_settings == {args[0] for args, *_ in BAD_SETTING_RUNS}


def test_materialize_refuses_a_pinned_spark_key_before_writing(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("spark:\n  conf:\n    spark.driver.extraJavaOptions: -Duser.timezone=America/New_York\n")
    lake = tmp_path / "lake"
    done = cli(
        "--config",
        str(config),
        "materialize",
        "--start",
        "2024-03-04",
        "--lake-root",
        str(lake),
        env=settings_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: invalid settings ({config}): spark.conf: 'spark.driver.extraJavaOptions' is")
    assert not lake.exists() and not (tmp_path / "home").exists()  # no landing file, table or run


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

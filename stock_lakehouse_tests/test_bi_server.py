"""The BI endpoint (``stock-lakehouse bi-server``) as BI tools meet it: a real Spark Thrift Server over a lake
built by the pipeline, queried with a real HiveServer2 client (PyHive), checked against delta-rs reads.

One anonymous server on loopback serves the module; a second one, bound beyond loopback with a login,
checks the password. The refusal to start without a login is in ``test_bi_access.py`` (no JVM).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.local_processes import bi_server_process, wait_line
from stock_lakehouse.settings import SAMPLE_DATA_DIR
from stock_lakehouse_tests.conftest import clean_environment, environment_without_settings

pytestmark = pytest.mark.spark

START, END = date(2024, 3, 1), date(2024, 3, 12)
LATE_TABLE = ("gold", "signals")  # hidden when the server starts, to see it registered later


@dataclass
class Endpoint:
    port: int
    lake: Path
    log: Path


@pytest.fixture(scope="module")
def bi_lake(tmp_path_factory, spark) -> tuple[Path, Path]:
    """The bundled NVDA sample materialized twice (every table at version 1, so RESTORE has a past);
    returns (config file, lake)."""
    from stock_lakehouse.runs.materialize import run_materialize

    root = tmp_path_factory.mktemp("bi")
    lake, home = root / "lake", root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = root / "stock_lakehouse.yaml"
    config.write_text(yaml.safe_dump({"symbols": ["NVDA"], "replay_dir": str(SAMPLE_DATA_DIR), "lake_root": str(lake)}))
    with pytest.MonkeyPatch.context() as mp:
        clean_environment(mp, config)
        mp.setenv("DAGSTER_HOME", str(home))
        for _ in range(2):
            ok, _, error = run_materialize(["NVDA"], START, END, {})
            assert ok, error
    return config, lake


@contextlib.contextmanager
def bi_server(
    config: Path | None, log: Path, host: str = "127.0.0.1", lake_root: str | None = None, **env: str
) -> Iterator[tuple[int, str]]:
    """``stock-lakehouse bi-server`` as a real process, with ``env`` over a clean environment (no settings
    from this one); yields its port and ready line once clients can connect."""
    options = ["--host", host, "--refresh-seconds", "1", *(["--lake-root", lake_root] if lake_root else [])]
    with bi_server_process(log, environment_without_settings(**env), options, config, timeout=240) as started:
        yield started


@pytest.fixture(scope="module")
def endpoint(bi_lake, tmp_path_factory) -> Iterator[Endpoint]:
    config, lake = bi_lake
    late = lake.joinpath(*LATE_TABLE)
    hidden = late.with_name("signals.hidden")
    late.rename(hidden)
    log = tmp_path_factory.mktemp("bi-log") / "bi-server.log"
    try:
        with bi_server(config, log) as (port, ready):
            assert "signals" not in ready.split("tables:")[1]
            # A table that cannot be read yet (a log that is no Delta log) is a warning; serving goes on.
            (late / "_delta_log").mkdir(parents=True)
            (late / "_delta_log" / "00000000000000000000.json").write_text("not a delta log\n")
            wait_line(log, "warning: registering new tables failed", timeout=60)
            shutil.rmtree(late)
            hidden.rename(late)
            wait_line(log, "registered: signals", timeout=60)
            yield Endpoint(port, lake, log)
    finally:
        if hidden.exists():
            shutil.rmtree(late, ignore_errors=True)
            hidden.rename(late)


def query(endpoint: Endpoint | int, sql: str, **auth) -> pd.DataFrame:
    """Rows of ``sql`` through a new HiveServer2 connection (as a BI tool opens one) to an endpoint or port."""
    from pyhive import hive

    port = endpoint if isinstance(endpoint, int) else endpoint.port
    with contextlib.closing(hive.connect(host="127.0.0.1", port=port, username="analyst", **auth)) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        columns = [d[0].split(".")[-1] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)


def same_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal rows and values; timestamps and dates compared as text (HiveServer2 sends them as strings)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) > 0
    for column in want.columns:
        w, g = want[column], got[column]
        if pd.api.types.is_float_dtype(w):
            pd.testing.assert_series_equal(g.astype(float), w.astype(float), check_names=False, rtol=1e-9)
        elif pd.api.types.is_integer_dtype(w):
            assert g.astype("Int64").tolist() == w.astype("Int64").tolist(), column
        else:
            assert [_text(x) for x in g] == [_text(x) for x in w], column


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.tz_localize(None) if value.tzinfo else value
        return value.isoformat(sep=" ")
    return str(value)


def test_bi_stock_daily_through_the_endpoint_equals_the_delta_table(endpoint):
    got = query(endpoint, "SELECT * FROM bi_stock_daily ORDER BY symbol, trade_date")
    want = read_table(str(endpoint.lake), "bi")
    same_frames(got, want)


def test_a_bi_style_query_one_symbol_one_month_ordered(endpoint):
    got = query(
        endpoint,
        "SELECT trade_date, close, volume FROM bi_stock_daily "
        "WHERE symbol = 'NVDA' AND trade_date BETWEEN '2024-03-01' AND '2024-03-31' ORDER BY trade_date DESC",
    )
    bi = read_table(str(endpoint.lake), "bi", symbols=["NVDA"], start=date(2024, 3, 1), end=date(2024, 3, 31))
    want = bi[["trade_date", "close", "volume"]].sort_values("trade_date", ascending=False).reset_index(drop=True)
    same_frames(got, want)
    assert got["trade_date"].tolist() == sorted(got["trade_date"], reverse=True)


def test_every_table_and_the_quarantine_view_are_named_and_a_late_table_is_registered(endpoint):
    names = set(query(endpoint, "SHOW TABLES")["tableName"])
    assert names == {"intraday_bars", "stock_clean", "daily_kpis", "bi_stock_daily", "signals", "quarantine"}
    invalid = read_table(str(endpoint.lake), "quarantine")
    assert query(endpoint, "SELECT count(*) AS n FROM quarantine")["n"][0] == len(invalid)
    signals = query(endpoint, "SELECT count(*) AS n FROM signals")["n"][0]
    assert signals == len(read_table(str(endpoint.lake), "signals")) > 0


#: Statements a BI user must not run: writes, DDL, table maintenance, session state, files and JVM calls.
REFUSED = {
    "INSERT INTO bi_stock_daily SELECT * FROM bi_stock_daily": "read-only endpoint",
    "INSERT OVERWRITE TABLE daily_kpis SELECT * FROM daily_kpis": "read-only endpoint",
    "DELETE FROM bi_stock_daily WHERE symbol = 'NVDA'": "read-only endpoint",
    "UPDATE stock_clean SET close = 0": "read-only endpoint",
    "MERGE INTO bi_stock_daily t USING bi_stock_daily s ON t.symbol = s.symbol WHEN MATCHED THEN DELETE": "read-only",
    "DROP TABLE bi_stock_daily": "read-only endpoint",
    "DROP VIEW quarantine": "read-only endpoint",
    "CREATE TABLE planted (a INT)": "read-only endpoint",
    "CREATE TABLE planted USING parquet AS SELECT 1 AS a": "read-only endpoint",
    "CREATE TEMPORARY VIEW planted AS SELECT 1 AS a": "read-only endpoint",
    "ALTER TABLE bi_stock_daily SET TBLPROPERTIES ('x' = 'y')": "read-only endpoint",
    "ALTER TABLE signals RENAME TO planted": "read-only endpoint",
    "TRUNCATE TABLE daily_kpis": "read-only endpoint",
    "OPTIMIZE intraday_bars": "read-only endpoint",
    "VACUUM intraday_bars RETAIN 0 HOURS": "read-only endpoint",
    "RESTORE TABLE bi_stock_daily TO VERSION AS OF 0": "read-only endpoint",
    "INSERT OVERWRITE DIRECTORY '{lake}/gold/daily_kpis' USING parquet SELECT 1 AS a": "read-only endpoint",
    "SET spark.sql.runSQLOnFiles = true": "read-only endpoint",
    "ADD JAR /tmp/planted.jar": "read-only endpoint",
    "CACHE TABLE intraday_bars": "read-only endpoint",
    "SELECT reflect('java.lang.System', 'getProperty', 'user.name')": "read-only endpoint",
    "SELECT (SELECT java_method('java.lang.System', 'getenv', 'HOME'))": "read-only endpoint",
    "SELECT * FROM delta.`{lake}/gold/bi_stock_daily`": "TABLE_OR_VIEW_NOT_FOUND",
    "SELECT * FROM text.`/etc/passwd`": "TABLE_OR_VIEW_NOT_FOUND",
}


def _lake_files(lake: Path) -> dict[str, int]:
    return {str(p.relative_to(lake)): p.stat().st_size for p in lake.rglob("*") if p.is_file()}


def test_writes_ddl_and_escapes_are_refused_and_the_lake_is_unchanged(endpoint):
    from pyhive.exc import OperationalError

    before = _lake_files(endpoint.lake)
    assert any("_delta_log/00000000000000000001.json" in f for f in before)  # RESTORE has a version to go to
    for statement, why in REFUSED.items():
        sql = statement.format(lake=endpoint.lake)
        with pytest.raises(OperationalError) as refused:
            query(endpoint, sql)
        assert why in str(refused.value), f"{sql}: {str(refused.value)[:300]}"
    assert _lake_files(endpoint.lake) == before
    assert set(query(endpoint, "SHOW TABLES")["tableName"]) >= {"bi_stock_daily", "quarantine", "signals"}
    assert query(endpoint, "SELECT count(*) AS n FROM bi_stock_daily")["n"][0] == len(
        read_table(str(endpoint.lake), "bi")
    )


def test_reading_statements_bi_tools_send_are_allowed(endpoint):
    assert "close" in set(query(endpoint, "DESCRIBE bi_stock_daily")["col_name"])
    assert len(query(endpoint, "DESCRIBE HISTORY bi_stock_daily")) == 2
    assert len(query(endpoint, "SHOW DATABASES")) >= 1
    assert "Physical Plan" in query(endpoint, "EXPLAIN SELECT * FROM daily_kpis").iloc[0, 0]
    assert query(endpoint, "SET spark.sql.session.timeZone").iloc[0, 1] == "UTC"


def test_with_a_login_a_wrong_password_is_refused_and_the_right_one_answers(bi_lake, tmp_path):
    from pyhive.exc import OperationalError
    from thrift.transport.TTransport import TTransportException

    config, lake = bi_lake
    password = "pw-" + os.urandom(8).hex()
    log = tmp_path / "bi-server.log"
    # Beyond loopback (all interfaces): allowed only because a login is configured.
    with bi_server(
        config, log, host="0.0.0.0", STOCK_LAKEHOUSE_BI_USER="analyst", STOCK_LAKEHOUSE_BI_PASSWORD=password
    ) as (port, ready):
        assert "user 'analyst' with password" in ready
        endpoint = Endpoint(port, lake, log)
        for wrong in ({"auth": "CUSTOM", "password": password + "x"}, {}):
            with pytest.raises((TTransportException, OperationalError)):
                query(endpoint, "SELECT count(*) AS n FROM bi_stock_daily", **wrong)
        rows = query(endpoint, "SELECT count(*) AS n FROM bi_stock_daily", auth="CUSTOM", password=password)
        assert rows["n"][0] == len(read_table(str(lake), "bi"))
    assert password not in log.read_text()

"""Who may reach the BI endpoint, and the configuration it starts with: decided before any JVM (quick lane).

The endpoint itself, queried by a real HiveServer2 client, is ``test_bi_server.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from stock_lakehouse.bi_server.access import PASSWORD_ENV, USER_ENV, AccessRefused, decide_access, is_loopback
from stock_lakehouse.bi_server.classes import AUTHENTICATOR_CLASS, GUARD_CLASS
from stock_lakehouse.bi_server.server import server_conf
from stock_lakehouse.cli import main
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.lakehouse.tables import TABLES, VIEWS, sql_name
from stock_lakehouse.settings import load_settings


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("bi.example.com", False),
        ("127.0.0.1 --hiveconf x", False),
        ("127.0.0.1\n", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_loopback_without_a_login_is_anonymous():
    assert decide_access("127.0.0.1", {}).mode == "NONE"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "bi.example.com"])
def test_beyond_loopback_without_a_login_is_refused_naming_the_variables(host):
    with pytest.raises(AccessRefused) as refused:
        decide_access(host, {})
    message = str(refused.value)
    assert host in message and USER_ENV in message and PASSWORD_ENV in message


@pytest.mark.parametrize("host", ["127.0.0.1 --hiveconf x", "127.0.0.1\n", "", "-h", "a" * 300, "h\x00st"])
def test_a_host_that_is_no_address_is_refused_naming_it(host):
    with pytest.raises(AccessRefused, match="not an IP address or host name"):
        decide_access(host, {USER_ENV: "analyst", PASSWORD_ENV: "pw"})


@pytest.mark.parametrize("given, missing", [({USER_ENV: "analyst"}, PASSWORD_ENV), ({PASSWORD_ENV: "pw"}, USER_ENV)])
def test_half_a_login_is_refused_naming_the_missing_half(given, missing):
    with pytest.raises(AccessRefused, match=missing):
        decide_access("127.0.0.1", given)


def test_a_login_is_required_everywhere_once_configured_and_only_its_hash_goes_on():
    access = decide_access("127.0.0.1", {USER_ENV: "analyst", PASSWORD_ENV: "s3cret pw"})
    assert (access.mode, access.user) == ("CUSTOM", "analyst")
    assert access.password_sha256 == hashlib.sha256(b"s3cret pw").hexdigest()
    assert "s3cret" not in repr(access) + access.describe()
    assert decide_access("0.0.0.0", {USER_ENV: "analyst", PASSWORD_ENV: "x"}).mode == "CUSTOM"


def test_the_command_refuses_to_listen_beyond_loopback_without_a_login(monkeypatch, clean_env):
    result = CliRunner().invoke(main, ["bi-server", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert "0.0.0.0" in first and PASSWORD_ENV in first, result.output


def test_the_login_variables_are_not_refused_as_unknown_settings(monkeypatch, clean_env):
    monkeypatch.setenv(USER_ENV, "analyst")
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert load_settings().lake_root  # loads: the names are known, read by the endpoint only


def test_the_server_conf_adds_the_guard_the_catalog_and_the_login_to_the_pipelines_conf(tmp_path):
    spark = SparkResource(conf={"spark.sql.runSQLOnFiles": "true"})
    classes = tmp_path / "classes"
    login = decide_access("0.0.0.0", {USER_ENV: "analyst", PASSWORD_ENV: "pw"})
    conf = server_conf(spark, "0.0.0.0", 10001, login, classes, tmp_path)
    base = spark.spark_conf()
    assert conf["spark.sql.extensions"].split(",") == [*base["spark.sql.extensions"].split(","), GUARD_CLASS]
    assert conf["spark.driver.extraClassPath"].endswith(str(classes))
    assert conf["spark.sql.runSQLOnFiles"] == "false"  # a user's spark.conf cannot open files to BI users
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert str(tmp_path) in conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert conf["spark.hadoop.hive.server2.thrift.bind.host"] == "0.0.0.0"
    assert conf["spark.hadoop.hive.server2.thrift.port"] == "10001"
    assert conf["spark.hadoop.hive.server2.authentication"] == "CUSTOM"
    assert f"-Dhive.server2.custom.authentication.class={AUTHENTICATOR_CLASS}" in conf["spark.driver.extraJavaOptions"]
    assert "pw" not in {v for v in conf.values() if isinstance(v, str)}
    anonymous = server_conf(spark, "127.0.0.1", 10001, decide_access("127.0.0.1", {}), classes, tmp_path)
    assert anonymous["spark.hadoop.hive.server2.authentication"] == "NONE"
    assert "custom.authentication" not in anonymous["spark.driver.extraJavaOptions"]


def test_a_temp_folder_that_would_change_the_metastore_url_is_refused(tmp_path):
    work = tmp_path / "x;create=false;shutdown=true"
    with pytest.raises(ValueError, match="';'"):
        server_conf(SparkResource(), "127.0.0.1", 10001, decide_access("127.0.0.1", {}), Path("c"), work)


def test_sql_names_are_the_folders_names_and_views_their_own():
    assert {sql_name(t) for t in TABLES} == {"intraday_bars", "stock_clean", "daily_kpis", "bi_stock_daily", "signals"}
    assert [sql_name(v) for v in VIEWS] == ["quarantine"]

"""The engine's configuration and its clients' errors, without starting anything: hostile ``spark.remote``
values, SQL quoting of table paths, what the engine's Spark gets (and never: keys), one-line gRPC causes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stock_lakehouse.engine.server import LOOPBACK_ONLY_CLASS, engine_conf
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.maintenance import delta_path_sql
from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.lakehouse.spark_pins import check_remote
from stock_lakehouse.runs.root_cause import engine_cause
from stock_lakehouse.settings import SettingsError, load_settings


@pytest.mark.parametrize("url", ["sc://127.0.0.1:15002", "sc://engine:15002", "sc://[::1]:15002", "sc://a.b-c:1/"])
def test_an_engine_address_is_accepted(url):
    assert check_remote(url) == url.rstrip("/")
    assert SparkResource(remote=url).remote == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "sc://127.0.0.1:15002;token=secret",  # a token would be shown in the UI's resource config
        "sc://127.0.0.1:15002/;user_id=x",
        "http://127.0.0.1:15002",
        "sc://127.0.0.1",
        "sc://127.0.0.1:0",
        "sc://127.0.0.1:99999",
        "sc://-evil:1",
        "sc://h:1\nspark.hadoop.fs.s3a.secret.key=x",
        "sc://user@h:1",
        "sc://h:1 ",
        "local[*]",
    ],
)
def test_a_hostile_engine_address_is_refused_naming_it(url):
    with pytest.raises(ValueError, match=r"spark.remote .* is not sc://host:port"):
        check_remote(url)
    with pytest.raises(ValueError, match="is not sc://host:port"):
        SparkResource(remote=url)


def test_a_wrong_engine_address_in_settings_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("spark:\n  remote: sc://h:1;token=abc\n")
    with pytest.raises(SettingsError, match=r"spark.remote: .*'sc://h:1;token=abc' is not sc://host:port"):
        load_settings(config)


@pytest.mark.parametrize(
    ("uri", "sql"),
    [
        ("/lake/gold/daily_kpis", "delta.`/lake/gold/daily_kpis`"),
        ("/la`ke/gold/daily_kpis", "delta.`/la``ke/gold/daily_kpis`"),
        ("/x`; DROP TABLE t; --/gold/daily_kpis", "delta.`/x``; DROP TABLE t; --/gold/daily_kpis`"),
        ("s3a://b/p`/silver/stock_clean", "delta.`s3a://b/p``/silver/stock_clean`"),
    ],
)
def test_a_table_path_stays_one_quoted_name_in_sql(uri, sql):
    assert delta_path_sql(uri) == sql
    inner = sql[len("delta.`") : -1]
    assert inner.replace("``", "").count("`") == 0  # every backtick inside is doubled: the name cannot end early


def test_the_engine_gets_the_connect_port_the_loopback_check_and_the_lake_but_no_key(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENGINETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "engine-secret-value")
    lake = Lake(root="s3a://lake/prefix", s3=S3Location(endpoint="http://minio:9000"))
    conf = engine_conf(SparkResource(), lake, 15123, Path("/tmp/classes"))
    assert conf["spark.connect.grpc.binding.port"] == "15123"
    assert conf["spark.connect.grpc.interceptor.classes"] == LOOPBACK_ONLY_CLASS
    assert conf["spark.driver.extraClassPath"].endswith("/tmp/classes")
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    text = repr(conf)
    assert "AKIAENGINETEST" not in text and "engine-secret-value" not in text
    open_to_all = engine_conf(SparkResource(), lake, 15123, None)  # --any-client (compose's internal network)
    assert "spark.connect.grpc.interceptor.classes" not in open_to_all


def test_a_grpc_failure_becomes_one_line_naming_the_engine():
    dump = (
        "<_MultiThreadedRendezvous of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n"
        '\tdetails = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:15002: '
        'Failed to connect to remote host: Connection refused"\n\tdebug_error_string = "UNAVAILABLE:..."\n>'
    )
    assert engine_cause(dump) == (
        "the Spark engine at 127.0.0.1:15002 failed: UNAVAILABLE: failed to connect to all addresses; last error: "
        "UNKNOWN: ipv4:127.0.0.1:15002: Failed to connect to remote host: Connection refused"
    )
    assert engine_cause("java.io.IOException: disk full") is None

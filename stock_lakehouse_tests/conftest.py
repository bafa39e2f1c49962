"""Shared fixtures: one real Spark session (with Delta) per test process, temporary lakes and instances."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg
import pytest

from stock_lakehouse.event_storage import instance_yaml
from stock_lakehouse.settings import SAMPLE_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
#: Recorded responses shipped with the tests (see fixtures/README.md); nothing is read from outside the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alphavantage"
NVDA_SAMPLE = SAMPLE_DATA_DIR / "TIME_SERIES_INTRADAY_NVDA_1min_2024-03-01_to_2024-03-12.json"

# Every Spark JVM the tests start (here, in CLI subprocesses, in daemon runs) reads these defaults.
os.environ.setdefault("SPARK_CONF_DIR", str(Path(__file__).resolve().parent / "spark-conf"))

for _category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.filterwarnings("ignore", category=_category)


@pytest.fixture(scope="session")
def spark():
    from stock_lakehouse.lakehouse.spark import SparkResource

    # This JVM lives as long as the test process and runs many in-process runs: it keeps C2 (the defaults
    # in spark-conf/ are for the short-lived JVMs of subprocesses).
    return SparkResource(shuffle_partitions=2, conf={"spark.driver.defaultJavaOptions": ""}).get_session()


@pytest.fixture()
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture()
def lake(tmp_path) -> Path:
    return tmp_path / "lake"


@pytest.fixture()
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("STOCK_LAKEHOUSE_") and name != "STOCK_LAKEHOUSE_IVY_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOCK_LAKEHOUSE_CONFIG", str(REPO / "config" / "stock_lakehouse.yaml"))


@pytest.fixture(scope="session")
def minio(tmp_path_factory):
    """A real MinIO server for the session, with bucket ``lake``; yields its environment."""
    from stock_lakehouse_tests.services import minio_server

    with minio_server(tmp_path_factory.mktemp("minio")) as env:
        yield env

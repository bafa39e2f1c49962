"""The freshness and anomaly sensors on a real MinIO lake, configured the way ``docker/`` configures the code
location: environment variables only (lake root, endpoint, keys), definitions built from them.

The tables are written with delta-rs (no Spark): the sensors read them with delta-rs too, and what is
under test is that the sensors reach the store the lake resource names, not how the rows were made.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from stock_lakehouse.assets.keys import BI
from stock_lakehouse.automation.alerts import AlertSink
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.partitions import BarPartition
from stock_lakehouse.wiring import build_definitions
from stock_lakehouse_tests.services import WebhookReceiver, free_port

NY = ZoneInfo("America/New_York")


@pytest.fixture()
def s3_defs(minio, clean_env, dagster_home, monkeypatch):
    """Definitions built from the environment alone, as in docker-compose.yml, on a fresh prefix."""
    root = f"s3a://lake/sensors-{uuid.uuid4().hex[:8]}"
    for name, value in {
        **minio,
        "STOCK_LAKEHOUSE_LAKE_ROOT": root,
        "STOCK_LAKEHOUSE_SYMBOLS": "AAA,BBB",
        "STOCK_LAKEHOUSE_SOURCE": "synthetic",
    }.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions()
    lake = defs.resources["lake"]
    assert isinstance(lake, Lake) and lake.uri == root and lake.s3.endpoint == minio["STOCK_LAKEHOUSE_S3_ENDPOINT"]
    return defs


@pytest.fixture()
def receiver():
    with WebhookReceiver() as r:
        yield r


def write_table(lake: Lake, table: str, df: pd.DataFrame) -> None:
    uri = "s3://" + lake.table_uri(table).split("://", 1)[1]
    write_deltalake(
        uri, pa.Table.from_pandas(df, preserve_index=False), partition_by=["symbol", "trade_date"],
        mode="append", storage_options=lake.s3.delta_rs_options(),
    )  # fmt: skip


def evaluate(defs, name: str, resources: dict, cursor: str | None = None, instance=None) -> str | None:
    ctx = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
    defs.resolve_sensor_def(name)(ctx)
    return ctx.cursor


def test_freshness_on_minio_alerts_the_stale_symbol_once_and_not_the_fresh_one(s3_defs, receiver):
    lake = s3_defs.resources["lake"]
    day = date(2024, 11, 27)
    bar = lambda sym, h, m: (sym, day, datetime(2024, 11, 27, h, m, tzinfo=NY).astimezone(UTC).replace(tzinfo=None))  # noqa: E731
    rows = [bar("AAA", 9, 30), bar("AAA", 10, 25), bar("BBB", 9, 30), bar("BBB", 9, 35)]
    silver = pd.DataFrame(rows, columns=["symbol", "trade_date", "ts_utc"]).assign(is_valid=True)
    write_table(lake, "silver", silver)

    resources = {
        "alerts": AlertSink(webhook_url=receiver.url),
        "clock": Clock(fixed_utc=datetime(2024, 11, 27, 10, 30, tzinfo=NY).isoformat()),
        "lake": lake,
    }
    cursor = evaluate(s3_defs, "freshness_alerts", resources)
    assert receiver.kinds() == ["freshness"], receiver.messages
    assert receiver.messages[0]["text"].startswith("BBB: no new bar since 14:35 UTC on 2024-11-27")
    evaluate(s3_defs, "freshness_alerts", resources, cursor)  # still stale: no repeat
    assert len(receiver.messages) == 1


def test_freshness_on_an_unreachable_store_fails_instead_of_alerting(s3_defs, receiver):
    lake = s3_defs.resources["lake"].model_copy(update={"s3": S3Location(endpoint=f"http://127.0.0.1:{free_port()}")})
    resources = {
        "alerts": AlertSink(webhook_url=receiver.url),
        "clock": Clock(fixed_utc=datetime(2024, 11, 27, 10, 30, tzinfo=NY).isoformat()),
        "lake": Lake(**lake.model_dump()),
    }
    with pytest.raises(OSError, match="cannot read the Delta table at s3://lake/sensors-"):
        evaluate(s3_defs, "freshness_alerts", resources)
    assert receiver.messages == []


def test_anomaly_sensor_on_minio_alerts_an_anomalous_bi_row_once(s3_defs, receiver):
    lake = s3_defs.resources["lake"]
    days = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
    bi = pd.DataFrame(
        {
            "symbol": ["AAA"] * 3,
            "trade_date": days,
            "close": [100.0, 111.0, 111.5],
            "prev_close": [None, 100.0, 111.0],
            "price_change_pct": [None, 11.0, 0.45],
            "volume": [1000, 1100, 1000],
            "volume_7d_avg": [1000.0, 1050.0, 1033.3],
        }
    )
    write_table(lake, "bi", bi)
    instance = dg.DagsterInstance.get()

    def materialized(day: date) -> None:
        key = BarPartition("AAA", day).key
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=BI, partition=str(key)))

    for day in days:
        materialized(day)
    resources = {"alerts": AlertSink(webhook_url=receiver.url), "lake": lake}
    cursor = evaluate(s3_defs, "bi_anomaly_alerts", resources, instance=instance)
    assert receiver.kinds() == ["anomaly"], receiver.messages
    assert receiver.messages[0]["key"] == "anomaly:AAA:2024-03-05:price_change"
    materialized(date(2024, 3, 5))  # re-materialized: the same condition, no repeat
    cursor = evaluate(s3_defs, "bi_anomaly_alerts", resources, cursor, instance)
    assert len(receiver.messages) == 1

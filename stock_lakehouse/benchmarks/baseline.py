"""The floor: the same parsing, transformations and Delta writes in a bare PySpark script, without
Dagster or Soda. It reuses the pure transforms, so only orchestration and checks differ."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from stock_lakehouse.ingestion.parser import parse_payload
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.reader import table_path
from stock_lakehouse.lakehouse.signals import to_signals
from stock_lakehouse.lakehouse.transforms import to_bi, to_gold, to_silver
from stock_lakehouse.market_calendar import regular_close


def run_bare(spark: SparkSession, replay_dir: Path, lake: str) -> dict[str, float]:
    """Bronze -> silver -> gold -> BI into ``lake``; returns seconds per stage."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    frames = []
    now = datetime.now(UTC)
    for path in sorted(replay_dir.glob("*.json")):
        raw = path.read_bytes()
        p = parse_payload(raw, str(path))
        frames.append(
            p.bars.assign(
                source="bare",
                function=p.function,
                interval=p.interval,
                time_zone=p.time_zone,
                last_refreshed=p.last_refreshed,
                request_fingerprint="bare",
                payload_hash="bare",
                payload_uri=str(path),
                fetched_at=pd.Timestamp(now),
                ingested_at=pd.Timestamp(now),
            )
        )
    pdf = pd.concat(frames, ignore_index=True)
    pdf["bar_seq"] = pdf["bar_seq"].astype("int32")
    bronze = spark.createDataFrame(pdf[[f.name for f in schemas.BRONZE.fields]], schema=schemas.BRONZE)

    def write(df, table: str) -> None:
        df.write.format("delta").mode("overwrite").partitionBy("symbol", "trade_date").save(table_path(lake, table))

    write(bronze, "bronze")
    times["bronze"] = time.perf_counter() - t0
    t = time.perf_counter()
    bronze = spark.read.format("delta").load(table_path(lake, "bronze"))
    closes = {d: regular_close(d) for d in pdf["trade_date"].unique()}
    write(to_silver(bronze, closes), "silver")
    times["silver"] = time.perf_counter() - t
    t = time.perf_counter()
    write(to_gold(spark.read.format("delta").load(table_path(lake, "silver"))), "gold")
    times["gold"] = time.perf_counter() - t
    t = time.perf_counter()
    write(to_bi(spark.read.format("delta").load(table_path(lake, "gold"))), "bi")
    times["bi"] = time.perf_counter() - t
    t = time.perf_counter()
    write(to_signals(spark.read.format("delta").load(table_path(lake, "gold"))), "signals")
    times["signals"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    return times

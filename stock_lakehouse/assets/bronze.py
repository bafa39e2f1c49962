"""Bronze: every bar as received, with where it came from."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from stock_lakehouse.assets.keys import BRONZE, TABLE_ASSET_ARGS, layer, table_metadata, writer_pool
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.ingestion.landing import LandingZone
from stock_lakehouse.ingestion.parser import repeated_instants
from stock_lakehouse.ingestion.sources import BarSource
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.lakehouse.io_manager import TableWrite
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.partitions import dates_by_symbol, describe_partitions, parse_keys


def collect_bronze_rows(
    fetched, wanted: dict[str, list], landing: LandingZone, ingested_at: datetime
) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """Bars of the wanted (symbol, dates) from fetched payloads, each payload landed first.

    Returns:
        The rows, the number of payloads used, and per payload (its origin) how many of its wanted bars
        repeat an instant named earlier in it (silver keeps the later one).
    """
    frames = []
    payloads = 0
    repeats: dict[str, int] = {}
    for payload, parsed in fetched:
        days = set(wanted.get(parsed.symbol, ()))
        bars = parsed.bars[parsed.bars["trade_date"].isin(days)]
        if bars.empty:
            continue
        payloads += 1
        if n := repeated_instants(bars["ts"]):
            repeats[payload.origin] = n
        uri = landing.store(payload, parsed)
        frames.append(
            bars.assign(
                source=payload.source,
                function=parsed.function,
                interval=parsed.interval,
                time_zone=parsed.time_zone,
                last_refreshed=parsed.last_refreshed,
                request_fingerprint=payload.request_fingerprint,
                payload_hash=payload.sha256,
                payload_uri=uri,
                fetched_at=pd.Timestamp(payload.fetched_at),
            )
        )
    if not frames:
        return pd.DataFrame(columns=[f.name for f in schemas.BRONZE.fields]), 0, repeats
    pdf = pd.concat(frames, ignore_index=True)
    pdf["bar_seq"] = pdf["bar_seq"].astype("int32")
    pdf["ingested_at"] = pd.Timestamp(ingested_at)
    return pdf[[f.name for f in schemas.BRONZE.fields]], payloads, repeats


def build_bronze_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=BRONZE,
        pool=writer_pool(BRONZE),
        partitions_def=partitions_def,
        group_name=layer(BRONZE),
        metadata=table_metadata(schemas.BRONZE),
        description="One row per bar as received (values are the API's strings), with source, request "
        "fingerprint, payload hash and landing-zone path.",
        **TABLE_ASSET_ARGS,
    )
    def intraday_bars(
        context: dg.AssetExecutionContext,
        spark: SparkResource,
        bar_source: BarSource,
        landing: LandingZone,
        ingestion: IngestionConfig,
    ) -> TableWrite:
        """Bars of the run's partitions from the source. Partitions the source has nothing for keep the
        rows they have (``TableWrite.keep_if_present``) unless ``allow_empty_overwrite`` is set."""
        parts = parse_keys(context.partition_keys)
        wanted = dates_by_symbol(parts)
        pdf, payloads, repeats = collect_bronze_rows(
            bar_source.fetch(wanted, ingestion.interval), wanted, landing, datetime.now(UTC)
        )
        if repeats:
            context.log.warning(
                f"{sum(repeats.values())} bar(s) repeat an instant already in their payload (silver keeps "
                "the later entry): " + "; ".join(f"{origin}: {n}" for origin, n in list(repeats.items())[:10])
            )
        counts = pdf.groupby(["symbol", "trade_date"]).size().to_dict() if len(pdf) else {}
        closed = [p for p in parts if not ingestion.is_trading_day(p.symbol, p.trade_date)]
        empty = [p for p in parts if not counts.get((p.symbol, p.trade_date))]
        empty_open = [p for p in empty if p not in closed]
        cause = ""
        if empty_open:
            cause = bar_source.explain_missing(sorted({p.symbol for p in empty_open}), ingestion.interval)
            if len(empty_open) == len(parts) - len(closed):
                # Nothing at all for any trading day is a misconfiguration (folder, interval, symbol),
                # not a quiet day: stop before any table is touched.
                raise dg.Failure(
                    description=f"no bars for any trading day of the run ({describe_partitions(empty_open)}) from "
                    f"{bar_source.describe()}: {cause}. Nothing was written.",
                )
            context.log.warning(
                f"no bars from {bar_source.describe()} for {len(empty_open)} trading-day partition(s) "
                f"({describe_partitions(empty_open)}): {cause}"
            )
        session = spark.get_session()
        df = (
            session.createDataFrame(pdf, schema=schemas.BRONZE)
            if len(pdf)
            else session.createDataFrame([], schemas.BRONZE)
        )
        context.add_output_metadata(
            {
                "source": type(bar_source).__name__,
                "payloads": payloads,
                # entries naming an instant their payload already named (DESIGN §13: one bar per instant)
                "duplicate_instant": sum(repeats.values()),
                "market_closed": bool(parts) and len(closed) == len(parts),
                "market_closed_dates": sorted({p.trade_date.isoformat() for p in closed}),
                "trading_partitions_without_bars": [str(p.key) for p in empty_open[:100]],
                "spark_app_id": session.conf.get("spark.app.id", None),
            }
        )
        keep = () if ingestion.allow_empty_overwrite else tuple(empty)
        return TableWrite(df, keep_if_present=keep, keep_reason=cause)

    return intraday_bars

"""Table schemas. Writes are checked against them, so a column change is a deliberate edit here."""

from __future__ import annotations

from pyspark.sql import types as T

PARTITION_COLUMNS = ("symbol", "trade_date")

BRONZE = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("trade_date", T.DateType(), False),
        T.StructField("ts", T.StringType(), False),  # the API's bar label, US/Eastern wall clock
        T.StructField("bar_seq", T.IntegerType(), False),  # position in the payload
        T.StructField("open", T.StringType(), True),
        T.StructField("high", T.StringType(), True),
        T.StructField("low", T.StringType(), True),
        T.StructField("close", T.StringType(), True),
        T.StructField("volume", T.StringType(), True),
        T.StructField("source", T.StringType(), False),
        T.StructField("function", T.StringType(), False),
        T.StructField("interval", T.StringType(), False),
        T.StructField("time_zone", T.StringType(), False),
        T.StructField("last_refreshed", T.StringType(), True),
        T.StructField("request_fingerprint", T.StringType(), False),
        T.StructField("payload_hash", T.StringType(), False),
        T.StructField("payload_uri", T.StringType(), False),
        T.StructField("fetched_at", T.TimestampType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)

SILVER = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("trade_date", T.DateType(), False),
        T.StructField("ts_utc", T.TimestampType(), True),
        T.StructField("ts_local", T.TimestampNTZType(), True),
        T.StructField("interval", T.StringType(), False),
        T.StructField("open", T.DoubleType(), True),
        T.StructField("high", T.DoubleType(), True),
        T.StructField("low", T.DoubleType(), True),
        T.StructField("close", T.DoubleType(), True),
        T.StructField("volume", T.DoubleType(), True),
        T.StructField("session", T.StringType(), True),
        T.StructField("is_valid", T.BooleanType(), False),
        T.StructField("dq_reason", T.StringType(), True),
        T.StructField("source", T.StringType(), False),
        T.StructField("function", T.StringType(), False),
        T.StructField("last_refreshed", T.StringType(), True),
        T.StructField("payload_hash", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)

GOLD = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("trade_date", T.DateType(), False),
        T.StructField("open", T.DoubleType(), True),
        T.StructField("high", T.DoubleType(), True),
        T.StructField("low", T.DoubleType(), True),
        T.StructField("close", T.DoubleType(), True),
        T.StructField("volume", T.DoubleType(), True),
        T.StructField("vwap", T.DoubleType(), True),
        T.StructField("avg_price", T.DoubleType(), True),
        T.StructField("price_change", T.DoubleType(), True),
        T.StructField("intraday_change_pct", T.DoubleType(), True),
        T.StructField("bar_count", T.LongType(), False),
        T.StructField("invalid_bar_count", T.LongType(), False),
        T.StructField("intraday_volatility", T.DoubleType(), True),
    ]
)

BI = T.StructType(
    list(GOLD.fields)
    + [
        T.StructField("prev_close", T.DoubleType(), True),
        T.StructField("price_change_pct", T.DoubleType(), True),
        T.StructField("close_7d_avg", T.DoubleType(), True),
        T.StructField("volume_7d_avg", T.DoubleType(), True),
        T.StructField("volatility_score", T.DoubleType(), True),
    ]
)

SIGNALS = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("trade_date", T.DateType(), False),
        T.StructField("close", T.DoubleType(), True),
        T.StructField("volume", T.DoubleType(), True),
    ]
    + [
        T.StructField(name, T.DoubleType(), True)
        for name in (
            "sma_5",
            "sma_20",
            "ema_12",
            "ema_26",
            "macd",
            "macd_signal",
            "macd_hist",
            "rsi_14",
            "bb_upper",
            "bb_lower",
            "volume_z_20",
        )
    ]
    + [T.StructField("signal", T.StringType(), True)]
)


def conform(df, schema: T.StructType):
    """Select and cast ``df``'s columns to ``schema`` (order and types); raises on a missing column."""
    from pyspark.sql import functions as F

    have = set(df.columns)  # once: each look is a round trip to the engine for a Spark Connect client
    missing = [f.name for f in schema.fields if f.name not in have]
    if missing:
        raise ValueError(f"DataFrame lacks columns {missing} required by the table schema")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])

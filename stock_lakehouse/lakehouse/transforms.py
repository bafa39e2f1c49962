"""Pure transformations between layers: DataFrame in, DataFrame out, no I/O, no Dagster.

Formulas are those of DESIGN §6; each function returns columns in its table's schema order.
The Spark session must run in UTC (``SparkResource`` sets it): New York bar labels become UTC
instants through ``to_utc_timestamp``, which reads wall-clock time in the session's zone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, time

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.symbols import INTERVAL_MINUTES

#: Bar label layouts silver parses, in order; an optional fraction of a second (1-6 digits) is
#: accepted. A label none of them reads is flagged ``bad_timestamp`` (null parse), never a crash:
#: ``SparkResource`` runs with ``timeParserPolicy=CORRECTED``, where a failed parse is null.
TS_FORMATS = ("yyyy-MM-dd HH:mm:ss[.SSSSSS]", "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]", "yyyy-MM-dd HH:mm")
PRE_OPEN_SECONDS = 4 * 3600
REGULAR_OPEN_SECONDS = 9 * 3600 + 30 * 60
DEFAULT_CLOSE_SECONDS = 16 * 3600
PRICE_COLUMNS = ("open", "high", "low", "close")
AROUND_THE_CLOCK = ("FX_INTRADAY", "CRYPTO_INTRADAY")
#: Relative tolerance of the bar range check (one basis point of the close), see DESIGN §6.
RANGE_EPS = 1e-4


def _close_seconds(regular_close: Mapping[date, time]) -> Column:
    if not regular_close:
        return F.lit(DEFAULT_CLOSE_SECONDS)
    pairs = []
    for day, t in sorted(regular_close.items()):
        pairs += [F.lit(day), F.lit(t.hour * 3600 + t.minute * 60 + t.second)]
    return F.coalesce(F.element_at(F.create_map(*pairs), F.col("trade_date")), F.lit(DEFAULT_CLOSE_SECONDS))


def _finite(c: Column) -> Column:
    # Spark orders NaN above every number (NaN > 0 is true), so range checks alone let it through.
    return ~F.isnan(c) & (F.abs(c) != F.lit(float("inf")))


def validity_reasons(
    open_: Column, high: Column, low: Column, close: Column, volume: Column, raw: dict[str, Column] | None = None
) -> Column:
    """``;``-joined reasons a typed bar is invalid, or an empty string when it is valid.

    Args:
        raw: the bronze strings by column name, if known: a value that was present but did not parse
            as a number is then ``unparseable_<col>`` instead of ``missing_<col>``.
    """
    eps = F.lit(RANGE_EPS) * close
    typed = dict(zip((*PRICE_COLUMNS, "volume"), (open_, high, low, close, volume), strict=True))
    checks: list[tuple[Column, str]] = []
    for name, c in typed.items():
        if raw and name in raw:
            checks += [
                (raw[name].isNull(), f"missing_{name}"),
                (raw[name].isNotNull() & c.isNull(), f"unparseable_{name}"),
            ]
        else:
            checks += [(c.isNull(), f"missing_{name}")]
    checks += [(~_finite(c), f"nonfinite_{n}") for n, c in typed.items()]
    checks += [(c <= 0, f"nonpositive_{n}") for n, c in typed.items() if n != "volume"]
    checks += [
        (volume < 0, "negative_volume"),
        (low > high, "low_above_high"),
        (low > F.least(open_, close) + eps, "low_above_open_or_close"),
        (F.greatest(open_, close) > high + eps, "high_below_open_or_close"),
    ]
    return F.concat_ws(";", *[F.when(cond, F.lit(reason)) for cond, reason in checks])


def parse_label(label: Column) -> Column:
    """A bar label as a wall-clock timestamp (no zone), or null when no layout of ``TS_FORMATS`` fits."""
    return F.coalesce(*[F.to_timestamp_ntz(label, F.lit(fmt)) for fmt in TS_FORMATS])


def _on_grid(ts_utc: Column, interval: Column) -> Column:
    """Whether a bar's start lies on its interval's grid (DESIGN §13): a whole number of the interval's
    minutes since midnight, no seconds, no fraction. Null for an unknown interval (not judged)."""
    pairs = [F.lit(x) for name, minutes in INTERVAL_MINUTES.items() for x in (name, minutes * 60_000_000)]
    step = F.element_at(F.create_map(*pairs), interval)  # not map[column]: Spark Connect 3.5 lacks it
    # Epoch microseconds of the instant: the grid of every interval divides a day, and the zones of bar
    # labels (New York, UTC) are whole hours from UTC, so the UTC instant is on the grid exactly when its
    # wall-clock label is.
    return F.unix_micros(ts_utc) % step == 0


def _whole(value: Column) -> Column:
    return F.when(_finite(value), value == F.floor(value))


def to_silver(bronze: DataFrame, regular_close: Mapping[date, time]) -> DataFrame:
    """Typed, de-duplicated bars with session and validity flags.

    Args:
        bronze: rows of ``bronze/intraday_bars``.
        regular_close: New York close time per trade date (16:00 or the early close).

    Returns:
        One row per (symbol, instant) (DESIGN §13): labels are compared as the instants they mean, so
        ``10:00``, ``10:00:00`` and ``T10:00:00.000`` are one bar. Of several, the bar of the most recently
        refreshed response wins, then the most recently fetched, then the later entry inside one payload
        (as ``json.loads`` would keep it). Labels that parse as no timestamp are kept apart by their text,
        flagged ``bad_timestamp``. Invalid bars stay, flagged: besides the price and volume rules, a label
        off its interval's grid is ``off_grid`` and a fractional stock or FX volume is
        ``fractional_volume`` (its volume is null, never truncated); crypto volumes keep their decimals.
        FX and crypto bars are all ``regular`` session (labels in UTC); FX volume, which the API does not
        report, is 0.
    """
    # The label read as a wall clock (a UTC session makes the cast exact), then moved from its zone.
    parsed = bronze.withColumn("_local", parse_label(F.col("ts"))).withColumn(
        "_utc", F.to_utc_timestamp(F.col("_local").cast("timestamp"), F.col("time_zone"))
    )
    ranked = Window.partitionBy("symbol", "_utc", F.when(F.col("_utc").isNull(), F.col("ts"))).orderBy(
        F.col("last_refreshed").desc_nulls_last(),
        F.col("fetched_at").desc(),
        F.col("payload_hash").desc(),
        F.col("bar_seq").desc(),
    )
    latest = parsed.withColumn("_rank", F.row_number().over(ranked)).where(F.col("_rank") == 1)
    crypto = F.col("function") == "CRYPTO_INTRADAY"
    raw_volume = F.col("volume")
    # A stock or FX volume counts shares or units: a fraction means the bar is not what it says. Crypto
    # volumes are decimals (coins): kept as they are. Volume is a double for every asset class, so one
    # column serves both; whole numbers are exact in it up to 2**53.
    fractional = ~crypto & (_whole(raw_volume.cast("double")) == F.lit(False))
    typed = latest.select(
        "symbol",
        "trade_date",
        F.col("_utc").alias("ts_utc"),
        F.col("_local").alias("ts_local"),
        "interval",
        *[F.col(c).cast("double").alias(c) for c in PRICE_COLUMNS],
        # FX quotes carry no volume: 0, so they stay valid (gold's vwap is then null).
        F.when((F.col("function") == "FX_INTRADAY") & raw_volume.isNull(), F.lit(0))
        .when(fractional, F.lit(None))
        .otherwise(raw_volume.cast("double"))
        .alias("volume"),
        fractional.alias("_fractional_volume"),
        _on_grid(F.col("_utc"), F.col("interval")).alias("_on_grid"),
        "source",
        "function",
        "last_refreshed",
        "payload_hash",
        "ingested_at",
        *[F.col(c).alias(f"_raw_{c}") for c in (*PRICE_COLUMNS, "volume")],
    )
    seconds = F.hour("ts_local") * 3600 + F.minute("ts_local") * 60 + F.second("ts_local")
    session = (
        F.when(F.col("ts_local").isNull(), F.lit(None))
        # FX and crypto trade around the clock: every bar is in their (only) session.
        .when(F.col("function").isin(*AROUND_THE_CLOCK), "regular")
        .when(seconds < REGULAR_OPEN_SECONDS, "pre")
        .when(seconds < _close_seconds(regular_close), "regular")
        .otherwise("post")
    )
    reasons = F.concat_ws(
        ";",
        F.when(F.col("ts_local").isNull(), F.lit("bad_timestamp")),
        F.when(F.col("_on_grid") == F.lit(False), F.lit("off_grid")),
        F.when(F.col("_fractional_volume"), F.lit("fractional_volume")),
        F.nullif(
            validity_reasons(
                *[F.col(c) for c in PRICE_COLUMNS],
                # A fractional volume has its own reason above: judged as 0 here, not also as unreadable.
                F.when(F.col("_fractional_volume"), F.lit(0)).otherwise(F.col("volume")),
                raw={c: F.col(f"_raw_{c}") for c in PRICE_COLUMNS}
                # FX volume is absent by design (0 above), so only a present but unreadable one counts.
                | {
                    "volume": F.when(
                        F.col("function") == "FX_INTRADAY", F.coalesce(F.col("_raw_volume"), F.lit("0"))
                    ).otherwise(F.col("_raw_volume"))
                },
            ),
            F.lit(""),
        ),
    )
    flagged = (
        typed.withColumn("session", session)
        .withColumn("dq_reason", F.nullif(reasons, F.lit("")))
        .withColumn("is_valid", F.col("dq_reason").isNull())
    )
    return schemas.conform(flagged, schemas.SILVER)


def to_gold(silver: DataFrame) -> DataFrame:
    """Daily KPIs per (symbol, trade date) over valid regular-session bars.

    Days without any valid regular-session bar get no row (BI windows count days with data only);
    their invalid bars remain visible in silver.
    """
    day = ["symbol", "trade_date"]
    bars = silver.where(F.col("is_valid") & (F.col("session") == "regular"))
    prev_close = F.lag("close").over(Window.partitionBy(*day).orderBy("ts_local"))
    bars = bars.withColumn("_ret", F.log(F.col("close") / prev_close)).withColumn(
        "_typical", (F.col("high") + F.col("low") + F.col("close")) / 3.0
    )
    kpis = bars.groupBy(*day).agg(
        F.min_by("open", "ts_local").alias("open"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.max_by("close", "ts_local").alias("close"),
        F.sum("volume").alias("volume"),
        (F.sum(F.col("_typical") * F.col("volume")) / F.sum("volume")).alias("vwap"),
        F.avg("close").alias("avg_price"),
        F.count(F.lit(1)).alias("bar_count"),
        F.stddev_samp("_ret").alias("intraday_volatility"),
    )
    invalid = silver.groupBy(*day).agg(F.sum(F.when(~F.col("is_valid"), 1).otherwise(0)).alias("invalid_bar_count"))
    gold = (
        kpis.join(invalid, on=day, how="left")
        .withColumn("price_change", F.col("close") - F.col("open"))
        .withColumn("intraday_change_pct", F.lit(100.0) * (F.col("close") - F.col("open")) / F.col("open"))
        .fillna({"invalid_bar_count": 0})
    )
    return schemas.conform(gold, schemas.GOLD)


#: Gold rows in each BI window (this one and the previous 6 trading days with data).
BI_WINDOW_ROWS = 7


def to_bi(gold_history: DataFrame) -> DataFrame:
    """The BI view: gold plus day-over-day and 7-trading-day windows.

    ``gold_history`` must hold, per symbol, the gold rows before the dates wanted (at least the 7
    previous rows with data); rows are windowed per symbol by trade date, counting only days with a gold
    row. Returns a row for every input row; callers keep the dates they asked for.
    """
    by_day = Window.partitionBy("symbol").orderBy("trade_date")
    last7 = by_day.rowsBetween(-(BI_WINDOW_ROWS - 1), Window.currentRow)
    prev_close = F.lag("close").over(by_day)
    bi = (
        gold_history.withColumn("prev_close", prev_close)
        .withColumn("_ret", F.log(F.col("close") / F.col("prev_close")))
        .withColumn("price_change_pct", F.lit(100.0) * (F.col("close") / F.col("prev_close") - 1))
        .withColumn("close_7d_avg", F.avg("close").over(last7))
        .withColumn("volume_7d_avg", F.avg("volume").over(last7))
        .withColumn("volatility_score", F.lit(100.0 * math.sqrt(252)) * F.stddev_samp("_ret").over(last7))
    )
    return schemas.conform(bi, schemas.BI)

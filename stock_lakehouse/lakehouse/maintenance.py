"""Delta maintenance: compaction (OPTIMIZE, Z-ordered by bar time inside partitions) and VACUUM.

In SQL, not the Python ``DeltaTable`` API: Spark Connect 3.5 (the engine) has only DataFrames and SQL.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

#: Z-order column per table (short name of ``lake.TABLES``); tables of one row per partition only need compaction.
ZORDER_BY = {"bronze": "ts", "silver": "ts_utc"}
#: Delta refuses shorter retention without disabling its safety check: readers of older versions and
#: concurrent writers may still need files younger than this.
MIN_RETAIN_HOURS = 168


def delta_path_sql(uri: str) -> str:
    """``uri`` as a Delta table reference in Spark SQL (``delta.`...```), its backticks escaped by doubling: a
    lake root is configuration, and no character of it may end the quoted name."""
    return "delta.`" + uri.replace("`", "``") + "`"


def maintain_table(spark: SparkSession, uri: str, zorder_by: str | None, retain_hours: int) -> dict[str, object]:
    """OPTIMIZE (with Z-order when given) then VACUUM ``uri``; returns the files OPTIMIZE added and removed."""
    if retain_hours < MIN_RETAIN_HOURS:
        raise ValueError(f"retain_hours {retain_hours} is below Delta's safe minimum of {MIN_RETAIN_HOURS} h")
    table = delta_path_sql(uri)
    # Column names from ZORDER_BY only (constants), the hours an int: nothing from outside shapes the SQL.
    zorder = f" ZORDER BY ({zorder_by})" if zorder_by else ""
    metrics = spark.sql(f"OPTIMIZE {table}{zorder}").collect()[0]["metrics"]
    spark.sql(f"VACUUM {table} RETAIN {int(retain_hours)} HOURS").collect()
    return {"files_added": int(metrics["numFilesAdded"]), "files_removed": int(metrics["numFilesRemoved"])}

"""Delta maintenance: compaction (OPTIMIZE, Z-ordered by bar time inside partitions) and VACUUM."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

#: Z-order column per table (short name of ``lake.TABLES``); tables of one row per partition only need compaction.
ZORDER_BY = {"bronze": "ts", "silver": "ts_utc"}
#: Delta refuses shorter retention without disabling its safety check: readers of older versions and
#: concurrent writers may still need files younger than this.
MIN_RETAIN_HOURS = 168


def maintain_table(spark: SparkSession, uri: str, zorder_by: str | None, retain_hours: int) -> dict[str, object]:
    """OPTIMIZE (with Z-order when given) then VACUUM ``uri``; returns what each step reported."""
    if retain_hours < MIN_RETAIN_HOURS:
        raise ValueError(f"retain_hours {retain_hours} is below Delta's safe minimum of {MIN_RETAIN_HOURS} h")
    table = DeltaTable.forPath(spark, uri)
    optimizer = table.optimize()
    metrics = (optimizer.executeZOrderBy(zorder_by) if zorder_by else optimizer.executeCompaction()).collect()[0][
        "metrics"
    ]
    table.vacuum(retain_hours)
    version = table.history(1).collect()[0]["version"]
    return {
        "files_added": int(metrics["numFilesAdded"]),
        "files_removed": int(metrics["numFilesRemoved"]),
        "version_after": int(version),
    }

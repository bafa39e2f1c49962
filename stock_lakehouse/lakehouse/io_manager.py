"""Delta IO manager: each partitioned output overwrites exactly the partitions of its run.

Table URI: ``<root_uri>/<asset key path>``, e.g. ``lake/silver/stock_clean``. Predicates come from the
sorted ``asset_partition_keys`` (never from a key range, which raises for rectangles that vary in both
dimensions), so single partitions, ranged backfills and arbitrary key sets write the same way through
``replaceWhere``. Delta checks that every written row matches the predicate, so an output can never
touch another partition. An input with metadata ``{"history": True}`` loads, per symbol, every row up
to the latest requested date (windows over earlier trading days).
"""

from typing import Any

import dagster as dg
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from stock_lakehouse.lakehouse.schemas import PARTITION_COLUMNS
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.partitions import BarPartition, parse_keys, partition_predicate


def table_uri(root_uri: str, asset_key: dg.AssetKey) -> str:
    return f"{root_uri.rstrip('/')}/{'/'.join(asset_key.path)}"


def table_exists(spark: SparkSession, uri: str) -> bool:
    return DeltaTable.isDeltaTable(spark, uri)


class DeltaIOManager(dg.ConfigurableIOManager):
    """Reads and writes Spark DataFrames as Delta tables partitioned by ``symbol``, ``trade_date``.

    Attributes:
        root_uri: absolute local folder or ``s3a://bucket/prefix``.
        spark: the session resource.
    """

    root_uri: str
    spark: dg.ResourceDependency[SparkResource]

    def _partitions(self, context: dg.OutputContext | dg.InputContext) -> list[BarPartition]:
        return parse_keys(context.asset_partition_keys)

    @staticmethod
    def _write(spark: SparkSession, df: DataFrame, uri: str, predicate: str) -> None:
        writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
        if not table_exists(spark, uri):
            # The first write creates the table with its partitioning; later writes must match it.
            writer = writer.partitionBy(*PARTITION_COLUMNS)
        writer.save(uri)

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | None) -> None:
        if obj is None:
            return
        uri = table_uri(self.root_uri, context.asset_key)
        parts = self._partitions(context)
        spark = self.spark.get_session()
        predicate = partition_predicate(parts)
        try:
            try:
                self._write(spark, obj, uri, predicate)
            except Exception as exc:
                # Two runs creating the same table at once: one commit wins, the other raises
                # ProtocolChanged/MetadataChanged. The table exists now, so writing again is a plain
                # partition overwrite.
                if not any(m in str(exc) for m in ("DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")):
                    raise
                context.log.warning(f"{uri} was created concurrently by another run; writing again")
                self._write(spark, obj, uri, predicate)
        except Exception as exc:
            raise RuntimeError(
                f"writing {len(parts)} partition(s) of {context.asset_key.to_user_string()} to {uri} failed; "
                f"the table is unchanged (Delta commits are atomic): {str(exc).splitlines()[0][:300]}"
            ) from exc
        last = DeltaTable.forPath(spark, uri).history(1).collect()[0]
        metrics: dict[str, Any] = last["operationMetrics"] or {}
        context.add_output_metadata(
            {
                "table_uri": dg.MetadataValue.path(uri),
                "delta_version": int(last["version"]),
                "row_count": int(metrics.get("numOutputRows", 0)),
                "partitions_written": len(parts),
                # Dagster copies output metadata onto every partition's materialization event: keep it small.
                "partition_predicate": predicate if len(predicate) <= 300 else predicate[:300] + "...",
            }
        )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        uri = table_uri(self.root_uri, context.asset_key)
        spark = self.spark.get_session()
        parts = self._partitions(context)
        if not table_exists(spark, uri):
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no Delta table at {uri}; materialize it for "
                f"{len(parts)} partition(s) first"
            )
        history = bool((context.definition_metadata or {}).get("history"))
        return spark.read.format("delta").load(uri).where(partition_predicate(parts, history=history))

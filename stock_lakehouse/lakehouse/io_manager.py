"""Delta IO manager: each partitioned output overwrites exactly the partitions of its run.

Table URI: ``Lake.table_uri(asset key)``, e.g. ``<lake>/silver/stock_clean``. Predicates come from the
sorted ``asset_partition_keys`` (never from a key range, which raises for rectangles that vary in both
dimensions), so single partitions, ranged backfills and arbitrary key sets write the same way through
``replaceWhere``. Delta checks that every written row matches the predicate, so an output can never
touch another partition; the one exception is declared by the asset (``TableWrite.follow_on``: later
dates whose windows reach the run's, rewritten in the same commit and reported as their own
materializations). An input with metadata ``{"history": True}`` loads every row of the run's symbols
(windows over earlier trading days, and the later days that follow the run's).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stock_lakehouse.dagster_internals import add_partition_metadata
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.schemas import PARTITION_COLUMNS
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.lakehouse.tables import short_name
from stock_lakehouse.partitions import EMPTY, FOLLOW_ON, BarPartition, describe_span, parse_keys, partition_predicate
from stock_lakehouse.quality.partition_results import MAX_PARTITION_RESULTS
from stock_lakehouse.runs.recovery import RunWorker
from stock_lakehouse.runs.root_cause import exception_root_cause

#: Preview rows per partition, and the largest run that gets previews (each is metadata in the event log).
PREVIEW_ROWS = 5
PREVIEW_MAX_PARTITIONS = 20


def _md_cell(value: object) -> str:
    # Values can come from outside (a payload's bar label): no Markdown or HTML of theirs may render.
    text = " ".join(str(value).split())[:80]
    return "".join("\\" + c if c in "\\`*_{}[]()<>#+!|~" else c for c in text)


def markdown_table(df: pd.DataFrame, max_columns: int = 12) -> str:
    """``df`` as a Markdown table (the UI renders Markdown metadata), at most ``max_columns`` columns."""
    df = df.iloc[:, :max_columns]
    cells = [[_md_cell(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def _untouched(kept: Sequence[BarPartition], withheld: Sequence[BarPartition]) -> str:
    said = [f"kept {len(kept)} (no new rows)"] if kept else []
    said += [f"withheld {len(withheld)} (quality gate)"] if withheld else []
    return f"; {', '.join(said)}" if said else ""


@dataclass(frozen=True)
class TableWrite:
    """An asset's output with instructions for partitions it has no rows for.

    Attributes:
        df: the rows to write (for the run's partitions).
        keep_if_present: partitions of the run that ``df`` has no rows for and whose existing rows must
            stay: an empty or mismatched source must never erase data by accident. Partitions of this
            list that have no rows in the table are written (as nothing) like any other.
        keep_reason: why they are empty (source, folder, interval), for the warning.
        skip: partitions of the run not to write at all (withheld by a quality gate): their rows, if
            any, stay as they are.
        follow_on: partitions outside the run that ``df`` also carries: later dates whose windows reach
            the run's (``partitions.partitions_after``). Written in the same commit, each reported as a
            materialization of its own.
    """

    df: DataFrame
    keep_if_present: tuple[BarPartition, ...] = ()
    keep_reason: str = ""
    skip: tuple[BarPartition, ...] = ()
    follow_on: tuple[BarPartition, ...] = ()


class DeltaIOManager(dg.ConfigurableIOManager):
    """Reads and writes Spark DataFrames as Delta tables partitioned by ``symbol``, ``trade_date``.

    Attributes:
        lake: where the tables are.
        spark: the session resource.
        worker: records the run's worker process when the run starts (every asset step writes through
            this IO manager, so every run of the asset job records its worker; see ``recovery.py``).
        ingestion: which days each symbol trades: a trading day left with no rows is reported empty, not
            materialized (``partitions.EMPTY``); a closed market's day is complete with none.
    """

    lake: dg.ResourceDependency[Lake]
    spark: dg.ResourceDependency[SparkResource]
    worker: dg.ResourceDependency[RunWorker]
    ingestion: dg.ResourceDependency[IngestionConfig]

    def _session(self, context: dg.OutputContext | dg.InputContext) -> SparkSession:
        """The run's session, set up for the step's number of partitions (``SparkResource.session_for_run``):
        every step reads or writes through here before its queries run."""
        return self.lake.configure_spark(self.spark.session_for_run(len(context.asset_partition_keys)))

    def _partitions(self, context: dg.OutputContext | dg.InputContext) -> list[BarPartition]:
        return parse_keys(context.asset_partition_keys)

    def _write(self, df: DataFrame, uri: str, predicate: str) -> None:
        writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
        if not self.lake.has_table(uri):
            # The first write creates the table with its partitioning; later writes must match it.
            writer = writer.partitionBy(*PARTITION_COLUMNS)
        writer.save(uri)

    def _widen(self, spark: SparkSession, uri: str, schema: T.StructType) -> list[str]:
        """Widen, once, the integer columns the table has where ``schema`` now has doubles; returns their names.

        ``volume`` was bigint until crypto decimals were kept (a documented schema change): a table written
        before it is rewritten with the column cast, in one commit (every whole number below 2**53 stays
        exact; time travel shows the version before). Called only when a write failed (Delta refuses the
        doubles), so writes to tables of the current schema pay nothing; any other mismatch is re-raised.
        """
        if not self.lake.has_table(uri):
            return []
        table = spark.read.format("delta").load(uri)
        have = {f.name: f.dataType for f in table.schema.fields}
        narrow = [
            f.name
            for f in schema.fields
            if isinstance(f.dataType, T.DoubleType) and isinstance(have.get(f.name), T.IntegralType)
        ]
        if narrow:
            widened = table.select(
                *[F.col(c).cast("double").alias(c) if c in narrow else F.col(c) for c in table.columns]
            )
            (
                widened.write.format("delta")
                .mode("overwrite")
                .option("overwriteSchema", "true")
                .partitionBy(*PARTITION_COLUMNS)
                .save(uri)
            )
        return narrow

    def _present(self, spark: SparkSession, uri: str, candidates: Sequence[BarPartition]) -> list[BarPartition]:
        """Those of ``candidates`` that have rows in the table (one pruned query)."""
        if not candidates or not self.lake.has_table(uri):
            return []
        rows = (
            spark.read.format("delta")
            .load(uri)
            .where(partition_predicate(candidates))
            .select(*PARTITION_COLUMNS)
            .distinct()
            .collect()
        )
        return sorted(BarPartition(r["symbol"], r["trade_date"]) for r in rows)

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | TableWrite | None) -> None:
        if obj is None:
            return
        started = time.monotonic()
        write = obj if isinstance(obj, TableWrite) else TableWrite(obj)
        obj = write.df
        uri = self.lake.table_uri(context.asset_key)
        spark = self._session(context)
        kept = self._present(spark, uri, write.keep_if_present)
        untouched = set(kept) | set(write.skip)
        run_parts = self._partitions(context)
        parts = [p for p in run_parts if p not in untouched]
        kept_meta: dict[str, Any] = {}
        if kept:
            keys = [str(p.key) for p in kept]
            context.log.warning(
                f"{context.asset_key.to_user_string()}: kept the existing rows of {len(kept)} partition(s) the "
                f"new data has no rows for: {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}. "
                f"{write.keep_reason}".strip()
            )
            kept_meta = {"partitions_kept": len(kept), "partitions_kept_keys": keys[:20]}
        if write.skip:
            kept_meta["partitions_withheld"] = len(write.skip)
        if not parts:
            context.add_output_metadata(
                {"table_uri": dg.MetadataValue.path(uri), "run_row_count": 0, "run_partitions_written": 0, **kept_meta}
            )
            self._report_partitions(context, run_parts, kept, write.skip)
            context.log.info(f"{context.asset_key.to_user_string()}: nothing written{_untouched(kept, write.skip)}")
            return
        in_run = set(run_parts)
        follow_on = [p for p in write.follow_on if p not in in_run]
        predicate = partition_predicate(parts + follow_on)
        try:
            try:
                self._write(obj, uri, predicate)
            except Exception as exc:
                if any(m in str(exc) for m in ("DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")):
                    # Two runs creating the same table at once: one commit wins, the other raises
                    # ProtocolChanged/MetadataChanged. The table exists now, so writing again is a plain
                    # partition overwrite.
                    context.log.warning(f"{uri} was created concurrently by another run; writing again")
                elif widened := self._widen(spark, uri, obj.schema):
                    context.log.warning(
                        f"{context.asset_key.to_user_string()}: widened {', '.join(widened)} from integer to "
                        f"double in {uri} (a documented schema change: crypto volumes keep their decimals); the "
                        "version before stays readable with time travel"
                    )
                else:
                    raise
                self._write(obj, uri, predicate)
        except Exception as exc:
            raise RuntimeError(
                f"writing {len(parts)} partition(s) of {context.asset_key.to_user_string()} to {uri} failed; "
                f"the table is unchanged (Delta commits are atomic): {exception_root_cause(exc)}"
            ) from exc
        last = self.lake.last_commit(uri)
        metrics: dict[str, Any] = last["operationMetrics"] or {}
        context.add_output_metadata(
            {
                "table_uri": dg.MetadataValue.path(uri),
                "delta_version": int(last["version"]),
                # The run's totals, labelled as such: Dagster copies output metadata onto every partition.
                "run_row_count": int(metrics.get("numOutputRows", 0)),
                "run_partitions_written": len(parts),
                **kept_meta,
                **self._report_follow_on(context, follow_on),
                "partition_predicate": predicate if len(predicate) <= 300 else predicate[:300] + "...",
            }
        )
        self._report_partitions(context, run_parts, kept, write.skip)
        # One INFO line per table: what a user filtering the run log at INFO needs (Dagster's own events are DEBUG).
        context.log.info(
            f"{context.asset_key.to_user_string()}: wrote {describe_span(parts)}, "
            f"{int(metrics.get('numOutputRows', 0)):,} rows, Delta version {int(last['version'])}, "
            f"{time.monotonic() - started:.1f}s{_untouched(kept, write.skip)}"
            + (f"; with {describe_span(follow_on)} after them (windows reach the run's dates)" if follow_on else "")
        )

    @staticmethod
    def _report_follow_on(context: dg.OutputContext, follow_on: Sequence[BarPartition]) -> dict[str, Any]:
        """Materializations of the later partitions rewritten with the run's (their values changed with the
        run's dates), and their count for the output's metadata. Events only up to MAX_PARTITION_RESULTS:
        the partitions were materialized before (they had rows), so the UI's status stays right."""
        if not follow_on:
            return {}
        if len(follow_on) <= MAX_PARTITION_RESULTS:
            for part in follow_on:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=part.key,
                        description="rewritten: its window reaches an earlier date this run wrote",
                        metadata={"partition_status": FOLLOW_ON},
                    )
                )
        keys = [str(p.key) for p in follow_on]
        return {"partitions_follow_on": len(follow_on), "partitions_follow_on_keys": keys[:20]}

    def _report_partitions(
        self,
        context: dg.OutputContext,
        parts: Sequence[BarPartition],
        kept: Sequence[BarPartition],
        withheld: Sequence[BarPartition],
    ) -> None:
        """What each partition of the run holds now, from the Delta log's file statistics (no data file is
        read): the empty trading days (:meth:`_report_empty`) and everyone else's own metadata."""
        try:
            stats = self.lake.partition_stats(context.asset_key)
        except FileNotFoundError:
            stats = {}
        empty = self._report_empty(context, parts, stats, set(withheld))
        self._per_partition_metadata(context, [p for p in parts if p not in empty], kept, withheld, stats)

    def _report_empty(
        self,
        context: dg.OutputContext,
        parts: Sequence[BarPartition],
        stats: dict[tuple[str, date], tuple[int, datetime | None]],
        withheld: set[BarPartition],
    ) -> set[BarPartition]:
        """The run's trading-day partitions with no rows in the table, each reported by an observation that
        says why; the event storage then drops the step's materialization of it, so the UI shows it missing
        (not a green partition with nothing in it). Holidays are not among them: a closed market's day is
        complete with no rows. One event per partition, whatever the run's size: the record must be true."""
        empty = {
            p
            for p in parts
            if not stats.get((p.symbol, p.trade_date), (0, None))[0]
            and self.ingestion.is_trading_day(p.symbol, p.trade_date)
        }
        for part in sorted(empty):
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=part.key,
                    description="no rows for this trading day ("
                    + ("withheld by the quality gate" if part in withheld else "the source had none")
                    + "): not recorded as materialized",
                    metadata={"row_count": 0, "partition_status": EMPTY, "withheld": part in withheld},
                )
            )
        return empty

    def _per_partition_metadata(
        self,
        context: dg.OutputContext,
        parts: Sequence[BarPartition],
        kept: Sequence[BarPartition],
        withheld: Sequence[BarPartition],
        stats: dict[tuple[str, date], tuple[int, datetime | None]],
    ) -> None:
        """Each partition's own ``row_count`` (rows in the table now), the time of its newest bar (the data's
        freshness, not the write's) and what happened to it (``written``; ``kept``: the source had no rows;
        ``withheld``: quality gate)."""
        if len(parts) > MAX_PARTITION_RESULTS:
            # One event per partition: a large backfill keeps the run's totals only, like its checks.
            return
        kept_set, withheld_set = set(kept), set(withheld)
        previews = self._previews(short_name(context.asset_key), [p for p in parts if p not in withheld_set])
        per_partition: dict[str, dict[str, Any]] = {}
        for part in parts:
            rows, newest = stats.get((part.symbol, part.trade_date), (0, None))
            meta: dict[str, Any] = {
                "row_count": rows,
                "partition_status": "withheld" if part in withheld_set else "kept" if part in kept_set else "written",
            }
            if newest is not None:
                meta["newest_bar_utc"] = dg.MetadataValue.timestamp(newest.replace(tzinfo=UTC))
            if part in previews:
                meta["preview"] = dg.MetadataValue.md(previews[part])
            per_partition[part.key] = meta
        add_partition_metadata(context, per_partition)

    def _previews(self, table: str, parts: Sequence[BarPartition]) -> dict[BarPartition, str]:
        """The first rows of each partition as Markdown, with the command that prints them all; only for
        runs of up to ``PREVIEW_MAX_PARTITIONS`` partitions (one delta-rs read of those partitions)."""
        if not parts or len(parts) > PREVIEW_MAX_PARTITIONS:
            return {}
        try:
            df = self.lake.read(table, sorted({p.symbol for p in parts}), min(parts).trade_date, max(parts).trade_date)
        except FileNotFoundError:
            return {}
        out = {}
        for part in parts:
            rows = df[(df.symbol == part.symbol) & (df.trade_date == part.trade_date)]
            day = part.trade_date.isoformat()
            command = f"stock-lakehouse show {table} --symbols {part.symbol} --start {day} --end {day}"
            out[part] = f"{markdown_table(rows.head(PREVIEW_ROWS))}\n\n{len(rows)} rows; all of them: `{command}`"
        return out

    def load_input(self, context: dg.InputContext) -> DataFrame:
        uri = self.lake.table_uri(context.asset_key)
        spark = self._session(context)
        parts = self._partitions(context)
        if not self.lake.has_table(uri):
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no Delta table at {uri}; materialize it for "
                f"{len(parts)} partition(s) first"
            )
        history = bool((context.definition_metadata or {}).get("history"))
        return spark.read.format("delta").load(uri).where(partition_predicate(parts, history=history))

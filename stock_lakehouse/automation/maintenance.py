"""The Delta maintenance job (one op per table, in that table's writer pool) and its weekly schedule."""

import dagster as dg

from stock_lakehouse.assets.keys import writer_pool
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.maintenance import MIN_RETAIN_HOURS, ZORDER_BY, maintain_table
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.lakehouse.tables import TABLES
from stock_lakehouse.runs.recovery import RunWorker


class MaintenanceConfig(dg.Config):
    retain_hours: int = MIN_RETAIN_HOURS


def _maintenance_op(table: str) -> dg.OpDefinition:
    key = dg.AssetKey(TABLES[table])
    folder = "/".join(key.path)

    @dg.op(name=f"maintain_{'_'.join(key.path)}", pool=writer_pool(key), description=f"OPTIMIZE and VACUUM {folder}.")
    def maintain(
        context: dg.OpExecutionContext,
        config: MaintenanceConfig,
        spark: SparkResource,
        lake: Lake,
        run_worker: RunWorker,
    ) -> None:
        session = lake.configure_spark(spark.get_session())
        uri = lake.table_uri(key)
        if not lake.has_table(key):
            context.log.info(f"{uri} does not exist yet; nothing to maintain")
            return
        report = maintain_table(session, uri, ZORDER_BY.get(table), config.retain_hours)
        report["version_after"] = int(lake.last_commit(key)["version"])
        context.log.info(f"{folder}: {report}")
        context.log_event(dg.AssetObservation(asset_key=key, metadata={"maintenance": dg.MetadataValue.json(report)}))

    return maintain


def build_maintenance() -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The ``delta_maintenance`` job and a weekly schedule (Sunday 03:00 New York, markets closed)."""
    ops = [_maintenance_op(table) for table in TABLES]

    @dg.job(
        name="delta_maintenance",
        executor_def=dg.in_process_executor,
        description="Compact, Z-order and vacuum every table.",
    )
    def delta_maintenance():
        for op in ops:
            op()

    schedule = dg.ScheduleDefinition(
        name="weekly_delta_maintenance",
        job=delta_maintenance,
        cron_schedule="0 3 * * 0",
        execution_timezone="America/New_York",
    )
    return delta_maintenance, schedule

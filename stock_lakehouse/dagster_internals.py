"""The one door to Dagster's private API (``dagster._core``, ``dagster._serdes``): every name the package
needs that Dagster 1.13 does not export publicly, imported here and nowhere else.

Why: private modules move between Dagster releases without notice, and the pin (``dagster==1.13.27``) is
what keeps them where they are. An upgrade then breaks this module's imports, loudly and in one place
(``test_dagster_internals.py`` imports each name and checks what it is), instead of deep inside a run.
What each name is for:

- ``IMPLICIT_ASSET_JOB_NAME``: the asset job the UI's Materialize and backfills launch (``wiring.py``).
- ``AssetCheckExecutionRecordStatus``: check records' statuses (sensors, event storage).
- ``AssetCheckEvaluationTargetMaterializationData``: ties a partition's check result to that partition's
  materialization (``quality/partition_results.py``; partitioned checks are a preview in 1.13).
- ``JobFailureData``, ``RunFailureReason``, ``PARENT_RUN_ID_TAG``: failing a dead run as Dagster would
  (``recovery.py``).
- The SQLite event log storage, its tables, helpers and busy timeout: ``event_storage.py`` subclasses
  Dagster's storage to batch writes, keep connections and store compact check plans.
- ``add_partition_metadata``: each partition of a ranged output gets its own metadata (``io_manager.py``),
  through the step's private metadata accumulator.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.tags import PARENT_RUN_ID_TAG
from dagster._serdes import ConfigurableClassData, serialize_value

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "add_partition_metadata",
    "IMPLICIT_ASSET_JOB_NAME",
    "PARENT_RUN_ID_TAG",
    "AssetCheckEvaluationTargetMaterializationData",
    "AssetCheckExecutionRecordStatus",
    "AssetCheckExecutionsTable",
    "ConfigurableClassData",
    "JobFailureData",
    "RunFailureReason",
    "SqlEventLogStorageTable",
    "SqliteEventLogStorage",
    "db_result",
    "serialize_value",
]


def add_partition_metadata(context: dg.OutputContext, per_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Give each partition of a ranged output its own metadata, as the step's
    ``add_asset_metadata(partition_key=)`` does, with the keys checked against the run once.

    Why not that public call: Dagster 1.13 lists the run's whole key range on every call (and asks the
    instance about each dynamic key), so a run over N partitions spent N^2 lookups: 5 s of a 50-symbol
    intraday run. ``OutputContext.step_context`` and the accumulator are private.

    Raises:
        ValueError: a key the run does not target (names it), before any metadata is added.
    """
    targeted = set(context.asset_partition_keys)
    stray = sorted(set(per_partition) - targeted)
    if stray:
        raise ValueError(f"partition {stray[0]} of {context.asset_key.to_user_string()} is not in this run")
    step = context.step_context
    accumulator = step._metadata_accumulator  # noqa: SLF001 (the private accumulator is the point)
    for key, metadata in per_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(
            asset_key=context.asset_key, partition_key=key, metadata=metadata
        )
    step._metadata_accumulator = accumulator  # noqa: SLF001

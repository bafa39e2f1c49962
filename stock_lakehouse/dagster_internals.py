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
- The SQLite event log storage, its tables and helpers: ``event_storage.py`` subclasses Dagster's
  storage to batch writes and store compact check plans.
"""

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.tags import PARENT_RUN_ID_TAG
from dagster._serdes import ConfigurableClassData, serialize_value

__all__ = [
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

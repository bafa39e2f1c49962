"""Dagster's private API behind one door: an upgrade that moves a name fails here, loudly, by name."""

import re

from stock_lakehouse import dagster_internals as internals
from stock_lakehouse.settings import PACKAGE_DIR


def test_only_the_door_imports_dagster_private_modules():
    private = re.compile(r"^\s*(from|import)\s+dagster\._", re.M)
    users = sorted(
        str(path.relative_to(PACKAGE_DIR)) for path in PACKAGE_DIR.rglob("*.py") if private.search(path.read_text())
    )
    assert users == ["dagster_internals.py"], users


def test_each_private_name_is_what_the_package_uses_it_as():
    assert internals.IMPLICIT_ASSET_JOB_NAME == "__ASSET_JOB"
    assert internals.PARENT_RUN_ID_TAG == "dagster/parent_run_id"
    statuses = {s.name for s in internals.AssetCheckExecutionRecordStatus}
    assert {"PLANNED", "SUCCEEDED", "FAILED"} <= statuses
    failure = internals.JobFailureData(error=None, failure_reason=internals.RunFailureReason.UNEXPECTED_TERMINATION)
    assert failure.failure_reason.value == "UNEXPECTED_TERMINATION"
    # event_storage.py overrides these: renamed upstream, the override would silently stop applying.
    overridden = (
        "store_event_batch",
        "_store_asset_check_evaluation_planned",
        "from_config_value",
        "_connect",
        "_initdb",
        "conn_string_for_shard",
        "has_table",
        "wipe",
        "dispose",
    )
    for method in overridden:
        assert callable(getattr(internals.SqliteEventLogStorage, method, None)), method
    for table in (internals.AssetCheckExecutionsTable, internals.SqlEventLogStorageTable):
        assert "run_id" in table.c, table
    assert isinstance(internals.SQLITE_BUSY_TIMEOUT_SECONDS, int | float)
    assert callable(internals.db_result) and callable(internals.serialize_value)
    assert internals.serialize_value({"a": 1}) == '{"a": 1}'
    fields = internals.AssetCheckEvaluationTargetMaterializationData.__annotations__
    assert {"storage_id", "run_id", "timestamp"} <= set(fields), fields
    assert "inst_data" not in fields and internals.ConfigurableClassData("m", "C", "{}").class_name == "C"


def test_partition_metadata_goes_through_the_step_accumulator_and_refuses_a_stray_key():
    """``add_partition_metadata`` writes where ``add_asset_metadata(partition_key=)`` does: the
    materialization of each partition carries its own metadata; a key outside the run is refused by name."""
    import dagster as dg
    import pytest

    parts = dg.StaticPartitionsDefinition(["a", "b", "c"])

    class Io(dg.IOManager):
        def handle_output(self, context: dg.OutputContext, obj) -> None:
            with pytest.raises(ValueError, match="partition z of t is not in this run"):
                internals.add_partition_metadata(context, {"a": {"n": 0}, "z": {"n": 9}})
            internals.add_partition_metadata(context, {k: {"n": ord(k)} for k in context.asset_partition_keys})

        def load_input(self, context):
            raise NotImplementedError

    @dg.asset(partitions_def=parts, io_manager_key="io")
    def t() -> int:
        return 1

    result = dg.materialize(
        [t],
        resources={"io": Io()},
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "b"},
    )
    assert result.success
    seen = {m.partition: m.metadata["n"].value for m in result.asset_materializations_for_node("t")}
    assert seen == {"a": ord("a"), "b": ord("b")}, seen

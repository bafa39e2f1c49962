"""The Delta maintenance job: compaction with Z-order and VACUUM leave the data as it was."""

from datetime import date

import pandas as pd
import pytest
from delta.tables import DeltaTable

from stock_lakehouse.lakehouse.maintenance import maintain_table
from stock_lakehouse.lakehouse.reader import read_table, table_path
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import build_definitions

pytestmark = pytest.mark.spark


def test_maintenance_job_optimizes_and_vacuums_without_changing_data(spark, tmp_path, dagster_home, clean_env):
    # Maintenance is SQL on the table's path (OPTIMIZE delta.`<path>`): a backtick in the lake's root must stay
    # inside the quoted name.
    lake = tmp_path / "la`ke x"
    ok, _, error = run_materialize(
        ["MA", "MB"], date(2024, 3, 4), date(2024, 3, 5), {"lake_root": str(lake), "source": "synthetic"}
    )
    assert ok, error
    before = {t: read_table(str(lake), t) for t in ("bronze", "silver", "gold", "bi")}
    defs = build_definitions(load_settings(overrides={"lake_root": str(lake), "source": "synthetic"}))
    result = defs.resolve_job_def("delta_maintenance").execute_in_process()
    assert result.success
    for table, df in before.items():
        pd.testing.assert_frame_equal(read_table(str(lake), table), df)
        ops = [r["operation"] for r in DeltaTable.forPath(spark, table_path(str(lake), table)).history().collect()]
        assert "VACUUM END" in ops, (table, ops)
        # Z-ordered tables are always rewritten; one-row-per-day tables have nothing to compact.
        assert ("OPTIMIZE" in ops) == (table in ("bronze", "silver")), (table, ops)
    zorder = (
        DeltaTable.forPath(spark, table_path(str(lake), "silver")).history().where("operation = 'OPTIMIZE'").collect()
    )
    assert "ts_utc" in zorder[0]["operationParameters"]["zOrderBy"]
    with pytest.raises(ValueError, match="safe minimum of 168 h"):
        maintain_table(spark, table_path(str(lake), "gold"), None, retain_hours=1)

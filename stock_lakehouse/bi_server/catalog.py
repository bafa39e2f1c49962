"""The endpoint's catalog: each lake table by its SQL name, as an external Delta table at its folder.

Only names and locations are stored (Delta reads the schema from the table's log at query time, so a
column added by the pipeline shows without re-registering). Tables the pipeline creates after the server
started are added by the server's periodic ``register`` call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stock_lakehouse.lakehouse.tables import TABLES, VIEW_FALSE_COLUMN, VIEWS, sql_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from stock_lakehouse.lakehouse.lake import Lake


def register(session: SparkSession, lake: Lake) -> list[str]:
    """Register the lake's tables (and views over them) that exist and are not registered yet.

    Returns:
        The SQL names added.
    """
    added = []
    for table in TABLES:
        name = sql_name(table)
        if session.catalog.tableExists(name):
            continue
        # Lake.has_table asks delta-rs, not Spark (its DeltaLog cache kept a table being created "no table" on
        # MinIO in compose), and reads the log only, not the table's file list.
        if not lake.has_table(table):
            continue
        session.catalog.createTable(name, path=lake.table_uri(table), source="delta")  # external: the lake's
        added.append(name)
    for view, table in VIEWS.items():
        if session.catalog.tableExists(sql_name(table)) and not session.catalog.tableExists(view):
            # Names from this package's constants only: nothing from outside reaches the statement.
            session.sql(f"CREATE VIEW {view} AS SELECT * FROM {sql_name(table)} WHERE NOT {VIEW_FALSE_COLUMN[view]}")
            added.append(view)
    return added


def registered(session: SparkSession) -> list[str]:
    """The SQL names of the lake's tables and views registered now."""
    names = [sql_name(t) for t in TABLES] + list(VIEWS)
    return [name for name in names if session.catalog.tableExists(name)]

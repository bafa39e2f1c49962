"""Where the event log storage lived before ``stock_lakehouse.runs``: an instance configured earlier
(``module: stock_lakehouse.event_storage`` in its ``$DAGSTER_HOME/dagster.yaml``) still loads."""

from stock_lakehouse.runs.event_storage import PostgresEventLogStorage, SqliteEventLogStorage

__all__ = ["PostgresEventLogStorage", "SqliteEventLogStorage"]

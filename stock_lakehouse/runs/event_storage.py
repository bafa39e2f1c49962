"""Dagster's event log storages with the costs of large ranged runs removed and no empty partition recorded
as materialized; configured in ``dagster.yaml``.

Why, measured on a W1 CLI run (50 symbols x 21 days = 1,050 partitions, one ranged run, SQLite, 489 s):

- Dagster stores an ``ASSET_CHECK_EVALUATION_PLANNED`` event per partitioned check as one row per
  partition of the run, and each row holds the whole serialized event, whose ``partitions_subset`` lists
  every partition of the run: O(partitions^2) bytes per check. The 38 checks took 92 s to plan and grew
  ``index.db`` by 900 MB. Here each row stores the event narrowed to that row's own partition (the
  row's ``partition`` column says the same). What Dagster reads back (check history, each partition's
  status, failed partitions) is the same as with its own storage: ``test_event_storage.py`` compares them.
- A step's check results, one per partition and check (``quality/partition_results.py``), are stored
  one by one: Dagster batches no ``ASSET_CHECK_EVALUATION``, and SQLite spends three transactions on each.
  A 50-symbol intraday tick stored 2,150 of them in 38 s of its 81 s. Here (when batching is enabled)
  they wait in the storage until the next other event of the process, at most ``EVENT_BATCH_SIZE`` of
  them, and are then written with Dagster's own statements in two transactions; the next event is a
  check's output, so a reader sees them a moment later, in the same order. (A process killed in between
  loses them; its step never reported success either.)
- SQLite has no ``store_event_batch``: each of a step's 1,050 materializations (and each of the 5,250
  planned materializations) opened two connections and committed twice, about 8-17 ms per event, 140 s
  in all. Here a batch (Dagster batches exactly these events when ``DAGSTER_EVENT_BATCH_SIZE`` is set,
  see ``enable_event_batching``) is written in one transaction per database file. PostgreSQL's storage
  batches materializations itself but stores planned ones one by one (146 s of a 351 s W1 run on
  PostgreSQL); here those are written in one transaction too.

And one record made true: Dagster records a ranged output's materialization for every partition of the run
(there is no per-partition opt-out), so a 3-year backfill with 8 days of data showed 769 partitions
materialized. The IO manager reports each trading day left with no rows by an observation
(``partitions.EMPTY``); the storage drops the same run's materialization of that partition, so the UI
shows it missing, with the observation saying why. (With Dagster's own classes those partitions show
materialized, as before.)

Both classes are Dagster's, with the same configuration; instances made before this keep working
(nothing in the schema changes), and an instance whose ``dagster.yaml`` names Dagster's classes runs the
same pipeline, only slower.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, EventLogEntry, Field, StringSource
from dagster_postgres.event_log import PostgresEventLogStorage as DagsterPostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from dagster_shared.record import copy
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

from stock_lakehouse.dagster_internals import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionsTable,
    ConfigurableClassData,
    SqlEventLogStorageTable,
    db_result,
    serialize_value,
)
from stock_lakehouse.dagster_internals import SqliteEventLogStorage as DagsterSqliteEventLogStorage
from stock_lakehouse.partitions import is_empty

#: Events per batch write (Dagster buffers a step's partition events up to this many).
EVENT_BATCH_SIZE = 2000


def event_log_dir(home: str | Path) -> Path:
    """Where the SQLite event log of the instance in ``home`` lives: Dagster's own layout, so an instance
    keeps its history whichever class reads it."""
    return Path(home) / "history" / "runs"


def instance_yaml(home: Path, extra: str = "") -> str:
    """A ``dagster.yaml`` for an instance in ``home`` using these storages (the project's ``dagster.yaml``
    selects the same class; a test keeps them equal), telemetry off, plus ``extra`` YAML lines.

    The event log folder is written out: such an instance may be opened with ``DAGSTER_HOME`` pointing
    elsewhere (``DagsterInstance.from_config``), where the default (``$DAGSTER_HOME``) would be wrong.
    """
    events = json.dumps(str(event_log_dir(home.resolve())))
    return (
        "telemetry:\n  enabled: false\n"
        f"event_log_storage:\n  module: {__name__}\n  class: {SqliteEventLogStorage.__name__}\n"
        f"  config:\n    base_dir: {events}\n" + extra
    )


def pin_event_log_folder(project_yaml: str, home: Path) -> str:
    """The project's ``dagster.yaml`` text for an instance in ``home``, its event log folder written out.

    Why: Dagster gives a storage class only its own config, never the folder of the ``dagster.yaml`` it
    came from, so without ``base_dir`` the folder is ``$DAGSTER_HOME``'s. A process opening this instance
    with ``DagsterInstance.from_config(home)`` while ``DAGSTER_HOME`` names another (a test, a script)
    would read another event log.
    """
    events = json.dumps(str(event_log_dir(home.resolve())))
    pattern = rf"(class: {SqliteEventLogStorage.__name__}\n  config:) \{{\}}"
    return re.sub(pattern, rf"\g<1>\n    base_dir: {events}", project_yaml, count=1)


def batching_enabled() -> bool:
    """Whether Dagster batches events in this process (what :func:`enable_event_batching` sets)."""
    return int(os.environ.get("DAGSTER_EVENT_BATCH_SIZE") or 0) > 0


def enable_event_batching() -> None:
    """Ask Dagster to hand a ranged step's partition events to the storage as batches (unless the
    environment already says otherwise). Read by Dagster at each event, in the process storing it; called
    where runs start: the code location's module (code server, run workers) and the run service
    (``run_ranges``: the CLI, the benchmark, ``ranged_backfill``)."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))


class _NarrowCheckPlans:
    """Stores a partitioned check's planned rows with each row's own partition (see the module docstring)."""

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        planned = event.get_dagster_event().event_specific_data
        subset = getattr(planned, "partitions_subset", None)
        keys = list(subset.get_partition_keys()) if subset is not None else []
        if len(keys) <= 1:
            super()._store_asset_check_evaluation_planned(event, event_id)  # type: ignore[misc]
            return
        empty = subset.empty_subset()

        def narrowed(key: str) -> str:
            data = copy(planned, partitions_subset=empty.with_partition_keys([key]))
            return serialize_value(
                event._replace(dagster_event=event.get_dagster_event()._replace(event_specific_data=data))
            )

        # The row values are Dagster's own (sql_event_log._store_asset_check_evaluation_planned) but for
        # the stored event.
        timestamp = self._event_insert_timestamp(event)  # type: ignore[attr-defined]
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    [
                        dict(
                            asset_key=planned.asset_key.to_string(),
                            check_name=planned.check_name,
                            partition=key,
                            run_id=event.run_id,
                            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                            evaluation_event=narrowed(key),
                            evaluation_event_timestamp=timestamp,
                            evaluation_event_storage_id=event_id,
                        )
                        for key in keys
                    ]
                )
            )


class _OwnBatches:
    """``store_event_batch`` that writes stretches of ``OWN_BATCH`` events itself (``_store_stretch``: one
    transaction) and hands the rest to Dagster's own batch write, in the order they came."""

    OWN_BATCH: frozenset[DagsterEventType] = frozenset()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        group: list[EventLogEntry] = []
        own = False
        for event in events:
            mine = event.dagster_event_type in self.OWN_BATCH
            if group and mine != own:
                self._flush(group, own)
                group = []
            group.append(event)
            own = mine
        if group:
            self._flush(group, own)

    def _flush(self, group: list[EventLogEntry], own: bool) -> None:
        if own:
            self._store_stretch(group)
        else:
            super().store_event_batch(group)  # type: ignore[misc]

    def _store_stretch(self, events: Sequence[EventLogEntry]) -> None:
        raise NotImplementedError

    def _index_asset_events(self, conn: Any, events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> None:
        """What ``store_event`` records in the index for each asset event (tags, the asset's entry)."""
        for event, event_id in zip(events, event_ids, strict=True):
            self._store_asset_event_tags(conn, [event], [event_id])  # type: ignore[attr-defined]
            self._store_asset_event(conn, event, event_id)  # type: ignore[attr-defined]


class _EmptyNotMaterialized:
    """Drops a run's materialization of a partition the same run reported empty (module docstring). The
    observation comes first: the IO manager logs it while handling the output, Dagster records the output's
    materializations after, in the same process."""

    #: Runs whose empty partitions are remembered: a process stores one run's steps at a time.
    KEEP_RUNS = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._empty: OrderedDict[str, set[tuple[str, str]]] = OrderedDict()
        self._empty_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _recorded(self, event: EventLogEntry) -> bool:
        """Whether ``event`` is stored: all are but the materializations of partitions reported empty."""
        dagster_event = event.dagster_event
        kind = event.dagster_event_type
        if dagster_event is None or kind not in (
            DagsterEventType.ASSET_OBSERVATION,
            DagsterEventType.ASSET_MATERIALIZATION,
        ):
            return True
        where = (dagster_event.asset_key.to_string(), dagster_event.partition)
        with self._empty_lock:
            if kind == DagsterEventType.ASSET_MATERIALIZATION:
                return where not in self._empty.get(event.run_id, ())
            if dagster_event.partition and is_empty(dagster_event.asset_observation_data.asset_observation.metadata):
                self._empty.setdefault(event.run_id, set()).add(where)
                self._empty.move_to_end(event.run_id)
                while len(self._empty) > self.KEEP_RUNS:
                    self._empty.popitem(last=False)
        return True

    def store_event(self, event: EventLogEntry) -> None:
        if self._recorded(event):
            super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        recorded = [e for e in events if self._recorded(e)]
        if recorded:
            super().store_event_batch(recorded)  # type: ignore[misc]


class _HeldCheckResults:
    """A run's check results held until the process stores another event (module docstring); the storage
    class writes rows with ``_inserted``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before Dagster's __init__, which opens the index
        self._held: list[EventLogEntry] = []
        self._held_lock = threading.RLock()
        # the index connection of the write in progress, per thread (see index_connection)
        self._writing = threading.local()
        super().__init__(*args, **kwargs)

    def store_event(self, event: EventLogEntry) -> None:
        if not batching_enabled():  # nothing is ever held then (the webserver, the daemon): Dagster's way
            super().store_event(event)  # type: ignore[misc]
            return
        with self._held_lock:
            if event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION and event.run_id:
                if self._held and self._held[0].run_id != event.run_id:
                    self.flush_check_results()
                self._held.append(event)
                if len(self._held) >= EVENT_BATCH_SIZE:
                    self.flush_check_results()
                return
            self.flush_check_results()
            super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        with self._held_lock:
            self.flush_check_results()
            super().store_event_batch(events)  # type: ignore[misc]

    def flush_check_results(self) -> None:
        """Write the held check results: what Dagster's ``store_event`` does for each (the run's row, the
        index's row, ``store_asset_check_event``), in one transaction per database file."""
        with self._held_lock:
            events, self._held = self._held, []
            if not events:
                return
            with self._inserted(events) as (conn, ids):  # type: ignore[attr-defined]
                self._writing.index = conn
                try:
                    for event, event_id in zip(events, ids, strict=True):
                        self.store_asset_check_event(event, event_id)  # type: ignore[attr-defined]
                finally:
                    self._writing.index = None

    @contextmanager
    def index_connection(self) -> Iterator[Any]:
        # Dagster's store_asset_check_event opens its own index connection; in a flush it is the flush's
        # (a second one would wait on the storage's lock the flush holds, and commit apart).
        held = getattr(self._writing, "index", None)
        with nullcontext(held) if held is not None else super().index_connection() as conn:  # type: ignore[misc]
            yield conn

    def dispose(self) -> None:
        self.flush_check_results()
        super().dispose()  # type: ignore[misc]


class _RememberedTables:
    """Tables found in the database are remembered: a migration never drops one.

    Why: Dagster asks the database whether a table exists, on a connection of its own, before storing an asset
    event's tags and before each check event (1.3 ms each on SQLite: 2.7 s of a 50-symbol tick's check results).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._tables: set[str] = set()
        super().__init__(*args, **kwargs)

    def has_table(self, table_name: str) -> bool:
        if table_name not in self._tables and super().has_table(table_name):  # type: ignore[misc]
            self._tables.add(table_name)
        return table_name in self._tables


class _KeptConnections:
    """SQLite connections kept open per database file in a process that runs steps.

    Dagster's SQLite storage opens a new engine and connection for every statement group and closes it after:
    about 5 connects a stored event, and the last close of a WAL file checkpoints it. It also asks the index
    whether a table exists, with a connection of its own, for each asset event (``_RememberedTables``). Here
    the process keeps one engine per file for the ``KEEP`` files it used last (a run's own file and the index),
    only where batching is enabled (run workers, the CLI, the code location): the webserver and the daemon,
    which read every run's file and delete runs, keep Dagster's way. What it saves is measured in the README
    (Operations, Instance storage).
    """

    KEEP = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(*args, **kwargs)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if not batching_enabled():
            with super()._connect(shard) as conn:  # type: ignore[misc]
                yield conn
            return
        with self._db_lock, self._kept_engine(shard).connect() as conn, conn.begin():  # type: ignore[attr-defined]
            yield conn

    def _kept_engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():  # a forked child must not use its parent's connections
            self._engines, self._engines_pid = OrderedDict(), os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),  # type: ignore[attr-defined]
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            if shard not in self._initialized_dbs:  # type: ignore[attr-defined]
                self._initdb(engine)  # type: ignore[attr-defined]
                self._initialized_dbs.add(shard)  # type: ignore[attr-defined]
            self._engines[shard] = engine
            while len(self._engines) > self.KEEP:
                self._engines.popitem(last=False)[1].dispose()
        self._engines.move_to_end(shard)
        return engine

    def _close_kept(self) -> None:
        with self._db_lock:  # type: ignore[attr-defined]
            engines, self._engines = self._engines, OrderedDict()
            if self._engines_pid == os.getpid():
                for engine in engines.values():
                    engine.dispose()

    def wipe(self) -> None:
        self._close_kept()
        super().wipe()  # type: ignore[misc]

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._close_kept()


class SqliteEventLogStorage(
    _EmptyNotMaterialized,
    _HeldCheckResults,
    _RememberedTables,
    _KeptConnections,
    _OwnBatches,
    _NarrowCheckPlans,
    DagsterSqliteEventLogStorage,
):
    """Dagster's SQLite event log storage, with batch writes, held check results, kept connections, narrowed
    check plans and no materialization of an empty partition."""

    #: Asset events, each mirrored into the index as ``store_event`` does. Check plans (they write the check
    #: executions table) and failed materializations are stored one by one.
    OWN_BATCH = frozenset(
        {
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_OBSERVATION,
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        }
    )

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> SqliteEventLogStorage:
        # Default: where Dagster's own SQLite storage keeps the events of the instance at $DAGSTER_HOME (the
        # project's dagster.yaml is only used from there), so an existing instance keeps its history.
        base_dir = config_value.get("base_dir")
        if not base_dir:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError(
                    "event_log_storage stock_lakehouse.runs.event_storage.SqliteEventLogStorage: set config.base_dir "
                    "or DAGSTER_HOME (the instance folder whose history/runs holds the event log)"
                )
            base_dir = str(event_log_dir(home))
        return cls(base_dir=base_dir, inst_data=inst_data)

    def _store_stretch(self, events: Sequence[EventLogEntry]) -> None:
        by_run: dict[str, list[EventLogEntry]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        for run_events in by_run.values():
            # Every batched type is an asset event, mirrored in the index as store_event does.
            with self._inserted(run_events) as (conn, ids):
                self._index_asset_events(conn, run_events, ids)

    @contextmanager
    def _inserted(self, events: Sequence[EventLogEntry]) -> Iterator[tuple[Any, list[int]]]:
        """One run's events as rows of its file and of the index, one transaction each; yields the index's
        open transaction and the rows' ids, for what ``store_event`` records beside them."""
        statements = [self.prepare_insert_event(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        with self.index_transaction() as conn:
            ids = []
            for statement in statements:
                with db_result(conn, statement) as result:
                    ids.append(result.inserted_primary_key[0])
            yield conn, ids


class PostgresEventLogStorage(
    _EmptyNotMaterialized,
    _HeldCheckResults,
    _RememberedTables,
    _OwnBatches,
    _NarrowCheckPlans,
    DagsterPostgresEventLogStorage,
):
    """Dagster's PostgreSQL event log storage with held check results, remembered tables, narrowed check plans
    and no materialization of an empty partition. Dagster batches materializations here itself; planned
    materializations (one per partition of a ranged run) it stores one by one, so they are written here, one
    transaction per stretch."""

    OWN_BATCH = frozenset({DagsterEventType.ASSET_MATERIALIZATION_PLANNED})

    def _store_stretch(self, events: Sequence[EventLogEntry]) -> None:
        with self._inserted(events) as (conn, ids):
            self._index_asset_events(conn, events, ids)

    @contextmanager
    def _inserted(self, events: Sequence[EventLogEntry]) -> Iterator[tuple[Any, list[int]]]:
        """The events' rows (one table here), then the index's open transaction and the rows' ids."""
        with self._connect() as conn:
            ids = [
                int(conn.execute(self.prepare_insert_event(e).returning(SqlEventLogStorageTable.c.id)).scalar_one())
                for e in events
            ]
        with self.index_transaction() as conn:
            yield conn, ids

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> PostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

"""The project's event log storage against Dagster's own, on the same ranged runs: the same records
(materializations, partition status, check results, failed partitions), written in batches, with check
plans that no longer repeat the run's partition list in every row, and no materialization of a partition
its run reported empty. No Spark: a small asset job."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy
import yaml
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

from stock_lakehouse.partitions import EMPTY, RANGE_END_TAG, RANGE_START_TAG
from stock_lakehouse.runs.event_storage import (
    EVENT_BATCH_SIZE,
    PostgresEventLogStorage,
    SqliteEventLogStorage,
    event_log_dir,
    instance_yaml,
)
from stock_lakehouse.runs.instance_home import write_instance_config
from stock_lakehouse_tests.conftest import REPO

PARTS = dg.MultiPartitionsDefinition(
    {
        "symbol": dg.StaticPartitionsDefinition([f"S{i:02d}" for i in range(12)]),
        "date": dg.DailyPartitionsDefinition(start_date="2024-03-01", end_date="2024-03-11"),
    }
)


def _defs(fail: bool = False) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(partitions_def=PARTS, name="bars")
    def bars(context: dg.AssetExecutionContext) -> None:
        if fail:
            raise RuntimeError("source broke")
        for key in context.partition_keys:
            context.add_asset_metadata({"row_count": len(key)}, partition_key=key)

    spec = dg.AssetCheckSpec("bars_ok", asset="bars", partitions_def=PARTS)

    @dg.multi_asset_check(specs=[spec])
    def bars_ok(context: dg.AssetCheckExecutionContext):
        for key in context.partition_keys:
            yield dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("bars"), check_name="bars_ok", partition=key, passed=not key.endswith("S03")
            )
        yield dg.Output(None, output_name=spec.get_python_identifier())

    return bars, bars_ok


class _NoneIO(dg.IOManager):
    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return None


def _ranged(instance: dg.DagsterInstance, start: str, end: str, fail: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(_defs(fail)),
        instance=instance,
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
        resources={"io_manager": _NoneIO()},
        raise_on_error=False,
    )


def _observed(instance: dg.DagsterInstance) -> dict[str, object]:
    """What the UI and the pipeline read back from an instance."""
    key = dg.AssetKey("bars")
    mats = instance.fetch_materializations(key, limit=1000).records
    check_key = dg.AssetCheckKey(key, "bars_ok")
    checks = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1000)
    runs = {r.run_id: i for i, r in enumerate(reversed(instance.get_runs()))}  # run ids differ: compare order
    info = instance.event_log_storage.get_asset_check_partition_info([check_key])
    return {
        "materialized": sorted(instance.get_materialized_partitions(key)),
        "per_partition_row_count": sorted(
            (r.partition_key, r.asset_materialization.metadata["row_count"].value) for r in mats
        ),
        "checks": sorted((c.partition, c.status.value) for c in checks if c.status.value != "PLANNED" and c.partition),
        "planned_partitions": sorted(c.partition for c in checks if c.partition),
        # the check's Partitions view: each partition's latest status and the run that planned it
        "partition_info": sorted(
            (i.partition_key, i.latest_execution_status.value, runs[i.latest_planned_run_id], i.is_current)
            for i in info
        ),
    }


def _plan_row_sizes(instance: dg.DagsterInstance) -> list[int]:
    """Sizes of the stored events of check rows still planned (the failed run's: its checks never ran)."""
    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(AssetCheckExecutionsTable.select()).fetchall()
    return [len(r.evaluation_event) for r in rows if r.partition and r.execution_status == "PLANNED"]


@pytest.fixture()
def homes(tmp_path, monkeypatch):
    """SQLite instances: Dagster's storage and ours."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
    out = {}
    for name in ("dagster", "ours"):
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text(instance_yaml(home) if name == "ours" else "telemetry:\n  enabled: false\n")
        out[name] = home
    return out


@pytest.fixture()
def pg_homes(tmp_path, monkeypatch):
    """PostgreSQL instances on a real server, one database each: Dagster's storage (``storage: postgres``)
    and ``docker/dagster.yaml``'s (ours for the event log)."""
    import psycopg2

    from stock_lakehouse_tests.services import postgres_server

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
    with postgres_server() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        conn = psycopg2.connect(
            host=env["DAGSTER_POSTGRES_HOST"],
            port=env["DAGSTER_POSTGRES_PORT"],
            user=env["DAGSTER_POSTGRES_USER"],
            password=env["DAGSTER_POSTGRES_PASSWORD"],
            dbname=env["DAGSTER_POSTGRES_DB"],
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dagster_ref")
        conn.close()
        compose = yaml.safe_load((REPO / "docker" / "dagster.yaml").read_text())
        reference = {
            "telemetry": {"enabled": False},
            "storage": {"postgres": {"postgres_db": {**compose["run_storage"]["config"]["postgres_db"]}}},
        }
        reference["storage"]["postgres"]["postgres_db"]["db_name"] = "dagster_ref"
        out = {}
        for name, config in (("dagster", reference), ("ours", compose)):
            home = tmp_path / f"pg_{name}"
            home.mkdir()
            (home / "dagster.yaml").write_text(yaml.safe_dump(config))
            out[name] = home
        yield out


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_same_records_as_dagsters_storage_with_compact_check_plans(backend, request, monkeypatch):
    homes = request.getfixturevalue("homes" if backend == "sqlite" else "pg_homes")
    ours_class = SqliteEventLogStorage if backend == "sqlite" else PostgresEventLogStorage
    observed, sizes = {}, {}
    for name, home in homes.items():
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            if name == "ours":
                assert type(instance.event_log_storage) is ours_class
            else:
                assert type(instance.event_log_storage).__module__.startswith(("dagster.", "dagster_postgres."))
            # 12 symbols x 5 days, then 4 x 5 again (a re-run), then a failing run over other partitions
            assert _ranged(instance, "2024-03-01|S00", "2024-03-05|S11").success
            assert _ranged(instance, "2024-03-01|S02", "2024-03-05|S05").success
            assert not _ranged(instance, "2024-03-06|S00", "2024-03-07|S11", fail=True).success
            observed[name] = _observed(instance)
            failed = instance.get_status_by_partition(
                dg.AssetKey("bars"), [f"2024-03-0{d}|S0{s}" for d in (6, 7) for s in (0, 1)], PARTS
            )
            observed[name]["failed_run_partitions"] = sorted((k, v.value) for k, v in (failed or {}).items())
            sizes[name] = _plan_row_sizes(instance)
    assert observed["ours"] == observed["dagster"]
    got = observed["ours"]
    assert len(got["materialized"]) == 60 and len(got["per_partition_row_count"]) == 80
    assert ("2024-03-01|S03", "FAILED") in got["checks"] and ("2024-03-01|S04", "SUCCEEDED") in got["checks"]
    assert got["failed_run_partitions"] == [(f"2024-03-0{d}|S0{s}", "FAILED") for d in (6, 7) for s in (0, 1)]
    # Each of the failed run's 24 planned rows: Dagster's holds the run's 24 keys, ours its own key only.
    assert len(sizes["ours"]) == len(sizes["dagster"]) == 24
    assert max(sizes["dagster"]) - max(sizes["ours"]) >= 23 * len("2024-03-06|S00")


def test_a_ranged_step_is_written_in_batches(homes, monkeypatch):
    """The materializations of a step reach the storage as one batch (not one write per partition), and the
    check's 60 results per partition are written together, once the check's output follows them."""
    calls: list[int] = []
    flushed: list[int] = []
    original = SqliteEventLogStorage.store_event_batch
    original_flush = SqliteEventLogStorage.flush_check_results

    def counting(self, events):
        calls.append(len(events))
        return original(self, events)

    def counting_flush(self):
        if self._held:
            flushed.append(len(self._held))
        return original_flush(self)

    monkeypatch.setattr(SqliteEventLogStorage, "store_event_batch", counting)
    monkeypatch.setattr(SqliteEventLogStorage, "flush_check_results", counting_flush)
    monkeypatch.setenv("DAGSTER_HOME", str(homes["ours"]))
    with dg.DagsterInstance.from_config(str(homes["ours"])) as instance:
        assert _ranged(instance, "2024-03-01|S00", "2024-03-05|S11").success
        results = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("bars"), "bars_ok"), limit=100
        )
    # the 60 planned materializations with the check's plan, then the step's 60 materializations
    assert calls == [61, 60]
    assert flushed == [60]
    assert sorted(r.status.value for r in results).count("SUCCEEDED") == 55  # S03's five days failed


def test_the_project_dagster_yaml_selects_this_storage(tmp_path, monkeypatch):
    project = yaml.safe_load((REPO / "dagster.yaml").read_text())["event_log_storage"]
    ours = yaml.safe_load(instance_yaml(tmp_path))["event_log_storage"]
    assert (project["module"], project["class"]) == (ours["module"], ours["class"])
    # The project's file names no folder: the instance at $DAGSTER_HOME keeps Dagster's own layout.
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage._base_dir == str(tmp_path / "history" / "runs")
    # A home the CLI or `make dev` creates names its own folder: opened from anywhere, it is the same log.
    home = tmp_path / "cli_home"
    home.mkdir()
    write_instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        assert instance.event_log_storage._base_dir == str(home.resolve() / "history" / "runs")
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1  # the rest is the project's
        # A clicked run waits for the daemon's next look at the queue: every second, and still two at a time.
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2


def test_a_home_configured_before_the_move_to_runs_still_loads(tmp_path):
    old = instance_yaml(tmp_path).replace("stock_lakehouse.runs.event_storage", "stock_lakehouse.event_storage")
    assert "module: stock_lakehouse.event_storage" in old
    (tmp_path / "dagster.yaml").write_text(old)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage


def test_an_instance_opened_from_another_home_reads_its_own_events(homes, tmp_path, monkeypatch):
    """``instance_yaml`` writes the folder out: opening the instance while DAGSTER_HOME points elsewhere
    (the benchmark reads its daemon instances so) finds the runs' events."""
    monkeypatch.setenv("DAGSTER_HOME", str(homes["ours"]))
    with dg.DagsterInstance.from_config(str(homes["ours"])) as instance:
        run_id = _ranged(instance, "2024-03-01|S00", "2024-03-01|S01").run_id
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.from_config(str(homes["ours"])) as instance:
        assert len(instance.fetch_materializations(dg.AssetKey("bars"), limit=10).records) == 2
        assert any(e.dagster_event and e.dagster_event.is_step_success for e in instance.all_logs(run_id))


@contextmanager
def _connects() -> Iterator[list[str]]:
    """The database files SQLite connections are opened to meanwhile (any engine in this process)."""
    opened: list[str] = []

    def on_connect(dbapi_conn, _record) -> None:
        opened.append(dbapi_conn.execute("PRAGMA database_list").fetchone()[2])

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", on_connect)
    try:
        yield opened
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", on_connect)


@pytest.mark.parametrize("batching", [True, False])
def test_a_run_keeps_one_connection_per_database_file_where_it_batches(homes, monkeypatch, batching):
    """Where events are batched (run workers, the CLI) the storage keeps a connection per file: a run opens
    its own file and the index once each instead of several times per event, and a reader with Dagster's
    own storage (the webserver's way, which keeps none) sees every event. Without batching, Dagster's way."""
    if not batching:
        monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
    monkeypatch.setenv("DAGSTER_HOME", str(homes["ours"]))
    with dg.DagsterInstance.from_config(str(homes["ours"])) as instance:
        _ranged(instance, "2024-03-01|S00", "2024-03-01|S00")  # creates the index and a first run's file
        with _connects() as opened:
            run_id = _ranged(instance, "2024-03-01|S00", "2024-03-05|S11").run_id
        storage = instance.event_log_storage
        kept = set(storage._engines)  # noqa: SLF001
    folder = event_log_dir(homes["ours"]).resolve()
    run_file, index = opened.count(str(folder / f"{run_id}.db")), opened.count(str(folder / "index.db"))
    if batching:
        assert {"index", run_id} <= kept and len(kept) <= SqliteEventLogStorage.KEEP
        # the new file: one connection, and one more while Dagster creates its tables; the index's was kept
        assert run_file <= 2 and index == 0, (run_file, index)
    else:
        assert kept == set()
        assert run_file > 20 and index > 20, (run_file, index)
    assert not storage._engines  # noqa: SLF001 (closed with the instance)
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    (homes["ours"] / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(homes["ours"])) as reader:
        assert type(reader.event_log_storage) is not SqliteEventLogStorage
        assert len(reader.fetch_materializations(dg.AssetKey("bars"), limit=100).records) == 61
        assert any(e.dagster_event and e.dagster_event.is_step_success for e in reader.all_logs(run_id))


@dg.asset(partitions_def=PARTS, name="bars")
def _bars_written() -> int:
    return 1  # a value, so the IO manager handles it (an asset returning None skips it)


class _EmptyS03IO(_NoneIO):
    """Reports S03's partitions empty, as the Delta IO manager does for trading days left with no rows."""

    def handle_output(self, context, obj):
        for key in context.asset_partition_keys:
            if key.endswith("S03"):
                context.log_event(
                    dg.AssetObservation(
                        asset_key=context.asset_key, partition=key, metadata={"partition_status": EMPTY}
                    )
                )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_partition_reported_empty_is_not_recorded_as_materialized(backend, request, monkeypatch):
    """Issue 25: Dagster records every partition of a ranged step; ours leaves out the ones the same run
    reported empty (they show missing, not failed), and only in that run: a later run with rows records them."""
    homes = request.getfixturevalue("homes" if backend == "sqlite" else "pg_homes")
    key = dg.AssetKey("bars")
    s03 = {f"2024-03-0{d}|S03" for d in range(1, 6)}
    for name, home in homes.items():
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = dg.materialize(
                [_bars_written],
                instance=instance,
                tags={RANGE_START_TAG: "2024-03-01|S00", RANGE_END_TAG: "2024-03-05|S11"},
                resources={"io_manager": _EmptyS03IO()},
            )
            assert run.success
            materialized = set(instance.get_materialized_partitions(key))
            observed = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=key), limit=100).records
            assert {r.partition_key for r in observed} == s03, name
            if name == "dagster":  # Dagster's own storage records them all (what the project's replaces)
                assert len(materialized) == 60
                continue
            assert len(materialized) == 55 and not materialized & s03
            status = instance.get_status_by_partition(key, sorted(s03), PARTS)
            assert not any(status.values()), status  # missing: neither failed nor in progress
            # The next run has rows for them: recorded as any other.
            assert _ranged(instance, "2024-03-01|S03", "2024-03-05|S03").success
            assert s03 <= set(instance.get_materialized_partitions(key))

"""Builds the Dagster ``Definitions`` from settings (``definitions.py`` calls it with the defaults)."""

import os
from pathlib import Path

import dagster as dg

from stock_lakehouse.assets import build_table_assets
from stock_lakehouse.assets import keys as asset_keys
from stock_lakehouse.automation.alerts import AlertSink
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.automation.maintenance import build_maintenance
from stock_lakehouse.automation.ranged_backfill import ranged_backfill_job
from stock_lakehouse.automation.schedules import build_end_of_day_schedule, build_intraday_schedule
from stock_lakehouse.automation.sensors import (
    build_anomaly_sensor,
    build_check_failure_sensor,
    build_dead_run_sensor,
    build_freshness_sensor,
    build_run_failure_sensor,
    build_symbol_sync_sensor,
)
from stock_lakehouse.dagster_internals import IMPLICIT_ASSET_JOB_NAME
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.ingestion.landing import LandingZone
from stock_lakehouse.ingestion.sources import AlphaVantageSource, BarSource, ReplaySource, SyntheticSource
from stock_lakehouse.lakehouse.io_manager import DeltaIOManager
from stock_lakehouse.lakehouse.spark import SparkResource
from stock_lakehouse.partitions import bars_partitions
from stock_lakehouse.quality.checks import build_quality_checks
from stock_lakehouse.quality.gates import QualityGate
from stock_lakehouse.runs.ranged_runs import RangeRunner
from stock_lakehouse.runs.recovery import RunWorker
from stock_lakehouse.settings import API_KEY_ENV, Settings, load_settings

# The one job that materializes the tables: Dagster's implicit asset job. The UI's Materialize button
# and every asset backfill launch it, so the CLI and the schedules launch it too: one job name in the run
# list, for the run-failure sensor and in the run tags, however a run was started. (A named
# `define_asset_job` would only add a second name for the same work: the UI never launches it.)
LAKEHOUSE_JOB = IMPLICIT_ASSET_JOB_NAME


def default_budget_file() -> Path:
    return Path.home() / ".cache" / "stock_lakehouse" / "alphavantage_budget.sqlite"


def build_source(settings: Settings, landing: LandingZone, ingestion: IngestionConfig, clock: Clock) -> BarSource:
    if settings.source == "replay":
        return ReplaySource(folder=str(settings.replay_path))
    if settings.source == "synthetic":
        return SyntheticSource(
            seed=settings.synthetic.seed, extended_hours=settings.synthetic.extended_hours, ingestion=ingestion
        )
    av = settings.alphavantage
    # The environment's key wins; a key in the settings is read again by the resource where it is used.
    in_env = bool(os.environ.get(API_KEY_ENV))
    return AlphaVantageSource(
        # The settings block is the resource's configuration, field for field (less the key and budget).
        **av.model_dump(exclude={"api_key", "budget"}),
        api_key=dg.EnvVar(API_KEY_ENV) if in_env else "",
        settings_file=str(settings.file) if settings.file else None,
        per_second=av.budget.per_second,
        per_minute=av.budget.per_minute,
        per_day=av.budget.per_day,
        budget_file=av.budget.state_file or str(default_budget_file()),
        landing=landing,
        ingestion=ingestion,
        clock=clock,
    )


def build_resources(settings: Settings) -> dict[str, object]:
    spark = SparkResource(**settings.spark.model_dump())  # the settings block is the resource's config
    lake = settings.lake
    run_worker = RunWorker()
    landing = LandingZone(lake=lake)
    ingestion = IngestionConfig(
        interval=settings.interval,
        calendar=settings.calendar,
        fx_pairs=settings.fx_pairs,
        crypto=settings.crypto,
        allow_empty_overwrite=settings.allow_empty_overwrite,
    )
    auto = settings.automation
    webhook = dg.EnvVar(auto.alert_webhook_env) if os.environ.get(auto.alert_webhook_env) else ""
    clock = Clock.from_settings(settings)
    return {
        "alerts": AlertSink(webhook_url=webhook, webhook_format=auto.alert_webhook_format),
        "clock": clock,
        "spark": spark,
        "lake": lake,
        "run_worker": run_worker,
        "io_manager": DeltaIOManager(lake=lake, spark=spark, worker=run_worker, ingestion=ingestion),
        "bar_source": build_source(settings, landing, ingestion, clock),
        "landing": landing,
        "ingestion": ingestion,
        "quality": QualityGate(
            rules_file=str(Path(settings.quality.dir) / "silver.yml"),
            max_invalid_share=settings.quality.max_invalid_share,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All assets, checks, schedules, sensors and resources for ``settings`` (default: loaded ones).

    The tables are materialized by Dagster's implicit asset job (``LAKEHOUSE_JOB``; resolve it with
    ``lakehouse_job``). Every run uses the in-process executor: all steps share one process and so one
    Spark session, instead of one JVM per step.
    """
    # Loaded here (not given): the code location's own config, which the symbol sync re-reads every tick.
    reread = (lambda: load_settings().all_symbols) if settings is None else None
    settings = settings or load_settings()
    partitions_def = bars_partitions(settings.partitions_start)
    assets = build_table_assets(partitions_def)
    checks = build_quality_checks(
        partitions_def,
        {
            "bronze": asset_keys.BRONZE,
            "silver": asset_keys.SILVER,
            "gold": asset_keys.GOLD,
            "bi": asset_keys.BI,
            "signals": asset_keys.SIGNALS,
        },
        Path(settings.quality.dir),
    )
    auto = settings.automation
    symbols = settings.all_symbols
    maintenance_job, maintenance_schedule = build_maintenance()
    # The ranged_backfill job runs this asset job: it gets it through a resource bound to these definitions.
    range_runner = RangeRunner(settings, lambda: lakehouse_job(defs))
    resources = {**build_resources(settings), "range_runner": range_runner}
    defs = dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[maintenance_job, ranged_backfill_job],
        schedules=[
            maintenance_schedule,
            build_intraday_schedule(
                LAKEHOUSE_JOB,
                symbols,
                auto.intraday_every_minutes,
                settings.calendar,
                over_budget=settings.intraday_cost_refusal(),
                every_day=resources["clock"].running,
            ),
            build_end_of_day_schedule(LAKEHOUSE_JOB, symbols, settings.calendar, auto.end_of_day_at),
        ],
        sensors=[
            build_dead_run_sensor(),
            build_symbol_sync_sensor(symbols, reread),
            build_freshness_sensor(symbols, settings.interval, auto.freshness_max_lag_minutes, settings.calendar),
            build_run_failure_sensor(),
            build_check_failure_sensor([key for c in checks for key in c.check_keys]),
            build_anomaly_sensor(auto.anomaly_price_change_pct, auto.anomaly_volume_multiple),
        ],
        resources=resources,
        executor=dg.in_process_executor,
    )
    return defs


def lakehouse_job(defs: dg.Definitions) -> dg.JobDefinition:
    """The job that materializes every table and runs its checks (the one the UI launches)."""
    return defs.resolve_implicit_global_asset_job_def()

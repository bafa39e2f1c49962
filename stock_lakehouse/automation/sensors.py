"""Sensors: symbol sync, market-aware freshness alerts, run and check failure alerts, BI anomalies."""

import json
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from stock_lakehouse.assets.keys import BI
from stock_lakehouse.automation.alerts import Alert, AlertSink
from stock_lakehouse.automation.anomalies import find_anomalies
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.dagster_internals import AssetCheckExecutionRecordStatus
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.market_calendar import EXCHANGE_TZ, session_bounds
from stock_lakehouse.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SYMBOLS_PARTITIONS_NAME,
    parse_keys,
    symbol_partitions,
)
from stock_lakehouse.quality.partition_results import aggregate
from stock_lakehouse.runs.recovery import recover_dead_runs
from stock_lakehouse.runs.root_cause import error_info_root_cause
from stock_lakehouse.symbols import INTERVAL_MINUTES


def build_symbol_sync_sensor(
    symbols: Sequence[str], configured: Callable[[], Sequence[str]] | None = None
) -> dg.SensorDefinition:
    """A sensor adding configured symbols that the instance's symbol dimension lacks.

    Symbols added from the UI are kept (removing a partition is an explicit UI action, never a config
    side effect).

    Args:
        symbols: the symbols the definitions were built with.
        configured: reads the configured symbols again at every tick (the code location's config file), so
            a symbol added to the file becomes a partition without "Reload definitions"; a config that no
            longer loads fails the tick with its one-line error.
    """

    @dg.sensor(
        name="sync_configured_symbols",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds symbols from the config file to the symbol partitions.",
    )
    def sync_configured_symbols(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        wanted = list(configured()) if configured else list(symbols)
        existing = set(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
        missing = [s for s in wanted if s not in existing]
        if not missing:
            return dg.SkipReason("all configured symbols are partitions")
        return dg.SensorResult(dynamic_partitions_requests=[symbol_partitions().build_add_request(missing)])

    return sync_configured_symbols


def deliver(context: dg.SensorEvaluationContext | dg.RunFailureSensorContext, alerts: AlertSink, alert: Alert) -> None:
    """Send ``alert`` and write it in the tick's log (the sensor's page in the UI: "View logs"), so an alert
    is visible where the tick is, whether or not a webhook is configured."""
    context.log.warning(f"{alert.kind}: {alert.text}")
    alerts.send(alert)


def latest_bar_times(lake: Lake, symbols: Sequence[str], day: date) -> dict[str, datetime]:
    """Start time (UTC) of the newest valid silver bar of ``day`` per symbol.

    A lake without a silver table has no bars (all symbols are late); a store that cannot be read
    raises (the sensor's evaluation fails, visibly) instead of being taken for "no data".
    """
    try:
        df = lake.read("silver", symbols, day, day)
    except FileNotFoundError:
        return {}
    df = df[df.is_valid & df.ts_utc.notna()]
    latest = df.groupby("symbol").ts_utc.max()
    return {sym: ts.to_pydatetime().replace(tzinfo=UTC) for sym, ts in latest.items()}


def build_freshness_sensor(
    symbols: Sequence[str], interval: str, max_lag_minutes: int, calendar: str
) -> dg.SensorDefinition:
    """Per-symbol data freshness during the NYSE session, with an alert and a "resolved" message.

    The measure is the data, not the run: the newest valid bar in silver for today, plus one bar
    interval, may be at most ``max_lag_minutes`` behind the clock. Nothing is checked on weekends,
    holidays, before ``open + max_lag`` or after the (early) close. The cursor holds the symbols
    currently stale, so each condition alerts once and resolves once.
    """
    step = timedelta(minutes=INTERVAL_MINUTES[interval])
    max_lag = timedelta(minutes=max_lag_minutes)

    @dg.sensor(
        name="freshness_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Alerts when a symbol's newest silver bar is over {max_lag_minutes} min behind in the session.",
    )
    def freshness_alerts(
        context: dg.SensorEvaluationContext, alerts: AlertSink, clock: Clock, lake: Lake
    ) -> dg.SkipReason:
        now = clock.now()
        day = now.astimezone(ZoneInfo(EXCHANGE_TZ)).date()
        bounds = session_bounds(day, calendar)
        if bounds is None:
            return dg.SkipReason(f"market closed on {day}")
        open_, close = (b.to_pydatetime() for b in bounds)
        if not (open_ + max_lag <= now <= close):
            return dg.SkipReason("outside the checked part of the session")
        stale: dict[str, str] = json.loads(context.cursor or "{}")
        latest = latest_bar_times(lake, symbols, day)
        sent = 0
        for sym in symbols:
            newest = latest.get(sym)
            lag = now - (newest + step) if newest else now - open_
            since = newest.strftime("%H:%M UTC") if newest else "the open"
            if lag > max_lag and sym not in stale:
                deliver(
                    context,
                    alerts,
                    Alert(
                        "freshness",
                        f"freshness:{sym}:{day}",
                        f"{sym}: no new bar since {since} on {day}, "
                        f"{lag.total_seconds() / 60:.0f} min behind (limit {max_lag_minutes} min)",
                    ),
                )
                stale[sym] = now.isoformat()
                sent += 1
            elif lag <= max_lag and sym in stale:
                deliver(
                    context,
                    alerts,
                    Alert(
                        "freshness_resolved",
                        f"freshness:{sym}:{day}",
                        f"{sym}: data is fresh again (newest bar {since})",
                    ),
                )
                del stale[sym]
                sent += 1
        context.update_cursor(json.dumps(stale))
        return dg.SkipReason(f"{sent} alert(s); stale now: {sorted(stale) or 'none'}")

    return freshness_alerts


def build_run_failure_sensor() -> dg.SensorDefinition:
    """One alert per failed run of this code location: the first failed step's cause, in one line, and the
    run's partitions (what a person needs to decide whether to re-run, without opening the run)."""

    @dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING)
    def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
        run = context.dagster_run
        steps = context.get_step_failure_events()
        if steps:
            cause = f"step {steps[0].step_key}: {error_info_root_cause(steps[0].step_failure_data.error)}"
        else:  # failed outside a step: killed, recovered, refused at launch
            cause = (context.failure_event.message or "no message").strip()
        cause = " ".join(cause.split())[:400]
        deliver(
            context,
            alerts,
            Alert(
                "run_failure",
                f"run:{run.run_id}",
                f"Run {run.run_id[:8]} of {run.job_name} failed: {cause}; partitions {run_partitions(run)}",
            ),
        )

    return run_failure_alerts


def run_partitions(run: dg.DagsterRun) -> str:
    """The partitions a run covered, from its tags: a key, a range ``first..last``, or ``-``."""
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return f"{start}..{end}" if start and end else "-"


def build_check_failure_sensor(check_keys: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    """One alert per failed asset check evaluation (Soda rules and plain checks).

    The cursor keeps, per check, the id of the newest execution record already seen; the failing
    evaluations of one run (one per partition) make one alert.
    """

    @dg.sensor(name="check_failure_alerts", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
    def check_failure_alerts(context: dg.SensorEvaluationContext, alerts: AlertSink) -> dg.SkipReason:
        seen: dict[str, int] = json.loads(context.cursor or "{}")
        storage = context.instance.event_log_storage
        sent = 0
        for key in check_keys:
            cursor_key = f"{key.asset_key.to_user_string()}:{key.name}"
            last = seen.get(cursor_key, 0)
            records = storage.get_asset_check_execution_history(key, limit=1000)
            # A run evaluates a check once per partition: one alert per run, naming its failing partitions.
            failed_by_run: dict[str, list[tuple[bool, str, dict[str, object]]]] = {}
            for record in sorted((r for r in records if r.id > last), key=lambda r: r.id):
                evaluation = record.event.dagster_event.event_specific_data if record.event else None
                if record.status == AssetCheckExecutionRecordStatus.FAILED and evaluation is not None:
                    meta = {k: v.value for k, v in evaluation.metadata.items()}
                    failed_by_run.setdefault(record.run_id, []).append((False, evaluation.severity.value, meta))
                if record.status != AssetCheckExecutionRecordStatus.PLANNED:
                    seen[cursor_key] = max(seen.get(cursor_key, 0), record.id)
            for run_id, failed in failed_by_run.items():
                _, severity, meta = aggregate(failed)
                partitions = meta.get("failing_partitions") or meta.get("partition_keys") or "-"
                deliver(
                    context,
                    alerts,
                    Alert(
                        "check_failure",
                        f"check:{cursor_key}:{run_id}",
                        f"{severity} check {key.name} on {key.asset_key.to_user_string()} failed: "
                        f"measured {meta.get('soda_value', '-')}; partitions {partitions}"
                        + (f"; withheld {meta['withheld_partitions']}" if meta.get("withheld_partitions") else ""),
                    ),
                )
                sent += 1
        context.update_cursor(json.dumps(seen))
        return dg.SkipReason(f"{sent} check failure alert(s)")

    return check_failure_alerts


def build_anomaly_sensor(price_change_pct: float, volume_multiple: float) -> dg.SensorDefinition:
    """Alerts for anomalous BI rows (``automation/anomalies.py``) of newly materialized partitions.

    The cursor keeps the last materialization seen and the alert keys already sent, so re-materializing
    a partition does not repeat its alerts.
    """

    @dg.sensor(name="bi_anomaly_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def bi_anomaly_alerts(context: dg.SensorEvaluationContext, alerts: AlertSink, lake: Lake) -> dg.SkipReason:
        state = json.loads(context.cursor or '{"after": null, "sent": []}')
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=BI, after_storage_id=state["after"]), limit=1000, ascending=True
        )
        if not result.records:
            return dg.SkipReason("no new BI materializations")
        parts = parse_keys(r.partition_key for r in result.records if r.partition_key)
        sent = set(state["sent"])
        new = 0
        if parts:
            wanted = {(p.symbol, p.trade_date) for p in parts}
            bi = lake.read(
                "bi",
                sorted({p.symbol for p in parts}),
                min(p.trade_date for p in parts),
                max(p.trade_date for p in parts),
            )
            bi = bi[[(s, d) in wanted for s, d in zip(bi.symbol, bi.trade_date, strict=True)]]
            for alert in find_anomalies(bi, price_change_pct, volume_multiple):
                if alert.key not in sent:
                    deliver(context, alerts, alert)
                    sent.add(alert.key)
                    new += 1
        context.update_cursor(json.dumps({"after": result.records[-1].storage_id, "sent": sorted(sent)[-2000:]}))
        return dg.SkipReason(f"{new} anomaly alert(s)")

    return bi_anomaly_alerts


def build_dead_run_sensor() -> dg.SensorDefinition:
    """A sensor failing the runs whose worker process died and freeing their pool slots (``recovery.py``).

    The daemon evaluates sensors in the code server, on the host where that server launches its runs, so
    this sees their workers. It is always on: after a crash of ``dagster dev`` or of the code server's
    container, its first tick (within ``minimum_interval_seconds`` of the daemon coming back) fails the
    dead runs, and the queued runs they blocked (run slots, pool slots) start.
    """

    @dg.sensor(
        name="recover_dead_runs",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Fails runs whose worker process is gone and frees their concurrency slots.",
    )
    def recover_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        recovered = recover_dead_runs(context.instance, by="the recover_dead_runs sensor")
        for run in recovered:
            context.log.warning(
                f"run {run.run_id} ({run.previous_status}): worker pid {run.pid} is gone; marked failed, slots freed"
            )
        if not recovered:
            return dg.SkipReason(f"every unfinished run recorded on {socket.gethostname()} has a live worker")
        listed = ", ".join(f"{r.run_id} (pid {r.pid})" for r in recovered[:10])
        return dg.SkipReason(f"failed {len(recovered)} run(s) whose worker is gone and freed their slots: {listed}")

    return recover_dead_runs_sensor

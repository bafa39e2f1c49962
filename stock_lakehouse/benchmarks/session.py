"""``stock-lakehouse bench --session-minutes M --session-symbols N``: how far gold and BI trail the market
through a simulated session, on the path a deployment takes.

The deployment ``make dev`` runs (``dagster dev`` with its daemon, the warm engine beside it) is started on
a simulated clock (``automation.clock_*``: the session day at ``SESSION_STARTS_AT`` New York, running at
``speed``), with the live source pointed at ``SessionFeed`` (the Alpha Vantage layout over a real socket,
publishing each bar ``delay_seconds`` after its close) and ``intraday_refresh`` at a 1-minute cadence,
switched on as its toggle in the UI does. The clock reaches the session's start at ``anchor``, a whole
minute set far enough ahead for the processes to start; ticks before it warm the lake up (the first one
fetches the day so far). The session then runs ``minutes``; the schedule is switched off two cadences
after its end and the last run is awaited.

Lag is read from the Delta logs afterwards, not by polling: for each regular-session bar that closed in
the session, the first commit of gold (and of BI) whose row for its (symbol, day) counts it
(``bar_count``, bars arrive in order) is when it became readable; lag is that commit's instant on the
session's clock minus the bar's close. The end state is compared with a one-shot run over the same
landed payloads (``matches_one_shot``).

Decisions: the lake holds no earlier days (the lag of a tick with history is that of BI and signals
reading it: issue 24); a premium key's budget (75 requests a minute, no daily limit, no per-second pacing)
is configured, since 50 symbols a minute is beyond a free key (the settings refuse that at load).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from stock_lakehouse.automation.cadence import CadenceCost
from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.automation.schedules import REFRESH_TAG, unfinished_refresh
from stock_lakehouse.benchmarks.session_feed import SessionFeed, bar_close
from stock_lakehouse.benchmarks.workload import symbols
from stock_lakehouse.ingestion.synthetic import day_bars
from stock_lakehouse.market_calendar import EXCHANGE_TZ, regular_close
from stock_lakehouse.settings import API_KEY_ENV

#: A Wednesday early in a month: the first tick's catch-up (the month so far) stays small.
SESSION_DAY = date(2024, 3, 6)
#: Half an hour after the open: a compact answer (100 bars) no longer reaches back to the first bar.
SESSION_STARTS_AT = dtime(10, 0)
FEED_DELAY_SECONDS = 5.0
FEED_SEED = 11
#: Processes start before the session's clock reaches the start (the engine, dagster dev, a first tick).
WARM_UP_SECONDS = 240
INTERVAL = "1min"
_NY = ZoneInfo(EXCHANGE_TZ)


def _next_minute(t: datetime) -> datetime:
    return (t + timedelta(minutes=1)).replace(second=0, microsecond=0)


def session_env(feed_url: str, key: str, lake: Path, syms: list[str], clock: Clock, budget_file: Path) -> dict:
    """The settings of the deployment under test, as the environment its processes read."""
    return {
        "STOCK_LAKEHOUSE_SOURCE": "alphavantage",
        "STOCK_LAKEHOUSE_ALPHAVANTAGE_BASE_URL": feed_url,
        "STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET": json.dumps(
            {"per_second": 0, "per_minute": 75, "per_day": 0, "state_file": str(budget_file)}
        ),
        API_KEY_ENV: key,
        "STOCK_LAKEHOUSE_LAKE_ROOT": str(lake),
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(syms),
        "STOCK_LAKEHOUSE_INTERVAL": INTERVAL,
        "STOCK_LAKEHOUSE_AUTOMATION_INTRADAY_EVERY_MINUTES": "1",
        "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_UTC": str(clock.fixed_utc),
        "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_ANCHOR_UTC": str(clock.anchor_utc),
        "STOCK_LAKEHOUSE_AUTOMATION_CLOCK_SPEED": str(clock.speed),
    }


def regular_closes(symbol: str, day: date, interval: str, seed: int) -> list[datetime]:
    """UTC closes of ``symbol``'s regular-session bars on ``day``, in order: the k-th is counted by gold's
    ``bar_count`` once it is k or more."""
    labels = [b[0] for b in day_bars(symbol, day, interval, seed=seed)]
    close = f"{regular_close(day):%H:%M:%S}"
    regular = [lb for lb in labels if "09:30:00" <= lb[11:] < close]
    return [bar_close(lb, interval) for lb in regular]


def readable_since(lake: Path, table: str, day: date) -> list[tuple[datetime, dict[str, int]]]:
    """Per Delta version of a table, oldest first: (commit instant, ``bar_count`` per symbol on ``day``)."""
    from deltalake import DeltaTable

    from stock_lakehouse.lakehouse.reader import read_table, table_path

    history = sorted(DeltaTable(table_path(str(lake), table)).history(), key=lambda h: h["version"])
    out = []
    for h in history:
        rows = read_table(str(lake), table, start=day, end=day, version=h["version"])
        counts = dict(zip(rows.symbol, rows.bar_count, strict=True))
        out.append((datetime.fromtimestamp(h["timestamp"] / 1000, UTC), counts))
    return out


def bar_lags(
    versions: list[tuple[datetime, dict[str, int]]],
    closes: dict[str, list[datetime]],
    clock: Clock,
    window: tuple[datetime, datetime],
) -> tuple[list[float], int]:
    """Seconds from each bar's close (within ``window``, on the session's clock) to the first version that
    counts it (its commit read on the session's clock); and how many bars no version counts."""
    lags, missing = [], 0
    for sym, sym_closes in closes.items():
        for k, close in enumerate(sym_closes, start=1):
            if not window[0] < close <= window[1]:
                continue
            seen = next((clock.at(t) for t, counts in versions if counts.get(sym, 0) >= k), None)
            if seen is None:
                missing += 1
            else:
                lags.append((seen - close).total_seconds())
    return lags, missing


def _percentiles(lags: list[float]) -> dict[str, float | None]:
    if not lags:
        return {"lag_p50_s": None, "lag_p95_s": None, "lag_max_s": None}
    return {
        "lag_p50_s": round(float(np.percentile(lags, 50)), 1),
        "lag_p95_s": round(float(np.percentile(lags, 95)), 1),
        "lag_max_s": round(max(lags), 1),
    }


def overlapping_runs(runs: list[tuple[float, float]]) -> int:
    """How many runs (start, end) started before an earlier-started run had ended."""
    ordered = sorted(runs)
    latest_end, overlaps = float("-inf"), 0
    for start, end in ordered:
        overlaps += start < latest_end
        latest_end = max(latest_end, end)
    return overlaps


def _wait_until(t: datetime) -> None:
    while (left := (t - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 5.0))


def run_session(
    minutes: int,
    n_symbols: int,
    workdir: Path | None = None,
    speed: float = 1.0,
    delay_seconds: float = FEED_DELAY_SECONDS,
    day: date = SESSION_DAY,
) -> dict[str, object]:
    """Run the simulated session and return the ``realtime`` figures (see the module's docstring)."""
    import dagster as dg

    from stock_lakehouse.assets.keys import ensure_writer_pools
    from stock_lakehouse.local_processes import dagster_dev_process, engine_process
    from stock_lakehouse.partitions import sync_symbols
    from stock_lakehouse.runs.backfill import schedule_ticks, start_schedule, stop_schedule
    from stock_lakehouse.runs.instance_home import write_instance_config

    work = Path(workdir or tempfile.mkdtemp(prefix="stock_lakehouse_session_"))
    for old in work.glob("session_*"):
        shutil.rmtree(old, ignore_errors=True)
    lake, home, oneshot = work / "session_lake", work / "session_home", work / "session_oneshot_lake"
    syms = symbols(n_symbols)
    start_sim = datetime.combine(day, SESSION_STARTS_AT, _NY).astimezone(UTC)
    anchor = _next_minute(datetime.now(UTC) + timedelta(seconds=WARM_UP_SECONDS))
    clock = Clock(fixed_utc=start_sim.isoformat(), anchor_utc=anchor.isoformat(), speed=speed)
    end_sim = start_sim + timedelta(minutes=minutes)
    end_real = anchor + timedelta(minutes=minutes) / speed
    key = secrets.token_hex(12)

    home.mkdir(parents=True, exist_ok=True)
    write_instance_config(home)
    instance = dg.DagsterInstance.from_config(str(home))
    sync_symbols(instance, syms)
    ensure_writer_pools(instance)
    t_setup = time.perf_counter()
    with SessionFeed(clock.now, key, seed=FEED_SEED, delay_seconds=delay_seconds) as feed, contextlib.ExitStack() as st:
        env = session_env(feed.url, key, lake, syms, clock, work / "session_budget.sqlite")
        engine_url, _ = st.enter_context(engine_process(home / "engine.log", {**os.environ, **env}))
        env["STOCK_LAKEHOUSE_SPARK_REMOTE"] = engine_url
        url, _ = st.enter_context(dagster_dev_process(home, env))
        graphql = f"{url}/graphql"
        state = start_schedule(graphql, "intraday_refresh")
        started_s = time.perf_counter() - t_setup
        if datetime.now(UTC) > anchor:
            raise RuntimeError(
                f"the deployment took {started_s:.0f} s to start, past the session's start (WARM_UP_SECONDS)"
            )
        # Two cadences after the end: the tick after the last bar's publication has run.
        _wait_until(end_real + timedelta(minutes=2) / speed)
        stop_schedule(graphql, state)
        deadline = time.monotonic() + 600
        while unfinished_refresh(instance) is not None and time.monotonic() < deadline:
            time.sleep(2)
        ticks = schedule_ticks(graphql, "intraday_refresh")

    runs = instance.get_runs(filters=dg.RunsFilter(tags={REFRESH_TAG: "intraday"}))
    records = {
        r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    }
    spans = [(r.start_time, r.end_time) for r in records.values() if r.start_time and r.end_time]
    in_session = [t for t in ticks if anchor.timestamp() <= t["timestamp"] <= end_real.timestamp()]
    statuses = Counter(t["status"] for t in in_session)
    skipped_busy = sum(1 for t in in_session if "still writes" in (t.get("skipReason") or ""))

    closes = {s: regular_closes(s, day, INTERVAL, FEED_SEED) for s in syms}
    window = (start_sim, end_sim)
    realtime: dict[str, object] = {
        "minutes": minutes,
        "symbols": n_symbols,
        "speed": speed,
        "feed_delay_s": delay_seconds,
        "day": str(day),
        "session_start_ny": f"{SESSION_STARTS_AT:%H:%M}",
        "deployment_start_s": round(started_s, 1),
    }
    for table in ("gold", "bi"):
        lags, missing = bar_lags(readable_since(lake, table, day), closes, clock, window)
        figures = {**_percentiles(lags), "bars": len(lags), "bars_never_readable": missing}
        if table == "bi":  # BI is written after gold: a bar is in "gold/BI" once BI has it
            realtime.update(figures)
        else:
            realtime["gold"] = figures
    durations = [e - s for s, e in spans]
    realtime.update(
        {
            "ticks": len(in_session),
            "ticks_run": statuses.get("SUCCESS", 0),
            "ticks_skipped": statuses.get("SKIPPED", 0),
            "ticks_skipped_overlapping": skipped_busy,
            "ticks_failed": statuses.get("FAILURE", 0),
            "runs": len(runs),
            "runs_failed": sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs),
            "runs_overlapping": overlapping_runs(spans),
            "run_s_p50": round(median(durations), 1) if durations else None,
            "run_s_max": round(max(durations), 1) if durations else None,
            "requests": dict(feed.requests),
            "requests_per_run": round(sum(feed.requests.values()) / len(runs), 1) if runs else None,
            "requests_per_trading_day": CadenceCost(n_symbols, 1).requests_per_day,
        }
    )
    realtime["matches_one_shot"] = compare_one_shot(lake, oneshot, syms, day)
    return realtime


def compare_one_shot(lake: Path, oneshot: Path, syms: list[str], day: date) -> str:
    """ "yes", or why gold/BI of ``lake`` on ``day`` differ from one run over the payloads it landed."""
    import dagster as dg

    from stock_lakehouse.lakehouse.reader import read_table
    from stock_lakehouse.runs.materialize import run_materialize

    overrides = {"source": "replay", "replay_dir": str(lake / "landing"), "lake_root": str(oneshot)}
    with dg.DagsterInstance.ephemeral() as instance:
        ok, _, error = run_materialize(syms, day, day, overrides, instance=instance)
    if not ok:
        return f"the one-shot run failed: {error.splitlines()[0]}"
    for table in ("gold", "bi"):
        got, want = (read_table(str(x), table, start=day, end=day).reset_index(drop=True) for x in (lake, oneshot))
        try:
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
        except AssertionError as e:
            return f"{table} differs: {' '.join(str(e).split())[:300]}"
    return "yes"

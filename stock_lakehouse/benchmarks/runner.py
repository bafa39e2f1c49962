"""``stock-lakehouse bench``: the pipeline's cost at several sizes, beside the bare-Spark floor.

Workload W1 is 50 symbols x 21 trading days of 1-minute extended-hours bars (about 1M bars), generated
once by the synthetic generator and replayed. Every figure comes from one invocation, so ratios hold
on a noisy machine. Results go to ``<out>/results.json`` and ``<out>/results.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd

from stock_lakehouse.benchmarks.baseline import run_bare
from stock_lakehouse.benchmarks.run_costs import run_cost, summarize
from stock_lakehouse.benchmarks.workload import compact_workload, month_workload, symbols
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.tables import TABLES, step_name
from stock_lakehouse.runs.event_storage import instance_yaml

if TYPE_CHECKING:
    import dagster as dg
from stock_lakehouse.market_calendar import trading_days
from stock_lakehouse.settings import PACKAGE_DIR

LAYER_STEPS = {table: step_name(table) for table in TABLES}
#: The UI's ways to backfill, each measured on ``dagster dev`` with the daemon (see ``_daemon_scenario``).
#: UI ways that write part of the range (one partition, one day): their figure is launch to SUCCESS, no ratio.
ONE_DAY_WAYS = ("ui_single_partition", "intraday_tick_daemon")
#: Appended to a UI way's key (``--ui-ways``, results): that way without the engine, each run its own Spark.
OWN_SPARK = "_own_spark"
UI_WAYS = {
    "backfill": "UI backfill (asset graph)",
    "ranged_job": "UI ranged_backfill job (Launchpad)",
    # One (symbol, date) of every table, as a click on a partition's Materialize launches it.
    "ui_single_partition": "UI single partition (one click)",
    # Today's partitions of every symbol, as the intraday schedule's tick at 14:00 New York on ``end`` asks.
    "intraday_tick_daemon": "Intraday schedule tick (all symbols, one day)",
}


def _peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory (``VmHWM``), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _jvm_peak_mb() -> float | None:
    from pyspark import SparkContext

    gateway = getattr(SparkContext, "_gateway", None)
    proc = getattr(gateway, "proc", None)
    return None if proc is None else _peak_rss_mb(proc.pid)


def _subset_folder(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for sym in symbols(n):
        for f in src.glob(f"{sym}_*.json"):
            link = dst / f.name
            if not link.exists():
                link.symlink_to(f)
    return dst


def _machine() -> dict[str, object]:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _assert_same_gold(lake: Path, reference_lake: Path, partial: bool = False) -> None:
    """Gold of ``lake`` equals gold of ``reference_lake`` (row order aside); with ``partial``, ``lake`` may hold
    fewer rows, each equal to the reference's row of its (symbol, date)."""
    gold, reference = (
        read_table(str(x), "gold").sort_values(["symbol", "trade_date"]).reset_index(drop=True)
        for x in (lake, reference_lake)
    )
    if partial:
        assert len(gold), f"{lake}: no gold rows"
        reference = gold[["symbol", "trade_date"]].merge(reference, on=["symbol", "trade_date"], how="left")
    pd.testing.assert_frame_equal(gold, reference, check_exact=False, rtol=1e-12)


def _postgres_scenario(n: int, start: date, end: date, replay: Path, work: Path, sqlite: dict) -> dict[str, object]:
    """The CLI at size ``n`` recording its run in PostgreSQL, configured as the compose deployment is."""
    import dagster as dg

    config = PACKAGE_DIR.parent / "docker" / "dagster.yaml"
    if not config.is_file():
        raise RuntimeError(f"{config} not found: --postgres measures the compose instance of a clone")
    home = work / "home_postgres"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(config.read_text())
    lake = work / "lake_cli_postgres"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        cli = _cli_scenario(n, start, end, replay, lake, instance=instance)
    _assert_same_gold(lake, work / f"lake_cli_{n}")
    cli["ratio_to_sqlite_cli"] = round(cli["wall_s"] / sqlite["cli"]["wall_s"], 2)
    cli["ratio_to_bare"] = round(cli["wall_s"] / sqlite["bare_s"], 2)
    cli["event_batch_size"] = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    return cli


def _cli_scenario(
    n: int, start: date, end: date, replay: Path, lake: Path, instance: dg.DagsterInstance
) -> dict[str, object]:
    from stock_lakehouse.runs.materialize import run_materialize

    t0 = time.perf_counter()
    ok, summary, error = run_materialize(
        symbols(n),
        start,
        end,
        {"source": "replay", "replay_dir": str(replay), "lake_root": str(lake)},
        instance=instance,
    )
    wall = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"pipeline failed for {n} symbols: {error}")
    soda = sum(v for k, v in summary.step_seconds.items() if k.startswith("soda_"))
    per_layer = {}
    for layer, step in LAYER_STEPS.items():
        secs = summary.step_seconds.get(step, 0.0)
        per_layer[layer] = {
            "rows": summary.rows.get(layer, 0),
            "seconds": round(secs, 2),
            "rows_per_s": round(summary.rows.get(layer, 0) / secs) if secs else None,
        }
    failed = [name for name, c in summary.checks.items() if not c[0]]
    return {
        "wall_s": round(wall, 2),
        "runs": len(summary.runs),
        "run_costs": summarize([run_cost(instance, run_id) for run_id in summary.runs]),
        "soda_s": round(soda, 2),
        "layers": per_layer,
        "checks": len(summary.checks),
        "checks_not_passed": failed,
    }


def _per_partition_baseline(
    replay: Path, lake: Path, days: list[date], n_partitions_w1: int, home: Path
) -> dict[str, object]:
    """One Dagster run (one process, one JVM) per partition, as with no backfill policy; extrapolated."""
    exe = Path(sys.executable).with_name("stock-lakehouse")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    walls = []
    for d in days:
        t0 = time.perf_counter()
        subprocess.run(
            [
                str(exe),
                "materialize",
                "--symbols",
                symbols(1)[0],
                "--start",
                d.isoformat(),
                "--source",
                "replay",
                "--replay-dir",
                str(replay),
                "--lake-root",
                str(lake),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        walls.append(time.perf_counter() - t0)
    mean = sum(walls) / len(walls)
    return {
        "partitions_measured": len(walls),
        "mean_s_per_partition": round(mean, 2),
        "extrapolated_w1_s": round(mean * n_partitions_w1, 1),
    }


def _daemon_scenario(
    how: str, n: int, start: date, end: date, replay: Path, lake: Path, home: Path, engine: bool = True
) -> dict[str, object]:
    """A UI way, on ``dagster dev`` with the daemon executing: ``how`` is "backfill" (the asset graph's
    Materialize dialog: GraphQL launchPartitionBackfill), "ranged_job" (the ``ranged_backfill`` job's
    Launchpad: GraphQL launchRun) or "ui_single_partition" (the last symbol on ``end``, launched as one
    partition's Materialize click does). With ``engine``, the warm engine runs beside ``dagster dev`` and
    every run is its client, as ``make dev`` has it; its start is not timed (it is up before any click)."""
    import dagster as dg

    from stock_lakehouse.assets.keys import ensure_writer_pools
    from stock_lakehouse.local_processes import dagster_dev_process, descendants, engine_process
    from stock_lakehouse.market_calendar import EXCHANGE_TZ
    from stock_lakehouse.partitions import sync_symbols
    from stock_lakehouse.runs.backfill import (
        launch_backfill,
        launch_partition_run,
        launch_ranged_backfill,
        launch_schedule_tick,
        wait_backfill,
        wait_run,
    )
    from stock_lakehouse.runs.instance_home import write_instance_config
    from stock_lakehouse.wiring import LAKEHOUSE_JOB

    home.mkdir(parents=True, exist_ok=True)
    # The instance `make dev` makes (the project's dagster.yaml: two runs at a time, one writer per table,
    # run monitoring), prepared as `make dev` prepares it (symbols, writer pools).
    write_instance_config(home)
    instance = dg.DagsterInstance.from_config(str(home))
    sync_symbols(instance, symbols(n))
    ensure_writer_pools(instance)
    env = {
        "STOCK_LAKEHOUSE_SOURCE": "replay",
        "STOCK_LAKEHOUSE_REPLAY_DIR": str(replay),
        "STOCK_LAKEHOUSE_LAKE_ROOT": str(lake),
        "STOCK_LAKEHOUSE_SYMBOLS": ",".join(symbols(n)),
    }
    with contextlib.ExitStack() as stack:
        engine_s = engine_rss = None
        if engine:
            t = time.perf_counter()
            engine_url, engine_proc = stack.enter_context(engine_process(home / "engine.log", {**os.environ, **env}))
            engine_s = round(time.perf_counter() - t, 1)
            env["STOCK_LAKEHOUSE_SPARK_REMOTE"] = engine_url
        url, _ = stack.enter_context(dagster_dev_process(home, env))
        t0 = time.perf_counter()
        if how == "ui_single_partition":
            status = wait_run(f"{url}/graphql", launch_partition_run(f"{url}/graphql", symbols(n)[-1], end), 3600)
        elif how == "intraday_tick_daemon":
            when = datetime.combine(end, dtime(14, 0), ZoneInfo(EXCHANGE_TZ))
            run_ids = launch_schedule_tick(f"{url}/graphql", "intraday_refresh", when, LAKEHOUSE_JOB)
            statuses = {wait_run(f"{url}/graphql", run_id, 3600) for run_id in run_ids}
            status = statuses.pop() if len(statuses) == 1 else "MIXED: " + ",".join(sorted(statuses))
        elif how == "backfill":
            backfill_id = launch_backfill(f"{url}/graphql", symbols(n), start, end, title="benchmark")
            status = wait_backfill(f"{url}/graphql", backfill_id, timeout=3600)["status"]
        else:
            run_id = launch_ranged_backfill(f"{url}/graphql", symbols(n), start, end)
            status = wait_run(f"{url}/graphql", run_id, timeout=3600)
        wall = time.perf_counter() - t0
        if engine:
            engine_rss = sum(_peak_rss_mb(pid) or 0 for pid in [engine_proc.pid, *descendants(engine_proc.pid)])
        run_ids = [r.run_id for r in instance.get_runs()]  # this instance holds only this scenario's runs
        return {
            "wall_s": round(wall, 2),
            "status": status,
            "runs": len(run_ids),
            "engine": engine,
            "engine_start_s": engine_s,
            "engine_peak_rss_mb": engine_rss and round(engine_rss),
            "run_costs": summarize([run_cost(instance, run_id) for run_id in run_ids]),
        }


def run(
    sizes: list[int],
    start: date,
    end: date,
    out: Path,
    ui_ways: Sequence[str],
    per_partition: int,
    workdir: Path | None = None,
    postgres: bool = False,
    bi: bool = True,
) -> dict:
    """Run every scenario and write results.json and results.md under ``out``.

    Args:
        ui_ways: keys of ``UI_WAYS`` to measure on ``dagster dev`` with the warm engine beside it (as ``make
            dev``), or such a key with ``OWN_SPARK`` appended: without the engine, each run its own Spark.
        postgres: also run the CLI at the largest size on the PostgreSQL instance ``docker/dagster.yaml``
            describes (the ``DAGSTER_POSTGRES_*`` environment names the server; its database should be new).
        bi: also serve the largest CLI lake with ``bi-server`` and time a BI-style query (``bi_query.py``).
    """
    from stock_lakehouse.lakehouse.spark import SparkResource, sessions_started

    work = Path(workdir or tempfile.mkdtemp(prefix="stock_lakehouse_bench_"))
    # A kept workdir reuses the generated payloads of the same date range only; lakes and instances are
    # measured new every time (a second write into an old lake is a different measurement).
    for old in [*work.glob("lake_*"), *work.glob("home*")]:
        shutil.rmtree(old, ignore_errors=True)
    payloads = work / "payloads" / f"{start}_{end}"

    def replay(n: int) -> Path:
        """The payloads of the first ``n`` symbols (a folder of links, made once)."""
        return _subset_folder(payloads, payloads.with_name(f"{payloads.name}_replay_{n}"), n)

    (work / "home").mkdir(parents=True, exist_ok=True)
    (work / "home" / "dagster.yaml").write_text(instance_yaml(work / "home"))
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(work / "home"))  # the CLI contenders' runs
    days = trading_days(start, end)
    top = max(sizes)
    t = time.perf_counter()
    bars_top = month_workload(payloads, top, start, end)
    gen_s = time.perf_counter() - t

    t = time.perf_counter()
    spark = SparkResource().get_session()
    jvm_s = time.perf_counter() - t
    # One untimed CLI run of 1 symbol first: the JIT, Delta's first table and the imports are warm for every
    # contender, not only for those measured after the first (measured: the first run's bronze step took
    # 63 s, the same step 29 s in a later run of the same invocation). The report gives its time.
    t = time.perf_counter()
    _cli_scenario(1, start, end, replay(1), work / "lake_warmup", instance)
    warmup_s = time.perf_counter() - t
    res: dict[str, object] = {
        "machine": _machine(),
        "workload": {
            "symbols": sizes,
            "days": len(days),
            "start": str(start),
            "end": str(end),
            "bars_at_largest": bars_top,
            "generation_s": round(gen_s, 1),
        },
        "jvm_start_s": round(jvm_s, 2),
        "warmup_s": round(warmup_s, 2),
        "sizes": [],
    }
    for n in sorted(sizes):
        folder = replay(n)
        cli = _cli_scenario(n, start, end, folder, work / f"lake_cli_{n}", instance)
        bare = run_bare(spark, folder, str(work / f"lake_bare_{n}"))
        _assert_same_gold(work / f"lake_cli_{n}", work / f"lake_bare_{n}")
        bars = cli["layers"]["bronze"]["rows"]
        res["sizes"].append(
            {
                "symbols": n,
                "partitions": n * len(days),
                "bars": bars,
                "cli": cli,
                "bare_s": round(bare["total"], 2),
                "bare_stages_s": {k: round(v, 2) for k, v in bare.items()},
                "ratio_cli_to_bare": round(cli["wall_s"] / bare["total"], 2),
            }
        )
    if bi:
        from stock_lakehouse.benchmarks.bi_query import measure_bi_query

        res["bi_query"] = measure_bi_query(work / f"lake_cli_{top}", symbols(top)[0], start, end, work / "bi.log")
    if postgres:
        res["postgres"] = _postgres_scenario(top, start, end, replay(top), work, res["sizes"][-1])
    compact = compact_workload(work / "compact", top, days[-1])
    t = time.perf_counter()
    from stock_lakehouse.runs.materialize import run_materialize

    ok, summ, err = run_materialize(
        symbols(top),
        days[-1],
        days[-1],
        {"source": "replay", "replay_dir": str(work / "compact"), "lake_root": str(work / "lake_intraday")},
        instance=instance,
    )
    if not ok:
        raise RuntimeError(f"intraday refresh failed: {err}")
    res["intraday_refresh"] = {
        "symbols": top,
        "bars": compact,
        "wall_s": round(time.perf_counter() - t, 2),
        "runs": len(summ.runs),
    }
    res["spark_sessions_in_process"] = sessions_started()
    res["python_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    res["jvm_peak_rss_mb"] = _jvm_peak_mb()
    if per_partition:
        res["one_run_per_partition"] = _per_partition_baseline(
            replay(min(sizes)), work / "lake_pp", days[:per_partition], top * len(days), work / "home"
        )
    for key in ui_ways:
        how = key.removesuffix(OWN_SPARK)
        lake = work / f"lake_{key}"
        res[key] = _daemon_scenario(how, top, start, end, replay(top), lake, work / f"home_{key}", key == how)
        _assert_same_gold(lake, work / f"lake_bare_{top}", partial=how in ONE_DAY_WAYS)
        res[key]["ratio_to_cli"] = round(res[key]["wall_s"] / res["sizes"][-1]["cli"]["wall_s"], 2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "results.md").write_text(markdown(res))
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return res


def markdown(res: dict) -> str:
    """The results as a markdown report."""
    m, w = res["machine"], res["workload"]
    lines = [
        f"Machine: {m['cpus']} cores, {m['memory_gib']} GiB, Python {m['python']}. Workload: 1-minute extended-hours bars, "
        f"{w['days']} trading days {w['start']}..{w['end']}; JVM start {res['jvm_start_s']} s; an untimed warm-up "
        f"run of 1 symbol first ({res['warmup_s']} s), so no contender pays the cold JIT alone.",
        "",
        "| symbols | partitions | bars | pipeline (CLI, with Soda) s | runs | check steps s | bare Spark s | ratio | bronze rows/s | silver rows/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["sizes"]:
        c = s["cli"]
        lines.append(
            f"| {s['symbols']} | {s['partitions']} | {s['bars']:,} | {c['wall_s']} | {c['runs']} | {c['soda_s']} | {s['bare_s']} | "
            f"{s['ratio_cli_to_bare']} | {c['layers']['bronze']['rows_per_s']} | {c['layers']['silver']['rows_per_s']} |"
        )
    lines.append("")
    largest = res["sizes"][-1]
    cli_total = largest["cli"]["wall_s"] + res["jvm_start_s"]
    lines.append(
        f"- Largest size as one CLI invocation (JVM start included): {cli_total:.1f} s; JVM start-up is "
        f"{100 * res['jvm_start_s'] / cli_total:.0f} %, check steps {100 * largest['cli']['soda_s'] / cli_total:.0f} %."
    )
    ir = res["intraday_refresh"]
    lines.append(
        f"- Intraday refresh, today's partition for {ir['symbols']} symbols from compact payloads: {ir['wall_s']} s in {ir['runs']} run(s)."
    )
    if "one_run_per_partition" in res:
        pp = res["one_run_per_partition"]
        speedup = pp["extrapolated_w1_s"] / cli_total
        lines.append(
            f"- One run per partition (new process and JVM each): {pp['mean_s_per_partition']} s per partition, "
            f"{pp['extrapolated_w1_s']} s extrapolated to the largest size: {speedup:.0f}x slower than the CLI."
        )
    if "bi_query" in res:
        b = res["bi_query"]
        lines.append(
            f"- BI endpoint (bi-server) over the largest CLI lake: ready in {b['start_s']} s; a BI query (one symbol, "
            f"the range, ordered; {b['rows']} rows) first {b['first_s']} s, warm median {b['warm_median_s']} s "
            f"({b['warm_min_s']}..{b['warm_max_s']} s, {b['repeats']} runs)."
        )
    if "postgres" in res:
        pg = res["postgres"]
        lines.append(
            f"- CLI recording its run in PostgreSQL (docker/dagster.yaml, DAGSTER_EVENT_BATCH_SIZE="
            f"{pg['event_batch_size']}): {pg['wall_s']} s ({pg['ratio_to_sqlite_cli']}x the CLI on SQLite, "
            f"{pg['ratio_to_bare']}x the bare script)."
        )
    for key, name in _ui_scenarios(res):
        d = res[key]
        # One partition against the whole CLI range is no ratio: its figure is launch to SUCCESS.
        against = "" if key.startswith(ONE_DAY_WAYS) else f" ({d['ratio_to_cli']}x the CLI)"
        engine = (
            f"; the engine (started in {d['engine_start_s']} s, untimed) peaked at {d['engine_peak_rss_mb']} MB"
            if d.get("engine")
            else ""
        )
        lines.append(
            f"- {name}, launched through GraphQL as the UI does, the daemon executing: {d['wall_s']} s"
            f"{against}, {d['runs']} runs, {d['run_costs']['jvms_started']} JVMs, status {d['status']}{engine}."
        )
    lines += ["", *cost_table(res), ""]
    lines.append(
        f"- Peak memory: Python {res['python_peak_rss_mb']} MB, JVM {res['jvm_peak_rss_mb'] and round(res['jvm_peak_rss_mb'])} MB; "
        f"Spark sessions started in the benchmark process: {res['spark_sessions_in_process']}."
    )
    return "\n".join(lines) + "\n"


def _ui_scenarios(res: dict) -> list[tuple[str, str]]:
    """The UI ways in ``res``: (results key, name), with the engine and with each run's own Spark."""
    found = []
    for how, name in UI_WAYS.items():
        if how in res:
            found.append((how, f"{name}{', warm engine' if res[how].get('engine') else ''}"))
        if f"{how}{OWN_SPARK}" in res:
            found.append((f"{how}{OWN_SPARK}", f"{name}, each run its own Spark"))
    return found


def cost_table(res: dict) -> list[str]:
    """Where the runs' time went, per scenario (run-seconds summed over runs; see ``run_costs.py``)."""
    scenarios = [(f"CLI, {s['symbols']} symbols", s["cli"]["run_costs"]) for s in res["sizes"]]
    scenarios += [(name, res[key]["run_costs"]) for key, name in _ui_scenarios(res)]
    if "postgres" in res:
        scenarios.append(("CLI on PostgreSQL", res["postgres"]["run_costs"]))
    lines = [
        "| runs of | runs | JVMs | queued s | process + definitions s | JVM start s | executing s | Soda scans s | events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in scenarios:
        lines.append(
            f"| {name} | {c['runs']} | {c['jvms_started']} | {c['queued_s']} | {c['launch_s']} | {c['spark_start_s']} | "
            f"{c['execution_s']} | {c['soda_scan_s']} | {c['events']:,} |"
        )
    return lines

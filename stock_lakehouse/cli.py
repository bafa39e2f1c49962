"""``stock-lakehouse``: run the pipeline and read tables from a terminal, without the UI.

The work itself lives in ``materialize.py`` (shared with the benchmark); this module parses options and
prints results.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stock_lakehouse.engine.server import DEFAULT_PORT as ENGINE_PORT
from stock_lakehouse.lakehouse.tables import TABLES, VIEWS, sql_name
from stock_lakehouse.runs.instance_home import open_instance
from stock_lakehouse.settings import PACKAGE_DIR, Settings, SettingsError, config_file_path, load_settings
from stock_lakehouse.symbols import validate_symbols

# The run service (with Dagster's storage modules, ~1.7 s) is imported where used: `--help` and errors need not pay.
if TYPE_CHECKING:
    import pandas as pd

    from stock_lakehouse.runs.materialize import Summary

DEMO_SYMBOLS = ("NVDA",)
DEMO_START, DEMO_END = "2024-03-01", "2024-03-12"


def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a YYYY-MM-DD date", param_hint=name) from None


def _symbols(value: str | None, option: str = "--symbols") -> list[str] | None:
    if not value:
        return None
    try:
        return validate_symbols([s for s in value.split(",") if s.strip()], option)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


class SettingsFailure(click.ClickException):
    """Settings that cannot be used (file, environment, an option), shown as one line: ``error: ...``
    naming the setting and where it came from."""

    def __init__(self, exc: SettingsError) -> None:
        from stock_lakehouse.runs.root_cause import redact

        # A YAML error spreads over lines (the mark under the column): one line, still naming the file.
        super().__init__(redact(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())))

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Commands(click.Group):
    """The command group: every command that loads settings, now or later, reports a ``SettingsError`` the
    same way (``SettingsFailure``), instead of each command catching it, or none and a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise SettingsFailure(exc) from None


@click.group(cls=_Commands)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Settings file (else $STOCK_LAKEHOUSE_CONFIG or ./config/stock_lakehouse.yaml).",
)
@click.option(
    "--log-level",
    help="Also print Dagster's own log lines of runs from this level (DEBUG, INFO, WARNING, ...). Default: "
    "none; warnings are printed in one line each, a failure as its cause, with details in a log file.",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None, log_level: str) -> None:
    """stock-lakehouse: intraday bars to Bronze/Silver/Gold/BI Delta tables."""
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    ctx.obj = {"log_level": log_level.upper() if log_level else None, "config": config_file}


def _settings(**overrides: object) -> Settings:
    """The command's settings: ``--config`` (else the usual lookup), the environment, then ``overrides``."""
    return load_settings(config_file_path(click.get_current_context().find_root().obj["config"]), overrides=overrides)


def _materialize_and_report(symbols, start, end, overrides) -> None:
    from stock_lakehouse.runs.materialize import LAYERS, MaterializeError, run_materialize
    from stock_lakehouse.runs.progress import RunProgress
    from stock_lakehouse.runs.root_cause import exception_root_cause

    t0 = time.perf_counter()
    log_level = click.get_current_context().obj["log_level"]
    settings = _settings(**overrides)
    try:
        # Dagster's console lines are off by default: the progress display shows the run, and a failure is
        # reported below as its cause, with the details in a log file.
        with RunProgress(LAYERS) as progress:
            ok, summary, error = run_materialize(
                symbols, start, end, log_level=log_level or "CRITICAL", progress=progress, settings=settings
            )
    except SettingsError:
        raise  # one line, as every command's (_Commands)
    except MaterializeError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        _fail([f"error: {exception_root_cause(exc)}"], time.perf_counter() - t0, exc=exc)
    from stock_lakehouse.lakehouse.spark import sessions_started

    elapsed = time.perf_counter() - t0
    instance = open_instance()  # the one the runs were recorded in (opened by the run service after its checks)
    if not ok:
        _report_failure(error, summary, elapsed, settings.lake.uri, instance)
    if log_level is None:
        _report_warnings(summary.runs, instance)
    if summary.recovered:
        dead = ", ".join(f"{r.run_id} (pid {r.pid})" for r in summary.recovered)
        click.echo(f"recovered: marked failed and freed the pool slots of runs whose process died: {dead}")
    _report_checks(summary)
    click.echo(f"lake: {settings.lake.uri}   source: {settings.source}")
    click.echo(f"runs: {len(summary.runs)}   spark sessions: {sessions_started()}")
    click.echo(f"{'layer':<8}{'rows':>10}{'partitions':>12}{'delta version':>15}")
    for layer, _ in LAYERS:
        rows, parts, version = (
            summary.rows.get(layer, 0),
            summary.partitions.get(layer, 0),
            summary.versions.get(layer, "-"),
        )
        click.echo(f"{layer:<8}{rows:>10}{parts:>12}{version:>15}")
    click.echo(f"elapsed: {elapsed:.1f}s   run ids: {', '.join(summary.runs)}")
    if summary.withheld:
        # A partial success is still something to look at: name each withheld partition, exit non-zero.
        click.echo(f"withheld from gold and BI (too many invalid bars; previous rows kept): {len(summary.withheld)}")
        for described in summary.withheld[:20]:
            click.echo(f"  {described}")
        click.echo("  see: stock-lakehouse show quarantine --symbols ... ; correct the source and run again to release")
        sys.exit(3)


def _report_failure(error: str, summary: Summary, elapsed: float, lake: str, instance) -> None:
    """Print the cause first, then where, what to do and the log file's path (at most ~10 lines); exit 1."""
    cause, *context = error.splitlines() or ["unknown error"]
    lines = [f"error: {cause}", *(f"  {c}" for c in context)]
    if summary.recovered:
        lines.append(f"  before the run, {len(summary.recovered)} run(s) of dead processes were marked failed")
    bad = sorted(name for name, (passed, _, _) in summary.checks.items() if not passed)
    if bad:
        lines.append(f"  checks not passed: {', '.join(bad[:5])}{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}")
    lines.append(f"  what to do: {_advice(cause, lake)}")
    _fail(lines, elapsed, instance=instance, run_id=summary.runs[-1] if summary.runs else None)


def _advice(cause: str, lake: str) -> str:
    low = cause.lower()
    if "no space left on device" in low or "disk quota exceeded" in low:
        return f"free disk space where the lake is ({lake}), then run the same command again"
    if "spark engine" in low:
        return "start the engine (`stock-lakehouse engine`, or `make dev`) or unset spark.remote, then run again"
    if any(s in low for s in ("connection refused", "connectexception", "unknownhost", "timed out", "unreachable")):
        return "check that the store is up and s3.endpoint / STOCK_LAKEHOUSE_S3_ENDPOINT, then run again"
    if Path(cause.split(": ", 1)[0]).is_file():  # a recorded response that cannot be used
        return "fix or remove the file named above (or choose another --replay-dir), then run the same command again"
    if "outofmemoryerror" in low or "java heap space" in low:
        return "raise spark.driver_memory in the config file, or materialize fewer symbols or dates at once"
    return "fix the cause above, then run the same command again (re-runs overwrite the same partitions)"


def _fail(lines: list[str], elapsed: float, instance=None, run_id: str | None = None, exc=None) -> None:
    """Write the failure log, print ``lines`` (cause first) and its path on stderr, exit 1."""
    from stock_lakehouse.runs.root_cause import redact
    from stock_lakehouse.runs.run_log import write_failure_log

    try:
        log = str(write_failure_log(lines, instance, run_id, exc))
    except Exception as log_exc:  # the disk may be full: the cause still reaches the terminal
        log = f"(not written: {log_exc})"
    for line in lines:
        click.echo(redact(line), err=True)
    click.echo(f"  details: {log}", err=True)
    click.echo(f"FAILED after {elapsed:.1f}s", err=True)
    sys.exit(1)


def _report_warnings(run_ids: list[str], instance, limit: int = 5) -> None:
    """The runs' own warnings (``context.log.warning``), one line each; the rest are in the event log."""
    from stock_lakehouse.runs.run_log import run_warnings

    found = [w for run_id in run_ids for w in run_warnings(instance, run_id)]
    for line in found[:limit]:
        click.echo(f"warning: {line[:300]}", err=True)
    if len(found) > limit:
        click.echo(f"warning: ... and {len(found) - limit} more (see the runs in the UI)", err=True)


def _report_checks(summary: Summary) -> None:
    if not summary.checks:
        return
    bad = {n: c for n, c in summary.checks.items() if not c[0]}
    click.echo(f"checks: {len(summary.checks) - len(bad)} passed, {len(bad)} not passed")
    for name, (_, severity, meta) in sorted(bad.items()):
        click.echo(
            f"  {severity:<5} {name}: measured {meta.get('soda_value', '-')} ({meta.get('outcome', '')})", err=True
        )


_source_opts = [
    click.option(
        "--source",
        type=click.Choice(["replay", "synthetic", "alphavantage"]),
        help="Bar source [env STOCK_LAKEHOUSE_SOURCE].",
    ),
    click.option(
        "--replay-dir",
        type=click.Path(file_okay=False),
        help="Folder of recorded JSON responses [env STOCK_LAKEHOUSE_REPLAY_DIR].",
    ),
    click.option("--lake-root", help="Local folder or s3a:// root of the tables [env STOCK_LAKEHOUSE_LAKE_ROOT]."),
]


def _with_source_opts(fn):
    for opt in reversed(_source_opts):
        fn = opt(fn)
    return fn


@main.command()
@click.option("--symbols", help="Comma-separated symbols (default: the configured ones).")
@click.option("--start", required=True, help="First trade date, YYYY-MM-DD.")
@click.option("--end", help="Last trade date, YYYY-MM-DD (default: start).")
@click.option(
    "--allow-empty-overwrite",
    is_flag=True,
    default=None,
    help="Let a source with no bars for a partition erase its existing rows (default: keep them, warn).",
)
@_with_source_opts
def materialize(symbols, start, end, allow_empty_overwrite, source, replay_dir, lake_root) -> None:
    """Materialize bronze -> silver -> gold -> BI for symbols x a date range."""
    start_d = _parse_date(start, "--start")
    end_d = _parse_date(end, "--end") if end else start_d
    overrides = {
        "source": source,
        "replay_dir": replay_dir,
        "lake_root": lake_root,
        "allow_empty_overwrite": allow_empty_overwrite,
    }
    _materialize_and_report(_symbols(symbols), start_d, end_d, overrides)


@main.command()
@click.option("--lake-root", help="Where to write the tables (default: the configured lake root).")
def demo(lake_root) -> None:
    """Materialize the bundled NVDA sample (8 trading days, 2024-03-01..12) and print a summary."""
    overrides = {"source": "replay", "replay_dir": str(PACKAGE_DIR / "sample_data"), "lake_root": lake_root}
    _materialize_and_report(list(DEMO_SYMBOLS), date.fromisoformat(DEMO_START), date.fromisoformat(DEMO_END), overrides)


@main.command()
@click.argument("table", type=click.Choice([*TABLES, *VIEWS]))
@click.option("--symbols", help="Comma-separated symbols (default: all).")
@click.option("--start", help="First trade date.")
@click.option("--end", help="Last trade date.")
@click.option("--version", "version", type=int, help="Read the table as of this Delta version (time travel).")
@click.option("--columns", help="Comma-separated columns to print.")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows to print (0 = all).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@click.option("--lake-root", help="Lake root (default: the configured one).")
def show(table, symbols, start, end, version, columns, limit, fmt, lake_root) -> None:
    """Print a table's rows for symbols and a date range (reads Delta directly, no Spark).

    ``quarantine`` is silver's invalid bars (``is_valid = false``) with their ``dq_reason``.
    """
    settings = _settings(lake_root=lake_root)
    try:
        df = settings.lake.read(
            table,
            _symbols(symbols),
            _parse_date(start, "--start") if start else None,
            _parse_date(end, "--end") if end else None,
            version,
        )
    except OSError as exc:  # no such table, or the store cannot be read
        raise click.ClickException(str(exc)) from None
    if columns:
        wanted = [c.strip() for c in columns.split(",")]
        unknown = [c for c in wanted if c not in df.columns]
        if unknown:
            raise click.ClickException(f"unknown columns {unknown}; {table} has {list(df.columns)}")
        df = df[wanted]
    total = len(df)
    _echo_frame(df.head(limit) if limit else df, fmt)
    if fmt == "text":
        click.echo(f"({total} rows{'; showing ' + str(limit) if limit and limit < total else ''})", err=True)


def _echo_frame(df: pd.DataFrame, fmt: str) -> None:
    """Rows as text (a table), CSV or JSON records on stdout."""
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso"))
    else:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 30):
            click.echo(df.to_string(index=False) if len(df) else "(no rows)")


#: SQL view name -> table: each table by its SQL name (``bi_stock_daily``) and by its short name.
SQL_VIEWS = {**{sql_name(t): t for t in TABLES}, **{t: t for t in TABLES}}


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@click.option("--lake-root", help="Lake root (default: the configured one).")
def sql(query, fmt, lake_root) -> None:
    """Run a read-only SQL query (DuckDB over the Delta tables, no Spark), e.g.
    ``SELECT symbol, avg(close) FROM bi_stock_daily GROUP BY 1``.

    Views: intraday_bars, stock_clean, daily_kpis, bi_stock_daily, signals (also bronze, silver, gold, bi).
    """
    import duckdb

    settings = _settings(lake_root=lake_root)
    con = duckdb.connect()
    found = 0
    for view, table in SQL_VIEWS.items():
        try:
            con.register(view, settings.lake.dataset(table))
            found += 1
        except FileNotFoundError:
            continue  # not materialized yet: the query names it only if it needs it
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    if not found:
        raise click.ClickException(f"no tables under {settings.lake.uri}; materialize some first")
    # Read-only: the views are the only data the query can reach (no files, no extensions).
    con.execute("SET enable_external_access = false; SET lock_configuration = true")
    try:
        df = con.execute(query).df()
    except duckdb.Error as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    _echo_frame(df, fmt)


@main.command("sync-symbols")
def sync_symbols_cmd() -> None:
    """Prepare the instance for the configured symbols: add them to the symbol partitions (the UI then
    lists them) and give each table's writer pool its limit (see ``assets.keys.ensure_writer_pools``).
    Idempotent; the compose deployment runs it on every start."""
    from stock_lakehouse.assets.keys import ensure_writer_pools
    from stock_lakehouse.partitions import sync_symbols

    settings = _settings()
    instance = open_instance()
    added = sync_symbols(instance, settings.all_symbols)
    pools = ensure_writer_pools(instance)
    click.echo(f"added: {', '.join(added) or 'none'}; configured: {', '.join(settings.all_symbols)}")
    if pools:
        click.echo(f"writer pools created: {', '.join(pools)}")


@main.command("provision-store")
def provision_store() -> None:
    """Create the lake's bucket on MinIO and the application's user, allowed that bucket only.

    Run with the store's root login in MINIO_ROOT_USER / MINIO_ROOT_PASSWORD and the application's keys
    in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the keys every other command then uses). The bucket
    and endpoint are the configured lake's. Idempotent; the compose deployment runs it on every start.
    """
    from stock_lakehouse.lakehouse.store_access import Keys, StoreAccessError, provision_bucket_user

    lake = _settings().lake
    if lake.bucket is None:
        raise click.ClickException(f"lake_root {lake.uri} is a local folder: there is no bucket to provision")
    admin = Keys(os.environ.get("MINIO_ROOT_USER", ""), os.environ.get("MINIO_ROOT_PASSWORD", ""))
    app = Keys(os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    try:
        done = provision_bucket_user(lake.s3, lake.bucket, admin, app)
    except StoreAccessError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"bucket {done.bucket}: {'created' if done.bucket_created else 'exists'}; the application's user may "
        f"use it and no other bucket (policy {done.policy})"
    )


@main.command()
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, help="Dagster webserver.")
@click.option("--symbols", help="Comma-separated symbols (default: the configured ones).")
@click.option("--start", required=True, help="First trade date.")
@click.option("--end", help="Last trade date (default: start).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the backfill to finish.")
@click.option(
    "--ranged",
    is_flag=True,
    help="Launch the ranged_backfill job (one run, one JVM for the selection) instead of an asset backfill.",
)
@click.option(
    "--confirm-large",
    is_flag=True,
    help="With --ranged: run a selection over automation.ranged_backfill_max_partitions partitions.",
)
def backfill(url, symbols, start, end, wait, ranged, confirm_large) -> None:
    """Launch a backfill of all layers on a running webserver (the daemon executes it), like the UI."""
    from stock_lakehouse.runs.backfill import (
        BackfillError,
        launch_backfill,
        launch_ranged_backfill,
        wait_backfill,
        wait_run,
    )

    start_d = _parse_date(start, "--start")
    end_d = _parse_date(end, "--end") if end else start_d
    syms = _symbols(symbols) or _settings().all_symbols
    graphql_url = url.rstrip("/") + "/graphql"
    try:
        if ranged:
            run_id = launch_ranged_backfill(graphql_url, syms, start_d, end_d, confirm_large=confirm_large)
            click.echo(f"ranged_backfill run {run_id}: {len(syms)} symbol(s) x {start_d}..{end_d}")
            if wait:
                status = wait_run(graphql_url, run_id)
                click.echo(f"ranged_backfill run {run_id}: {status}")
                if status != "SUCCESS":
                    sys.exit(1)
            return
        backfill_id = launch_backfill(graphql_url, syms, start_d, end_d)
        click.echo(f"backfill {backfill_id}: {len(syms)} symbol(s) x {start_d}..{end_d}")
        if wait:
            status = wait_backfill(graphql_url, backfill_id)
            click.echo(f"backfill {backfill_id}: {status['status']}, {len(status['runs'])} run(s)")
            if status["status"] not in ("COMPLETED", "COMPLETED_SUCCESS"):
                sys.exit(1)
    except (BackfillError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--sizes", default="1,5,20,50", show_default=True, help="Symbol counts to measure.")
@click.option("--start", default="2024-04-01", show_default=True)
@click.option("--end", default="2024-04-29", show_default=True, help="21 trading days by default (W1).")
@click.option("--out", default="bench-results", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--daemon/--no-daemon", default=True, show_default=True, help="Also measure the UI's ways, the daemon executing."
)
@click.option(
    "--ui-ways",
    default="backfill,ranged_job,ui_single_partition",
    show_default=True,
    help="Which UI ways --daemon measures: backfill (asset graph), ranged_job (ranged_backfill Launchpad), "
    "ui_single_partition (one partition's Materialize click), intraday_tick_daemon (the intraday schedule's "
    "tick at 14:00 New York on --end, as the UI's Test schedule launches it). Each with the warm engine beside "
    "dagster dev, as make dev has it; append _own_spark (ui_single_partition_own_spark) for a way without it.",
)
@click.option(
    "--postgres/--no-postgres",
    default=False,
    show_default=True,
    help="Also run the CLI on the PostgreSQL instance of docker/dagster.yaml (DAGSTER_POSTGRES_* set).",
)
@click.option(
    "--per-partition", default=3, show_default=True, help="Partitions for the one-run-per-partition baseline (0: skip)."
)
@click.option(
    "--bi/--no-bi", default=True, show_default=True, help="Also time a BI query through bi-server (HiveServer2)."
)
@click.option(
    "--workdir", type=click.Path(file_okay=False), help="Keep workloads and lakes here (default: a temp dir)."
)
@click.option(
    "--session-minutes",
    type=click.IntRange(1, 390),
    help="Also run a simulated session this long (dagster dev, the daemon and the warm engine on a simulated clock, "
    "a 1-minute intraday refresh from a feed over a socket) and report lag from bar close to gold/BI (results.json "
    "'realtime'). Given with --session-* options only, the other contenders are left out.",
)
@click.option("--session-symbols", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option(
    "--session-speed",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (1: honest timings).",
)
@click.option(
    "--session-delay-seconds",
    type=click.FloatRange(0, 55),
    default=5.0,
    show_default=True,
    help="From a bar's close to the feed publishing it.",
)
def bench(
    sizes,
    start,
    end,
    out,
    daemon,
    ui_ways,
    postgres,
    per_partition,
    bi,
    workdir,
    session_minutes,
    session_symbols,
    session_speed,
    session_delay_seconds,
) -> None:
    """Benchmark the full backfill against a bare Spark script; prints a markdown table. With
    ``--session-minutes``, also (or only) the lag of a simulated session."""
    import json

    from click.core import ParameterSource

    from stock_lakehouse.benchmarks.runner import OWN_SPARK, UI_WAYS, markdown, run

    ctx = click.get_current_context()
    others = [p for p in ctx.params if not p.startswith("session_") and p not in ("out", "workdir")]
    only_session = session_minutes is not None and all(
        ctx.get_parameter_source(p) != ParameterSource.COMMANDLINE for p in others
    )

    def session() -> dict:
        from stock_lakehouse.benchmarks.session import run_session

        return run_session(
            session_minutes,
            session_symbols,
            Path(workdir) if workdir else None,
            speed=session_speed,
            delay_seconds=session_delay_seconds,
        )

    if only_session:
        realtime = session()
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.json").write_text(json.dumps({"realtime": realtime}, indent=2))
        click.echo(json.dumps(realtime, indent=2))
        return
    ways = [w.strip() for w in ui_ways.split(",") if w.strip()] if daemon else []
    unknown = [w for w in ways if w.removesuffix(OWN_SPARK) not in UI_WAYS]
    if unknown:
        known = ", ".join(UI_WAYS)
        raise click.BadParameter(
            f"{unknown[0]!r} is not one of {known} (or one with {OWN_SPARK})", param_hint="--ui-ways"
        )
    res = run(
        [int(s) for s in sizes.split(",")],
        _parse_date(start, "--start"),
        _parse_date(end, "--end"),
        Path(out),
        ways,
        per_partition,
        Path(workdir) if workdir else None,
        postgres=postgres,
        bi=bi,
    )
    if session_minutes is not None:
        res["realtime"] = session()
        (Path(out) / "results.json").write_text(json.dumps(res, indent=2))
    click.echo(markdown(res))


@main.command("setup-jars")
def setup_jars() -> None:
    """Resolve the Delta, S3A and Spark Connect jars into the Ivy cache (needs Maven Central once)."""
    import subprocess

    from stock_lakehouse.lakehouse.spark import cached_jars

    if cached_jars(engine=True):
        click.echo("jars already cached")
        return
    # Ivy's resolution report (~40 lines) matters only when resolution fails: start Spark in a child
    # process, keep its output, and show the end of it on failure.
    click.echo("resolving the Delta and S3A jars (Maven Central, once)...")
    code = (
        "from stock_lakehouse.lakehouse.spark import SparkResource as R; r = R(); "
        "r.get_session(r.spark_conf(engine=True)).stop()"
    )
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not cached_jars(engine=True):
        tail = "\n".join(done.stdout.splitlines()[-25:])
        raise click.ClickException(
            f"resolving the Delta and S3A jars failed (is Maven Central reachable?); the end of Spark's output:\n{tail}"
        )
    click.echo("jars cached")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (loopback: only here).")
@click.option("--port", type=int, default=8050, show_default=True, help="Port to serve on.")
@click.option("--lake-root", help="Lake root (default: the configured one).")
@click.option(
    "--refresh-seconds",
    type=click.IntRange(0, 86400),
    default=60,
    show_default=True,
    help="Re-read the lake and redraw the page this often (0: only on reload); the page shows when it read "
    "and how far the newest bar is behind.",
)
def dashboard(host, port, lake_root, refresh_seconds) -> None:
    """Serve a read-only web dashboard: a symbol's prices, indicators, anomalies, quarantined bars and
    freshness (reads Delta directly, no Spark); it follows the session by itself (``--refresh-seconds``)."""
    import dataclasses

    from stock_lakehouse.dashboard.app import serve
    from stock_lakehouse.dashboard.data import LakeData

    data = dataclasses.replace(LakeData.from_settings(_settings(lake_root=lake_root)), refresh_seconds=refresh_seconds)

    def ready() -> None:
        click.echo(f"dashboard on http://{host}:{port}/   lake: {data.lake.uri}   (Ctrl+C to stop)")

    try:
        serve(data, host, port, ready)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


@main.command("bi-server")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Beyond loopback "
    "a login is required: STOCK_LAKEHOUSE_BI_USER and STOCK_LAKEHOUSE_BI_PASSWORD.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=10000, show_default=True, help="HiveServer2 port.")
@click.option(
    "--refresh-seconds",
    type=click.FloatRange(min=1),
    default=30,
    show_default=True,
    help="How often tables created since the start are registered.",
)
@click.option("--lake-root", help="Lake root (default: the configured one).")
def bi_server(host, port, refresh_seconds, lake_root) -> None:
    """Serve the lake's tables to BI tools (Power BI, Tableau, JDBC/ODBC) over HiveServer2, read-only: a
    Spark Thrift Server with bi_stock_daily, daily_kpis, signals, stock_clean, intraday_bars and
    quarantine. Runs until stopped."""
    import signal
    import threading

    from stock_lakehouse.bi_server.access import AccessRefused
    from stock_lakehouse.bi_server.server import serve

    settings = _settings(lake_root=lake_root)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(settings, host, port, refresh_seconds, echo=click.echo, stop=stop)
    except (AccessRefused, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), default=ENGINE_PORT, show_default=True, help="Spark Connect port."
)
@click.option(
    "--any-client",
    is_flag=True,
    help="Serve clients beyond loopback. Spark Connect has no login: only for a port on an internal network "
    "that is not published (docker compose).",
)
@click.option(
    "--warm-up/--no-warm-up",
    default=True,
    show_default=True,
    help="Run one synthetic partition of every layer before serving, so the first run finds a warm JIT.",
)
@click.option("--lake-root", help="Lake root (default: the configured one).")
def engine(port, any_client, warm_up, lake_root) -> None:
    """The warm engine: one Spark (a Spark Connect server) that runs share, so a run starts no JVM. Runs
    use it when spark.remote is sc://127.0.0.1:PORT (`stock-lakehouse dev` does this). Runs until stopped."""
    import signal
    import threading

    from stock_lakehouse.engine.server import serve

    settings = _settings(lake_root=lake_root)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(settings, port, any_client, echo=click.echo, stop=stop, warm=warm_up)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--engine-port", type=click.IntRange(1, 65535), default=ENGINE_PORT, show_default=True)
@click.option("--no-engine", is_flag=True, help="Each run starts its own Spark, as without a server.")
@click.option("--no-warm-up", is_flag=True, help="Start the engine without its warm-up run (faster, colder).")
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(engine_port, no_engine, no_warm_up, dagster_args) -> None:
    """The Dagster UI, daemon and code server (`dagster dev`) with the warm engine beside them: every run,
    schedule tick and backfill run is a client of one Spark. The engine's output goes to
    $DAGSTER_HOME/engine.log; both stop together. Extra arguments go to `dagster dev`."""
    import contextlib
    import os
    import subprocess

    from stock_lakehouse.engine.server import READY_PREFIX
    from stock_lakehouse.local_processes import REPO, bin_path, command_server
    from stock_lakehouse.runs.instance_home import ensure_dagster_home

    _settings()  # a wrong setting is reported here, in one line, before anything starts
    config = click.get_current_context().find_root().obj["config"]
    env = dict(os.environ)
    if config:
        env["STOCK_LAKEHOUSE_CONFIG"] = str(Path(config).resolve())
    home = ensure_dagster_home()
    env["DAGSTER_HOME"] = str(home)
    dagster = [bin_path("dagster"), "dev", "-w", str(REPO / "workspace.yaml"), *dagster_args]
    if no_engine:
        raise SystemExit(subprocess.call(dagster, env=env))
    log_path = home / "engine.log"
    with contextlib.ExitStack() as stack:
        try:
            _, ready, _ = stack.enter_context(
                command_server(
                    "engine",
                    READY_PREFIX,
                    log_path,
                    env,
                    ["--no-warm-up"] if no_warm_up else [],  # the settings file reaches it through env
                    port=engine_port,
                )
            )
        except (RuntimeError, TimeoutError) as exc:
            raise click.ClickException(f"the Spark engine did not start (log: {log_path}): {exc}") from None
        click.echo(ready)
        env["STOCK_LAKEHOUSE_SPARK_REMOTE"] = f"sc://127.0.0.1:{engine_port}"
        try:
            code = subprocess.call(dagster, env=env)
        except KeyboardInterrupt:
            code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()

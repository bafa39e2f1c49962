"""What a user sees when things go wrong, and when they go right: the console script in a separate
process, a fresh instance and lake each time.

A failure's output starts with one line naming the cause (file, table, endpoint), stays within 15 lines,
and points to a log file with the details; a full disk leaves every earlier table readable as it was; an
unreachable S3 endpoint fails in seconds; the demo prints its summary and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.lakehouse.tables import table_folder
from stock_lakehouse.runs.materialize import LAYERS, run_materialize
from stock_lakehouse.runs.progress import RunProgress
from stock_lakehouse.runs.root_cause import exception_root_cause, java_root_cause, redact
from stock_lakehouse_tests.services import free_port

pytestmark = pytest.mark.faults

TABLES = {t: table_folder(t) for t in ("bronze", "silver", "gold", "bi")}
MAX_FAILURE_LINES = 15


def cli(*args: str, home: Path, cwd: Path, timeout: float = 900, **env: str) -> tuple[int, list[str], float]:
    """Run the console script; returns (exit code, non-blank lines of stdout+stderr in order, seconds).

    The child gets its own process group, killed whole (JVM included) if it outlives ``timeout``.
    """
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_") or k == "STOCK_LAKEHOUSE_IVY_DIR"
    }
    full_env.update(DAGSTER_HOME=str(home), COLUMNS="200", **env)
    exe = str(Path(sys.executable).with_name("stock-lakehouse"))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [exe, *args], env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"stock-lakehouse {' '.join(args)} still running after {timeout:.0f}s; output:\n{out[-3000:]}")
    return proc.returncode, [ln for ln in out.splitlines() if ln.strip()], time.monotonic() - t0


def details_log(lines: list[str]) -> Path:
    """The log file whose path the failure output printed."""
    found = [m[1] for ln in lines if (m := re.search(r"details: (\S+\.log)\b", ln))]
    assert found, "no log file named in:\n" + "\n".join(lines)
    path = Path(found[0])
    assert path.is_file(), path
    return path


def test_a_broken_replay_file_is_named_on_the_first_line(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    broken = rec / "broken.json"
    broken.write_text('{"Meta Data": ')
    code, lines, _ = cli(
        "materialize", "--symbols", "NVDA", "--start", "2024-03-04", "--source", "replay",
        "--replay-dir", str(rec), "--lake-root", str(tmp_path / "lake"), home=tmp_path / "home", cwd=tmp_path,
    )  # fmt: skip
    text = "\n".join(lines)
    assert code != 0, text
    assert str(broken) in lines[0] and "not valid JSON" in lines[0], text
    assert len(lines) <= MAX_FAILURE_LINES, text
    assert "Traceback" not in text and "Stack Trace" not in text, text
    log = details_log(lines).read_text()
    assert log.startswith("stock-lakehouse failure log") and str(broken) in log
    # the whole story: Dagster's step failure and the stack down to the parser that raised
    assert "STEP_FAILURE" in log and "MalformedPayloadError" in log
    assert re.search(r'File ".*parser\.py", line \d+, in parse_payload', log), log[-3000:]


def test_the_cause_of_a_spark_error_is_the_end_of_its_java_cause_chain(monkeypatch):
    trace = (
        "An error occurred while calling o498.save.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2856)\n"
        "Caused by: com.amazonaws.SdkClientException: Unable to execute HTTP request: Connect to 127.0.0.1:9\n"
        "\tat com.amazonaws.http.AmazonHttpClient.execute(AmazonHttpClient.java:1216)\n"
        "Caused by: java.net.ConnectException: Connection refused\n"
        "\tat java.base/sun.nio.ch.Net.connect0(Native Method)\n"
        "\t... 42 more\n"
    )
    assert java_root_cause(trace) == "java.net.ConnectException: Connection refused"
    assert java_root_cause("a plain Python message") is None
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as inner:
            raise RuntimeError("writing 8 partition(s) failed") from inner
    except RuntimeError as exc:
        assert exception_root_cause(exc) == "[Errno 28] No space left on device"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    assert redact("denied for s3cr3t-value at x") == "denied for *** at x"


@contextlib.contextmanager
def small_disk(path: Path, size: str = "3m"):
    """A real, small filesystem at ``path`` (tmpfs; needs root), unmounted afterwards."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.spark
def test_a_full_disk_names_the_table_and_leaves_earlier_tables_as_they_were(tmp_path):
    home = tmp_path / "home"
    with small_disk(tmp_path / "lake") as lake:
        first = ("materialize", "--symbols", "AAA", "--start", "2024-04-01", "--source", "synthetic")
        code, lines, _ = cli(*first, "--lake-root", str(lake), home=home, cwd=tmp_path)
        assert code == 0, "\n".join(lines)
        before = {t: read_table(str(lake), t) for t in TABLES}
        assert all(len(df) for df in before.values())
        # 2 symbols x 9 days: the landing zone's month payloads (~2.2 MB) fit, the tables do not.
        code, lines, _ = cli(
            "materialize", "--symbols", "AAA,BBB", "--start", "2024-04-02", "--end", "2024-04-12",
            "--source", "synthetic", "--lake-root", str(lake), home=home, cwd=tmp_path,
        )  # fmt: skip
        text = "\n".join(lines)
        assert code != 0, text
        assert "No space left on device" in lines[0], text
        assert any(f"{name} to {lake}/{name}" in lines[0] for name in TABLES.values()), text
        assert len(lines) <= MAX_FAILURE_LINES, text
        log = details_log(lines).read_text()
        assert "Caused by: java.io.IOException: No space left on device" in log  # the Java stack is kept
        for table, df in before.items():
            after = read_table(str(lake), table, ["AAA"], date(2024, 4, 1), date(2024, 4, 1))
            pd.testing.assert_frame_equal(
                after.reset_index(drop=True), df.reset_index(drop=True), check_exact=True, obj=table
            )


def test_an_unreachable_s3_endpoint_fails_in_seconds_naming_it(tmp_path):
    port = free_port()  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    secret = "s3cr3t-test-value-0123456789"
    code, lines, seconds = cli(
        "materialize", "--symbols", "NVDA", "--start", "2024-03-04", "--lake-root", "s3a://lake/x",
        home=tmp_path / "home", cwd=tmp_path, timeout=60,
        STOCK_LAKEHOUSE_S3_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="AKIATESTKEY0123", AWS_SECRET_ACCESS_KEY=secret,
    )  # fmt: skip
    text = "\n".join(lines)
    assert code != 0, text
    assert endpoint in lines[0] and "unreachable" in lines[0] and "connection refused" in lines[0], text
    assert "STOCK_LAKEHOUSE_S3_ENDPOINT" in lines[0], text
    assert len(lines) <= MAX_FAILURE_LINES and seconds < 60, (seconds, text)
    assert secret not in text and "AKIATESTKEY0123" not in text


SUMMARY_LINE = re.compile(
    r"(checks: \d+ passed, 0 not passed|lake: .+ {3}source: replay|runs: 1 {3}spark sessions: 1"
    rf"|layer +rows +partitions +delta version|({'|'.join(layer for layer, _ in LAYERS)}) +\d+ +\d+ +\d+"
    r"|elapsed: [\d.]+s {3}run ids: \S+)"
)


@pytest.mark.spark
def test_the_demo_prints_its_summary_and_nothing_else(tmp_path):
    code, lines, _ = cli("demo", "--lake-root", str(tmp_path / "lake"), home=tmp_path / "home", cwd=tmp_path)
    text = "\n".join(lines)
    assert code == 0, text
    assert len(lines) <= 20, text
    # no Spark start-up warnings, no Ivy report, no Dagster warnings: only the summary
    assert [ln for ln in lines if not SUMMARY_LINE.fullmatch(ln)] == [], text
    assert len(lines) == 5 + len(LAYERS), text


@pytest.mark.spark
def test_the_progress_display_follows_each_layer_of_a_real_run(spark, tmp_path, dagster_home, clean_env):
    import dagster as dg
    from rich.console import Console

    assert RunProgress(LAYERS).display == sys.stderr.isatty()  # shown only on a terminal
    with RunProgress(LAYERS, display=False, interval=0.2) as progress:
        ok, summary, error = run_materialize(
            ["AAA"], date(2024, 4, 1), date(2024, 4, 3), {"source": "synthetic", "lake_root": str(tmp_path / "lake")},
            progress=progress,
        )  # fmt: skip
    assert ok, error
    keys = {f"{d}|AAA" for d in ("2024-04-01", "2024-04-02", "2024-04-03")}
    assert progress.total == 3 and progress.done == {layer: keys for layer, _ in LAYERS}
    nodes = [node for _, node in LAYERS]
    assert [s for s in progress.steps if s in nodes] == nodes  # every layer, in order
    assert {"soda_bronze_intraday_bars", "soda_gold_bi_stock_daily"} <= set(progress.steps)
    assert progress.updates >= 2, "the background thread never saw the run in progress"

    # The display draws the same events: replay the finished run's event log into one on a fake terminal.
    screen = io.StringIO()
    with RunProgress(LAYERS, console=Console(file=screen, force_terminal=True, width=120)) as shown:
        shown.plan(3)
        shown.poll(dg.DagsterInstance.get(), summary.runs[0])
    drawn = screen.getvalue()
    everything = f"{3 * len(LAYERS)}/{3 * len(LAYERS)}"
    assert all(layer in drawn for layer, _ in LAYERS) and "3/3" in drawn and everything in drawn, drawn

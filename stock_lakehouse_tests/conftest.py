"""Shared fixtures: one real Spark session (with Delta) per test process, temporary lakes and instances."""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from pathlib import Path

import dagster as dg
import pytest

from stock_lakehouse.local_processes import REPO
from stock_lakehouse.runs.event_storage import instance_yaml
from stock_lakehouse.settings import SAMPLE_DATA_DIR
from stock_lakehouse_tests import jvm_options

#: Recorded responses shipped with the tests (see fixtures/README.md); nothing is read from outside the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alphavantage"
NVDA_SAMPLE = SAMPLE_DATA_DIR / "TIME_SERIES_INTRADAY_NVDA_1min_2024-03-01_to_2024-03-12.json"

# Every Spark JVM the tests start (here, in CLI subprocesses, in daemon runs, the engine) gets these options.
ARCHIVE = jvm_options.archive_path()
os.environ.setdefault("SPARK_SUBMIT_OPTS", jvm_options.submit_opts(ARCHIVE))

for _category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.filterwarnings("ignore", category=_category)

# ---------------------------------------------------------------- lanes: tests marked by what they start

#: The markers naming a service a test starts (see pyproject.toml). `make check` runs the tests with none.
SERVICE_MARKERS = ("spark", "minio", "postgres", "browser", "daemon", "compose")

#: Fixtures that start a service, with its marker. ``item.fixturenames`` holds every fixture a test uses,
#: directly or through other fixtures (``nvda_lake`` uses ``spark``): a test using one is marked by it.
#: A test starting a service in its own body (``chromium()``, ``postgres_server()``, a CLI subprocess that
#: runs ``materialize``) is marked in its module.
SERVICE_FIXTURES = {
    "spark": "spark",
    "built_lake": "spark",  # test_dashboard: run_materialize in this process
    "minio": "minio",
    "pg_homes": "postgres",  # test_event_storage
    "deployment": "daemon",  # test_operations_e2e: `dagster dev`
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = {SERVICE_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SERVICE_FIXTURES}
        for name in sorted(names - {m.name for m in item.iter_markers()}):
            item.add_marker(name)


#: Process names (``/proc/<pid>/comm``, 15 characters at most) of the services above.
SERVICE_PROGRAMS = {
    *("java", "spark-submit", "chromium", "chromedriver", "minio", "postgres", "initdb", "pg_ctl"),
    *("dagster", "dagster-webserv", "dagster-daemon"),
}


class ServiceWatch:
    """Polls this process's descendants for service programs while the current test runs: a session whose
    tests carry no service marker (`make check`) fails the test that starts one anyway."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.current: str | None = None
        self.seen: dict[int, tuple[str, str]] = {}  # pid -> (program, test)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="service-watch", daemon=True)

    @staticmethod
    def _descendants(root: int) -> dict[int, str]:
        children: dict[int, list[tuple[int, str]]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append((int(entry.name), name))
        found, todo = {}, [root]
        while todo:
            for pid, name in children.get(todo.pop(), ()):
                found[pid] = name
                todo.append(pid)
        return found

    def scan(self, test: str | None) -> None:
        for pid, name in self._descendants(os.getpid()).items():
            if name in SERVICE_PROGRAMS and pid not in self.seen:
                self.seen[pid] = (name, test or "between tests")

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan(self.current)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.scan(None)

    def started_by(self, test: str | None) -> list[str]:
        test = test or "between tests"
        return sorted({f"{name} (pid {pid})" for pid, (name, t) in self.seen.items() if t == test})


_watch: ServiceWatch | None = None


def pytest_collection_finish(session):
    """Watch for services when no selected test may start one (not in an xdist controller: no items)."""
    global _watch
    marked = any(m.name in SERVICE_MARKERS for item in session.items for m in item.iter_markers())
    if session.items and not marked and Path("/proc/self/stat").exists():
        _watch = ServiceWatch()
        _watch.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _watch is not None:
        _watch.current = item.nodeid
    try:
        return (yield)
    finally:
        if _watch is not None:
            _watch.current = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if _watch is not None:
        _watch.scan(item.nodeid)  # what is still running now; the poll saw what came and went
        started = _watch.started_by(item.nodeid)
        if started:
            raise AssertionError(
                f"{item.nodeid} started {', '.join(started)} without a service marker "
                f"({', '.join(SERVICE_MARKERS)}): mark it (conftest.py SERVICE_FIXTURES, or in its module)"
            )
    return result


def pytest_sessionfinish(session):
    if _watch is not None:
        _watch.stop()
        if _watch.started_by(None):
            print(f"\nservices started between tests: {', '.join(_watch.started_by(None))}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _class_archive(request):
    """The tests' class data archive, written before the first test that starts a Spark JVM (jvm_options)."""
    if ARCHIVE is not None and any(request.node.get_closest_marker(m) for m in ("spark", "daemon")):
        jvm_options.ensure_archive(ARCHIVE)


@pytest.fixture(scope="session")
def spark():
    from stock_lakehouse.lakehouse.spark import SparkResource

    if ARCHIVE is not None:
        jvm_options.ensure_archive(ARCHIVE)  # session fixtures are set up before the autouse one
    # This JVM lives as long as the test process and runs many in-process runs: it keeps C2 (C1 only is for
    # the short-lived JVMs of subprocesses).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_SUBMIT_OPTS", jvm_options.submit_opts(ARCHIVE, c2=True))
        return SparkResource(shuffle_partitions=2).get_session()


@pytest.fixture()
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture()
def lake(tmp_path) -> Path:
    return tmp_path / "lake"


def environment_without_settings(**extra: str) -> dict[str, str]:
    """This process's environment without our settings (the Ivy cache kept), plus ``extra``: for a subprocess."""
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_") or k == "STOCK_LAKEHOUSE_IVY_DIR"
    }
    return {**keep, **extra}


def clean_environment(mp: pytest.MonkeyPatch, config: Path = REPO / "config" / "stock_lakehouse.yaml") -> None:
    """None of our settings from the environment but the settings file ``config``."""
    for name in list(os.environ):
        if name.startswith("STOCK_LAKEHOUSE_") and name != "STOCK_LAKEHOUSE_IVY_DIR":
            mp.delenv(name)
    mp.setenv("STOCK_LAKEHOUSE_CONFIG", str(config))


@pytest.fixture()
def clean_env(monkeypatch):
    clean_environment(monkeypatch)


def copy_lake(template: Path, lake: Path) -> Path:
    """A test's own copy of a lake built once for its module: Delta tables and the landing zone hold
    relative paths only, so the copy is a lake of its own (about 0.1 s against 30-60 s to build one)."""
    shutil.copytree(template, lake)
    return lake


@pytest.fixture(scope="session")
def minio(tmp_path_factory):
    """A real MinIO server for the session, with bucket ``lake``; yields its environment."""
    from stock_lakehouse_tests.services import minio_server

    with minio_server(tmp_path_factory.mktemp("minio")) as env:
        yield env


@pytest.fixture()
def screenshot_dir(tmp_path) -> Path:
    """Where browser tests save screenshots: the test's temp folder, so a test run never rewrites tracked
    files; ``$SCREENSHOT_DIR`` (relative to the repository) when set: `make screenshots` refreshes docs/."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if not folder:
        return tmp_path
    path = REPO / folder
    path.mkdir(parents=True, exist_ok=True)
    return path

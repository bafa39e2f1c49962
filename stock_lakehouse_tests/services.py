"""Helpers that start real services (Dagster webserver, ...) on loopback for tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx

# Process control lives in the package (the benchmark uses it too); re-exported for the tests.
from stock_lakehouse.local_processes import (  # noqa: F401
    REPO,
    bin_path,
    dagster_dev_process,
    descendants,
    free_port,
    logged_process,
    wait_http,
)


@contextlib.contextmanager
def dagster_webserver(dagster_home: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real ``dagster-webserver`` on the project's workspace; yields its GraphQL URL."""
    port = free_port()
    cmd = [bin_path("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
    with logged_process(cmd, dagster_home / "webserver.log", full_env) as proc:
        wait_http(f"http://127.0.0.1:{port}/server_info", proc=proc)
        yield f"http://127.0.0.1:{port}/graphql"


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    resp = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 20) { status timestamp skipReason error { message } } } }
  }
}"""


def sensor_tick_after(
    url: str, sensor: str, after: float, location: str = "stock_lakehouse", timeout: float = 240.0
) -> dict:
    """The first tick of ``sensor`` the daemon evaluated after ``after`` (epoch seconds), as the sensor's
    page in the UI lists it: ``status``, ``skipReason``, ``error``."""
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": sensor}
    deadline = time.monotonic() + timeout
    while True:
        found = graphql(url, SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        assert found["__typename"] == "Sensor", found
        done = [t for t in found["sensorState"]["ticks"] if t["timestamp"] > after and t["status"] != "STARTED"]
        if done:
            return min(done, key=lambda t: t["timestamp"])
        assert time.monotonic() < deadline, f"no tick of {sensor} after {after} within {timeout}s"
        time.sleep(3)


def assert_freshness_tick_read_fresh_data(url: str) -> None:
    """The daemon's next ``freshness_alerts`` tick read silver through the deployment's lake resource and
    found every symbol fresh: a failed read would be an error tick, or "no data" (symbols stale)."""
    tick = sensor_tick_after(url, "freshness_alerts", after=time.time())
    assert tick["status"] == "SKIPPED" and tick["error"] is None, tick
    assert tick["skipReason"].endswith("stale now: none"), tick


class WebhookReceiver:
    """A real HTTP server on loopback that records every JSON or text body POSTed to it."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.messages: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    receiver.messages.append(json.loads(body))
                except ValueError:
                    receiver.messages.append({"text": body.decode()})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kinds(self) -> list[str]:
        return [m.get("kind", "") for m in self.messages]


@contextlib.contextmanager
def dagster_dev(dagster_home: Path, env: dict[str, str]) -> Iterator[str]:
    """``dagster dev`` (webserver + daemon + code server) on loopback; yields the base URL."""
    with dagster_dev_process(dagster_home, env) as (url, _):
        yield url


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Selenium through Debian's chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def dismiss_community_dialog(driver) -> None:
    """Skip the "Join the Dagster community" dialog the UI shows on a first visit. The page may redraw while
    its buttons are read (a button gone stale): read them again, a few times."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    for _ in range(5):
        try:
            for button in driver.find_elements(By.TAG_NAME, "button"):
                if button.text.strip() == "Skip":
                    button.click()
                    time.sleep(0.5)
                    return
            return
        except WebDriverException:
            time.sleep(1)


def wait_for_text(driver, texts, timeout=60.0) -> str:
    """The page's text once it shows every one of ``texts``; fails with what it shows instead."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the page redrew while its text was read
            time.sleep(1)
            continue
        if all(t in body for t in texts):
            return body
        time.sleep(1)
    raise AssertionError(f"page never showed {texts}; it shows: {body[:800]}")


def click_text(driver, text: str, last: bool = False, timeout: float = 60.0) -> None:
    """Click the first clickable element whose own text is ``text`` (from the end with ``last``: a check's
    Partitions tab comes after the asset's), waiting up to ``timeout`` for the page to render it: the UI
    draws its lists after its queries answer, later on a busy machine."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        elements = driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']")
        for element in reversed(elements) if last else elements:
            try:
                element.click()
            except WebDriverException:  # hidden or covered (a tooltip, a collapsed list), or redrawn
                continue
            time.sleep(2)
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing clickable labelled {text!r} on {driver.current_url}")
        time.sleep(1)


def tick_log_showing(driver, page: str, text: str, timeout: float = 180.0, newest: int = 6) -> str:
    """The text of a tick's log that shows ``text``, on a sensor's ``page``: each of the ``newest`` ticks'
    "View logs" in turn (newest first), the page reloaded until the daemon has ticked."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    buttons = "//*[normalize-space(text())='View logs']"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in range(newest):
            driver.get(page)
            time.sleep(3)
            dismiss_community_dialog(driver)
            found = driver.find_elements(By.XPATH, buttons)
            if i >= len(found):
                break
            try:
                found[i].click()
            except WebDriverException:
                continue
            try:
                return wait_for_text(driver, [text], timeout=8)
            except AssertionError:
                continue
        time.sleep(5)
    raise AssertionError(f"no tick log among the newest {newest} on {page} showed {text!r}")


def lines_after(body: str, label: str, lines: int = 1) -> list[str]:
    """The ``lines`` lines shown right after ``label`` (how the UI lays out a name and its status)."""
    rows = body.splitlines()
    i = rows.index(label)
    return rows[i + 1 : i + 1 + lines]


@contextlib.contextmanager
def minio_server(data_dir: Path, bucket: str = "lake") -> Iterator[dict[str, str]]:
    """A real MinIO on loopback (built by ``scripts/minio.sh`` if missing); yields its environment."""
    port = free_port()
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "minio.sh"), "start", str(data_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    if done.returncode != 0:
        raise RuntimeError(f"MinIO did not start: {done.stderr[-2000:]}")
    env = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value
    from stock_lakehouse.lakehouse.object_store import S3Location

    try:
        with mock.patch.dict(os.environ, env):
            S3Location(endpoint=env["STOCK_LAKEHOUSE_S3_ENDPOINT"]).boto3_client().create_bucket(Bucket=bucket)
            yield env
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "minio.sh"), "stop", str(data_dir)], check=False)


def _wait_for_log(path: Path, text: str, count: int = 1, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{path.name} never showed {text!r} x{count}")


@contextlib.contextmanager
def spark_standalone(workers: int = 2, log_dir: Path | None = None) -> Iterator[str]:
    """A standalone Spark master and ``workers`` workers on loopback (pyspark's ``spark-class``)."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_NO_DAEMONIZE": "1",
    }
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    master_log = logs / "spark-master.log"
    loopback = ["--host", "127.0.0.1", "--webui-port", str(free_port())]
    with contextlib.ExitStack() as stack:
        master = [spark_class, "org.apache.spark.deploy.master.Master", "--port", str(port), *loopback]
        stack.enter_context(logged_process(master, master_log, env))
        _wait_for_log(master_log, "I have been elected leader")
        for i in range(workers):
            worker = [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                master_url,
                "--cores",
                "1",
                "--memory",
                "1g",
                "--host",
                "127.0.0.1",
                "--webui-port",
                str(free_port()),
            ]
            stack.enter_context(logged_process(worker, logs / f"spark-worker-{i}.log", env))
        _wait_for_log(master_log, "Registering worker", count=workers)
        yield master_url


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, str]]:
    """A real PostgreSQL (Debian's package) on loopback, run as the ``postgres`` user; yields the
    ``DAGSTER_POSTGRES_*`` environment of ``docker/dagster.yaml``."""
    import glob
    import secrets

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pg = Path(bins[-1])
    # The postgres user must reach the folder: pytest's tmp dirs sit under a root-only parent.
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="stock_lakehouse_pg_"))
    subprocess.run(["chown", "-R", "postgres:postgres", str(data_dir)], check=True)
    as_pg = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(12)
    pwfile = data_dir / "pw"
    pwfile.write_text(password)
    subprocess.run(["chown", "postgres", str(pwfile)], check=True)
    subprocess.run(
        [
            *as_pg,
            str(pg / "initdb"),
            "-D",
            str(data_dir / "db"),
            "-U",
            "dagster",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        [
            *as_pg,
            str(pg / "pg_ctl"),
            "-D",
            str(data_dir / "db"),
            "-l",
            str(data_dir / "pg.log"),
            "-w",
            "-o",
            f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        env = {"PGPASSWORD": password}
        subprocess.run(
            [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
            check=True,
            capture_output=True,
            env={**os.environ, **env},
        )
        yield {
            "DAGSTER_POSTGRES_USER": "dagster",
            "DAGSTER_POSTGRES_PASSWORD": password,
            "DAGSTER_POSTGRES_DB": "dagster",
            "DAGSTER_POSTGRES_HOST": "127.0.0.1",
            "DAGSTER_POSTGRES_PORT": str(port),
        }
    finally:
        subprocess.run(
            [*as_pg, str(pg / "pg_ctl"), "-D", str(data_dir / "db"), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )

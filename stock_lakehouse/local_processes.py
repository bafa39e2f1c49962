"""Process control of local servers, in one place for the benchmark (``bench --ui-ways``) and the tests
(``stock_lakehouse_tests/services.py``): a command in its own process group with its output in a file,
stopped with its whole group (SIGTERM, then SIGKILL after 30 s); ``dagster dev`` on a free loopback port,
waited for until it answers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from stock_lakehouse.ports import free_port
from stock_lakehouse.settings import PACKAGE_DIR

#: The checkout the package runs from: ``workspace.yaml`` and the project's ``dagster.yaml`` are there.
REPO = PACKAGE_DIR.parent


def wait_http(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200; fail early if ``proc`` (the server) exits.

    Raises:
        RuntimeError: ``proc`` exited. TimeoutError: no answer in ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout}s")


def wait_line(log_path: Path, text: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> str:
    """Wait until a line containing ``text`` is in ``log_path`` (a server's "ready" line); return that line.

    Raises:
        RuntimeError: ``proc`` exited first, with the log's last lines. TimeoutError: no such line in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
        found = next((line for line in lines if text in line), None)
        if found is not None:
            return found
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: " + " | ".join(lines[-5:]))
        time.sleep(0.3)
    raise TimeoutError(f"no {text!r} in {log_path} after {timeout}s")


def bin_path(name: str) -> str:
    """A console script of this virtualenv."""
    return str(Path(sys.executable).with_name(name))


@contextlib.contextmanager
def logged_process(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path = REPO) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group with output to ``log_path``; stop the whole group after."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def dagster_dev_process(
    dagster_home: Path, env: dict[str, str], log_name: str = "dagster_dev.log"
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``dagster dev`` (webserver, daemon, code server) of the project's workspace on a free loopback port,
    with ``env`` over this process's environment; yields the base URL once it answers, and the process."""
    port = free_port()
    cmd = [bin_path("dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home)}
    with logged_process(cmd, dagster_home / log_name, full_env) as proc:
        wait_http(f"http://127.0.0.1:{port}/server_info", timeout=180, proc=proc)
        yield f"http://127.0.0.1:{port}", proc


@contextlib.contextmanager
def command_server(
    command: str,
    ready_prefix: str,
    log_path: Path,
    env: dict[str, str],
    options: Sequence[str] = (),
    config: Path | None = None,
    port: int | None = None,
    timeout: float = 300.0,
) -> Iterator[tuple[int, str, subprocess.Popen]]:
    """``stock-lakehouse [--config FILE] COMMAND --port PORT OPTIONS`` (a server: ``bi-server``, ``engine``)
    on ``port`` (default: a free one) with ``env``; yields the port, its ready line (the first line starting
    with ``ready_prefix``) once clients can connect, and the process (stopped with its group after)."""
    port = port or free_port()
    cmd = [bin_path("stock-lakehouse"), *(["--config", str(config)] if config else []), command, "--port", str(port)]
    with logged_process([*cmd, *options], log_path, env) as proc:
        yield port, wait_line(log_path, ready_prefix, timeout=timeout, proc=proc), proc


@contextlib.contextmanager
def bi_server_process(
    log_path: Path, env: dict[str, str], options: list[str], config: Path | None = None, timeout: float = 300.0
) -> Iterator[tuple[int, str]]:
    """``stock-lakehouse bi-server`` (:func:`command_server`); yields the port and the server's ready line."""
    from stock_lakehouse.bi_server.server import READY_PREFIX

    with command_server("bi-server", READY_PREFIX, log_path, env, options, config, timeout=timeout) as (port, line, _):
        yield port, line


@contextlib.contextmanager
def engine_process(
    log_path: Path, env: dict[str, str], options: Sequence[str] = (), config: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``stock-lakehouse engine`` (:func:`command_server`); yields its ``sc://`` URL and the process."""
    from stock_lakehouse.engine.server import READY_PREFIX

    with command_server("engine", READY_PREFIX, log_path, env, options, config) as (port, _, proc):
        yield f"sc://127.0.0.1:{port}", proc


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from ``/proc``'s parent links."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(raw[raw.rindex(")") + 2 :].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [child for child, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found

"""TCP ports of the servers we start (BI endpoint, engine, test and bench servers): free, taken, listening."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(host: str, port: int) -> str | None:
    """Why nothing can listen on ``host:port`` now, or None."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def wait_listening(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts connections on ``host:port`` (a wildcard host: on loopback) within ``timeout``."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((target, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False

"""A fake Alpha Vantage: a real HTTP server on loopback, serving recorded and synthetic payloads with
injectable faults, so the real client is tested over real sockets.

Faults are queued per symbol (``server.plan("IBM", ["throttle", "http500", "ok"])``); each request
takes the next one, and ``ok`` (the default once the queue is empty) serves data: a recorded file when
one matches the symbol and month, else synthetic bars in the function's layout.

Misbehaving servers, for the client's time and size bounds (every loop is bounded: it ends when the
client goes away, the server stops, or after ``MAX_FAULT_SECONDS``, so none can hang a test's teardown):

- ``silent``: accept the request and never answer.
- ``dribble`` / ``dribble:SECONDS``: status and headers, then the body one byte every 2 s (or SECONDS).
- ``dribble_headers`` / ``dribble_headers:SECONDS``: the status line and headers one byte at a time.
- ``huge``: ``Content-Length`` of ``HUGE_BYTES`` (300 MB) and a body streamed from a reused block.
- ``huge_chunked`` / ``huge_close``: the same body without ``Content-Length``, chunked or ended by
  closing the connection.

For the streaming faults the server counts the body bytes it managed to send (``sent_bytes``).
"""

from __future__ import annotations

import functools
import json
import select
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd

from stock_lakehouse.ingestion.synthetic import intraday_payload

ERRORS_FILE = "error_and_throttle_payloads.json"
INVALID_KEY = {
    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
}
#: Longer than any deadline a test configures (the default total is 110 s), short enough to end by itself.
MAX_FAULT_SECONDS = 150.0
HUGE_BYTES = 300_000_000
_BLOCK = b" " * 65536  # reused for every chunk of a huge body: the server never holds more than this
STREAMING_FAULTS = ("silent", "dribble", "dribble_headers", "huge", "huge_chunked", "huge_close")


def _huge_body(size: int = HUGE_BYTES) -> Iterator[memoryview]:
    view = memoryview(_BLOCK)
    for start in range(0, size, len(_BLOCK)):
        yield view[: min(len(_BLOCK), size - start)]


def _client_gone(sock: socket.socket) -> bool:
    """The client closed its end (a readable socket with nothing to read), without consuming data."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@functools.lru_cache(maxsize=64)
def _generated(symbol: str, days: tuple[date, ...], interval: str, kind: str, quote: str) -> bytes:
    # Generating a month takes a moment on a loaded machine; cached, a repeated answer is immediate, so
    # only the planned delays decide whether a client's timeout fires.
    return intraday_payload(symbol, days, interval, seed=11, kind=kind, quote=quote)


class FakeAlphaVantage:
    def __init__(self, fixtures: Path, api_key: str, recordings: dict[tuple[str, str], Path] | None = None):
        self.errors = json.loads((fixtures / ERRORS_FILE).read_text())
        self.api_key = api_key
        self.recordings = recordings or {}
        self.requests: list[dict[str, str]] = []  # query parameters, apikey removed
        self.keys_seen: list[str] = []
        self._plans: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set at exit: every slow fault's loop ends within 0.05 s
        self._finished = threading.Condition(self._lock)
        self.sent_bytes: list[tuple[str, int]] = []  # (fault, body bytes written) of each streaming fault
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/query"

    def __enter__(self) -> FakeAlphaVantage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def plan(self, symbol: str, faults: list[str]) -> None:
        with self._lock:
            self._plans[symbol].extend(faults)

    def count(self, **match: str) -> int:
        return sum(all(r.get(k) == v for k, v in match.items()) for r in self.requests)

    def wait_sent(self, fault: str, timeout: float = 15.0) -> int:
        """Body bytes the server wrote for the first finished ``fault`` (it ends when the client leaves)."""
        with self._finished:
            self._finished.wait_for(lambda: any(f == fault for f, _ in self.sent_bytes), timeout)
            return next(n for f, n in self.sent_bytes if f == fault)

    def _pause(self, sock: socket.socket, seconds: float) -> bool:
        """Sleep in small steps; False as soon as the client is gone or the server stops."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stop.wait(min(0.05, left)) or _client_gone(sock):
                return False
        return True

    def _stream(self, handler: BaseHTTPRequestHandler, fault: str, q: dict[str, str]) -> None:
        """Serve one of ``STREAMING_FAULTS``; records the body bytes written once the client is gone."""
        name, _, arg = fault.partition(":")
        interval = float(arg) if arg else 2.0
        sock, out = handler.connection, handler.wfile
        sent = 0
        try:
            if name == "silent":
                self._pause(sock, MAX_FAULT_SECONDS)
                return
            if name in ("dribble", "dribble_headers"):
                body = self._data(q)
                head = (
                    f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                if name == "dribble_headers":
                    slow, rest = head, body
                else:
                    out.write(head)
                    slow, rest = body, b""
                started = time.monotonic()
                for i in range(len(slow)):
                    if time.monotonic() - started > MAX_FAULT_SECONDS:
                        return
                    out.write(slow[i : i + 1])
                    sent += name == "dribble"
                    if not self._pause(sock, interval):
                        return
                out.write(rest)
                sent += len(rest)
                return
            # huge, huge_chunked, huge_close
            if name == "huge_chunked":
                handler.protocol_version = "HTTP/1.1"  # chunked framing needs an HTTP/1.1 status line
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            if name == "huge":
                handler.send_header("Content-Length", str(HUGE_BYTES))
            elif name == "huge_chunked":
                handler.send_header("Transfer-Encoding", "chunked")
            handler.send_header("Connection", "close")
            handler.end_headers()
            for chunk in _huge_body():
                if self._stop.is_set():
                    return
                if name == "huge_chunked":
                    out.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    out.write(chunk)
                sent += len(chunk)
            if name == "huge_chunked":
                out.write(b"0\r\n\r\n")
        except OSError:  # the client went away (reset, broken pipe) or the socket timed out
            pass
        finally:
            with self._finished:
                self.sent_bytes.append((name, sent))
                self._finished.notify_all()

    def _next_fault(self, symbol: str) -> str:
        with self._lock:
            return self._plans[symbol].popleft() if self._plans[symbol] else "ok"

    def _data(self, q: dict[str, str]) -> bytes:
        function, interval = q["function"], q.get("interval", "5min")
        if function == "FX_INTRADAY":
            symbol, kind, quote = q["from_symbol"], "fx", q["to_symbol"]
        elif function == "CRYPTO_INTRADAY":
            symbol, kind, quote = q["symbol"], "crypto", q["market"]
        else:
            symbol, kind, quote = q["symbol"], "equity", "USD"
        month = q.get("month")
        if (symbol, month or "") in self.recordings:
            return self.recordings[(symbol, month or "")].read_bytes()
        if month:
            start = pd.Timestamp(f"{month}-01")
            days = [d.date() for d in pd.date_range(start, start + pd.offsets.MonthEnd(0))]
        else:  # the latest data: the trailing 30 days
            days = [d.date() for d in pd.date_range(end=pd.Timestamp(date.today()), periods=30)]
        return _generated(symbol, tuple(days), interval, kind, quote)

    def _respond(self, q: dict[str, str]) -> tuple[int, bytes, float] | str:
        """(status, body, delay before answering), or the name of a fault in ``STREAMING_FAULTS``."""
        if q.get("apikey") != self.api_key:
            return 200, json.dumps(INVALID_KEY).encode(), 0.0
        symbol = q.get("symbol") or q.get("from_symbol", "")
        fault = self._next_fault(symbol)
        if fault.partition(":")[0] in STREAMING_FAULTS:
            return fault
        bodies = {
            "throttle": "rate_limit_burst_2026",
            "throttle_note": "rate_limit_legacy_note_pre2024",
            "daily_limit": "rate_limit_daily_2024plus",
            "premium": "premium_endpoint",
            "demo": "demo_key_misuse",
            "invalid": "invalid_call",
            "empty": "no_data",
        }
        if fault in bodies:
            return 200, json.dumps(self.errors[bodies[fault]]).encode(), 0.0
        if fault.startswith("http"):
            return int(fault[4:]), b"<html>server error</html>", 0.0
        if fault.startswith("delay"):
            return 200, self._data(q), float(fault.split(":")[1])
        if fault == "malformed":
            return 200, b'{"Meta Data": {"2. Symbol": "' + symbol.encode() + b'", "Time Series (5min)": [', 0.0
        if fault == "csv_garbage":
            return 200, b"this,is,not\n1,2,3\n", 0.0
        return 200, self._data(q), 0.0

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # socket timeout: a write blocked by a client that stopped reading ends by itself

            def do_GET(self):  # noqa: N802 - http.server's name
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                with fake._lock:
                    fake.keys_seen.append(q.get("apikey", ""))
                    fake.requests.append({k: v for k, v in q.items() if k != "apikey"})
                answer = fake._respond(q)
                if isinstance(answer, str):
                    fake._stream(self, answer, q)
                    return
                status, body, delay = answer
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):  # keep test output (and the key in URLs) out of stderr
                pass

        return Handler

"""A fake Alpha Vantage: a real HTTP server on loopback, serving recorded and synthetic payloads with
injectable faults, so the real client is tested over real sockets.

Faults are queued per symbol (``server.plan("IBM", ["throttle", "http500", "ok"])``); each request
takes the next one, and ``ok`` (the default once the queue is empty) serves data: a recorded file when
one matches the symbol and month, else synthetic bars in the function's layout.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import defaultdict, deque
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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/query"

    def __enter__(self) -> FakeAlphaVantage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def plan(self, symbol: str, faults: list[str]) -> None:
        with self._lock:
            self._plans[symbol].extend(faults)

    def count(self, **match: str) -> int:
        return sum(all(r.get(k) == v for k, v in match.items()) for r in self.requests)

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

    def _respond(self, q: dict[str, str]) -> tuple[int, bytes, float]:
        if q.get("apikey") != self.api_key:
            return 200, json.dumps(INVALID_KEY).encode(), 0.0
        symbol = q.get("symbol") or q.get("from_symbol", "")
        fault = self._next_fault(symbol)
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
            def do_GET(self):  # noqa: N802 - http.server's name
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                with fake._lock:
                    fake.keys_seen.append(q.get("apikey", ""))
                    fake.requests.append({k: v for k, v in q.items() if k != "apikey"})
                status, body, delay = fake._respond(q)
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

"""The Alpha Vantage REST client: request factory, retries, throttling and honest errors (httpx).

The key is added to the query string at the last moment and never leaves this module: request
descriptions, fingerprints, landing paths and error texts are built without it, and any text that
might echo it (a response body, an exception) is redacted before it is raised or logged. httpx's own
request logging (which prints full URLs) is turned down for the same reason.

Every fetch is bounded in time and memory, because a live server cannot be trusted to behave: httpx's
own timeout only limits each single read, so a server that dribbles a byte every few seconds (or a
silent one, retried) could hold a Dagster step for ever, and a body read whole could be any size.
Each attempt therefore has a deadline for the whole response (connect, headers and body), its body a
size cap (``max_response_bytes``), and all attempts with their backoff waits a total deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from stock_lakehouse.ingestion.budget import BudgetExhaustedError, RequestBudget
from stock_lakehouse.ingestion.errors import IngestionError, excerpt
from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_csv_payload, parse_payload
from stock_lakehouse.symbols import validate_symbol

logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

DEFAULT_BASE_URL = "https://www.alphavantage.co/query"
INTRADAY_INTERVALS = ("1min", "5min", "15min", "30min", "60min")

#: Connect timeout and the longest silence allowed between two reads of one response.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: The whole response of one attempt: connect, headers and body.
DEFAULT_RESPONSE_DEADLINE_SECONDS = 15.0
#: A month of 1-minute extended-hours bars is about 3.5 MB of JSON (the bundled NVDA recording: 7,680
#: bars in 1,226,628 bytes, 160 B a bar; 23 sessions x 960 bars = 3.5 MB; the more indented 2017 MSFT
#: fixture is 216 B a bar, 4.8 MB a month): 64 MiB leaves a 13x margin and still bounds memory.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20
#: All attempts, backoff waits and budget waits of one request. With the other defaults the worst case
#: (5 attempts x 15 s + backoff 2 + 4 + 8 + 16 s = 105 s) fits, so this is a backstop, and under 2 min.
DEFAULT_TOTAL_DEADLINE_SECONDS = 110.0
#: Retries after the first attempt; backoff waits start here and double (at most MAX_BACKOFF_SECONDS).
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0
#: An HTTP 4xx body is only read for a short excerpt in the error message.
ERROR_BODY_BYTES = 4096

T = TypeVar("T")


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's roots, or $SSL_CERT_FILE/DIR), made once per process: loading
    the roots takes ~50 ms, which every request paid again (2.5 s of a 50-symbol tick)."""
    return httpx.create_ssl_context()


class TransientApiError(IngestionError):
    """HTTP 429/5xx, a timeout or a connection error: retried with backoff."""

    retryable = True


class ResponseDeadlineError(TransientApiError):
    """The whole response of one attempt did not arrive within its deadline: retried (a slow moment)."""


class ResponseTooLargeError(IngestionError):
    """The body is larger than ``max_response_bytes``: not retried, a retry would get the same body."""


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code (Dagster steps are sync).

    ``asyncio.run`` refuses to start inside a thread whose loop is running (an async caller, a notebook),
    so there the coroutine gets a short-lived loop in a worker thread instead; its own deadline bounds it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alphavantage") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass(frozen=True)
class ApiRequest:
    """One Alpha Vantage call, without the key.

    Attributes:
        function: TIME_SERIES_INTRADAY, TIME_SERIES_DAILY, FX_INTRADAY or CRYPTO_INTRADAY.
        symbol: the partition symbol this request serves (``EURUSD`` for the EUR/USD pair).
        params: query parameters except ``function`` and ``apikey``.
    """

    function: str
    symbol: str
    params: tuple[tuple[str, str], ...] = field(default=())

    @property
    def query(self) -> dict[str, str]:
        return {"function": self.function, **dict(self.params)}

    @property
    def month(self) -> str | None:
        return dict(self.params).get("month")

    @property
    def datatype(self) -> str:
        return dict(self.params).get("datatype", "json")

    @property
    def fingerprint(self) -> str:
        text = "&".join(f"{k}={v}" for k, v in sorted(self.query.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return " ".join([self.function, self.symbol, *(f"{k}={v}" for k, v in self.params)])


def _params(**values: object) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out.append((key, str(value)))
    return tuple(out)


def intraday_request(
    symbol: str,
    interval: str,
    *,
    month: str | None = None,
    outputsize: str = "full",
    adjusted: bool = True,
    extended_hours: bool = True,
    entitlement: str | None = None,
    datatype: str = "json",
) -> ApiRequest:
    """TIME_SERIES_INTRADAY for a stock; ``month=YYYY-MM`` fetches a whole month in one call."""
    symbol = validate_symbol(symbol, "an intraday request")
    if interval not in INTRADAY_INTERVALS:
        raise ValueError(f"interval {interval!r} for {symbol}: use one of {INTRADAY_INTERVALS}")
    if outputsize not in ("compact", "full"):
        raise ValueError(f"outputsize {outputsize!r} for {symbol}: use compact or full")
    if datatype not in ("json", "csv"):
        raise ValueError(f"datatype {datatype!r} for {symbol}: use json or csv")
    if entitlement not in (None, "realtime", "delayed"):
        raise ValueError(f"entitlement {entitlement!r} for {symbol}: use realtime, delayed or nothing")
    if month is not None:
        try:
            datetime.strptime(month, "%Y-%m")
        except ValueError:
            raise ValueError(f"month {month!r} for {symbol}: use YYYY-MM") from None
    return ApiRequest(
        "TIME_SERIES_INTRADAY",
        symbol,
        _params(
            symbol=symbol,
            interval=interval,
            month=month,
            outputsize=outputsize,
            adjusted=adjusted,
            extended_hours=extended_hours,
            entitlement=entitlement,
            datatype=datatype,
        ),
    )


def daily_request(symbol: str, *, outputsize: str = "compact", datatype: str = "json") -> ApiRequest:
    """TIME_SERIES_DAILY (``outputsize=full`` needs a premium key)."""
    symbol = validate_symbol(symbol, "a daily request")
    return ApiRequest("TIME_SERIES_DAILY", symbol, _params(symbol=symbol, outputsize=outputsize, datatype=datatype))


def fx_intraday_request(
    base: str, quote: str, interval: str, *, outputsize: str = "full", datatype: str = "json"
) -> ApiRequest:
    """FX_INTRADAY for a currency pair; the partition symbol is ``BASEQUOTE`` (e.g. EURUSD)."""
    return ApiRequest(
        "FX_INTRADAY",
        f"{base}{quote}",
        _params(from_symbol=base, to_symbol=quote, interval=interval, outputsize=outputsize, datatype=datatype),
    )


def crypto_intraday_request(
    coin: str, market: str, interval: str, *, outputsize: str = "full", datatype: str = "json"
) -> ApiRequest:
    """CRYPTO_INTRADAY for a coin in a market; the partition symbol is ``COINMARKET`` (e.g. BTCUSD)."""
    return ApiRequest(
        "CRYPTO_INTRADAY",
        f"{coin}{market}",
        _params(symbol=coin, market=market, interval=interval, outputsize=outputsize, datatype=datatype),
    )


class AlphaVantageClient:
    """Sends ``ApiRequest``s within a ``RequestBudget``, retrying what is transient, within bounds.

    Retried: throttling bodies (``Note``/``Information`` about request rates), HTTP 429 and 5xx,
    timeouts (including a response that misses its deadline) and connection errors. Failing at once:
    premium-only endpoint, demo key misuse, invalid call or symbol, invalid key, exhausted daily budget,
    empty or malformed bodies, and a body over ``max_response_bytes``.

    Time: one attempt ends after ``response_deadline_seconds`` whatever the server does (a server
    that sends a byte every few seconds never trips the per-read ``timeout``); an attempt's deadline is
    capped to what is left of ``total_deadline_seconds``, and no backoff wait starts after which a whole
    attempt would no longer fit in it, so one ``fetch`` never takes longer than the total.

    Args:
        api_key: the Alpha Vantage key; only ever put in the query string sent.
        budget: request limits shared by every process using the key.
        base_url: the API's endpoint (a fake server's in tests).
        timeout: connect timeout and the longest silence between two reads, in seconds.
        max_retries: retries after the first attempt (``max_retries + 1`` attempts at most).
        backoff_seconds: the first backoff wait; each next one doubles, up to 60 s.
        response_deadline_seconds: the whole response of one attempt (connect, headers, body).
        max_response_bytes: the largest body accepted (after content decoding).
        total_deadline_seconds: all attempts and waits of one ``fetch`` together.
    """

    def __init__(
        self,
        api_key: str,
        budget: RequestBudget,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        response_deadline_seconds: float = DEFAULT_RESPONSE_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        total_deadline_seconds: float = DEFAULT_TOTAL_DEADLINE_SECONDS,
    ) -> None:
        if not api_key:
            raise IngestionError("no Alpha Vantage API key: set ALPHAVANTAGE_API_KEY (or alphavantage.api_key)")
        for name, value in (
            ("timeout", timeout),
            ("response_deadline_seconds", response_deadline_seconds),
            ("max_response_bytes", max_response_bytes),
            ("total_deadline_seconds", total_deadline_seconds),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        self._key = api_key
        self.budget = budget
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.response_deadline_seconds = response_deadline_seconds
        self.max_response_bytes = max_response_bytes
        self.total_deadline_seconds = total_deadline_seconds
        self._wait = wait_exponential(multiplier=backoff_seconds, max=MAX_BACKOFF_SECONDS)
        self.requests_sent = 0

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def backoff_waits(self) -> list[float]:
        """The backoff waits before each retry, in order: the schedule when every attempt fails."""
        waits = []
        for attempt_number in range(1, self.max_retries + 1):
            state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
            state.attempt_number = attempt_number
            waits.append(self._wait(state))
        return waits

    def worst_case_seconds(self) -> float:
        """Every attempt using its whole deadline plus every backoff wait, before the total caps it.

        ``min(worst_case_seconds(), total_deadline_seconds)`` (plus budget waits of the first attempt
        when the budget is saturated, which the total also counts) is how long a hopeless fetch takes.
        """
        return (self.max_retries + 1) * self.response_deadline_seconds + sum(self.backoff_waits())

    async def _get(self, params: dict[str, str], what: str, deadline: float, capped: bool) -> tuple[int, bytes]:
        """One GET, streamed: the whole exchange within ``deadline`` s and the body within the size cap.

        Returns:
            The status and the body; the body of a 429/5xx is not read (retried on the status alone, and
            a server dribbling it must not use up the deadline), a 4xx's only for an excerpt.

        Raises:
            ResponseDeadlineError: the response did not complete within ``deadline``.
            ResponseTooLargeError: the body declared or streamed more than ``max_response_bytes``.
            httpx.TransportError: connect or read timeouts and connection errors.
        """
        limit = self.max_response_bytes
        scope = asyncio.timeout(deadline)
        async with httpx.AsyncClient(timeout=self.timeout, verify=_tls()) as http:
            try:
                async with scope, http.stream("GET", self.base_url, params=params) as resp:
                    status = resp.status_code
                    if status == 429 or status >= 500:
                        return status, b""
                    declared = resp.headers.get("Content-Length", "")
                    if status < 400 and declared.isdigit() and int(declared) > limit:
                        raise ResponseTooLargeError(
                            f"{what}: the response announces {int(declared):,} bytes, more than "
                            f"max_response_bytes={limit:,}; refused unread (not retried: a retry gets the same body)"
                        )
                    cap = limit if status < 400 else ERROR_BODY_BYTES
                    body = bytearray()
                    # Counted as it arrives (after content decoding, so a compressed bomb counts as
                    # what it inflates to): a missing or lying Content-Length cannot make us buffer more.
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > cap:
                            if status >= 400:
                                del body[cap:]
                                break
                            raise ResponseTooLargeError(
                                f"{what}: the response passed max_response_bytes={limit:,} while streaming; "
                                "stopped reading (not retried: a retry gets the same body)"
                            )
                    return status, bytes(body)
            except TimeoutError:
                if not scope.expired():
                    raise
                limit_name = "what was left of total_deadline_seconds" if capped else "response_deadline_seconds"
                raise ResponseDeadlineError(
                    f"{what}: the response did not complete within {deadline:.3g} s ({limit_name})"
                ) from None

    def _send_once(self, request: ApiRequest, deadline_at: float) -> tuple[Payload, ParsedPayload]:
        """One attempt, finished by ``deadline_at`` (``time.monotonic``) at the latest."""
        what = request.describe()
        no_slot = (
            f"{what}: no request slot free in the budget within what is left of "
            f"total_deadline_seconds={self.total_deadline_seconds:g}"
        )
        try:
            # Waits for a slot count in the total too: it bounds how long a request holds a run.
            self.budget.acquire(what, max_wait=max(0.0, deadline_at - time.monotonic()))
        except BudgetExhaustedError:
            raise
        except IngestionError:
            raise TransientApiError(no_slot) from None
        deadline = min(self.response_deadline_seconds, deadline_at - time.monotonic())
        if deadline <= 0:
            raise TransientApiError(no_slot)
        self.requests_sent += 1
        fetched_at = datetime.now(UTC)
        params = {**request.query, "apikey": self._key}
        capped = deadline < self.response_deadline_seconds
        try:
            status, raw = _run_coroutine(lambda: self._get(params, what, deadline, capped))
        except httpx.ConnectTimeout:
            raise TransientApiError(
                f"{what}: could not connect within {self.timeout:.3g} s (timeout_seconds)"
            ) from None
        except httpx.TimeoutException:
            raise TransientApiError(f"{what}: no data for {self.timeout:.3g} s (timeout_seconds)") from None
        except httpx.TransportError as exc:
            raise TransientApiError(f"{what}: connection failed ({type(exc).__name__})") from None
        if status == 429 or status >= 500:
            raise TransientApiError(f"{what}: HTTP {status}")
        if status >= 400:
            raise IngestionError(f"{what}: HTTP {status}: {self.redact(excerpt(raw))}")
        payload = Payload(
            raw=raw, origin=what, source="alphavantage", fetched_at=fetched_at, request_fingerprint=request.fingerprint
        )
        try:
            if request.datatype == "csv" and not raw.lstrip().startswith(b"{"):
                parsed = parse_csv_payload(
                    raw,
                    what,
                    symbol=request.symbol,
                    function=request.function,
                    interval=dict(request.params).get("interval", "daily"),
                )
            else:
                parsed = parse_payload(raw, what, expected_symbol=request.symbol)
            parsed.expect(request.function, request.symbol, dict(request.params).get("interval", "daily"), what)
        except IngestionError as exc:
            raise type(exc)(self.redact(str(exc))) from None
        return payload, parsed

    def fetch(self, request: ApiRequest) -> tuple[Payload, ParsedPayload]:
        """One request, with retries, within ``total_deadline_seconds``.

        Raises:
            IngestionError: one line naming the request, the cause of the last attempt and the advice
                (after retries: "gave up after N attempts in X s").
        """
        attempts = self.max_retries + 1
        total = self.total_deadline_seconds
        started = time.monotonic()
        deadline_at = started + total
        retrying = Retrying(
            retry=retry_if_exception(lambda e: getattr(e, "retryable", False)),
            # No backoff wait after which a whole attempt would no longer fit in the total: a retry cut
            # short by the total would only turn a clear cause into a vaguer one.
            stop=stop_after_attempt(attempts) | stop_before_delay(total - self.response_deadline_seconds),
            wait=self._wait,
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(request, deadline_at)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            made = exc.last_attempt.attempt_number
            elapsed = time.monotonic() - started
            why = "" if made >= attempts else f": no time for another within total_deadline_seconds={total:g}"
            raise IngestionError(
                f"{self.redact(str(last))} (gave up after {made} attempt{'s' if made > 1 else ''} in "
                f"{elapsed:.1f} s{why}; check the service or lower the request rate)"
            ) from None
        raise AssertionError("unreachable")

"""The Alpha Vantage REST client: request factory, retries, throttling and honest errors (httpx).

The key is added to the query string at the last moment and never leaves this module: request
descriptions, fingerprints, landing paths and error texts are built without it, and any text that
might echo it (a response body, an exception) is redacted before it is raised or logged. httpx's own
request logging (which prints full URLs) is turned down for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from stock_lakehouse.ingestion.budget import RequestBudget
from stock_lakehouse.ingestion.errors import IngestionError, excerpt
from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_csv_payload, parse_payload
from stock_lakehouse.symbols import validate_symbol

logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

DEFAULT_BASE_URL = "https://www.alphavantage.co/query"
INTRADAY_INTERVALS = ("1min", "5min", "15min", "30min", "60min")


class TransientApiError(IngestionError):
    """HTTP 429/5xx, a timeout or a connection error: retried with backoff."""

    retryable = True


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
    """Sends ``ApiRequest``s within a ``RequestBudget``, retrying what is transient.

    Retried: throttling bodies (``Note``/``Information`` about request rates), HTTP 429 and 5xx,
    timeouts and connection errors. Failing at once: premium-only endpoint, demo key misuse, invalid
    call or symbol, invalid key, exhausted daily budget, empty or malformed bodies.
    """

    def __init__(
        self,
        api_key: str,
        budget: RequestBudget,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_seconds: float = 2.0,
    ) -> None:
        if not api_key:
            raise IngestionError("no Alpha Vantage API key: set ALPHAVANTAGE_API_KEY (or alphavantage.api_key)")
        self._key = api_key
        self.budget = budget
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.requests_sent = 0

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _send_once(self, http: httpx.Client, request: ApiRequest) -> tuple[Payload, ParsedPayload]:
        what = request.describe()
        self.budget.acquire(what)
        self.requests_sent += 1
        fetched_at = datetime.now(UTC)
        try:
            resp = http.get(self.base_url, params={**request.query, "apikey": self._key})
        except httpx.TimeoutException:
            raise TransientApiError(f"{what}: no answer within {self.timeout:.0f}s") from None
        except httpx.TransportError as exc:
            raise TransientApiError(f"{what}: connection failed ({type(exc).__name__})") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientApiError(f"{what}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise IngestionError(f"{what}: HTTP {resp.status_code}: {self.redact(excerpt(resp.content))}")
        raw = resp.content
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
        """One request, with retries; raises an ``IngestionError`` that names the request and the advice."""
        attempts = self.max_retries + 1
        retrying = Retrying(
            retry=retry_if_exception(lambda e: getattr(e, "retryable", False)),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=60),
            reraise=False,
        )
        with httpx.Client(timeout=self.timeout) as http:
            try:
                for attempt in retrying:
                    with attempt:
                        return self._send_once(http, request)
            except RetryError as exc:
                last = exc.last_attempt.exception()
                raise IngestionError(
                    f"{self.redact(str(last))} (gave up after {attempts} attempts; "
                    "check the service or lower the request rate)"
                ) from None
        raise AssertionError("unreachable")

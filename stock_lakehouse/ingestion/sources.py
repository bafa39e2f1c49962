"""Bar sources, as Dagster resources with one interface: ``fetch(dates_by_symbol, interval)``.

Each yields ``(Payload, ParsedPayload)`` pairs; the bronze asset keeps the bars of the requested
(symbol, date) partitions. Offline: ``ReplaySource`` (recorded responses), ``SyntheticSource``;
live: ``AlphaVantageSource``.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.ingestion.alphavantage import (
    AlphaVantageClient,
    ApiRequest,
    crypto_intraday_request,
    fx_intraday_request,
    intraday_request,
)
from stock_lakehouse.ingestion.budget import RequestBudget
from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.ingestion.errors import IngestionError
from stock_lakehouse.ingestion.landing import LandingZone
from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_payload, peek_meta
from stock_lakehouse.ingestion.synthetic import intraday_payload
from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.settings import AlphaVantageSettings, SyntheticSettings
from stock_lakehouse.symbols import INTERVAL_MINUTES

Fetched = tuple[Payload, ParsedPayload]
#: Bars of a compact answer (the API's ``outputsize=compact``: the latest 100).
COMPACT_BARS = 100
#: A compact refresh is trusted to reach back to the previous one only this many bars short of its reach:
#: the feed publishes a bar some seconds after its close, and a tick may start late.
CATCH_UP_MARGIN_BARS = 5


def fingerprint(*parts: str) -> str:
    """A stable id of a request (function, symbol, interval, month, ...), never including the key."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _parse_file(path: str, mtime_ns: int, size: int) -> tuple[Payload, ParsedPayload]:
    raw = Path(path).read_bytes()
    fetched_at = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    parsed = parse_payload(raw, path)
    payload = Payload(
        raw=raw,
        origin=path,
        source="replay",
        fetched_at=fetched_at,
        request_fingerprint=fingerprint("replay", parsed.function, parsed.symbol, parsed.interval, Path(path).name),
    )
    return payload, parsed


@lru_cache(maxsize=4096)
def _peek_file(path: str, mtime_ns: int, size: int) -> tuple[str, str] | None:
    # Keyed like _parse_file: the next run in this process reads no file it does not use.
    return peek_meta(Path(path).read_bytes())


class BarSource(dg.ConfigurableResource):
    """Where bars come from. Subclasses yield ``(Payload, ParsedPayload)`` for the requested partitions."""

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        raise NotImplementedError

    def describe(self) -> str:
        """The source in a few words, for messages (never a secret)."""
        return type(self).__name__

    def explain_missing(self, symbols: Sequence[str], interval: str) -> str:
        """The likely reason this source yielded no bars for some days of ``symbols``, for messages."""
        return f"{self.describe()} returned no bars for them"


#: The settings blocks state each default once; the resources built from them (wiring) take them too.
_LIVE, _SYNTHETIC = AlphaVantageSettings(), SyntheticSettings()


class ReplaySource(BarSource):
    """Recorded Alpha Vantage JSON responses from a folder (the offline default).

    Every ``*.json`` file under ``folder`` (any name, any depth) is read; its symbol and interval come
    from its ``Meta Data``. Several files may cover the same symbol: silver keeps, per bar, the one from
    the most recently refreshed response. A file that is not a time-series response is an error that
    names the file, unless its ``Meta Data`` certainly names a symbol or interval the run does not ask
    for: such files are skipped without parsing their bars (a run pays for its symbols' payloads only).
    """

    folder: str

    def files(self) -> list[Path]:
        root = Path(self.folder).expanduser()
        if not root.is_dir():
            raise IngestionError(f"replay folder {root} does not exist or is not a folder")
        return sorted(p for p in root.rglob("*.json") if p.is_file())

    def _parsed(self, wanted: Mapping[str, object] | None = None, interval: str | None = None) -> Iterator[Fetched]:
        """Every file parsed, or with ``wanted``/``interval`` those that may hold them: a file whose
        ``Meta Data`` certainly names another symbol or interval (``peek_meta``) is skipped unparsed."""
        for path in self.files():
            stat = path.stat()
            if wanted is not None:
                named = _peek_file(str(path), stat.st_mtime_ns, stat.st_size)
                if named is not None and (named[0] not in wanted or named[1] != interval):
                    continue
            yield _parse_file(str(path), stat.st_mtime_ns, stat.st_size)

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        """Yield the recorded payloads of the requested symbols at ``interval``."""
        for payload, parsed in self._parsed(dates_by_symbol, interval):
            if parsed.symbol in dates_by_symbol and parsed.interval == interval:
                yield payload, parsed

    def describe(self) -> str:
        return f"replay folder {Path(self.folder).expanduser()}"

    def explain_missing(self, symbols: Sequence[str], interval: str) -> str:
        """Says whether the folder is empty, lacks the symbols, holds them at another interval only, or
        holds the interval but not those days."""
        found = [parsed for _, parsed in self._parsed()]
        if not found:
            return f"{self.describe()} holds no *.json payloads"
        reasons = []
        for sym in symbols:
            mine = [p for p in found if p.symbol == sym]
            at_interval = [p for p in mine if p.interval == interval]
            if not mine:
                others = sorted({p.symbol for p in found})
                reasons.append(f"it has no payload for {sym} (it has {', '.join(others[:10])})")
            elif not at_interval:
                got = sorted({p.interval for p in mine})
                reasons.append(f"it has {sym} at {', '.join(got)} only, but the configured interval is {interval}")
            else:
                days = [d for p in at_interval for d in (p.bars["trade_date"].min(), p.bars["trade_date"].max()) if d]
                span = f"{min(days)}..{max(days)}" if days else "no days"
                reasons.append(f"its {interval} payloads of {sym} cover {span} only")
        return f"{self.describe()}: " + "; ".join(reasons)


class SyntheticSource(BarSource):
    """Deterministic synthetic bars in the API's format: any symbol, any trading day, any scale.

    Like a ``month=YYYY-MM`` request, one payload is made per (symbol, month), covering the requested
    days of that month.
    """

    seed: int = _SYNTHETIC.seed
    extended_hours: bool = _SYNTHETIC.extended_hours
    ingestion: dg.ResourceDependency[IngestionConfig]

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        """Yield one generated payload per (symbol, month) of the request (FX/crypto in their layouts)."""
        for symbol, days in dates_by_symbol.items():
            kind = self.ingestion.kind(symbol)
            base, quote = self.ingestion.pair(symbol) if kind != "equity" else (symbol, "USD")
            by_month: dict[str, list[date]] = defaultdict(list)
            for d in days:
                by_month[d.strftime("%Y-%m")].append(d)
            for month, month_days in sorted(by_month.items()):
                raw = intraday_payload(
                    base,
                    month_days,
                    interval,
                    seed=self.seed,
                    extended_hours=self.extended_hours,
                    kind=kind,
                    quote=quote,
                )
                origin = f"synthetic:{kind}:{symbol}:{interval}:{month}"
                parsed = parse_payload(raw, origin)
                payload = Payload(
                    raw=raw,
                    origin=origin,
                    source="synthetic",
                    fetched_at=datetime.now(UTC),
                    request_fingerprint=fingerprint(
                        "synthetic", "TIME_SERIES_INTRADAY", symbol, interval, month, str(self.seed)
                    ),
                )
                yield payload, parsed


class AlphaVantageSource(BarSource):
    """The live Alpha Vantage API (httpx), within a request budget shared across processes.

    Requests are coalesced: each (symbol, month) of a run is one ``month=YYYY-MM`` call; today's partition
    is one call for the latest bars (``latest_outputsize``), and earlier refreshes of today that are in
    the landing zone are replayed with it, so compact refreshes add up to the whole day. A month whose
    payload in the landing zone was fetched after the end of the last requested day is reused instead of
    fetched again, unless ``refresh`` is set. Every response is landed as soon as it arrives.

    Attributes:
        api_key: from ``$ALPHAVANTAGE_API_KEY`` (``EnvVar``): the UI shows the variable's name only.
        settings_file: without ``api_key``, the key is ``alphavantage.api_key`` of these settings (None: the
            usual lookup), read when a client is made: resource config never holds the key.
        timeout_seconds: connect timeout and the longest silence between two reads of a response.
        response_deadline_seconds: the whole response of one attempt (connect, headers and body).
        max_response_bytes: the largest body accepted; a larger one fails at once, unread or cut short.
        total_deadline_seconds: all attempts, backoff and budget waits of one request together.
    """

    api_key: str = ""
    settings_file: str | None = None
    base_url: str = _LIVE.base_url
    outputsize: str = _LIVE.outputsize
    latest_outputsize: str = _LIVE.latest_outputsize
    adjusted: bool = _LIVE.adjusted
    extended_hours: bool = _LIVE.extended_hours
    entitlement: str | None = None
    datatype: str = _LIVE.datatype
    timeout_seconds: float = _LIVE.timeout_seconds
    max_retries: int = _LIVE.max_retries
    backoff_seconds: float = _LIVE.backoff_seconds
    response_deadline_seconds: float = _LIVE.response_deadline_seconds
    max_response_bytes: int = _LIVE.max_response_bytes
    total_deadline_seconds: float = _LIVE.total_deadline_seconds
    refresh: bool = _LIVE.refresh
    per_second: int = _LIVE.budget.per_second
    per_minute: int = _LIVE.budget.per_minute
    per_day: int = _LIVE.budget.per_day
    budget_file: str
    landing: dg.ResourceDependency[LandingZone]
    ingestion: dg.ResourceDependency[IngestionConfig]
    clock: dg.ResourceDependency[Clock]

    def _key(self) -> str:
        if self.api_key:
            return self.api_key
        from stock_lakehouse.settings import load_settings

        key = load_settings(Path(self.settings_file) if self.settings_file else None).alphavantage.api_key
        return key.get_secret_value() if key is not None else ""

    def client(self) -> AlphaVantageClient:
        api_key = self._key()
        key_id = hashlib.sha256(api_key.encode()).hexdigest()[:12]
        budget = RequestBudget(Path(self.budget_file), self.per_second, self.per_minute, self.per_day, key_id)
        return AlphaVantageClient(
            api_key,
            budget,
            base_url=self.base_url,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            response_deadline_seconds=self.response_deadline_seconds,
            max_response_bytes=self.max_response_bytes,
            total_deadline_seconds=self.total_deadline_seconds,
        )

    def request_for(self, symbol: str, interval: str, month: str | None, catch_up: bool = False) -> ApiRequest:
        """The request serving ``symbol`` for ``month`` (None: the latest bars); with ``catch_up``, the one
        serving the day so far (``month`` for a stock, the full latest series for FX and crypto)."""
        kind = self.ingestion.kind(symbol)
        if catch_up and kind == "equity":
            return self.request_for(symbol, interval, month)
        outputsize = self.outputsize if month or catch_up else self.latest_outputsize
        if kind == "fx":
            base, quote = self.ingestion.pair(symbol)
            return fx_intraday_request(base, quote, interval, outputsize=outputsize, datatype=self.datatype)
        if kind == "crypto":
            coin, market = self.ingestion.pair(symbol)
            return crypto_intraday_request(coin, market, interval, outputsize=outputsize, datatype=self.datatype)
        return intraday_request(
            symbol,
            interval,
            month=month,
            outputsize=outputsize,
            adjusted=self.adjusted,
            extended_hours=self.extended_hours,
            entitlement=self.entitlement,
            datatype=self.datatype,
        )

    def describe(self) -> str:
        return "the Alpha Vantage API"

    def explain_missing(self, symbols: Sequence[str], interval: str) -> str:
        return (
            f"the Alpha Vantage API returned no {interval} bars for those days of {', '.join(symbols)} (a listing "
            "that did not trade then, or a month not served yet)"
        )

    def fetch(self, dates_by_symbol: Mapping[str, Sequence[date]], interval: str) -> Iterator[Fetched]:
        """Yield one payload per (symbol, month) of the request, fetched or reused from the landing zone.

        Today (on the ``clock``) is one request for the latest bars, replayed with those of today's earlier
        refreshes in the landing zone that hold the rest of the day (``todays_refreshes``); when they would
        leave a hole, the request is the day so far instead: the current month for a stock, the full latest
        series for FX and crypto.
        """
        client = self.client()
        now = self.clock.now()
        today = now.astimezone(ZoneInfo(EXCHANGE_TZ)).date()
        midnight = datetime.combine(today, time(0, 0), ZoneInfo(EXCHANGE_TZ))
        reach = timedelta(minutes=INTERVAL_MINUTES[interval] * (COMPACT_BARS - CATCH_UP_MARGIN_BARS))
        for symbol, days in dates_by_symbol.items():
            groups: dict[str | None, list[date]] = defaultdict(list)
            for d in days:
                # FX and crypto have no month parameter: their requests are always "latest".
                latest = d >= today or self.ingestion.kind(symbol) != "equity"
                groups[None if latest else d.strftime("%Y-%m")].append(d)
            for month, group in sorted(groups.items(), key=lambda kv: kv[0] or "9999"):
                folder_month = month or today.strftime("%Y-%m")
                request = self.request_for(symbol, interval, month)
                where = (request.function, symbol, interval, folder_month)
                wanted = [d.isoformat() for d in group]  # a landed body's other days are not parsed again
                replay: list[Fetched] = []
                if month is not None and not self.refresh:
                    complete_after = datetime.combine(max(group), time(20, 0), ZoneInfo(EXCHANGE_TZ))
                    covering = [n for t, n in self.landing.stamps(*where, request.fingerprint) if t >= complete_after]
                    if covering:
                        yield self.landing.read(*where, covering[-1], days=wanted)
                        continue
                if month is None and self.latest_outputsize == "compact":
                    # Only today's refreshes can hold today's bars; their file names say when they were fetched.
                    catch_up = self.request_for(symbol, interval, folder_month, catch_up=True)
                    landed = sorted(
                        (t, r is catch_up, n)
                        for r in (request, catch_up)
                        for t, n in self.landing.stamps(*where, r.fingerprint)
                        if t >= midnight
                    )
                    whole_day, picked = todays_refreshes([(t, full) for t, full, _ in landed], now, reach)
                    if whole_day:
                        request = catch_up
                    replay = [self.landing.read(*where, landed[i][2], days=wanted) for i in picked]
                payload, parsed = client.fetch(request)
                payload = replace(payload, month=folder_month, fetched_at=now)
                self.landing.store(payload, parsed, restamp=month is None)
                yield from replay  # silver keeps, per bar, the one from the newest response
                yield payload, parsed


def todays_refreshes(
    landed: Sequence[tuple[datetime, bool]], now: datetime, reach: timedelta
) -> tuple[bool, list[int]]:
    """Which of today's landed refreshes a compact request fetched ``now`` needs beside it to hold the day.

    A compact answer fetched at ``t`` holds at least the bars that closed in ``(t - reach, t]`` (``reach`` is
    the compact answer's bars less a margin for the feed's delay); a day-so-far answer holds the whole day up
    to its fetch. Walking back from ``now``, each step takes, among the refreshes within reach of the last
    one taken, a day-so-far one (which ends the walk) or else the oldest (it reaches furthest back). A bar
    is taken from one response that holds it, not necessarily the newest: bars are final once published.

    Args:
        landed: ``(fetched_at, day_so_far)`` of today's landed refreshes, oldest first.

    Returns:
        ``(whole_day, picked)``: ``whole_day`` when no landed refresh is within reach of ``now`` (none today,
        or a gap such as a restart): then the request must be the day so far, and nothing is replayed.
        Else the indices of ``landed`` to replay, oldest first.
    """
    if not landed or now - landed[-1][0] > reach:
        return True, []
    picked: list[int] = []
    t = now
    while True:
        within = [i for i, (f, _) in enumerate(landed) if t - reach <= f < t]
        if not within:  # a hole no refresh covers (a day fetched otherwise): keep every older bar there is
            older = [i for i, (f, _) in enumerate(landed) if f < t - reach]
            if not older:
                break
            within = older[-1:]
        whole = [i for i in within if landed[i][1]]
        pick = whole[-1] if whole else within[0]
        picked.append(pick)
        if landed[pick][1]:
            break
        t = landed[pick][0]
    return False, sorted(picked)

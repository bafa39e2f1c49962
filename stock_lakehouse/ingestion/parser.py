"""The one parser for Alpha Vantage time-series payloads, shared by the live, replay and synthetic sources.

Values stay the API's strings (bronze keeps what was received). Duplicate timestamps inside one
payload are kept in order (``bar_seq``), since ``json.loads`` would silently keep only the last one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from stock_lakehouse.ingestion.errors import MalformedPayloadError, classify_api_message, excerpt
from stock_lakehouse.symbols import validate_interval, validate_symbol

BAR_FIELDS = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close", "5. volume": "volume"}
BRONZE_BAR_COLUMNS = ["symbol", "trade_date", "ts", "bar_seq", "open", "high", "low", "close", "volume"]

# Series key prefix -> Alpha Vantage function that produces it.
_SERIES_FUNCTIONS = (
    ("Time Series FX (", "FX_INTRADAY"),
    ("Time Series Crypto (", "CRYPTO_INTRADAY"),
    ("Time Series (Daily)", "TIME_SERIES_DAILY"),
    ("Time Series (", "TIME_SERIES_INTRADAY"),
)


@dataclass(frozen=True)
class Payload:
    """One response body as received, with where it came from (never the API key)."""

    raw: bytes
    origin: str
    source: str
    fetched_at: datetime
    request_fingerprint: str
    #: the month folder of the landing zone (the requested month); default: from the payload
    month: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class ParsedPayload:
    """Meta data and bars (strings, newest first as received) of one payload."""

    function: str
    symbol: str
    interval: str
    time_zone: str
    last_refreshed: str
    bars: pd.DataFrame  # columns BRONZE_BAR_COLUMNS

    def expect(self, function: str, symbol: str, interval: str, origin: str) -> None:
        """Raise unless this payload answers the request (function, symbol, interval).

        A response for another symbol or interval would land in the wrong folder and fill the wrong
        partitions, so it is refused before it is stored.
        """
        if (self.function, self.symbol, self.interval) != (function, symbol, interval):
            raise MalformedPayloadError(
                f"{origin}: the response is {self.function} {self.symbol} {self.interval}, not the requested "
                f"{function} {symbol} {interval}; it was not used"
            )


# A timestamp-like object key (`"2024-03-12 19:59:00":`), to count labels in a raw body.
_LABEL_KEY = re.compile(rb'"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2})?)?"\s*:')


class _Pairs(list):
    """JSON object kept as its (key, value) pairs, so duplicate keys survive."""

    def get(self, key, default=None):
        for k, v in reversed(self):
            if k == key:
                return v
        return default

    def as_dict(self) -> dict:
        return dict(self)


def _meta_value(meta: dict, suffix: str) -> str | None:
    for key, value in meta.items():
        if key.split(". ", 1)[-1] == suffix:
            return str(value)
    return None


def _symbol_of(meta: dict, function: str) -> str | None:
    if function == "FX_INTRADAY":
        base, quote = _meta_value(meta, "From Symbol"), _meta_value(meta, "To Symbol")
        return f"{base}{quote}" if base and quote else None
    if function == "CRYPTO_INTRADAY":
        base, market = _meta_value(meta, "Digital Currency Code"), _meta_value(meta, "Market Code")
        return f"{base}{market}" if base and market else None
    return _meta_value(meta, "Symbol")


def peek_meta(raw: bytes) -> tuple[str, str] | None:
    """The (symbol, interval) a JSON payload's ``Meta Data`` names, read without parsing its bars; None
    unless that answer is certainly ``parse_payload``'s.

    Why: a replay folder holds every symbol's month payloads; a run for one symbol need not parse the
    others (a month of 1-minute bars is ~3 MB of JSON). The answer is only given when the body has one
    ``Meta Data`` and one ``Time Series`` key, the ``Meta Data`` object is flat, and symbol and interval
    are valid; anything else (duplicates, escapes, odd layouts) is left to the full parse.
    """
    try:
        if raw.count(b'"Meta Data"') != 1 or raw.count(b'"Time Series') != 1:
            return None
        start = raw.index(b"{", raw.index(b'"Meta Data"'))
        meta = json.loads(raw[start : raw.index(b"}", start) + 1])
        at = raw.index(b'"Time Series') + 1
        series_key = raw[at : raw.index(b'"', at)].decode()
        function = next((fn for prefix, fn in _SERIES_FUNCTIONS if series_key.startswith(prefix)), None)
        if not isinstance(meta, dict) or function is None or function == "TIME_SERIES_DAILY":
            return None
        symbol, interval = _symbol_of(meta, function), _meta_value(meta, "Interval")
        if not symbol or not interval:
            return None
        return validate_symbol(symbol, "Meta Data"), validate_interval(interval, "Meta Data")
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError and an invalid symbol are ValueErrors
        return None


def parse_payload(
    raw: bytes, origin: str, *, expected_symbol: str | None = None, days: Collection[str] | None = None
) -> ParsedPayload:
    """Parse a JSON time-series payload.

    Args:
        raw: the body, byte for byte.
        origin: where it came from (file or request description), used in error messages.
        expected_symbol: for live requests, the symbol asked for (named in API error messages).
        days: keep only the bars of these days (``YYYY-MM-DD``, a label's first ten characters), each with
            its position in the whole series as ``bar_seq``; bars of other days are not checked. For bodies
            parsed whole before (landed payloads): a tick that replays the day-so-far month payload needs
            one day of its 13,000-odd bars, and building their frame is most of the parse.

    Raises:
        MalformedPayloadError: not JSON, or no ``Meta Data``/series, or a bar that is not an object.
        ApiMessageError / EmptyPayloadError: the API answered a message instead of data.
    """
    try:
        top = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayloadError(f"{origin}: not valid JSON ({exc.msg}): {excerpt(raw)}") from None
    if not isinstance(top, dict):
        raise MalformedPayloadError(f"{origin}: expected a JSON object, got: {excerpt(raw)}")
    series_key = next((k for k in top if k.startswith("Time Series")), None)
    if "Meta Data" not in top or series_key is None:
        if not top or {"Error Message", "Information", "Note"} & set(top):
            raise classify_api_message(top, symbol=expected_symbol or "?", function=f"{origin}:")
        raise MalformedPayloadError(
            f"{origin}: no 'Meta Data' and 'Time Series (...)' objects; keys are {sorted(top)[:6]}"
        )
    meta = top["Meta Data"] if isinstance(top["Meta Data"], dict) else {}
    function = next(fn for prefix, fn in _SERIES_FUNCTIONS if series_key.startswith(prefix))
    symbol = _symbol_of(meta, function) or expected_symbol
    if not symbol:
        raise MalformedPayloadError(f"{origin}: 'Meta Data' names no symbol")
    interval = "daily" if function == "TIME_SERIES_DAILY" else _meta_value(meta, "Interval")
    if not interval:
        interval = series_key[series_key.rfind("(") + 1 : -1]
    # Meta Data is outside input: it names landing folders and partitions, so it must fit the grammar.
    try:
        symbol = validate_symbol(symbol, "its 'Meta Data'")
        interval = validate_interval(interval, "its 'Meta Data'")
    except ValueError as exc:
        raise MalformedPayloadError(f"{origin}: {exc}") from None
    time_zone = _meta_value(meta, "Time Zone") or "US/Eastern"
    last_refreshed = _meta_value(meta, "Last Refreshed") or ""
    if not isinstance(top[series_key], dict):
        raise MalformedPayloadError(f"{origin}: '{series_key}' is not an object")
    return ParsedPayload(
        function,
        symbol,
        interval,
        time_zone,
        last_refreshed,
        _bars_frame(raw, series_key, top[series_key], symbol, origin, keep_days=days),
    )


def _series_pairs(raw: bytes, series_key: str, series: dict) -> list[tuple[str, object]]:
    """The series as (label, bar) pairs in payload order, repeated labels included.

    ``json.loads`` keeps only the last of repeated keys; counting label-like keys in the raw text tells
    whether any were repeated, and only then is the body re-read pair by pair (slow, exact).
    """
    if len(_LABEL_KEY.findall(raw)) <= len(series):
        return list(series.items())
    top = json.loads(raw, object_pairs_hook=_Pairs)
    return [(label, bar.as_dict() if isinstance(bar, _Pairs) else bar) for label, bar in top.get(series_key)]


def _bars_frame(
    raw: bytes, series_key: str, series: dict, symbol: str, origin: str, keep_days: Collection[str] | None = None
) -> pd.DataFrame:
    pairs = _series_pairs(raw, series_key, series)
    positions: Sequence[int] = range(len(pairs))
    if keep_days is not None:
        keep = set(keep_days)
        positions = [i for i, (label, _) in enumerate(pairs) if label[:10] in keep]
        pairs = [pairs[i] for i in positions]
    labels = [label for label, _ in pairs]
    bars = [bar for _, bar in pairs]
    for label, bar in pairs:
        if not isinstance(bar, dict):
            raise MalformedPayloadError(f"{origin}: bar {label!r} of {symbol} is not an object: {excerpt(str(bar))}")
    label_s = pd.Series(labels, dtype=object)
    days = pd.to_datetime(label_s.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    bad = days.isna() | (label_s.str.len() < 10)
    if bad.any():
        label = labels[int(bad.to_numpy().argmax())]
        raise MalformedPayloadError(
            f"{origin}: bar label {label!r} of {symbol} is not a 'YYYY-MM-DD[ HH:MM:SS]' timestamp"
        )
    fields = (
        pd.DataFrame.from_records(bars, columns=list(BAR_FIELDS)) if bars else pd.DataFrame(columns=list(BAR_FIELDS))
    )
    out = pd.DataFrame(
        {
            "symbol": symbol,
            "trade_date": days.dt.date,
            "ts": label_s.where(label_s.str.len() > 10, label_s + " 00:00:00"),
            "bar_seq": positions,
        }
    )
    for api_name, col in BAR_FIELDS.items():
        values = fields[api_name]
        out[col] = values.where(values.isna(), values.astype(str)).astype(object).where(values.notna(), None)
    return out[BRONZE_BAR_COLUMNS]


def repeated_instants(labels: pd.Series) -> int:
    """How many bar labels repeat an instant that an earlier label of the same payload already names.

    Identity is the instant, not the text (DESIGN §13): ``10:00``, ``10:00:00`` and ``T10:00:00.000`` are
    one bar. Silver keeps the later entry of such a pair; this count makes the pair visible in bronze's
    metadata. Labels that parse as no timestamp are compared by their text.
    """
    if labels.empty:
        return 0
    if (labels.str.len() == 19).all():  # the API's own layout: equal instants are equal texts
        return int(labels.duplicated().sum())
    instants = pd.to_datetime(labels, format="ISO8601", errors="coerce")
    keys = instants.astype(str).where(instants.notna(), "label:" + labels)
    return int(keys.duplicated().sum())


def parse_csv_payload(raw: bytes, origin: str, *, symbol: str, function: str, interval: str) -> ParsedPayload:
    """Parse a ``datatype=csv`` body (``timestamp,open,high,low,close[,volume]``, newest first).

    CSV carries no meta data, so the request supplies symbol, function and interval; the time zone is
    the function's (US/Eastern for stocks, UTC for FX and crypto) and the newest bar is taken as the
    last refresh.
    """
    import csv
    import io

    try:
        symbol = validate_symbol(symbol, "the request")
    except ValueError as exc:
        raise MalformedPayloadError(f"{origin}: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedPayloadError(f"{origin}: CSV body is not UTF-8: {excerpt(raw)}") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if not header or header[0] not in ("timestamp", "time") or "close" not in header:
        raise MalformedPayloadError(f"{origin}: CSV header {header[:6]} is not timestamp,open,high,low,close,...")
    idx = {name: header.index(name) for name in ("open", "high", "low", "close", "volume") if name in header}
    rows: dict[str, list] = {c: [] for c in BRONZE_BAR_COLUMNS}
    for seq, rec in enumerate(reader):
        if not rec:
            continue
        label = rec[0].strip()
        try:
            day = datetime.strptime(label[:10], "%Y-%m-%d").date()
        except ValueError:
            raise MalformedPayloadError(f"{origin}: CSV row {seq + 2} of {symbol}: bad timestamp {label!r}") from None
        rows["symbol"].append(symbol)
        rows["trade_date"].append(day)
        rows["ts"].append(label if len(label) > 10 else f"{label} 00:00:00")
        rows["bar_seq"].append(seq)
        for col in ("open", "high", "low", "close", "volume"):
            pos = idx.get(col)
            rows[col].append(rec[pos].strip() if pos is not None and pos < len(rec) and rec[pos].strip() else None)
    time_zone = "US/Eastern" if function.startswith("TIME_SERIES") else "UTC"
    last = rows["ts"][0] if rows["ts"] else ""
    return ParsedPayload(function, symbol, interval, time_zone, last, pd.DataFrame(rows))

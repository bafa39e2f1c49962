"""Errors raised while fetching or parsing Alpha Vantage payloads.

Alpha Vantage answers most problems with HTTP 200 and a JSON body keyed ``Error Message``,
``Information`` or ``Note``; ``classify_api_message`` turns such a body into one of these classes so
callers can tell what to retry (throttling) from what to stop on at once. Messages never carry the key.
"""

from __future__ import annotations


class IngestionError(RuntimeError):
    """Base class: something about a payload or a request is wrong. The message says what to do."""

    retryable = False


class MalformedPayloadError(IngestionError):
    """The body is not the JSON/CSV layout we expect (a short excerpt is included)."""


class EmptyPayloadError(IngestionError):
    """The API answered ``{}``: usually a wrong parameter combination."""


class ApiMessageError(IngestionError):
    """The API answered with a message body instead of data."""


class ThrottledError(ApiMessageError):
    """Per-second/per-minute rate limit: wait and retry."""

    retryable = True


class DailyLimitError(ApiMessageError):
    """The key's daily request budget is spent: retrying today is pointless."""


class PremiumEndpointError(ApiMessageError):
    """The function or option needs a premium key."""


class DemoKeyError(ApiMessageError):
    """The ``demo`` key only serves the documentation's examples."""


class InvalidCallError(ApiMessageError):
    """Invalid API call: a wrong symbol, function or parameter."""


class InvalidKeyError(ApiMessageError):
    """The API key is missing or not valid."""


def excerpt(raw: bytes | str, limit: int = 160) -> str:
    """A short, single-line excerpt of a body, for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def classify_api_message(body: dict, *, symbol: str, function: str) -> ApiMessageError | EmptyPayloadError:
    """Map an Alpha Vantage message body (no data) to an error that names the symbol and the advice."""
    if not body:
        return EmptyPayloadError(
            f"{function} {symbol}: the API answered an empty object {{}}; check the function, symbol and "
            "interval parameters"
        )
    text = " ".join(str(v) for k, v in body.items() if k in ("Error Message", "Information", "Note"))
    low = text.lower()
    where = f"{function} {symbol}"
    if "is a premium endpoint" in low:
        return PremiumEndpointError(
            f"{where}: this endpoint needs a premium Alpha Vantage key; use a premium key, or the replay/"
            "synthetic source offline"
        )
    if "demo" in low and "api key" in low:
        return DemoKeyError(
            f"{where}: the demo key only serves the documentation's examples (e.g. IBM); set "
            "ALPHAVANTAGE_API_KEY to your own key"
        )
    if "apikey" in low.replace(" ", "") and ("invalid" in low or "missing" in low):
        return InvalidKeyError(f"{where}: the API key is missing or invalid; check ALPHAVANTAGE_API_KEY")
    if "per day" in low and "spreading out" not in low and "per second" not in low and "per minute" not in low:
        return DailyLimitError(
            f"{where}: the key's daily request limit is reached; wait until tomorrow or use a premium key"
        )
    if "rate limit" in low or "call frequency" in low or "per second" in low or "sparingly" in low:
        return ThrottledError(f"{where}: throttled by the API ({excerpt(text, 80)}); retry after a pause")
    if "Error Message" in body or "invalid api call" in low:
        return InvalidCallError(f"{where}: invalid API call; check that the symbol exists and the parameters are valid")
    return ApiMessageError(f"{where}: the API answered a message instead of data: {excerpt(text)}")

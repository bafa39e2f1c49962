"""The one validator of symbols, used wherever a symbol enters: config, CLI, UI-added partitions,
API responses and replay files.

Why one strict grammar instead of escaping: a symbol becomes a Delta ``replaceWhere`` predicate, a
landing-zone path segment and a Dagster partition key. Quote-doubling is not an escape in Spark SQL
(backslashes are, and adjacent literals concatenate), ``..`` or ``/`` walk out of a folder, and ``|``
splits a multi-partition key. Exchange tickers need none of that: letters, digits, ``.`` and ``-``
(``BRK.B``, ``BRK-B``, ``SHOP.TRT``), starting with a letter or digit, at most 20 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,19}")
#: Bar intervals and their length in minutes: the one table of intervals. A bar's label must lie on its
#: interval's grid (a whole multiple of these minutes since midnight), see ``transforms.to_silver``.
INTERVAL_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60, "daily": 24 * 60}
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


class InvalidSymbolError(ValueError):
    """A symbol outside the grammar; the message names it and where it came from."""


def validate_symbol(raw: object, where: str) -> str:
    """The symbol, upper-cased and stripped, or an error naming it and its origin.

    Args:
        raw: the value as received.
        where: where it came from (``--symbols``, ``config symbols``, a file path, a partition key).

    Raises:
        InvalidSymbolError: not 1-20 of ``A-Z 0-9 . -`` starting with a letter or digit.
    """
    sym = str(raw).strip().upper()
    if not _SYMBOL.fullmatch(sym):
        raise InvalidSymbolError(
            f"invalid symbol {str(raw)[:40]!r} from {where}: a symbol is 1-20 letters, digits, '.' or '-', "
            "starting with a letter or digit"
        )
    return sym


def validate_symbols(values: Iterable[object], where: str) -> list[str]:
    """Each value validated (see ``validate_symbol``), duplicates dropped, order kept."""
    out: list[str] = []
    for raw in values:
        sym = validate_symbol(raw, where)
        if sym not in out:
            out.append(sym)
    return out


def validate_interval(raw: object, where: str) -> str:
    """A bar interval (``1min`` ... ``60min`` or ``daily``), or an error naming it and its origin."""
    value = str(raw).strip()
    if value not in INTERVAL_MINUTES:
        raise ValueError(f"invalid interval {value[:40]!r} from {where}: expected one of {', '.join(INTERVAL_MINUTES)}")
    return value


def validate_month(raw: object, where: str) -> str:
    """A ``YYYY-MM`` month, or an error naming it and its origin."""
    value = str(raw).strip()
    if not _MONTH.fullmatch(value):
        raise ValueError(f"invalid month {value[:40]!r} from {where}: expected YYYY-MM")
    return value

"""What a link asks the dashboard for (``/?symbol=NVDA&start=2024-03-01&end=2024-03-12``), each value checked,
and a note for each value the page did not take as given.

Why apart from the layout: a link is input from anyone, and the page must say what it did with it rather
than silently show something else. These are pure functions (no Dash, no lake), unit-tested in the quick
lane; the page shows their notes as text (never as HTML).

The rules:

- ``symbol``: checked by ``symbols.validate_symbol`` (the project's one grammar), which upper-cases it:
  ``nvda`` is ``NVDA``, taken without a note. A value outside the grammar (markup, quotes, SQL) is refused
  with the validator's message and never reaches a read; a valid symbol without bars in silver is
  refused as unknown. Either way the page says which symbol it shows instead, or that it shows none.
- ``start`` / ``end``: ``YYYY-MM-DD`` and a real date; anything else is refused and the symbol's first or
  last day shown instead, with the range named. A start after the end is taken as given: the view then
  says there is nothing to show (``app.view``), as it does for a range without bars (a start after the
  symbol's last day leaves the end open rather than fill it in before the start).
- Any other name is ignored, with a note naming it; a value given twice is taken from its first place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs

from stock_lakehouse.symbols import InvalidSymbolError, validate_symbol

#: The query values the page reads.
PARAMETERS = ("symbol", "start", "end")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHOWN = 40  # characters of a refused value repeated on the page


@dataclass(frozen=True)
class Asked:
    """What the page shows for a link: the symbol and range, and a note per value it did not take as given."""

    symbol: str | None
    start: date | None
    end: date | None
    notes: tuple[str, ...] = ()


def _shown(raw: str) -> str:
    """A refused value as the page repeats it: quoted, at most 40 characters."""
    return repr(raw[:_SHOWN])


def parse_day(raw: str) -> date | None:
    """A ``YYYY-MM-DD`` date, or None (another form, or no such day: ``2024-13-45``, ``2024-02-30``)."""
    if not _DAY.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def span(start: date | None, end: date | None) -> str:
    """A range as the notes name it."""
    return f"{start or 'the first day'} to {end or 'the last day'}"


def resolve(
    search: str | None,
    symbols: Sequence[str],
    current: str | None,
    bounds: Callable[[str], tuple[date | None, date | None]],
) -> Asked:
    """The view a link asks for, and what the page says about each value it did not take as given.

    Args:
        search: the URL's query string (``?symbol=NVDA&start=...``), as the browser gives it.
        symbols: the symbols with bars in silver (the picker's options).
        current: the symbol shown now (the first one on a new page): shown when the link's is refused.
        bounds: a symbol's first and last trade date (read only for a missing or refused date).

    Returns:
        The symbol (one of ``symbols``, or None when there are none), the range (a missing or refused
        date is the symbol's first or last day) and the notes: the symbol's, the start's, the end's,
        then the names ignored.
    """
    query = parse_qs((search or "").lstrip("?"))
    given = {name: query[name][0] for name in PARAMETERS if name in query}
    notes = {name: [] for name in PARAMETERS}
    for name in given:
        if len(query[name]) > 1:
            notes[name].append(f"{name} is given {len(query[name])} times in the link: using the first")

    symbol = current if current in symbols else (symbols[0] if symbols else None)
    if "symbol" in given:
        instead = f"showing {symbol} instead" if symbol else "showing no symbol: the lake has none yet"
        try:
            wanted = validate_symbol(given["symbol"], "the link")
        except InvalidSymbolError as exc:  # markup, quotes, SQL: refused here, never read with
            notes["symbol"].append(f"{exc}; {instead}")
        else:
            if wanted in symbols:
                symbol = wanted
            else:
                notes["symbol"].append(f"unknown symbol {wanted}: it has no bars in silver; {instead}")

    days = {name: parse_day(given[name]) if name in given else None for name in ("start", "end")}
    start, end = days["start"], days["end"]
    if symbol and (start is None or end is None):
        # A missing or refused date is the symbol's first or last day, unless that would put the start
        # after the end: then it stays open, and the view says the symbol has no bars in that range.
        first, last = bounds(symbol)
        if start is None and first is not None and (end is None or first <= end):
            start = first
        if end is None and last is not None and (start is None or start <= last):
            end = last
    for name, day in days.items():
        if name in given and day is None:
            shown = f"showing {span(start, end)}" if symbol else "ignored"
            notes[name].append(f"invalid {name} date {_shown(given[name])} (expected YYYY-MM-DD): {shown}")

    out = [note for name in PARAMETERS for note in notes[name]]
    unknown = [name for name in query if name not in PARAMETERS]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        names = ", ".join(_shown(n) for n in unknown[:5]) + more
        out.append(f"ignored {names} in the link: the page reads symbol, start and end")
    return Asked(symbol, start, end, tuple(out))

"""Partitions: symbol x trading date, and predicates built from partition keys.

The symbol dimension is dynamic (``stock_symbols``) so the UI can add a symbol; ``sync_symbols`` keeps it
in step with the configured list. Dates are weekdays in America/New_York; exchange holidays stay
partitions and materialize to zero rows with ``market_closed`` metadata, so a backfill over a range never
has holes; a trading day with no rows (the source had none) is not recorded as materialized (``EMPTY``).
Multi-partition keys order dimensions by name, so a key string reads ``2024-03-13|NVDA``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from stock_lakehouse.symbols import validate_symbol

SYMBOLS_PARTITIONS_NAME = "stock_symbols"


def symbol_partitions() -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS_NAME)


def date_partitions(start: str) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1 makes today's partition exist while the market is open (intraday refresh).
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        start=start,
        fmt="%Y-%m-%d",
        timezone="America/New_York",
        end_offset=1,
    )


def bars_partitions(start: str) -> dg.MultiPartitionsDefinition:
    """The (symbol, date) partitions shared by every table asset."""
    return dg.MultiPartitionsDefinition({"symbol": symbol_partitions(), "date": date_partitions(start)})


def sync_symbols(instance: dg.DagsterInstance, symbols: Sequence[str]) -> list[str]:
    """Add configured symbols missing from the instance's dynamic dimension; returns those added.

    Callers pass validated symbols (settings and the CLI validate them); they are checked again here so
    nothing invalid is ever added to the instance.
    """
    symbols = [validate_symbol(s, "the symbols to add to the instance") for s in symbols]
    existing = set(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
    missing = [s for s in symbols if s not in existing]
    if missing:
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, missing)
    return missing


@dataclass(frozen=True, order=True)
class BarPartition:
    """One (symbol, trade date) partition."""

    symbol: str
    trade_date: date

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"symbol": self.symbol, "date": self.trade_date.isoformat()})


def parse_keys(keys: Iterable[str]) -> list[BarPartition]:
    """Sorted partitions from multi-partition keys (``MultiPartitionKey`` or ``date|symbol`` strings).

    Partition keys can come from the UI (a symbol added by hand), so each symbol is validated here,
    before it reaches a predicate or a path.

    Raises:
        ValueError: a key that is not ``YYYY-MM-DD|SYMBOL`` or whose symbol is invalid (the key is named).
    """
    out = set()
    for key in keys:
        if isinstance(key, dg.MultiPartitionKey):
            dims = key.keys_by_dimension
            sym, day = dims["symbol"], dims["date"]
        else:
            try:
                day, sym = str(key).split("|")
            except ValueError:
                raise ValueError(f"partition key {key!r} is not of the form 'YYYY-MM-DD|SYMBOL'") from None
        try:
            parsed_day = date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"partition key {str(key)!r}: {day!r} is not a YYYY-MM-DD date") from None
        out.add(BarPartition(validate_symbol(sym, f"partition key {str(key)[:60]!r}"), parsed_day))
    return sorted(out)


def describe_partitions(parts: Sequence[BarPartition], limit: int = 5) -> str:
    """``NVDA 2024-03-04, NVDA 2024-03-05 and 3 more``: partitions named in messages."""
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(f"{p.symbol} {p.trade_date}" for p in parts[:limit]) + more


def describe_span(parts: Sequence[BarPartition], limit: int = 5) -> str:
    """``6 partition(s): AAA, BBB x 2024-03-04..2024-03-06``: the extent of a run in one short phrase."""
    if not parts:
        return "0 partitions"
    symbols = sorted({p.symbol for p in parts})
    days = sorted({p.trade_date for p in parts})
    named = ", ".join(symbols[:limit]) + (f" and {len(symbols) - limit} more" if len(symbols) > limit else "")
    dates = str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"
    return f"{len(parts)} partition(s): {named} x {dates}"


def dates_by_symbol(parts: Iterable[BarPartition]) -> dict[str, list[date]]:
    grouped: dict[str, set[date]] = defaultdict(set)
    for p in parts:
        grouped[p.symbol].add(p.trade_date)
    return {sym: sorted(days) for sym, days in sorted(grouped.items())}


def _sql_symbol(value: str) -> str:
    # Validated, so no quote, backslash or space can reach the predicate (Spark SQL escapes with
    # backslashes and concatenates adjacent literals: quote-doubling is no escape there).
    return "'" + validate_symbol(value, "a partition predicate") + "'"


def _sql_date(value: date) -> str:
    return f"DATE '{date(value.year, value.month, value.day).isoformat()}'"


def partition_predicate(parts: Sequence[BarPartition], *, history: bool = False) -> str:
    """SQL predicate selecting exactly ``parts`` on columns ``symbol`` and ``trade_date``.

    Built per symbol from the key list, never from a range, so sets that are not rectangles (a
    partition range that varies in both dimensions) select nothing extra. With ``history=True`` every
    row of the symbols is selected: windows reach back over earlier trading days, and the later days
    whose windows reach the requested ones are rewritten with them (``partitions_after``).
    """
    if not parts:
        raise ValueError("no partitions to build a predicate from")
    clauses = []
    for sym, days in dates_by_symbol(parts).items():
        if history:
            clauses.append(f"(symbol = {_sql_symbol(sym)})")
            continue
        if len(days) == 1:
            cond = f"trade_date = {_sql_date(days[0])}"
        else:
            cond = "trade_date IN (" + ", ".join(_sql_date(d) for d in days) + ")"
        clauses.append(f"(symbol = {_sql_symbol(sym)} AND {cond})")
    return " OR ".join(clauses)


#: ``partition_status`` of a materialization that a run reports for a later partition it rewrote with its
#: own (the later date's window reaches the run's); not one of the run's partitions.
FOLLOW_ON = "follow_on"


#: ``partition_status`` of an observation a run records for a trading-day partition that has no rows in the
#: table after its write (the source had none): such a partition is not recorded as materialized
#: (``runs/event_storage.py`` drops the step's materialization of it). Holidays keep theirs: closed markets
#: are complete with no rows.
EMPTY = "empty"


def _status(metadata: Mapping[str, Any]) -> Any:
    value = metadata.get("partition_status")
    return getattr(value, "value", value)


def is_follow_on(metadata: Mapping[str, Any]) -> bool:
    """Whether a materialization's metadata (values or ``MetadataValue``s) marks a follow-on partition."""
    return _status(metadata) == FOLLOW_ON


def is_empty(metadata: Mapping[str, Any]) -> bool:
    """Whether an observation's metadata (values or ``MetadataValue``s) marks an empty trading-day partition."""
    return _status(metadata) == EMPTY


def partitions_after(
    present: Iterable[BarPartition], changed: Sequence[BarPartition], rows: int | None
) -> list[BarPartition]:
    """The ``present`` partitions, outside ``changed``, whose trailing window reaches a changed one.

    A row computed over a symbol's previous rows (``prev_close``, 7-day windows, EMAs) goes stale when
    an earlier date is written after it: by a re-run of that date, or by another run of the same
    backfill (a backfill split per date runs two dates at once). Per symbol, these are the next
    ``rows`` present dates after each changed date, or every later one when ``rows`` is None
    (recursive indicators).
    """
    changed_set = set(changed)
    later: set[BarPartition] = set()
    by_symbol = dates_by_symbol(present)
    for sym, days in dates_by_symbol(changed).items():
        known = by_symbol.get(sym, [])
        for day in days:
            after = [d for d in known if d > day]
            later.update(BarPartition(sym, d) for d in (after if rows is None else after[:rows]))
    return sorted(later - changed_set)


def contiguous_groups(selected: Sequence[str], ordered: Sequence[str]) -> list[list[str]]:
    """Split ``selected`` into runs of neighbours in ``ordered`` (the dimension's key order).

    A ranged Dagster run covers a rectangle of the dimension's order, so each group becomes one run
    without sweeping in unselected symbols that sit between selected ones.
    """
    position = {k: i for i, k in enumerate(ordered)}
    unknown = [s for s in selected if s not in position]
    if unknown:
        raise ValueError(f"symbols {unknown} are not partitions of {SYMBOLS_PARTITIONS_NAME}")
    groups: list[list[str]] = []
    for sym in sorted(set(selected), key=position.__getitem__):
        if groups and position[groups[-1][-1]] == position[sym] - 1:
            groups[-1].append(sym)
        else:
            groups.append([sym])
    return groups


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def rectangle_selection(
    symbols: Sequence[str], first_day: str, last_day: str
) -> tuple[dg.MultiPartitionKey | None, dict[str, str]]:
    """How to ask Dagster for one run over ``symbols`` (neighbours in the dimension's order) x
    [first_day, last_day]: a single partition key, or range tags (key None)."""
    first = dg.MultiPartitionKey({"symbol": symbols[0], "date": first_day})
    last = dg.MultiPartitionKey({"symbol": symbols[-1], "date": last_day})
    if first == last:
        return first, {}
    return None, {RANGE_START_TAG: str(first), RANGE_END_TAG: str(last)}

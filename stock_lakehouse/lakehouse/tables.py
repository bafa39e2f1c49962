"""What tables the lake has and where each lives: short names, folders (= asset keys), step names.

Apart from ``lake.py`` (the resource that says where the lake is) so that the readers, which the resource
delegates to, need not import the resource back.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

#: Short name -> path under the lake root. The path is also the table's Dagster asset key.
TABLES: dict[str, tuple[str, str]] = {
    "bronze": ("bronze", "intraday_bars"),
    "silver": ("silver", "stock_clean"),
    "gold": ("gold", "daily_kpis"),
    "bi": ("gold", "bi_stock_daily"),
    "signals": ("gold", "signals"),
}
#: Views over a table: silver's invalid rows.
VIEWS: dict[str, str] = {"quarantine": "silver"}
#: A view's rows are its table's rows where this boolean column is false.
VIEW_FALSE_COLUMN: dict[str, str] = {"quarantine": "is_valid"}


def table_folder(table: str | dg.AssetKey | Sequence[str]) -> str:
    """The folder of a table under the lake root: from its short name (``gold``), its asset key or its
    path (``gold/daily_kpis``).

    Raises:
        ValueError: for a name that is no table of the lake (e.g. from a CLI argument).
    """
    if isinstance(table, dg.AssetKey):
        parts = tuple(table.path)
    elif isinstance(table, str):
        name = VIEWS.get(table, table)
        parts = TABLES[name] if name in TABLES else tuple(name.split("/"))
    else:
        parts = tuple(table)
    if parts not in TABLES.values():
        known = ", ".join([*TABLES, *VIEWS])
        raise ValueError(f"unknown table {'/'.join(parts)[:80]!r}; tables: {known}")
    return "/".join(parts)


def short_name(table: str | dg.AssetKey | Sequence[str]) -> str:
    """The short name (``gold``) of a table given as asset key, path or short name."""
    folder = table_folder(table)
    return next(name for name, path in TABLES.items() if "/".join(path) == folder)


def sql_name(table: str) -> str:
    """The name SQL knows a table or view by: its folder's last part (``bi_stock_daily``), a view's own name."""
    return table if table in VIEWS else TABLES[table][-1]


def step_name(table: str) -> str:
    """The Dagster step (op) name of the asset writing ``table`` (short name)."""
    return "__".join(TABLES[table])

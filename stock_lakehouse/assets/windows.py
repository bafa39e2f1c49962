"""Later days follow earlier ones: the window assets (BI, signals) rewrite the days their windows reach.

A BI or signals row is computed over its symbol's earlier gold rows. When a run writes an earlier date
after a later one was computed (a re-run of that date, or a backfill split per date whose runs execute
at once), the later rows would keep values computed without it, with every check green. So each run of
a window asset also rewrites the later dates whose windows reach its own, in the same Delta commit.
"""

from collections.abc import Sequence

from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.partitions import BarPartition, partitions_after


def follow_on(gold_history: DataFrame, changed: Sequence[BarPartition], rows: int | None) -> tuple[BarPartition, ...]:
    """The partitions after ``changed`` whose windows of ``rows`` gold rows (every later row when None) reach
    them, among the dates ``gold_history`` has rows for (one small distinct query)."""
    if not changed:
        return ()
    present = [
        BarPartition(r["symbol"], r["trade_date"])
        for r in gold_history.select("symbol", "trade_date").distinct().collect()
    ]
    return tuple(partitions_after(present, changed, rows))

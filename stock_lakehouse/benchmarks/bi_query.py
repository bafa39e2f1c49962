"""The BI endpoint as a BI tool meets it: ``stock-lakehouse bi-server`` over a benchmark lake, a BI-style
query (one symbol, the workload's date range, ordered) sent through HiveServer2 like a dashboard refresh.

Reported: the server's start-up (to its ready line), the first query (cold: Delta log, JIT) and the warm
ones. The client is PyHive (the ``dev`` extra), the same binary Thrift + PLAIN SASL the BI tools' drivers use.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from datetime import date
from pathlib import Path

from stock_lakehouse.bi_server.access import PASSWORD_ENV, USER_ENV
from stock_lakehouse.local_processes import bi_server_process
from stock_lakehouse.symbols import validate_symbols

QUERY = (
    "SELECT trade_date, open, high, low, close, volume, vwap FROM bi_stock_daily "
    "WHERE symbol = '{symbol}' AND trade_date BETWEEN '{start}' AND '{end}' ORDER BY trade_date"
)


def measure_bi_query(lake: Path, symbol: str, start: date, end: date, log: Path, repeats: int = 5) -> dict:
    """Start the endpoint on ``lake`` (anonymous, loopback), run the query ``1 + repeats`` times; the figures.

    Raises:
        RuntimeError: the server exited before it was ready.
    """
    from pyhive import hive

    (symbol,) = validate_symbols([symbol], "benchmark symbol")  # it goes into the SQL text
    sql = QUERY.format(symbol=symbol, start=start.isoformat(), end=end.isoformat())
    env = {k: v for k, v in os.environ.items() if k not in (USER_ENV, PASSWORD_ENV)}
    started = time.perf_counter()
    with bi_server_process(log, env, ["--lake-root", str(lake)]) as (port, _):
        start_s = time.perf_counter() - started
        seconds, rows = [], []
        with contextlib.closing(hive.connect(host="127.0.0.1", port=port, username="bench")) as conn:
            for _ in range(1 + repeats):
                cursor = conn.cursor()
                t = time.perf_counter()
                cursor.execute(sql)
                rows = cursor.fetchall()
                seconds.append(time.perf_counter() - t)
    warm = seconds[1:]
    return {
        "query": sql,
        "rows": len(rows),
        "start_s": round(start_s, 2),
        "first_s": round(seconds[0], 3),
        "warm_median_s": round(statistics.median(warm), 3),
        "warm_min_s": round(min(warm), 3),
        "warm_max_s": round(max(warm), 3),
        "repeats": repeats,
    }

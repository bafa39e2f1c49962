"""Row-quality gates judged per (symbol, trade_date) partition: one bad bar never stops a backfill.

Why: silver keeps every bar, flagged, and gold uses valid bars only, so a rule about single bars
(close present, low <= high, ...) adds protection only where bad bars are a large share of a day's
bars: there the day's figures would rest on too little. Blocking the whole run for one glitch from the
API would withhold every other symbol and day with it. So the ``gate: partition`` rules of the silver
SodaCL file are evaluated in one grouped query over the run's partitions, and a partition whose share
of bars failing any of them is above ``max_invalid_share`` is *withheld*: gold and BI leave its rows as
they were. At or below the share it proceeds from its valid bars and the rule reports a warning.

The silver check reports the verdicts; gold and BI enforce them. All three ask the same
``QualityGate`` for the same run and get the verdicts computed once per run (they share a process
under the in-process executor; a step in another process computes them again, with the same result).

Outside a run (the dashboard) ``judge_partitions_duckdb`` gives the same verdicts without Spark: the same
rules' conditions run by DuckDB over Arrow data, the same ``Verdict.of`` deciding what is withheld.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from stock_lakehouse.partitions import BarPartition, partition_predicate
from stock_lakehouse.quality.rules import QUALITY_DIR, Rule, RulesError, load_suite
from stock_lakehouse.settings import QualitySettings

_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str, tuple[BarPartition, ...]], dict[BarPartition, Verdict]] = OrderedDict()


@dataclass(frozen=True)
class Verdict:
    """How one partition's bars fared against the partition rules."""

    partition: BarPartition
    bars: int
    #: bars failing at least one partition rule
    invalid: int
    withheld: bool
    #: rule name -> bars failing it (rules with no failure left out)
    by_rule: dict[str, int] = field(default_factory=dict)
    #: warning rule name -> bars failing it: reported per partition, never part of ``invalid``
    warned: dict[str, int] = field(default_factory=dict)

    def failing(self, rule: Rule) -> int:
        """Bars of this partition failing ``rule`` (a gating or a warning rule)."""
        return (self.warned if rule.warn_only else self.by_rule).get(rule.name, 0)

    @property
    def key(self) -> str:
        return str(self.partition.key)

    @property
    def share(self) -> float:
        return self.invalid / self.bars if self.bars else 0.0

    @classmethod
    def of(
        cls,
        partition: BarPartition,
        bars: int,
        invalid: int,
        max_share: float,
        by_rule: dict[str, int] | None = None,
        warned: dict[str, int] | None = None,
    ) -> Verdict:
        """The verdict for counted bars: withheld when the share of failing bars is above ``max_share``.

        The one place the threshold is applied, whichever engine counted the bars.
        """
        withheld = bars > 0 and invalid / bars > max_share
        return cls(partition, bars, invalid, withheld=withheld, by_rule=dict(by_rule or {}), warned=dict(warned or {}))

    @classmethod
    def counted(
        cls, partition: BarPartition, bars: int, invalid: int, max_share: float, rules: Sequence[Rule], counts
    ) -> Verdict:
        """The verdict from per-rule counts in ``rules``' order, split into gating rules and warnings."""
        by_rule = {r.name: int(n) for r, n in zip(rules, counts, strict=True) if n and not r.warn_only}
        warned = {r.name: int(n) for r, n in zip(rules, counts, strict=True) if n and r.warn_only}
        return cls.of(partition, bars, invalid, max_share, by_rule, warned)

    def describe(self) -> str:
        """``2024-03-04|XYZ: 3 of 60 bars (5.00%) fail silver_low_not_above_high 1, ...``"""
        rules = ", ".join(f"{name} {n}" for name, n in sorted(self.by_rule.items()))
        return f"{self.key}: {self.invalid} of {self.bars} bars ({100 * self.share:.2f}%) fail {rules}"


def judge_partitions(silver: DataFrame, rules: Sequence[Rule], max_share: float) -> dict[BarPartition, Verdict]:
    """Verdicts for every partition with bars in ``silver``: one grouped Spark query. A partition of
    the run missing from the result has no silver rows.

    Args:
        silver: rows of ``silver/stock_clean`` (any set of partitions).
        rules: the ``gate: partition`` rules; each says which bar fails (``Rule.failing_bar``). Bars failing
            a warning rule (``warn_only``) are counted in ``by_rule`` only: they withhold nothing.
        max_share: a partition whose share of failing bars is above this is withheld.
    """
    failing = {r.name: F.coalesce(F.expr(r.failing_bar), F.lit(False)) for r in rules}
    any_failing = F.lit(False)
    for rule in rules:
        if not rule.warn_only:  # warnings are counted per partition but withhold nothing
            any_failing = any_failing | failing[rule.name]
    aggs = [F.count(F.lit(1)).alias("_bars"), F.sum(F.when(any_failing, 1).otherwise(0)).alias("_invalid")]
    aggs += [F.sum(F.when(cond, 1).otherwise(0)).alias(f"_r{i}") for i, cond in enumerate(failing.values())]
    out: dict[BarPartition, Verdict] = {}
    for row in silver.groupBy("symbol", "trade_date").agg(*aggs).collect():
        part = BarPartition(row["symbol"], row["trade_date"])
        counts = [row[f"_r{i}"] for i in range(len(failing))]
        out[part] = Verdict.counted(part, int(row["_bars"]), int(row["_invalid"]), max_share, rules, counts)
    return out


#: DuckDB stand-ins for Spark SQL functions a rule's condition may use that DuckDB lacks (``double('inf')``
#: in ``silver_prices_finite``); the rest of the conditions' SQL means the same in both.
_SPARK_SQL_MACROS = (
    "CREATE MACRO double(x) AS CAST(x AS DOUBLE)",
    "CREATE MACRO string(x) AS CAST(x AS VARCHAR)",
    "CREATE MACRO isnotnull(x) AS x IS NOT NULL",
    "CREATE MACRO nvl(x, y) AS coalesce(x, y)",
)


def judge_partitions_duckdb(silver: object, rules: Sequence[Rule], max_share: float) -> dict[BarPartition, Verdict]:
    """``judge_partitions`` without Spark: DuckDB runs the same rules' conditions (``Rule.failing_bar``).

    For readers outside a run (the dashboard). Give it Arrow data (a ``pyarrow`` table or dataset): a
    pandas frame turns a NaN price into a null, so such a bar would count under the wrong rule.

    Args:
        silver: rows of ``silver/stock_clean`` (any set of partitions).
        rules: the ``gate: partition`` rules.
        max_share: a partition whose share of failing bars is above this is withheld.

    Raises:
        RulesError: a rule's condition is SQL that DuckDB cannot run (the message names the rule).
    """
    import duckdb

    con = duckdb.connect()
    try:
        for macro in _SPARK_SQL_MACROS:
            con.execute(macro)
        con.register("silver_rows", silver)
        failing = {r.name: f"coalesce({r.failing_bar}, false)" for r in rules}
        for name, cond in failing.items():
            try:
                con.execute(f"SELECT count(*) FROM silver_rows WHERE {cond} LIMIT 0")
            except duckdb.Error as exc:
                first = str(exc).strip().splitlines()[0]
                raise RulesError(f"rule {name!r}: its condition cannot be evaluated without Spark: {first}") from None
        any_failing = " OR ".join(failing[r.name] for r in rules if not r.warn_only) or "false"
        aggs = ["count(*)", f"count(*) FILTER (WHERE {any_failing})"]
        aggs += [f"count(*) FILTER (WHERE {cond})" for cond in failing.values()]
        rows = con.execute(
            f"SELECT symbol, trade_date, {', '.join(aggs)} FROM silver_rows GROUP BY symbol, trade_date"
        ).fetchall()
    finally:
        con.close()
    out: dict[BarPartition, Verdict] = {}
    for symbol, trade_date, bars, invalid, *per_rule in rows:
        part = BarPartition(symbol, trade_date)
        out[part] = Verdict.counted(part, int(bars), int(invalid), max_share, rules, per_rule)
    return out


class QualityGate(dg.ConfigurableResource):
    """The per-partition row-quality gate of silver (see the module docstring).

    Attributes:
        rules_file: the silver SodaCL file; its ``gate: partition`` rules are the gate.
        max_invalid_share: share of a partition's bars that may fail (default 1 %); above it the
            partition is withheld from gold and BI.
    """

    rules_file: str = str(QUALITY_DIR / "silver.yml")
    max_invalid_share: float = QualitySettings().max_invalid_share  # stated once, in the settings

    def rules(self) -> tuple[Rule, ...]:
        path = Path(self.rules_file)
        return load_suite(path).partition_rules if path.is_file() else ()

    def verdicts(self, run_id: str, silver: DataFrame, parts: Sequence[BarPartition]) -> dict[BarPartition, Verdict]:
        """Verdicts for ``parts`` of this run (computed once per run and partition set)."""
        key = (run_id, f"{self.rules_file}:{self.max_invalid_share}", tuple(sorted(parts)))
        if key not in _cache:
            rows = silver.where(partition_predicate(parts)) if parts else silver
            _cache[key] = judge_partitions(rows, self.rules(), self.max_invalid_share)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return _cache[key]

    def withheld(self, run_id: str, silver: DataFrame, parts: Sequence[BarPartition]) -> list[Verdict]:
        """The withheld partitions of ``parts``, sorted."""
        return sorted((v for v in self.verdicts(run_id, silver, parts).values() if v.withheld), key=lambda v: v.key)

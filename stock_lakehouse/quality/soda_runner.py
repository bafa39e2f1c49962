"""Runs one Soda Core scan over a Spark DataFrame and returns one result per rule.

Why the scan is handed a :class:`_LazySql` on the engine: a Spark Connect 3.5 client's ``SparkSession.sql``
runs a command on the server that plans the query in full (Delta's data-skipping job included) only to hand
back a relation, which the ``collect`` that follows plans again. Soda sends each of its queries through
``sql`` and then collects it, so every query was planned twice: 17 of them took 5.2 s of a one-partition
run's 21 s. A lazy SQL relation is planned once, by the collect; a query's error still reaches Soda there
(Soda catches it around the fetch as around the execute).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame

from stock_lakehouse.lakehouse.frames import is_remote
from stock_lakehouse.quality.rules import QUALITY_DIR, RuleSuite


def _soda_scan_class():
    # Soda reads its global config (telemetry switch) once, when soda.telemetry is first imported:
    # register ours before that, so no usage data is sent and ~/.soda is left alone.
    from soda.common.config_helper import ConfigHelper

    ConfigHelper.get_instance(path=str(QUALITY_DIR / "soda_config.yml"))
    from soda.scan import Scan

    return Scan


class _LazySql:
    """A Spark Connect session whose ``sql`` builds a relation without asking the server (module docstring).

    pyspark 3.5.4 (pinned) has no public lazy ``sql`` for Connect; ``SQL`` and ``DataFrame.withPlan`` are the
    plan node and constructor its own ``sql`` returns for a query that is not a command.
    """

    def __init__(self, session: object) -> None:
        self._session = session

    def sql(self, sqlQuery: str, args: dict | list | None = None) -> DataFrame:  # noqa: N803 (Soda's keyword)
        from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
        from pyspark.sql.connect.plan import SQL

        return ConnectDataFrame.withPlan(SQL(sqlQuery, args), self._session)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclass(frozen=True)
class RuleResult:
    """What Soda measured for one rule."""

    name: str
    outcome: str  # pass | warn | fail | not evaluated
    value: Any = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanReport:
    results: dict[str, RuleResult]
    seconds: float
    errors: str


def run_scan(df: DataFrame, suite: RuleSuite) -> ScanReport:
    """Register ``df`` as the suite's view and run all its rules in one scan."""
    scan_class = _soda_scan_class()
    t0 = time.perf_counter()
    df.createOrReplaceTempView(suite.view)
    scan = scan_class()
    scan.disable_telemetry()
    scan.set_scan_definition_name(f"stock_lakehouse_{suite.view}")
    scan.set_data_source_name("spark_df")
    session = df.sparkSession
    scan.add_spark_session(_LazySql(session) if is_remote(session) else session, data_source_name="spark_df")
    scan.add_sodacl_yaml_str(suite.sodacl(), file_name=str(suite.path))
    scan.execute()
    measured = {c["name"]: c for c in scan.get_scan_results().get("checks", [])}
    results = {}
    for rule in suite.table_rules:
        check = measured.get(rule.name)
        if check is None:
            results[rule.name] = RuleResult(rule.name, "not evaluated")
            continue
        diag = {k: v for k, v in (check.get("diagnostics") or {}).items() if k != "blocks"}
        details = {
            k: diag[k]
            for k in ("fail", "warn", "missing_column_names", "column_type_mismatches")
            if diag.get(k) not in (None, [], {})
        }
        results[rule.name] = RuleResult(rule.name, str(check.get("outcome")), diag.get("value"), details)
    errors = scan.get_error_logs_text() if scan.has_error_logs() else ""
    return ScanReport(results, time.perf_counter() - t0, errors or "")

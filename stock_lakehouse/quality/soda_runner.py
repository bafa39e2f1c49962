"""Runs one Soda Core scan over a Spark DataFrame and returns one result per rule."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame

from stock_lakehouse.quality.rules import QUALITY_DIR, RuleSuite


def _soda_scan_class():
    # Soda reads its global config (telemetry switch) once, when soda.telemetry is first imported:
    # register ours before that, so no usage data is sent and ~/.soda is left alone.
    from soda.common.config_helper import ConfigHelper

    ConfigHelper.get_instance(path=str(QUALITY_DIR / "soda_config.yml"))
    from soda.scan import Scan

    return Scan


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
    scan.add_spark_session(df.sparkSession, data_source_name="spark_df")
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

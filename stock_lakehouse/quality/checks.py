"""SodaCL rules as Dagster asset checks: one multi-asset check (one Soda scan) per table per run.

The check loads exactly the partitions the run materialized (through the Delta IO manager), scans
them once, and reports every rule as its own asset check with Soda's measured value, for each partition
of the run (``partition_results.py``: table rules carry the scan's outcome, row-quality rules and the
Python check each partition's own). Fail-level table
rules are blocking: a failure stops downstream layers in that run. Row-quality rules
(``gate: partition``) are judged per partition by ``quality/gates.py`` in one grouped query instead of
the scan; they never block the run: a partition above the share is withheld by gold and BI, and the
rule reports ERROR naming it (WARN when every partition stayed within the share). When every
partition of the run is a closed-market day the tables hold no rows by design; the rules are then
reported as passed with ``outcome: skipped (market closed)`` rather than failing ``row_count > 0``.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from stock_lakehouse.ingestion.config import IngestionConfig
from stock_lakehouse.lakehouse.frames import DataFrame
from stock_lakehouse.lakehouse.spark import SMALL_RUN_PARTITIONS
from stock_lakehouse.partitions import BarPartition, describe_span, parse_keys
from stock_lakehouse.quality.gates import QualityGate, Verdict
from stock_lakehouse.quality.partition_results import (
    MAX_PARTITION_RESULTS,
    Outcome,
    describe_outcomes,
    emit,
    materializations_by_partition,
)
from stock_lakehouse.quality.rules import QUALITY_DIR, Rule, RulesError, RuleSuite, load_suite
from stock_lakehouse.quality.soda_runner import run_scan


@dataclass(frozen=True)
class CheckInputs:
    """What a Python check of a run sees."""

    table: DataFrame
    parts: list[BarPartition]
    ingestion: IngestionConfig
    #: silver's row-quality verdicts for the run's partitions (computed once per run, shared with the assets)
    verdicts: Callable[[], dict[BarPartition, Verdict]]


@dataclass(frozen=True)
class PlainCheck:
    """An extra check in Python for what SodaCL cannot say: outcomes for the run and for each partition."""

    spec: dg.AssetCheckSpec
    evaluate: Callable[[CheckInputs], tuple[Outcome, dict[BarPartition, Outcome]]]
    #: whether ``evaluate`` reads the table (it is then cached for the scan and the check)
    reads_table: bool = True


MAX_LISTED_PARTITIONS = 50
#: Tables whose partitions silver's row-quality gate can withhold (they keep their previous rows).
WITHHELD_LAYERS = ("gold", "bi", "signals")


def _partition_metadata(parts: list[BarPartition]) -> dict[str, object]:
    listed = [str(p.key) for p in parts[:MAX_LISTED_PARTITIONS]]
    return {
        "partitions_evaluated": len(parts),
        "partition_keys": listed + (["..."] if len(parts) > len(listed) else []),
    }


def regular_bars_every_trading_day(asset_key: dg.AssetKey) -> PlainCheck:
    """Every trading-day partition of the run has at least one regular-session bar (warning)."""
    spec = dg.AssetCheckSpec(
        "silver_regular_bars_every_trading_day",
        asset=asset_key,
        description="Each (symbol, trading day) of the run has regular-session bars.",
    )

    def evaluate(inputs: CheckInputs) -> tuple[Outcome, dict[BarPartition, Outcome]]:
        parts, ingestion = inputs.parts, inputs.ingestion
        have = {
            (r["symbol"], r["trade_date"])
            for r in inputs.table.where("session = 'regular'").select("symbol", "trade_date").distinct().collect()
        }
        missing = [
            p
            for p in parts
            if ingestion.is_trading_day(p.symbol, p.trade_date) and (p.symbol, p.trade_date) not in have
        ]
        warn = dg.AssetCheckSeverity.WARN
        run = Outcome(
            not missing,
            warn,
            {**_partition_metadata(parts), "partitions_without_regular_bars": [str(p.key) for p in missing[:100]]},
        )
        per = {
            p: Outcome(
                p not in missing, warn, {"scope": "partition", "outcome": "no regular bars" if p in missing else "pass"}
            )
            for p in parts
        }
        return run, per

    return PlainCheck(spec, evaluate)


def partition_withheld(asset_key: dg.AssetKey, layer: str) -> PlainCheck:
    """Failed (ERROR) for each partition of the run that silver's row-quality gate withheld from this table.

    Why: a withheld partition keeps its previous rows here, and Dagster still records the run's
    materialization of it; without this check the table looks healthy where its data is not this run's.
    The check names the upstream rules and the share, where the UI shows partitions (graph, Partitions
    view, Checks list), and the check-failure alert lists exactly the withheld partitions.
    """
    spec = dg.AssetCheckSpec(
        f"{layer}_partition_withheld",
        asset=asset_key,
        description="Fails for a partition silver's row-quality gate withheld: its rows are the previous ones.",
    )

    def evaluate(inputs: CheckInputs) -> tuple[Outcome, dict[BarPartition, Outcome]]:
        verdicts = inputs.verdicts()
        held = sorted(
            (verdicts[p] for p in inputs.parts if p in verdicts and verdicts[p].withheld), key=lambda v: v.key
        )
        error = dg.AssetCheckSeverity.ERROR
        run = Outcome(
            not held,
            error,
            {
                **_partition_metadata(inputs.parts),
                "outcome": f"withheld {len(held)} partition(s)" if held else "pass",
                "withheld_partitions": [v.describe() for v in held[:MAX_LISTED_PARTITIONS]],
            },
        )
        per = {}
        for part in inputs.parts:
            v = verdicts.get(part)
            if v is not None and v.withheld:
                detail = {"outcome": "withheld: previous rows kept", "upstream": v.describe(), "scope": "partition"}
                per[part] = Outcome(False, error, detail)
            else:
                per[part] = Outcome(True, error, {"outcome": "pass", "scope": "partition"})
        return run, per

    return PlainCheck(spec, evaluate, reads_table=False)


def _partition_rule_outcomes(
    rule: Rule,
    verdicts: dict[BarPartition, Verdict],
    parts: list[BarPartition],
    meta: dict[str, object],
    max_share: float,
) -> tuple[Outcome, dict[BarPartition, Outcome]]:
    """One row-quality rule: ERROR naming the partitions it helped withhold, WARN when bars failed but
    every partition stayed within ``max_share``, pass otherwise; for the run and for each partition.
    A warning rule (``warn_only``) withholds nothing: WARN where its bars fail. Never blocking."""
    failing = sorted((v for v in verdicts.values() if v.failing(rule)), key=lambda v: v.key)
    withheld = [] if rule.warn_only else [v for v in failing if v.withheld]
    outcome = f"withheld {len(withheld)} partition(s)" if withheld else ("warn" if failing else "pass")
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    run = Outcome(
        not failing,
        error if withheld else warn,
        {
            **meta,
            "outcome": outcome,
            "soda_value": sum(v.failing(rule) for v in failing),
            "max_invalid_share": max_share,
            "partitions_with_failures": len(failing),
            "withheld_partitions": [v.describe() for v in withheld[:MAX_LISTED_PARTITIONS]],
            "warned_partitions": [v.describe() for v in failing if not v.withheld][:MAX_LISTED_PARTITIONS],
        },
    )
    per: dict[BarPartition, Outcome] = {}
    for part in parts:
        v = verdicts.get(part)
        failed = v.failing(rule) if v else 0
        detail: dict[str, object] = {"scope": "partition", "soda_value": failed, "bars": v.bars if v else 0}
        held = bool(v and v.withheld and not rule.warn_only)
        if v and failed:
            detail.update(
                {
                    "outcome": "withheld" if held else "warn",
                    "invalid_share": round(v.share, 6),
                    "max_invalid_share": max_share,
                    ("withheld_partitions" if held else "warned_partitions"): [v.describe()],
                }
            )
        else:
            detail["outcome"] = "pass" if v else "pass (no bars)"
        per[part] = Outcome(not failed, error if held else warn, detail)
    return run, per


def build_soda_checks(
    asset_key: dg.AssetKey,
    rules_file: Path,
    partitions_def: dg.PartitionsDefinition,
    plain_checks: tuple[PlainCheck, ...] = (),
    silver_key: dg.AssetKey | None = None,
) -> dg.AssetChecksDefinition:
    """One multi-asset check running ``rules_file`` against the run's partitions of ``asset_key``.

    ``silver_key``: the table the row-quality verdicts are judged on (``asset_key`` itself for silver).
    """
    suite: RuleSuite = load_suite(rules_file)
    # The row-quality verdicts are judged on silver's rows: other tables' checks load silver's partitions of
    # the run (lazily: within a run the verdicts are already computed, and cached, by the assets).
    upstream = {"silver": dg.AssetIn(key=silver_key)} if silver_key and silver_key != asset_key else {}
    deps = [silver_key] if upstream else []
    specs = [
        dg.AssetCheckSpec(
            rule.name,
            asset=asset_key,
            blocking=not rule.warn_only and rule.gate == "table",
            description=rule.definition,
            partitions_def=partitions_def,
            additional_deps=deps,
            metadata={
                "sodacl_file": rules_file.name,
                "severity": "WARN" if rule.warn_only else "ERROR",
                "gate": rule.gate,
            },
        )
        for rule in suite.rules
    ]
    plain_specs = [
        dg.AssetCheckSpec(
            c.spec.name,
            asset=asset_key,
            description=c.spec.description,
            partitions_def=partitions_def,
            additional_deps=deps,
        )
        for c in plain_checks
    ]
    plain_spec_of = {spec.name: spec for spec in plain_specs}

    severity = {r.name: dg.AssetCheckSeverity.WARN if r.warn_only else dg.AssetCheckSeverity.ERROR for r in suite.rules}
    spec_of = {spec.name: spec for spec in specs}

    def evaluate_all(
        context: dg.AssetCheckExecutionContext,
        table: DataFrame,
        ingestion: IngestionConfig,
        quality: QualityGate,
        silver_rows: DataFrame,
    ) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
        parts = parse_keys(context.partition_keys)

        def verdicts() -> dict[BarPartition, Verdict]:
            return quality.verdicts(context.run.run_id, silver_rows, parts)

        meta = _partition_metadata(parts)
        targets = (
            materializations_by_partition(context.instance, asset_key, parts)
            if 0 < len(parts) <= MAX_PARTITION_RESULTS
            else None
        )

        results: list[tuple[str, Outcome, dict[BarPartition, Outcome]]] = []

        def record(spec: dg.AssetCheckSpec, run: Outcome, per: dict[BarPartition, Outcome]):
            results.append((spec.name, run, per))
            return emit(spec, run, per, targets)

        if parts and not any(ingestion.is_trading_day(p.symbol, p.trade_date) for p in parts):
            closed = {"outcome": "skipped (market closed)"}
            for spec in specs + plain_specs:
                yield from emit(
                    spec,
                    Outcome(True, metadata={**meta, **closed}),
                    dict.fromkeys(parts, Outcome(True, metadata=closed)),
                    targets,
                )
            context.log.info(f"{asset_key.to_user_string()}: checks skipped, market closed ({describe_span(parts)})")
            return
        # Cache when the table is read by more than the Soda scan (silver: the gate's grouped query and the
        # regular-bars check), or when the run is small (a click, a tick: tens of thousands of bars at most).
        # Measured on W1's 1M bars: caching bronze for the scan alone cost 13-23 s against 5-9 s uncached (the
        # scan reads few columns; the cache builds all 19); silver, read three times, took 18-27 s cached against
        # 26-34 s uncached. A small run's scan is all per-query cost: each query over the Delta table plans a
        # data-skipping job, one over the cache does not.
        cached = bool(
            suite.partition_rules or any(c.reads_table for c in plain_checks) or len(parts) <= SMALL_RUN_PARTITIONS
        )
        if cached:
            table = table.cache()
        try:
            report = run_scan(table, suite)
            if suite.partition_rules:
                judged = verdicts()
                for rule in suite.partition_rules:
                    run, per = _partition_rule_outcomes(rule, judged, parts, meta, quality.max_invalid_share)
                    yield from record(spec_of[rule.name], run, per)
            scope = {"scope": f"run: one Soda scan over {len(parts)} partition(s)"}
            for rule in suite.table_rules:
                res = report.results[rule.name]
                measured: dict[str, object] = {"outcome": res.outcome, "scan_seconds": round(report.seconds, 3)}
                if res.value is not None:
                    measured["soda_value"] = res.value
                measured.update({f"soda_{k}": v for k, v in res.details.items()})
                if res.outcome == "not evaluated" and report.errors:
                    measured["soda_errors"] = report.errors[-2000:]
                passed = res.outcome == "pass"
                run = Outcome(passed, severity[rule.name], {**meta, **measured})
                per = dict.fromkeys(parts, Outcome(passed, severity[rule.name], {**scope, **measured}))
                yield from record(spec_of[rule.name], run, per)
            inputs = CheckInputs(table, parts, ingestion, verdicts)
            for check in plain_checks:
                run, per = check.evaluate(inputs)
                yield from record(plain_spec_of[check.spec.name], run, per)
            # One INFO line per table's checks (Dagster's own check events are DEBUG).
            context.log.info(
                f"{asset_key.to_user_string()} checks over {describe_span(parts)}: {describe_outcomes(results)}; "
                f"Soda scan of {len(suite.rules)} rules {report.seconds:.2f}s"
            )
        finally:
            if cached:
                table.unpersist()

    decorate = dg.multi_asset_check(
        specs=specs + plain_specs,
        name=f"soda_{'_'.join(asset_key.path)}",
        ins={"table": dg.AssetIn(key=asset_key), **upstream},
        description=f"Soda Core scan of {rules_file.name} over the run's partitions.",
    )
    if upstream:

        def soda_checks(
            context: dg.AssetCheckExecutionContext,
            table: DataFrame,
            silver: DataFrame,
            ingestion: IngestionConfig,
            quality: QualityGate,
        ) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
            yield from evaluate_all(context, table, ingestion, quality, silver)

    else:

        def soda_checks(
            context: dg.AssetCheckExecutionContext, table: DataFrame, ingestion: IngestionConfig, quality: QualityGate
        ) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
            yield from evaluate_all(context, table, ingestion, quality, table)

    return decorate(soda_checks)


def build_quality_checks(
    partitions_def: dg.PartitionsDefinition, keys: dict[str, dg.AssetKey], rules_dir: Path = QUALITY_DIR
) -> list[dg.AssetChecksDefinition]:
    """Checks for every table whose rules file ``<rules_dir>/<layer>.yml`` exists."""
    checks = []
    for layer, key in keys.items():
        path = rules_dir / f"{layer}.yml"
        if not path.is_file():
            continue
        if layer != "silver" and load_suite(path).partition_rules:
            raise RulesError(f"{path}: 'gate: partition' rules are judged on silver's bars; move them to silver.yml")
        if layer == "silver":
            checks.append(build_soda_checks(key, path, partitions_def, (regular_bars_every_trading_day(key),)))
        elif layer in WITHHELD_LAYERS:
            withheld = (partition_withheld(key, layer),)
            checks.append(build_soda_checks(key, path, partitions_def, withheld, keys.get("silver")))
        else:
            checks.append(build_soda_checks(key, path, partitions_def))
    return checks

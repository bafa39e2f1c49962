"""Check results per (symbol, trade_date) partition, from one evaluation per table per run.

Why: a ranged run (one run per backfill) evaluates each table's rules once, and Dagster stores an
``AssetCheckResult`` of such a run without a partition: the check's Partitions view then showed every
partition "Skipped" while its detail said "Passed". Dagster 1.13's partitioned asset checks (preview)
store an ``AssetCheckEvaluation`` per partition when it names the partition and the materialization it
judged, so each partition of the run gets its own outcome here and every page of the UI agrees.

Each evaluation is an event, so a run over more than ``MAX_PARTITION_RESULTS`` partitions (a large
backfill) reports one result per check instead, as before: the cost of the events would otherwise grow
with partitions x rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from stock_lakehouse.dagster_internals import AssetCheckEvaluationTargetMaterializationData
from stock_lakehouse.partitions import BarPartition

#: Above this many partitions in a run, one result per check (see the module docstring).
MAX_PARTITION_RESULTS = 250
#: Partition keys listed in a run's summary.
MAX_LISTED = 50


@dataclass(frozen=True)
class Outcome:
    """A check's outcome for a run or for one partition of it."""

    passed: bool
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    metadata: dict[str, object] = field(default_factory=dict)


def materializations_by_partition(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, parts: Iterable[BarPartition]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each partition (the one a check of this run judges), in one query."""
    keys = [str(p.key) for p in parts]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys), limit=len(keys)
    ).records
    out: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:  # newest first
        if record.partition_key and record.partition_key not in out:
            out[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            )
    return out


def emit(
    spec: dg.AssetCheckSpec,
    run: Outcome,
    per_partition: Mapping[BarPartition, Outcome],
    targets: Mapping[str, AssetCheckEvaluationTargetMaterializationData] | None,
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """What a multi-asset check yields for ``spec``: one evaluation per partition, then the check's output
    (Dagster requires it once per spec); or, when ``targets`` is None (too many partitions), one result."""
    if targets is None:
        yield dg.AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=run.passed,
            severity=run.severity,
            metadata=run.metadata,
        )
        return
    for part, outcome in sorted(per_partition.items()):
        key = str(part.key)
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            partition=key,
            passed=outcome.passed,
            severity=outcome.severity,
            metadata={"partition": key, **outcome.metadata},
            blocking=spec.blocking,
            target_materialization_data=targets.get(key),
            description=spec.description,
        )
    yield dg.Output(None, output_name=spec.get_python_identifier())


def describe_outcomes(results: Sequence[tuple[str, Outcome, Mapping[BarPartition, Outcome]]], limit: int = 5) -> str:
    """``14 passed, 1 failed: silver_low_not_above_high (ERROR) on 2024-03-04|XYZ``: a step's checks in a line."""
    failed = []
    for name, run, per in results:
        keys = [str(p.key) for p, outcome in sorted(per.items()) if not outcome.passed]
        if keys or not run.passed:
            where = f" on {', '.join(keys[:limit])}{' ...' if len(keys) > limit else ''}" if keys else ""
            failed.append(f"{name} ({run.severity.value}){where}")
    text = f"{len(results) - len(failed)} passed, {len(failed)} failed"
    return f"{text}: {'; '.join(failed)}" if failed else text


def aggregate(evaluations: Iterable[tuple[bool, str, dict[str, object]]]) -> tuple[bool, str, dict[str, object]]:
    """One check's evaluations of a run (per partition or one for the run) as one (passed, severity, metadata).

    The measured value adds up over partitions for rules measured per partition (``scope: partition``) and
    is taken once for rules measured over the run; failing partitions and withheld ones are listed.
    """
    evaluations = list(evaluations)
    if not evaluations:
        return True, "ERROR", {}
    failing = [e for e in evaluations if not e[0]]
    severity = ("ERROR" if any(e[1] == "ERROR" for e in failing) else "WARN") if failing else evaluations[0][1]
    meta = dict((failing or evaluations)[0][2])
    parts = [str(e[2]["partition"]) for e in evaluations if e[2].get("partition")]
    if parts:  # one evaluation per partition: the run's figures from them
        meta.pop("partition", None)
        meta["partitions_evaluated"] = len(parts)
        meta["partition_keys"] = parts[:MAX_LISTED] + (["..."] if len(parts) > MAX_LISTED else [])
        values = [e[2].get("soda_value") for e in evaluations if e[2].get("soda_value") is not None]
        if values and meta.get("scope") == "partition":
            meta["soda_value"] = sum(values)
        if failing:
            meta["failing_partitions"] = [str(e[2].get("partition")) for e in failing][:MAX_LISTED]
            meta["withheld_partitions"] = [w for e in failing for w in (e[2].get("withheld_partitions") or [])]
    return not failing, severity, meta

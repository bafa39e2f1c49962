"""Backfills through a running Dagster webserver's GraphQL, sent as the UI sends them.

Three ways, all executed by the daemon:

- ``launch_backfill``: the asset graph's "Materialize" dialog (``launchPartitionBackfill``). With
  ``BackfillPolicy.single_run()`` Dagster splits a symbols x dates selection into one run per value of the
  dimension with fewer selected keys (3 symbols x 10 dates = 3 runs, 50 symbols x 21 dates = 21 runs),
  each run one process and one Spark session.
- ``launch_ranged_backfill``: the Launchpad of the ``ranged_backfill`` job (``launchRun`` with its run
  config), one run that executes the selection as the CLI does (``automation/ranged_backfill.py``).
- ``launch_schedule_tick``: a schedule's tick at a chosen instant, as the UI's "Test schedule" dialog
  evaluates and launches it (``scheduleDryRun``, then ``launchRun`` per run request): what the daemon's
  own tick would launch at that instant, without waiting for the market's clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime

import httpx
import pandas as pd

from stock_lakehouse.assets.keys import BI, BRONZE, GOLD, SIGNALS, SILVER

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}
"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 1000) { runId status } }
    ... on PythonError { message }
  }
}
"""

DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { status } ... on PythonError { message } }
}
"""

RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}

SCHEDULE_DRY_RUN = """
mutation DryRun($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { runRequests { runKey tags { key value } runConfigYaml } skipReason error { message } }
    }
    ... on PythonError { message }
    ... on ScheduleNotFoundError { message }
  }
}
"""


class BackfillError(RuntimeError):
    """The webserver refused the backfill, or it ended unsuccessfully."""


def partition_keys(symbols: Sequence[str], start: date, end: date) -> list[str]:
    """Multi-partition keys (``date|symbol``) for symbols x weekdays in [start, end]."""
    return [f"{d.date().isoformat()}|{s}" for s in symbols for d in pd.bdate_range(start, end)]


def _post(url: str, query: str, variables: dict, timeout: float = 120.0) -> dict:
    try:
        resp = httpx.post(url, json={"query": query, "variables": variables}, timeout=timeout)
    except httpx.TransportError as exc:
        # The webserver went away (or never was there): one line, not httpx's traceback.
        raise BackfillError(
            f"Dagster webserver at {url} unreachable ({type(exc).__name__}: {exc}); is `dagster dev` running?"
        ) from None
    if resp.status_code != 200:
        raise BackfillError(f"{url} answered HTTP {resp.status_code}: {resp.text[:500]}")
    body = resp.json()
    if body.get("errors"):
        raise BackfillError(f"GraphQL errors from {url}: {body['errors']}")
    return body["data"]


def launch_backfill(graphql_url: str, symbols: Sequence[str], start: date, end: date, title: str = "") -> str:
    """Ask the webserver for a backfill of every table (and its checks), as the CLI runs; returns its id."""
    params = {
        "assetSelection": [{"path": key.path} for key in (BRONZE, SILVER, GOLD, BI, SIGNALS)],
        "partitionNames": partition_keys(symbols, start, end),
        "title": title or f"{','.join(symbols)} {start}..{end}",
    }
    result = _post(graphql_url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"backfill refused ({result['__typename']}): {result.get('message', result)}")
    return result["backfillId"]


def _poll(
    graphql_url: str, query: str, what: str, variables: dict, typename: str, done: set[str], timeout: float, poll: float
) -> dict:
    """Ask ``query`` every ``poll`` seconds until its object's status is in ``done``; returns the object."""
    deadline = time.monotonic() + timeout
    while True:
        data = next(iter(_post(graphql_url, query, variables).values()))
        if data["__typename"] != typename:
            raise BackfillError(f"{what}: {data.get('message', data)}")
        if data["status"] in done:
            return data
        if time.monotonic() > deadline:
            raise BackfillError(f"{what} still {data['status']} after {timeout:.0f}s")
        time.sleep(poll)


def wait_backfill(graphql_url: str, backfill_id: str, timeout: float = 1800.0, poll: float = 2.0) -> dict:
    """Poll until the backfill ends; returns its status, partition count and runs."""
    what = f"backfill {backfill_id}"
    return _poll(graphql_url, STATUS, what, {"id": backfill_id}, "PartitionBackfill", DONE, timeout, poll)


def _launch_run(graphql_url: str, params: dict) -> str:
    """launchRun with these ExecutionParams; the run id, or BackfillError naming why it was refused."""
    result = _post(graphql_url, LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise BackfillError(f"run refused ({result['__typename']}): {result.get('message') or result.get('errors')}")
    return result["run"]["runId"]


def launch_ranged_backfill(
    graphql_url: str,
    symbols: Sequence[str],
    start: date,
    end: date,
    location: str = "stock_lakehouse",
    confirm_large: bool = False,
) -> str:
    """Launch the ``ranged_backfill`` job with this selection as its Launchpad does; returns the run id.

    ``confirm_large``: needed for more than ``automation.ranged_backfill_max_partitions`` partitions."""
    from stock_lakehouse.automation.ranged_backfill import RANGED_BACKFILL_JOB, materialize_ranges

    config = {"symbols": list(symbols), "start": start.isoformat(), "end": end.isoformat()}
    if confirm_large:
        config["confirm_large"] = True
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "pipelineName": RANGED_BACKFILL_JOB,
        },
        "runConfigData": {"ops": {materialize_ranges.name: {"config": config}}},
    }
    return _launch_run(graphql_url, params)


def launch_partition_run(graphql_url: str, symbol: str, day: date, location: str = "stock_lakehouse") -> str:
    """Materialize one (symbol, date) partition of every table as a click in the asset graph does (a run of
    the asset job with the partition's tags, checks included); returns the run id."""
    from stock_lakehouse.wiring import LAKEHOUSE_JOB

    key = partition_keys([symbol], day, day)[0]
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "pipelineName": LAKEHOUSE_JOB,
            "assetSelection": [{"path": list(k.path)} for k in (BRONZE, SILVER, GOLD, BI, SIGNALS)],
        },
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": key},
                {"key": "dagster/partition/date", "value": day.isoformat()},
                {"key": "dagster/partition/symbol", "value": symbol},
            ]
        },
    }
    return _launch_run(graphql_url, params)


def wait_run(graphql_url: str, run_id: str, timeout: float = 1800.0, poll: float = 2.0) -> str:
    """Poll until the run ends; returns its status (SUCCESS, FAILURE, CANCELED)."""
    return _poll(graphql_url, RUN_STATUS, f"run {run_id}", {"id": run_id}, "Run", RUN_DONE, timeout, poll)["status"]


def launch_schedule_tick(
    graphql_url: str, schedule: str, when: datetime, job: str, location: str = "stock_lakehouse"
) -> list[str]:
    """Evaluate ``schedule`` as of ``when`` and launch each run it requests, as "Test schedule" then "Launch
    all" do in the UI; returns the run ids.

    Raises:
        BackfillError: the evaluation failed, skipped (with its reason), or a run was refused.
    """
    import yaml

    repository = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    variables = {"selector": {**repository, "scheduleName": schedule}, "timestamp": when.timestamp()}
    tick = _post(graphql_url, SCHEDULE_DRY_RUN, variables)["scheduleDryRun"]
    if tick["__typename"] != "DryRunInstigationTick":
        raise BackfillError(f"schedule {schedule}: {tick.get('message', tick)}")
    result = tick["evaluationResult"] or {}
    if result.get("error"):
        raise BackfillError(f"schedule {schedule} failed at {when}: {result['error']['message']}")
    if not result.get("runRequests"):
        raise BackfillError(f"schedule {schedule} requested nothing at {when}: {result.get('skipReason')}")
    return [
        _launch_run(
            graphql_url,
            {
                "selector": {**repository, "pipelineName": job},
                "runConfigData": yaml.safe_load(request["runConfigYaml"] or "{}") or {},
                "executionMetadata": {"tags": request["tags"]},
            },
        )
        for request in result["runRequests"]
    ]


START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

SCHEDULE_TICKS = """
query Ticks($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { ticks(limit: 10000) { status timestamp endTimestamp skipReason runIds } } }
    ... on PythonError { message }
    ... on ScheduleNotFoundError { message }
  }
}
"""


def _schedule_selector(schedule: str, location: str) -> dict[str, str]:
    return {"repositoryLocationName": location, "repositoryName": "__repository__", "scheduleName": schedule}


def start_schedule(graphql_url: str, schedule: str, location: str = "stock_lakehouse") -> str:
    """Turn ``schedule`` on, as its toggle in the UI does; returns its state's id (for ``stop_schedule``)."""
    result = _post(graphql_url, START_SCHEDULE, {"selector": _schedule_selector(schedule, location)})["startSchedule"]
    if result["__typename"] != "ScheduleStateResult":
        raise BackfillError(f"schedule {schedule} not started: {result.get('message', result)}")
    return result["scheduleState"]["id"]


def stop_schedule(graphql_url: str, state_id: str) -> None:
    """Turn a schedule off by its state's id."""
    result = _post(graphql_url, STOP_SCHEDULE, {"id": state_id})["stopRunningSchedule"]
    if result["__typename"] != "ScheduleStateResult":
        raise BackfillError(f"schedule {state_id} not stopped: {result.get('message', result)}")


def schedule_ticks(graphql_url: str, schedule: str, location: str = "stock_lakehouse") -> list[dict]:
    """The schedule's ticks, newest first: ``status`` (SUCCESS, SKIPPED, FAILURE), ``timestamp``,
    ``endTimestamp``, ``skipReason``, ``runIds``."""
    result = _post(graphql_url, SCHEDULE_TICKS, {"selector": _schedule_selector(schedule, location)})
    found = result["scheduleOrError"]
    if found["__typename"] != "Schedule":
        raise BackfillError(f"schedule {schedule}: {found.get('message', found)}")
    return found["scheduleState"]["ticks"]

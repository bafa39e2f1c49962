"""The simulated session (issue 26): the clock, the feed over a real socket, the lag arithmetic, and the
intraday refresh driven tick by tick through a session at a faster clock, a restart included."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pandas as pd
import pytest

from stock_lakehouse.automation.clock import Clock
from stock_lakehouse.benchmarks.session import (
    bar_lags,
    compare_one_shot,
    overlapping_runs,
    readable_since,
    regular_closes,
)
from stock_lakehouse.benchmarks.session_feed import SessionFeed
from stock_lakehouse.ingestion.sources import todays_refreshes
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.partitions import sync_symbols
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import build_definitions, lakehouse_job

NY = ZoneInfo("America/New_York")
KEY = "SESSION-KEY-0b7e41d2"
DAY = date(2024, 3, 6)


def ny(hour: int, minute: int, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NY)


def test_the_clock_runs_from_its_anchor_at_its_speed():
    anchor = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    clock = Clock(fixed_utc=ny(10, 0).isoformat(), anchor_utc=anchor.isoformat(), speed=30)
    assert clock.running and clock.tick_time(anchor) == ny(10, 0)
    assert clock.at(anchor) == ny(10, 0)
    assert clock.at(anchor + timedelta(seconds=2)) == ny(10, 1)  # 30 simulated seconds a second
    assert clock.at(anchor - timedelta(seconds=60)) == ny(9, 30)
    fixed = Clock(fixed_utc=ny(10, 0).isoformat())
    assert fixed.at(anchor) == ny(10, 0) and not fixed.running  # no anchor: it stands still
    assert fixed.tick_time(anchor) == anchor  # and leaves a schedule's tick its own time
    wall = Clock()
    assert not wall.running and abs((wall.now() - datetime.now(UTC)).total_seconds()) < 5


@pytest.fixture()
def feed_at():
    now = [ny(10, 0, 3)]
    with SessionFeed(lambda: now[0], KEY, seed=11, delay_seconds=5) as feed:
        yield feed, now


def get(feed: SessionFeed, **params: str) -> dict:
    query = {"function": "TIME_SERIES_INTRADAY", "symbol": "AAA", "interval": "1min", "apikey": KEY, **params}
    return httpx.get(feed.url, params=query, timeout=10).json()


def test_the_feed_publishes_each_bar_its_delay_after_the_close(feed_at):
    feed, now = feed_at
    body = get(feed, outputsize="compact")
    labels = list(body["Time Series (1min)"])
    # 09:59's bar closes at 10:00:00 and is published at 10:00:05: at 10:00:03 the newest is 09:58's.
    assert labels[0] == "2024-03-06 09:58:00" and len(labels) == 100
    assert body["Meta Data"]["3. Last Refreshed"] == "2024-03-06 09:58:00"
    now[0] = ny(10, 0, 5)
    assert next(iter(get(feed, outputsize="compact")["Time Series (1min)"])) == "2024-03-06 09:59:00"
    # A month asked for during the session holds its days so far, up to the same bar.
    month = list(get(feed, month="2024-03")["Time Series (1min)"])
    assert month[0] == "2024-03-06 09:59:00" and month[-1] == "2024-03-01 04:00:00"
    assert len(month) == 3 * 960 + (10 * 60 - 4 * 60)  # three whole extended days (03-01, 04, 05), 04:00-10:00
    assert dict(feed.requests) == {"compact": 2, "month": 1}


@pytest.mark.parametrize(
    "params",
    [
        {"apikey": "wrong"},
        {"symbol": "../../etc"},
        {"symbol": "AAA' OR '1'='1"},
        {"interval": "daily"},
        {"interval": "7min"},
        {"month": "2024-13"},
        {"month": "2024-03/../../x"},
        {"function": "TIME_SERIES_DAILY"},
    ],
)
def test_the_feed_refuses_what_the_api_refuses(feed_at, params):
    feed, _ = feed_at
    body = get(feed, **params)
    assert set(body) == {"Error Message"}
    assert feed.requests["refused"] == 1


def test_lag_is_from_a_bars_close_to_the_first_commit_that_counts_it():
    closes = {"AAA": [ny(9, 31), ny(9, 32), ny(9, 33)]}
    clock = Clock(fixed_utc=ny(9, 30).isoformat(), anchor_utc=ny(9, 30).isoformat())
    versions = [(ny(9, 31, 40), {"AAA": 1}), (ny(9, 33, 50), {"AAA": 3})]
    lags, missing = bar_lags(versions, closes, clock, (ny(9, 30), ny(9, 34)))
    assert lags == [40.0, 110.0, 50.0] and missing == 0
    # A bar closing outside the window is not measured; one no version counts is missing.
    lags, missing = bar_lags(versions[:1], closes, clock, (ny(9, 31), ny(9, 34)))
    assert lags == [] and missing == 2
    assert regular_closes("AAA", DAY, "1min", 11)[:2] == [ny(9, 31), ny(9, 32)]
    assert len(regular_closes("AAA", DAY, "1min", 11)) == 390


def test_a_compact_refresh_replays_a_chain_of_todays_refreshes_back_to_the_day_so_far():
    reach = timedelta(minutes=95)
    # The day so far at 09:30, then a compact refresh every minute until 12:00.
    landed = [(ny(9, 30), True)] + [(ny(9, 30) + timedelta(minutes=m), False) for m in range(1, 151)]
    whole_day, picked = todays_refreshes(landed, ny(12, 1), reach)
    # Back from 12:01: the oldest refresh within reach (10:26), then the day so far within reach of it.
    assert not whole_day and [landed[i][0] for i in picked] == [ny(9, 30), ny(10, 26)]
    whole_day, picked = todays_refreshes(landed, ny(10, 0), reach)
    assert not whole_day and [landed[i][0] for i in picked] == [ny(9, 30)]
    # Nothing today, or nothing within reach (a restart after a gap): the request must be the day so far.
    assert todays_refreshes([], ny(10, 0), reach) == (True, [])
    assert todays_refreshes(landed, ny(13, 36), reach) == (True, [])
    # A hole no refresh covers: every older refresh that holds bars nobody newer holds is kept.
    holed = [(ny(9, 30), True), (ny(9, 31), False), (ny(9, 40), False), (ny(12, 0), False)]
    assert todays_refreshes(holed, ny(12, 1), reach) == (False, [0, 2, 3])


def test_a_halted_symbol_costs_one_compact_request_a_tick_not_a_catch_up(tmp_path):
    """A symbol with nothing new (here the feed stands still while the source's clock walks on for two
    hours): every answer repeats the last body. Each refresh still counts as a refresh of today (a ``.same``
    marker beside the body), so no tick after the first asks for the whole month again, and each tick's
    payloads are the day's bars, once. Before the marker, every tick from 95 minutes on was a month request."""
    from stock_lakehouse.ingestion.config import IngestionConfig
    from stock_lakehouse.ingestion.landing import LandingZone
    from stock_lakehouse.ingestion.sources import AlphaVantageSource
    from stock_lakehouse.lakehouse.lake import Lake

    landing = LandingZone(lake=Lake(root=str(tmp_path / "lake")))
    with SessionFeed(lambda: ny(10, 0, 3), KEY, seed=5, delay_seconds=5) as feed:
        for minute in range(0, 121, 5):
            source = AlphaVantageSource(
                api_key=KEY,
                base_url=feed.url,
                per_second=0,
                per_day=0,
                budget_file=str(tmp_path / "budget.sqlite"),
                landing=landing,
                ingestion=IngestionConfig(),
                clock=Clock(fixed_utc=(ny(10, 0, 3) + timedelta(minutes=minute)).isoformat()),
            )
            fetched = list(source.fetch({"AAA": [DAY]}, "1min"))
            bars = pd.concat([parsed.bars for _, parsed in fetched])
            day = bars[bars.trade_date.astype(str) == str(DAY)].ts.astype(str)
            assert (day.min()[:19], day.max()[:19], day.nunique()) == (
                "2024-03-06 04:00:00",
                "2024-03-06 09:58:00",
                359,
            )
        assert dict(feed.requests) == {"month": 1, "compact": 24}
    folder = tmp_path / "lake" / LandingZone.folder("TIME_SERIES_INTRADAY", "AAA", "1min", "2024-03")
    names = sorted(p.name for p in folder.iterdir())
    assert sum(n.endswith(".json") for n in names) == 2 and sum(n.endswith(".same") for n in names) == 23, names


def test_overlapping_runs_are_counted():
    assert overlapping_runs([(0, 50), (60, 110), (120, 170)]) == 0
    assert overlapping_runs([(0, 70), (60, 110), (120, 170)]) == 1
    assert overlapping_runs([(0, 200), (60, 110), (120, 170)]) == 2


def tick(tmp_path, lake, feed_url: str, at: datetime) -> dg.DagsterInstance:
    """One intraday tick at ``at`` on the session's clock: the schedule's request, run in this process."""
    settings = load_settings(
        overrides={
            "symbols": "AAA,BBB",
            "interval": "1min",
            "lake_root": str(lake),
            "source": "alphavantage",
            "alphavantage.base_url": feed_url,
            "alphavantage.budget": {"per_second": 0, "per_day": 0, "state_file": str(tmp_path / "budget.sqlite")},
            "automation.intraday_every_minutes": 1,
            "automation.clock_utc": at.isoformat(),
        }
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    sync_symbols(instance, ["AAA", "BBB"])
    schedule = defs.resolve_schedule_def("intraday_refresh")
    clock = {"clock": defs.resources["clock"]}
    with dg.build_schedule_context(instance, scheduled_execution_time=at, resources=clock) as context:
        (request,) = schedule(context)
    assert request.tags["dagster/asset_partition_range_start"] == f"{DAY}|AAA"
    assert lakehouse_job(defs).execute_in_process(instance=instance, tags=request.tags).success
    return instance


@pytest.mark.spark
def test_a_session_at_a_faster_clock_loses_nothing_and_catches_up_after_a_restart(
    spark, tmp_path, lake, dagster_home, clean_env, monkeypatch
):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", KEY)
    now = [ny(10, 0)]
    ticks = [ny(10, 0, 20), ny(10, 1, 20), ny(10, 4, 20), ny(12, 30, 20)]
    regular = {s: regular_closes(s, DAY, "1min", 11) for s in ("AAA", "BBB")}
    with SessionFeed(lambda: now[0], KEY, seed=11, delay_seconds=5) as feed:
        before = feed.requests.copy()
        for at in ticks:  # 10:04 -> 12:30: the deployment was down; a compact answer reaches back 100 bars only
            now[0] = at
            tick(tmp_path, lake, feed.url, at)
            asked = feed.requests - before
            before = feed.requests.copy()
            # The first tick of the day and the one after the gap fetch the day so far; the others its tail.
            assert asked == ({"month": 2} if at in (ticks[0], ticks[3]) else {"compact": 2}), at
            silver = read_table(str(lake), "silver", start=DAY, end=DAY)
            gold = read_table(str(lake), "gold", start=DAY, end=DAY).set_index("symbol")
            for sym in ("AAA", "BBB"):
                rows = silver[silver.symbol == sym]
                published = feed.published(sym, [DAY], "1min", at)
                # Every bar published by the tick is in silver once, none that was not, and gold counts them.
                assert rows.ts_local.is_unique, (at, sym)
                assert sorted(rows.ts_local.astype(str)) == [b[0] for b in published], (at, sym)
                assert gold.loc[sym, "bar_count"] == sum(c + timedelta(seconds=5) <= at for c in regular[sym])
                assert gold.loc[sym, "close"] == pytest.approx(float(published[-1][4]))
    # Gold's history, as the lag bench reads it: each symbol's count of bars only grows, to the final one.
    versions = readable_since(lake, "gold", DAY)
    for sym in ("AAA", "BBB"):
        counts = [c[sym] for _, c in versions if sym in c]
        assert counts == sorted(counts) and counts[-1] == gold.loc[sym, "bar_count"] and len(set(counts)) == 4
    assert compare_one_shot(lake, tmp_path / "oneshot", ["AAA", "BBB"], DAY) == "yes"
    bronze = read_table(str(lake), "bronze", start=DAY, end=DAY)
    assert set(pd.to_datetime(bronze.fetched_at, utc=True)) <= {t.astimezone(UTC) for t in ticks}

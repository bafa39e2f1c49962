"""The live client against a fake Alpha Vantage server on loopback (real HTTP, injected faults)."""

from pathlib import Path

import pytest

from stock_lakehouse.ingestion import errors
from stock_lakehouse.ingestion.alphavantage import (
    AlphaVantageClient,
    crypto_intraday_request,
    daily_request,
    fx_intraday_request,
    intraday_request,
)
from stock_lakehouse.ingestion.budget import BudgetExhaustedError, RequestBudget
from stock_lakehouse.ingestion.parser import parse_csv_payload
from stock_lakehouse_tests.conftest import FIXTURES
from stock_lakehouse_tests.fake_alphavantage import FakeAlphaVantage

KEY = "TESTKEY-Q7Z9-NEVER-LOG-ME"


@pytest.fixture()
def fake():
    with FakeAlphaVantage(FIXTURES, KEY) as server:
        yield server


def client_for(fake, tmp_path: Path, *, key=KEY, per_day=1000, retries=3, timeout=5.0) -> AlphaVantageClient:
    budget = RequestBudget(tmp_path / "budget.sqlite", per_second=0, per_minute=0, per_day=per_day)
    return AlphaVantageClient(
        key, budget, base_url=fake.url, timeout=timeout, max_retries=retries, backoff_seconds=0.01
    )


REQ = intraday_request("IBM", "5min", month="2024-03")


def test_request_factory_builds_documented_parameters():
    assert REQ.query == {
        "function": "TIME_SERIES_INTRADAY",
        "symbol": "IBM",
        "interval": "5min",
        "month": "2024-03",
        "outputsize": "full",
        "adjusted": "true",
        "extended_hours": "true",
        "datatype": "json",
    }
    latest = intraday_request("IBM", "1min", outputsize="compact", entitlement="delayed", extended_hours=False)
    assert latest.query["entitlement"] == "delayed" and "month" not in latest.query
    assert daily_request("IBM").query == {
        "function": "TIME_SERIES_DAILY",
        "symbol": "IBM",
        "outputsize": "compact",
        "datatype": "json",
    }
    fx = fx_intraday_request("EUR", "USD", "5min")
    assert (fx.symbol, fx.query["from_symbol"], fx.query["to_symbol"]) == ("EURUSD", "EUR", "USD")
    btc = crypto_intraday_request("BTC", "USD", "5min")
    assert (btc.symbol, btc.query["symbol"], btc.query["market"]) == ("BTCUSD", "BTC", "USD")
    assert REQ.fingerprint == intraday_request("IBM", "5min", month="2024-03").fingerprint != latest.fingerprint
    with pytest.raises(ValueError, match="interval '2min' for IBM"):
        intraday_request("IBM", "2min")
    with pytest.raises(ValueError, match="month"):
        intraday_request("IBM", "5min", month="2024-3x")


def test_ok_response_is_parsed(fake, tmp_path):
    payload, parsed = client_for(fake, tmp_path).fetch(REQ)
    assert parsed.symbol == "IBM" and len(parsed.bars) == 20 * 192  # March 2024: 20 sessions (Good Friday closed)
    assert fake.count(symbol="IBM") == 1 and fake.keys_seen == [KEY]
    assert KEY not in payload.origin and payload.request_fingerprint == REQ.fingerprint


@pytest.mark.parametrize(
    "faults, requests",
    [
        (["throttle", "throttle"], 3),
        (["throttle_note"], 2),
        (["http500", "http503"], 3),
        (["http429"], 2),
        (["delay:3"], 2),  # past the 1 s timeout: retried
    ],
)
def test_transient_faults_are_retried(fake, tmp_path, faults, requests):
    client_for(fake, tmp_path).fetch(REQ)  # warm the server's payload cache: only planned delays are slow
    fake.plan("IBM", faults)
    _, parsed = client_for(fake, tmp_path, timeout=1.0).fetch(REQ)
    assert len(parsed.bars) > 0
    assert fake.count(symbol="IBM") == 1 + requests


def test_retries_give_up_with_a_clear_message(fake, tmp_path):
    fake.plan("IBM", ["throttle"] * 10)
    with pytest.raises(errors.IngestionError) as info:
        client_for(fake, tmp_path, retries=2).fetch(REQ)
    assert fake.count(symbol="IBM") == 3
    msg = str(info.value)
    assert "IBM" in msg and "gave up after 3 attempts" in msg and "throttled" in msg


@pytest.mark.parametrize(
    "fault, error, advice",
    [
        ("premium", errors.PremiumEndpointError, "premium key"),
        ("demo", errors.DemoKeyError, "ALPHAVANTAGE_API_KEY"),
        ("invalid", errors.InvalidCallError, "check that the symbol exists"),
        ("daily_limit", errors.DailyLimitError, "wait until tomorrow"),
        ("empty", errors.EmptyPayloadError, "check the function, symbol and interval"),
        ("malformed", errors.MalformedPayloadError, "not valid JSON"),
    ],
)
def test_permanent_errors_fail_at_once(fake, tmp_path, fault, error, advice):
    fake.plan("IBM", [fault])
    with pytest.raises(error) as info:
        client_for(fake, tmp_path).fetch(REQ)
    assert fake.count(symbol="IBM") == 1
    assert "IBM" in str(info.value) and advice in str(info.value)


def test_invalid_key_fails_at_once_without_echoing_the_key(fake, tmp_path):
    wrong = "WRONG-KEY-123456"
    with pytest.raises(errors.InvalidKeyError) as info:
        client_for(fake, tmp_path, key=wrong).fetch(REQ)
    assert fake.count(symbol="IBM") == 1
    assert "ALPHAVANTAGE_API_KEY" in str(info.value) and "IBM" in str(info.value) and wrong not in str(info.value)


def test_exhausted_daily_budget_fails_fast_across_clients(fake, tmp_path):
    first, second = client_for(fake, tmp_path, per_day=2), client_for(fake, tmp_path, per_day=2)
    first.fetch(REQ)
    second.fetch(intraday_request("MSFT", "5min", month="2024-03"))
    with pytest.raises(BudgetExhaustedError, match="daily budget of 2 requests is used up"):
        first.fetch(intraday_request("AAPL", "5min", month="2024-03"))
    assert len(fake.requests) == 2  # the third request never left the machine


def test_per_second_budget_spaces_requests(fake, tmp_path):
    import time

    budget = RequestBudget(tmp_path / "b.sqlite", per_second=1, per_minute=0, per_day=100)
    c = AlphaVantageClient(KEY, budget, base_url=fake.url, backoff_seconds=0.01)
    t0 = time.monotonic()
    for sym in ("A", "B", "C"):
        c.fetch(intraday_request(sym, "60min", month="2024-03"))
    assert time.monotonic() - t0 >= 2.0  # 3 requests at 1/s need at least 2 s
    assert budget.used(60) == 3


def test_csv_layout_is_parsed_with_the_requests_meta():
    path = FIXTURES / "intraday_extended_legacy_csv_head40_RomelTorres.csv"
    parsed = parse_csv_payload(
        path.read_bytes(), str(path), symbol="IBM", function="TIME_SERIES_INTRADAY", interval="1min"
    )
    assert parsed.symbol == "IBM" and len(parsed.bars) > 30
    assert parsed.bars.close.notna().all() and parsed.time_zone == "US/Eastern"
    with pytest.raises(errors.MalformedPayloadError, match="CSV header"):
        parse_csv_payload(
            b"this,is,not\n1,2,3\n", "x.csv", symbol="IBM", function="TIME_SERIES_INTRADAY", interval="1min"
        )

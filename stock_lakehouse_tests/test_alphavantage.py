"""The live client against a fake Alpha Vantage server on loopback (real HTTP, injected faults)."""

import asyncio
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from stock_lakehouse.ingestion import errors
from stock_lakehouse.ingestion.alphavantage import (
    AlphaVantageClient,
    ResponseTooLargeError,
    crypto_intraday_request,
    daily_request,
    fx_intraday_request,
    intraday_request,
)
from stock_lakehouse.ingestion.budget import BudgetExhaustedError, RequestBudget
from stock_lakehouse.ingestion.parser import parse_csv_payload
from stock_lakehouse.ingestion.sources import AlphaVantageSource
from stock_lakehouse.settings import AlphaVantageSettings
from stock_lakehouse_tests.conftest import FIXTURES
from stock_lakehouse_tests.fake_alphavantage import HUGE_BYTES, FakeAlphaVantage

KEY = "TESTKEY-Q7Z9-NEVER-LOG-ME"


@pytest.fixture()
def fake():
    with FakeAlphaVantage(FIXTURES, KEY) as server:
        yield server


def client_for(
    fake, tmp_path: Path, *, key=KEY, per_day=1000, retries=3, timeout=5.0, backoff=0.01, **bounds: float
) -> AlphaVantageClient:
    """A client of the fake server; ``bounds``: response_deadline_seconds, max_response_bytes, ..."""
    budget = RequestBudget(tmp_path / "budget.sqlite", per_second=0, per_minute=0, per_day=per_day)
    return AlphaVantageClient(
        key, budget, base_url=fake.url, timeout=timeout, max_retries=retries, backoff_seconds=backoff, **bounds
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


# --- time and size bounds of a live fetch ---------------------------------------------------------------

DEADLINE = 1.5  # per attempt in these tests; the faults' own pace (0.3-0.5 s a byte) is well within timeout=5


def fetch_error(client: AlphaVantageClient, error: type[Exception] = errors.IngestionError) -> tuple[str, float]:
    """Fetch ``REQ`` expecting ``error``; its one-line, key-free text and the seconds the fetch took."""
    t0 = time.monotonic()
    with pytest.raises(error) as info:
        client.fetch(REQ)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "\n" not in msg and KEY not in msg
    assert msg.startswith(REQ.describe()), msg  # names the request
    return msg, elapsed


@pytest.mark.parametrize("fault", ["silent", "dribble:0.5", "dribble_headers:0.3"])
def test_a_response_that_never_completes_ends_at_its_deadline(fake, tmp_path, fault):
    """A byte every 0.3-0.5 s never trips the 5 s inactivity timeout; the deadline for the whole response
    (connect, headers and body) ends the attempt anyway, and the server's loop stops with the client."""
    client_for(fake, tmp_path).fetch(REQ)  # warm the server's payload cache
    fake.plan("IBM", [fault])
    msg, elapsed = fetch_error(client_for(fake, tmp_path, retries=0, response_deadline_seconds=DEADLINE))
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + 2.0, elapsed
    assert f"did not complete within {DEADLINE:g} s (response_deadline_seconds)" in msg
    assert "gave up after 1 attempt in" in msg
    assert fake.count(symbol="IBM") == 2


def test_a_missed_deadline_is_retried(fake, tmp_path):
    client_for(fake, tmp_path).fetch(REQ)
    fake.plan("IBM", ["dribble:0.5", "ok"])
    t0 = time.monotonic()
    _, parsed = client_for(fake, tmp_path, retries=2, response_deadline_seconds=DEADLINE).fetch(REQ)
    assert len(parsed.bars) > 0 and fake.count(symbol="IBM") == 3
    assert time.monotonic() - t0 >= DEADLINE - 0.05  # the first attempt really waited for its deadline


@pytest.mark.parametrize("fault", ["huge", "huge_chunked", "huge_close"])
def test_an_oversized_body_is_refused_at_once_without_reading_it(fake, tmp_path, fault):
    """300 MB announced by Content-Length is refused unread; without one (chunked, or until the connection
    closes) reading stops right past the cap. Not retried: a retry would get the same body."""
    cap = 2**20
    fake.plan("IBM", [fault])
    tracemalloc.start()
    try:
        msg, elapsed = fetch_error(client_for(fake, tmp_path, max_response_bytes=cap), ResponseTooLargeError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 5.0, elapsed
    assert f"max_response_bytes={cap:,}" in msg and "not retried" in msg
    assert ("refused unread" if fault == "huge" else "stopped reading") in msg
    assert fake.count(symbol="IBM") == 1
    # What the server got out before the client hung up: kernel socket buffers at most, not 300 MB.
    assert fake.wait_sent(fault) < HUGE_BYTES // 10
    assert peak < 16 * cap, peak  # the client never buffered more than about the cap


def test_the_total_deadline_bounds_all_attempts(fake, tmp_path):
    """Plenty of retries allowed, but no backoff wait starts after which a whole attempt would overrun."""
    total = 3.5
    fake.plan("IBM", ["silent"] * 20)
    client = client_for(fake, tmp_path, retries=10, response_deadline_seconds=1.0, total_deadline_seconds=total)
    msg, elapsed = fetch_error(client)
    assert 2.0 <= elapsed <= total + 0.5, elapsed
    assert 2 <= fake.count(symbol="IBM") < 11
    assert f"no time for another within total_deadline_seconds={total:g}" in msg and "gave up after" in msg


def test_an_attempt_deadline_is_capped_to_what_is_left_of_the_total(fake, tmp_path):
    fake.plan("IBM", ["silent"])
    client = client_for(fake, tmp_path, retries=3, response_deadline_seconds=10.0, total_deadline_seconds=1.2)
    msg, elapsed = fetch_error(client)
    assert 1.0 <= elapsed < 2.2, elapsed
    assert "(what was left of total_deadline_seconds)" in msg and fake.count(symbol="IBM") == 1


def test_the_defaults_agree_everywhere():
    settings = AlphaVantageSettings()
    client = AlphaVantageClient(KEY, RequestBudget(Path("unused.sqlite")))
    for name in ("response_deadline_seconds", "max_response_bytes", "total_deadline_seconds", "max_retries"):
        assert getattr(settings, name) == AlphaVantageSource.model_fields[name].default == getattr(client, name)
    assert settings.timeout_seconds == AlphaVantageSource.model_fields["timeout_seconds"].default == client.timeout
    assert settings.backoff_seconds == client.backoff_seconds


def test_with_the_defaults_a_hopeless_fetch_gives_up_within_two_minutes(fake, tmp_path):
    s = AlphaVantageSettings()
    budget = RequestBudget(tmp_path / "budget.sqlite", per_second=0, per_minute=0, per_day=1000)

    def client(scale: float, total: float) -> AlphaVantageClient:
        return AlphaVantageClient(
            KEY,
            budget,
            base_url=fake.url,
            timeout=s.timeout_seconds / scale,
            max_retries=s.max_retries,
            backoff_seconds=s.backoff_seconds / scale,
            response_deadline_seconds=s.response_deadline_seconds / scale,
            max_response_bytes=s.max_response_bytes,
            total_deadline_seconds=total,
        )

    # Every attempt using its whole deadline, and every backoff wait, fit in the total: the total is a
    # backstop, and it is under 2 minutes.
    default = client(1, s.total_deadline_seconds)
    assert default.worst_case_seconds() <= s.total_deadline_seconds <= 120

    # The same schedule 20x faster against a silent server: every attempt is made, within the total.
    scale = 20
    fake.plan("IBM", ["silent"] * 20)
    msg, elapsed = fetch_error(client(scale, s.total_deadline_seconds / scale))
    assert f"gave up after {s.max_retries + 1} attempts" in msg
    assert elapsed <= s.total_deadline_seconds / scale + 0.5, elapsed

    # Enforced, not just computed: the total cut to half that schedule stops the retries early.
    total = default.worst_case_seconds() / scale / 2
    before = fake.count(symbol="IBM")
    msg, elapsed = fetch_error(client(scale, total))
    assert elapsed <= total + 0.5, elapsed
    assert fake.count(symbol="IBM") - before < s.max_retries + 1
    assert f"no time for another within total_deadline_seconds={total:g}" in msg


def test_fetch_from_a_running_event_loop(fake, tmp_path):
    """asyncio.run refuses to nest: a caller with a running loop gets the request in a worker thread."""
    fake.plan("IBM", ["ok", "silent"])
    client = client_for(fake, tmp_path, retries=0, response_deadline_seconds=1.0)

    async def caller() -> None:
        _, parsed = client.fetch(REQ)
        assert len(parsed.bars) > 0
        with pytest.raises(errors.IngestionError, match="did not complete within 1 s"):
            client.fetch(REQ)

    asyncio.run(caller())


def test_the_default_size_cap_has_room_for_a_month_of_one_minute_bars():
    """The bundled NVDA recording (8 sessions of 1-min extended-hours bars) scaled to a 23-session month."""
    path = Path(__file__).resolve().parents[1] / "stock_lakehouse/sample_data"
    sample = next(path.glob("TIME_SERIES_INTRADAY_NVDA_1min_*.json"))
    series = json.loads(sample.read_bytes())["Time Series (1min)"]
    sessions = len({stamp[:10] for stamp in series})
    month = sample.stat().st_size / sessions * 23
    assert 2e6 < month < AlphaVantageSettings().max_response_bytes / 10


def test_waiting_for_a_budget_slot_counts_in_the_total(fake, tmp_path):
    """A slot that frees up only after the total would have ended is not waited for."""
    budget = RequestBudget(tmp_path / "budget.sqlite", per_second=0, per_minute=1, per_day=100)
    client = AlphaVantageClient(KEY, budget, base_url=fake.url, backoff_seconds=0.01, total_deadline_seconds=2.0)
    client.fetch(REQ)  # takes the minute's only slot
    msg, elapsed = fetch_error(client)
    assert elapsed < 1.0 and fake.count(symbol="IBM") == 1
    assert "no request slot free in the budget within what is left of total_deadline_seconds=2" in msg

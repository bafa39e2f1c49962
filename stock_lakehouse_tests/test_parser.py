import json
import shutil
from datetime import date

import pytest

from stock_lakehouse.ingestion import errors
from stock_lakehouse.ingestion.parser import parse_payload, peek_meta
from stock_lakehouse.ingestion.synthetic import intraday_payload
from stock_lakehouse_tests.conftest import FIXTURES, NVDA_SAMPLE


def test_nvda_sample_parses_every_bar():
    parsed = parse_payload(NVDA_SAMPLE.read_bytes(), str(NVDA_SAMPLE))
    assert (parsed.function, parsed.symbol, parsed.interval, parsed.time_zone) == (
        "TIME_SERIES_INTRADAY",
        "NVDA",
        "1min",
        "US/Eastern",
    )
    assert len(parsed.bars) == 7680
    assert parsed.bars.groupby("trade_date").size().eq(960).all()
    first = parsed.bars.iloc[0]
    assert (first.ts, first.open, first.volume) == ("2024-03-12 19:59:00", "931.3000", "20340")


def test_a_parse_of_some_days_equals_the_whole_parse_cut_to_them():
    """``days`` skips the other days' bars: what is kept is row for row the whole parse's rows of those
    days, ``bar_seq`` (the position in the whole series) included; no day kept gives an empty frame."""
    raw = NVDA_SAMPLE.read_bytes()
    whole = parse_payload(raw, str(NVDA_SAMPLE)).bars
    wanted = ["2024-03-01", "2024-03-12"]
    some = parse_payload(raw, str(NVDA_SAMPLE), days=wanted).bars
    cut = whole[whole.trade_date.astype(str).isin(wanted)]
    assert len(some) == 2 * 960 and some.reset_index(drop=True).equals(cut.reset_index(drop=True))
    assert some.bar_seq.iloc[0] == 0 and some.bar_seq.iloc[-1] == len(whole) - 1  # 03-12 first, 03-01 last
    assert parse_payload(raw, str(NVDA_SAMPLE), days=["2024-02-01"]).bars.empty


def test_duplicate_labels_in_one_payload_are_kept_in_order():
    raw = (
        b'{"Meta Data": {"2. Symbol": "X", "4. Interval": "1min", "6. Time Zone": "US/Eastern"},'
        b' "Time Series (1min)": {"2024-03-01 10:00:00": {"1. open": "1", "2. high": "2", "3. low": "1",'
        b' "4. close": "2", "5. volume": "5"}, "2024-03-01 10:00:00": {"1. open": "9", "2. high": "9",'
        b' "3. low": "9", "4. close": "9"}}}'
    )
    parsed = parse_payload(raw, "dup.json")
    assert list(parsed.bars.open) == ["1", "9"]
    assert list(parsed.bars.bar_seq) == [0, 1]
    assert parsed.bars.volume.iloc[1] is None  # a missing field is kept as null, not dropped


def test_fx_symbol_is_the_pair():
    path = FIXTURES / "fx_intraday_5min_EURUSD_demo_2026-01-25_excerpt.json"
    parsed = parse_payload(path.read_bytes(), str(path))
    assert (parsed.function, parsed.symbol, parsed.interval, parsed.time_zone) == (
        "FX_INTRADAY",
        "EURUSD",
        "5min",
        "UTC",
    )
    assert parsed.bars.volume.isna().all()


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("invalid_call", errors.InvalidCallError, "symbol exists"),
        ("rate_limit_daily_2024plus", errors.DailyLimitError, "daily request limit"),
        ("rate_limit_burst_2026", errors.ThrottledError, "retry"),
        ("rate_limit_legacy_note_pre2024", errors.ThrottledError, "retry"),
        ("premium_endpoint", errors.PremiumEndpointError, "premium"),
        ("demo_key_misuse", errors.DemoKeyError, "ALPHAVANTAGE_API_KEY"),
        ("no_data", errors.EmptyPayloadError, "empty object"),
    ],
)
def test_api_message_bodies_are_classified(name, error, words):
    body = json.loads((FIXTURES / "error_and_throttle_payloads.json").read_text())[name]
    with pytest.raises(error) as info:
        parse_payload(json.dumps(body).encode(), "req", expected_symbol="IBM")
    assert "IBM" in str(info.value) and words in str(info.value)


def test_malformed_json_names_the_file_and_shows_an_excerpt():
    with pytest.raises(errors.MalformedPayloadError, match=r"bad\.json: not valid JSON.*\{\"Meta Data\": \{"):
        parse_payload(b'{"Meta Data": {', "bad.json")


def test_bad_bar_label_names_file_symbol_and_label():
    raw = b'{"Meta Data": {"2. Symbol": "X"}, "Time Series (1min)": {"yesterday": {"1. open": "1"}}}'
    with pytest.raises(errors.MalformedPayloadError, match=r"f\.json: bar label 'yesterday' of X"):
        parse_payload(raw, "f.json")


def test_synthetic_payload_is_deterministic_and_in_api_layout():
    from datetime import date

    days = [date(2024, 11, 27), date(2024, 11, 28), date(2024, 11, 29)]
    a = intraday_payload("ACME", days, "5min", seed=1)
    assert a == intraday_payload("ACME", days, "5min", seed=1)
    assert a != intraday_payload("ACME", days, "5min", seed=2)
    parsed = parse_payload(a, "synthetic")
    counts = parsed.bars.groupby("trade_date").size().to_dict()
    # Thanksgiving has no bars; extended hours 04:00-20:00 give 192 five-minute bars.
    assert counts == {date(2024, 11, 27): 192, date(2024, 11, 29): 192}


def test_peek_meta_answers_only_what_the_full_parse_would():
    for kind, sym, quote, want in (
        ("equity", "IBM", "USD", "IBM"),
        ("fx", "EUR", "USD", "EURUSD"),
        ("crypto", "BTC", "USD", "BTCUSD"),
    ):
        raw = intraday_payload(sym, [date(2024, 3, 4)], "5min", seed=1, kind=kind, quote=quote)
        parsed = parse_payload(raw, "x")
        assert peek_meta(raw) == (parsed.symbol, parsed.interval) == (want, "5min")
    doc = json.loads(intraday_payload("IBM", [date(2024, 3, 4)], "5min", seed=1))
    meta, (series_key, series) = doc["Meta Data"], next((k, v) for k, v in doc.items() if k.startswith("Time Series"))

    def body(*pairs) -> bytes:
        return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}").encode()

    # Anything the cheap read could get wrong is left to the full parse (None): a second Meta Data (the
    # parser keeps the last), a quoted "Time Series" inside a value, a nested object, a hostile symbol.
    twice = body(("Meta Data", {**meta, "2. Symbol": "AAA"}), ("Meta Data", meta), (series_key, series))
    assert parse_payload(twice, "x").symbol == "IBM" and peek_meta(twice) is None
    for odd in (
        body(("Meta Data", {**meta, "1. Information": 'a "Time Series (5min)" b'}), (series_key, series)),
        body(("Meta Data", {**meta, "9. Extra": {"a": 1}}), (series_key, series)),
        body(("Meta Data", {**meta, "2. Symbol": "../../x"}), (series_key, series)),
        b'{"Meta Data": {"2. Symbol": "NVDA"',
    ):
        assert peek_meta(odd) is None, odd[:80]


def test_a_replay_run_parses_only_the_files_of_its_symbols(tmp_path):
    from stock_lakehouse.ingestion.sources import ReplaySource

    shutil.copy(NVDA_SAMPLE, tmp_path / "nvda.json")
    # AMD's file is cut short: its Meta Data is whole, its bars are not valid JSON.
    (tmp_path / "amd.json").write_bytes(
        b'{"Meta Data": {"2. Symbol": "AMD", "4. Interval": "1min"}, "Time Series (1min)": {"2024-03-04 10:00'
    )
    source = ReplaySource(folder=str(tmp_path))
    assert [p.symbol for _, p in source.fetch({"NVDA": [date(2024, 3, 4)]}, "1min")] == ["NVDA"]
    # Asked for, the broken file is parsed and named.
    with pytest.raises(errors.MalformedPayloadError, match="amd.json"):
        list(source.fetch({"AMD": [date(2024, 3, 4)]}, "1min"))

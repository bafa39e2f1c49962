"""What to ingest: interval, exchange calendar and instrument kinds, shared by the table assets."""

from datetime import date

import dagster as dg

from stock_lakehouse.market_calendar import is_trading_day


class IngestionConfig(dg.ConfigurableResource):
    """Series settings every layer agrees on.

    Attributes:
        interval: bar interval of the series (``1min`` ... ``60min``); payloads of other intervals are ignored.
        calendar: ``exchange_calendars`` code of the exchange whose sessions define stock trading days.
        fx_pairs: currency pairs (``EUR/USD``): they trade on every weekday, around the clock.
        crypto: coins (``BTC/USD``): they trade every day, around the clock (weekend bars fall outside
            the weekday date partitions).
        allow_empty_overwrite: let a source that yields no bars for a partition erase that partition's
            existing rows. Off: such partitions keep their rows, with a warning naming the likely cause.
    """

    interval: str = "1min"
    calendar: str = "XNYS"
    fx_pairs: list[str] = []
    crypto: list[str] = []
    allow_empty_overwrite: bool = False

    def kind(self, symbol: str) -> str:
        """``equity``, ``fx`` or ``crypto`` for a partition symbol."""
        if symbol in {p.replace("/", "") for p in self.fx_pairs}:
            return "fx"
        if symbol in {p.replace("/", "") for p in self.crypto}:
            return "crypto"
        return "equity"

    def pair(self, symbol: str) -> tuple[str, str]:
        """(base, quote) of an FX pair or coin partition symbol."""
        for pair in self.fx_pairs + self.crypto:
            if pair.replace("/", "") == symbol:
                base, quote = pair.split("/")
                return base, quote
        raise KeyError(f"{symbol} is not a configured FX pair or coin")

    def is_trading_day(self, symbol: str, day: date) -> bool:
        """Whether ``symbol``'s market is open on ``day`` (stocks: the exchange calendar)."""
        kind = self.kind(symbol)
        if kind == "equity":
            return is_trading_day(day, self.calendar)
        return kind == "crypto" or day.weekday() < 5

"""What to ingest: bar interval and exchange calendar, as a resource shared by the table assets."""

import dagster as dg


class IngestionConfig(dg.ConfigurableResource):
    """Series settings every layer agrees on.

    Attributes:
        interval: bar interval of the series (``1min`` ... ``60min``); payloads of other intervals are ignored.
        calendar: ``exchange_calendars`` code of the exchange whose sessions define trading days.
    """

    interval: str = "1min"
    calendar: str = "XNYS"

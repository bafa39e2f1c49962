"""The landing zone: every payload kept byte for byte, one file per distinct body.

Path: ``<root>/landing/<function>/<symbol>/<interval>/<month>/<fetched_at>_<fingerprint>_<sha256[:16]>.<ext>``
(``fetched_at`` as ``YYYYmmddTHHMMSSffffffZ``; the fingerprint identifies the request without the key),
on a local folder or an ``s3a://`` root. A body already landed in the same folder is not written again,
so replaying the same recordings on every run does not grow the zone. The live source looks payloads up
here to avoid re-fetching complete months.

A refresh whose body is already landed (a halted symbol, a quiet market: nothing new since the last fetch)
still says when it was fetched, in an empty marker ``<fetched_at>_<fingerprint>_<sha256[:16]>.same``
beside the body: the live source replays today's refreshes by fetch time, and without the marker a
symbol that stopped trading would look unrefreshed and cost a whole-month catch-up request on every tick.
"""

import re
from collections.abc import Collection
from datetime import UTC, datetime

import dagster as dg

from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_csv_payload, parse_payload
from stock_lakehouse.lakehouse.lake import Lake
from stock_lakehouse.lakehouse.object_store import ObjectFiles
from stock_lakehouse.symbols import validate_interval, validate_month, validate_symbol

_STAMP = "%Y%m%dT%H%M%S%fZ"
_SAME = ".same"


def _bodies(names: list[str], digest: str) -> list[str]:
    """The landed bodies among a folder's ``names`` whose sha256 starts with ``digest`` (markers aside)."""
    return [n for n in names if not n.endswith(_SAME) and n.rsplit(".", 1)[0].endswith(f"_{digest}")]


class LandingZone(dg.ConfigurableResource):
    """Raw payload storage beside the tables.

    Attributes:
        lake: the lake; payloads go under ``landing/`` beside the tables.
    """

    lake: dg.ResourceDependency[Lake]

    def _files(self) -> ObjectFiles:
        return self.lake.files()

    @staticmethod
    def folder(function: str, symbol: str, interval: str, month: str) -> str:
        """The folder of one request's payloads. Every segment is validated, since symbol, interval and
        month may come from a response's ``Meta Data``: no value can leave ``landing/``."""
        if not re.fullmatch(r"[A-Z][A-Z_]{0,39}", function):
            raise ValueError(f"invalid function {function[:40]!r} for a landing path")
        where = f"the landing path of a {function} payload"
        return "/".join(
            (
                "landing",
                function,
                validate_symbol(symbol, where),
                validate_interval(interval, where),
                validate_month(month, where),
            )
        )

    def store(self, payload: Payload, parsed: ParsedPayload, month: str | None = None, restamp: bool = False) -> str:
        """Keep ``payload.raw`` and return its URI (the one bronze rows point to).

        Args:
            month: the landing month (``YYYY-MM``); default ``payload.month``, else the month of the
                payload's last refresh.
            restamp: when the body is already landed, record this fetch's time in a ``.same`` marker
                (module docstring); ``stamps`` lists it and ``read`` reads the body it stands for.
        """
        month = month or payload.month or (parsed.last_refreshed or payload.fetched_at.isoformat())[:7]
        folder = self.folder(parsed.function, parsed.symbol, parsed.interval, month)
        files = self._files()
        digest = payload.sha256[:16]
        names = files.list(folder)
        stem = f"{payload.fetched_at.astimezone(UTC).strftime(_STAMP)}_{payload.request_fingerprint}_{digest}"
        bodies = _bodies(names, digest)
        if bodies:
            if restamp and f"{stem}{_SAME}" not in names:
                files.put(f"{folder}/{stem}{_SAME}", b"")
            return files.uri(f"{folder}/{bodies[0]}")
        ext = "json" if payload.raw.lstrip()[:1] in (b"{", b"[") else "csv"
        return files.put(f"{folder}/{stem}.{ext}", payload.raw)

    def stamps(
        self, function: str, symbol: str, interval: str, month: str, fingerprint: str
    ) -> list[tuple[datetime, str]]:
        """``(fetched_at, name)`` of one request's landed payloads and ``.same`` markers (by fingerprint), oldest
        fetch first, from the file names alone: a caller picks what to read before paying for reading it."""
        folder = self.folder(function, symbol, interval, month)
        out = []
        for name in self._files().list(folder):
            stamp, _, rest = name.partition("_")
            if rest.startswith(f"{fingerprint}_"):
                out.append((datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC), name))
        return sorted(out)

    def read(
        self, function: str, symbol: str, interval: str, month: str, name: str, days: Collection[str] | None = None
    ) -> tuple[Payload, ParsedPayload]:
        """One landed payload (a name from ``stamps``), parsed and checked against its request; a ``.same``
        marker reads the body it stands for, fetched at the marker's time. With ``days`` (``YYYY-MM-DD``), a
        JSON body's bars of other days are skipped unparsed (``parse_payload``): it was parsed whole when
        it landed."""
        folder = self.folder(function, symbol, interval, month)
        files = self._files()
        stamp, _, rest = name.partition("_")
        body = name
        if name.endswith(_SAME):
            digest = name[: -len(_SAME)].rsplit("_", 1)[-1]
            bodies = _bodies(files.list(folder), digest)
            if not bodies:
                raise FileNotFoundError(f"{files.uri(f'{folder}/{name}')}: no landed body with hash {digest} beside it")
            body = bodies[0]
        raw = files.get(f"{folder}/{body}")
        payload = Payload(
            raw=raw,
            origin=files.uri(f"{folder}/{body}"),
            source="alphavantage",
            fetched_at=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC),
            request_fingerprint=rest.split("_", 1)[0],
            month=month,
        )
        if body.endswith(".csv"):
            parsed = parse_csv_payload(raw, payload.origin, symbol=symbol, function=function, interval=interval)
        else:
            parsed = parse_payload(raw, payload.origin, expected_symbol=symbol, days=days)
        parsed.expect(function, symbol, interval, payload.origin)
        return payload, parsed

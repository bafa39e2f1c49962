"""The landing zone: every payload kept byte for byte, one file per distinct body.

Path: ``<root>/landing/<function>/<symbol>/<interval>/<month>/<fetched_at>_<fingerprint>_<sha256[:16]>.<ext>``
(``fetched_at`` as ``YYYYmmddTHHMMSSffffffZ``; the fingerprint identifies the request without the key).
A body already landed in the same folder is not written again, so replaying the same recordings on every
run does not grow the zone. The live source looks payloads up here to avoid re-fetching complete months.
"""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from stock_lakehouse.ingestion.parser import ParsedPayload, Payload, parse_csv_payload, parse_payload

_STAMP = "%Y%m%dT%H%M%S%fZ"


class LandingZone(dg.ConfigurableResource):
    """Raw payload storage beside the tables (a local folder; ``s3a://`` roots come with the S3 work)."""

    root_uri: str

    def _base(self) -> Path:
        if "://" in self.root_uri:
            raise NotImplementedError(
                f"the landing zone on {self.root_uri.split('://')[0]}:// is not implemented yet; use a local lake root"
            )
        return Path(self.root_uri) / "landing"

    def folder(self, function: str, symbol: str, interval: str, month: str) -> Path:
        return self._base() / function / symbol / interval / month

    def store(self, payload: Payload, parsed: ParsedPayload, month: str | None = None) -> str:
        """Keep ``payload.raw`` and return its path (the URI bronze rows point to).

        Args:
            month: the landing month (``YYYY-MM``); default ``payload.month``, else the month of the
                payload's last refresh.
        """
        month = month or payload.month or (parsed.last_refreshed or payload.fetched_at.isoformat())[:7]
        folder = self.folder(parsed.function, parsed.symbol, parsed.interval, month)
        digest = payload.sha256[:16]
        existing = sorted(folder.glob(f"*_{digest}.*")) if folder.is_dir() else []
        if existing:
            return str(existing[0])
        folder.mkdir(parents=True, exist_ok=True)
        ext = "json" if payload.raw.lstrip()[:1] in (b"{", b"[") else "csv"
        path = folder / f"{payload.fetched_at.strftime(_STAMP)}_{payload.request_fingerprint}_{digest}.{ext}"
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(payload.raw)
        tmp.replace(path)  # atomic: a crashed run never leaves half a payload under a final name
        return str(path)

    def find(
        self, function: str, symbol: str, interval: str, month: str, fingerprint: str
    ) -> list[tuple[Payload, ParsedPayload]]:
        """Landed payloads of one request (by fingerprint), oldest fetch first."""
        folder = self.folder(function, symbol, interval, month)
        out = []
        for path in sorted(folder.glob(f"*_{fingerprint}_*.*")) if folder.is_dir() else []:
            if path.name.endswith(".part"):
                continue
            stamp = path.name.split("_", 1)[0]
            raw = path.read_bytes()
            payload = Payload(
                raw=raw,
                origin=str(path),
                source="alphavantage",
                fetched_at=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC),
                request_fingerprint=fingerprint,
                month=month,
            )
            if path.suffix == ".csv":
                parsed = parse_csv_payload(raw, str(path), symbol=symbol, function=function, interval=interval)
            else:
                parsed = parse_payload(raw, str(path), expected_symbol=symbol)
            out.append((payload, parsed))
        return out

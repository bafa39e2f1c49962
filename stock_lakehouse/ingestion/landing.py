"""The landing zone: every payload kept byte for byte, one file per distinct body.

Path: ``<root>/landing/<function>/<symbol>/<interval>/<month>/<fetched_at>_<sha256[:16]>.json``.
A body already landed (same hash in the same folder) is not written again, so replaying the same
recordings on every run does not grow the zone.
"""

from pathlib import Path

import dagster as dg

from stock_lakehouse.ingestion.parser import ParsedPayload, Payload


class LandingZone(dg.ConfigurableResource):
    """Raw payload storage beside the tables (a local folder; ``s3a://`` roots come with the S3 work)."""

    root_uri: str

    def _base(self) -> Path:
        if "://" in self.root_uri:
            raise NotImplementedError(
                f"the landing zone on {self.root_uri.split('://')[0]}:// is not implemented yet; use a local lake root"
            )
        return Path(self.root_uri) / "landing"

    def store(self, payload: Payload, parsed: ParsedPayload) -> str:
        """Keep ``payload.raw`` and return its path (the URI bronze rows point to)."""
        month = (parsed.last_refreshed or payload.fetched_at.isoformat())[:7]
        folder = self._base() / parsed.function / parsed.symbol / parsed.interval / month
        digest = payload.sha256[:16]
        existing = sorted(folder.glob(f"*_{digest}.json")) if folder.is_dir() else []
        if existing:
            return str(existing[0])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{payload.fetched_at.strftime('%Y%m%dT%H%M%S%fZ')}_{digest}.json"
        tmp = path.with_suffix(".part")
        tmp.write_bytes(payload.raw)
        tmp.replace(path)  # atomic: a crashed run never leaves half a payload under a final name
        return str(path)

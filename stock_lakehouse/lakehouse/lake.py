"""The lake: where it is, how to reach it, and what its tables are called.

Why a resource of its own: the lake's location used to be stated in four places (settings, Spark's
S3A settings, the landing zone, each sensor's arguments) and two sensors lost the S3 endpoint on the
way. Now the lake is one ``Lake`` resource; the IO manager, the landing zone, Spark sessions, the
delta-rs readers, maintenance and every sensor that reads a table ask it. Table names live beside it
(``tables.py``: ``TABLES``): asset keys, folders, SQL view names and step names are derived from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from stock_lakehouse.lakehouse.object_store import ObjectFiles, S3Location, is_s3, s3_keys, split_s3
from stock_lakehouse.lakehouse.tables import table_folder

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.dataset as pads
    from pyspark.sql import SparkSession


class Lake(dg.ConfigurableResource):
    """Where the lake is and how to reach it; no keys (S3 keys come from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` in the environment, read by S3A, boto3 and delta-rs alike).

    Attributes:
        root: absolute local folder or ``s3a://bucket/prefix``.
        s3: how to reach the store of an ``s3a://`` root.
    """

    root: str
    s3: S3Location = S3Location()

    @staticmethod
    def resolve_root(root: str) -> str:
        """``root`` as a URI Spark understands: an absolute local path or ``s3a://...``."""
        if "://" in root:
            return root.rstrip("/")
        return str(Path(root).expanduser().resolve())

    @property
    def uri(self) -> str:
        return self.resolve_root(self.root)

    @property
    def on_s3(self) -> bool:
        return is_s3(self.uri)

    @property
    def bucket(self) -> str | None:
        """The bucket of an ``s3a://`` root (None for a local folder)."""
        return split_s3(self.uri)[0] if self.on_s3 else None

    def table_uri(self, table: str | dg.AssetKey) -> str:
        """The URI of a table's folder (short name, asset key or path)."""
        return f"{self.uri}/{table_folder(table)}"

    def files(self) -> ObjectFiles:
        """Whole files under the root (the landing zone)."""
        return ObjectFiles(self.uri, self.s3)

    def probe(self) -> str | None:
        """Why the lake's bucket cannot be used now, or None (always None for a local folder)."""
        return self.s3.probe(self.bucket) if self.bucket is not None else None

    def s3a_conf(self) -> dict[str, str]:
        """Where S3A finds this lake's store, as Spark settings (``spark.hadoop.fs.s3a.*``; no keys)."""
        conf = {
            "spark.hadoop.fs.s3a.path.style.access": str(self.s3.path_style).lower(),
            "spark.hadoop.fs.s3a.endpoint.region": self.s3.region,
        }
        if self.s3.endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = self.s3.endpoint
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(self.s3.endpoint.startswith("https")).lower()
        return conf

    def configure_spark(self, session: SparkSession) -> SparkSession:
        """Point ``session``'s S3A file system at this lake's store.

        Set on the live Hadoop configuration, not in the Spark conf: keys stay out of every config Dagster
        shows, and executors of a cluster receive it with each job. A client of the engine has no Hadoop
        configuration of its own: the engine was configured with its lake when it started
        (``engine/server.py``), and its store must be this lake's.

        Raises:
            RuntimeError: the engine reaches another S3 endpoint than this lake's.
        """
        from stock_lakehouse.lakehouse.frames import is_remote

        if is_remote(session):
            if self.on_s3:
                theirs = session.conf.get("spark.hadoop.fs.s3a.endpoint", None) or None
                if theirs != self.s3.endpoint:
                    raise RuntimeError(
                        f"the Spark engine reaches S3 at {theirs or 'AWS (no endpoint)'}, this lake ({self.uri}) is "
                        f"at {self.s3.endpoint or 'AWS (no endpoint)'}: restart the engine with this lake's settings"
                    )
            return session
        hconf = session.sparkContext._jsc.hadoopConfiguration()
        for key, value in self.s3a_conf().items():
            hconf.set(key.removeprefix("spark.hadoop."), value)
        keys = s3_keys()
        for env_name, key in (
            ("AWS_ACCESS_KEY_ID", "fs.s3a.access.key"),
            ("AWS_SECRET_ACCESS_KEY", "fs.s3a.secret.key"),
        ):
            if env_name in keys:
                hconf.set(key, keys[env_name])
        return session

    def has_table(self, table: str | dg.AssetKey) -> bool:
        """Whether a table (short name, asset key, path, or its ``table_uri``) exists: its Delta log, asked of
        delta-rs.

        Not Spark's ``DeltaTable.isDeltaTable``: that is not in Spark Connect's API, and Delta caches a
        DeltaLog per path, so one looked up while the table was being created can keep saying "no table".
        """
        from stock_lakehouse.lakehouse.reader import is_delta_table

        return is_delta_table(self._table_uri(table), self.s3)

    def _table_uri(self, table: str | dg.AssetKey) -> str:
        """``table_uri`` of a table, or the argument itself when it is one of this lake's table URIs already."""
        return table if isinstance(table, str) and table.startswith(f"{self.uri}/") else self.table_uri(table)

    def last_commit(self, table: str | dg.AssetKey) -> dict:
        """The newest commit of a table (short name, asset key, path or its ``table_uri``), asked of delta-rs:
        ``version``, ``operation``, ``operationMetrics``; see ``reader.last_commit``."""
        from stock_lakehouse.lakehouse.reader import last_commit

        return last_commit(self._table_uri(table), self.s3)

    def dataset(self, table: str | dg.AssetKey, version: int | None = None) -> pads.Dataset:
        """A table as a pyarrow dataset (delta-rs, no Spark); see ``reader.table_dataset``."""
        from stock_lakehouse.lakehouse.reader import table_dataset

        return table_dataset(self.uri, table, version, self.s3)

    def partition_stats(self, table: str | dg.AssetKey) -> dict[tuple[str, date], tuple[int, datetime | None]]:
        """Rows and newest bar time per (symbol, trade_date), from the Delta log; see ``reader.partition_stats``."""
        from stock_lakehouse.lakehouse.reader import partition_stats

        return partition_stats(self.uri, table, self.s3)

    def read(
        self,
        table: str,
        symbols: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
        version: int | None = None,
    ) -> pd.DataFrame:
        """Rows of a table for symbols and a trade-date range (delta-rs, no Spark); see ``reader.read_table``."""
        from stock_lakehouse.lakehouse.reader import read_table

        return read_table(self.uri, table, symbols, start, end, version, self.s3)

"""The Spark settings the pipeline pins: no ``spark.conf`` may set them.

``SparkResource.spark_conf`` (``spark.py``) sets these keys, and the results depend on them: transforms
turn New York bar labels into UTC instants in a UTC session, an unparsable label becomes null (flagged
``bad_timestamp``) instead of failing the run, Delta is the catalog, and each process's temp files live in
a folder the next session cleans. Extra Spark settings come from two places, ``spark.conf`` in the
settings and ``SparkResource.conf`` (which Dagster's Launchpad can set for one run); both are checked here,
when settings load and when the resource is built, before any session starts.

A module of its own, without pyspark, so that loading settings stays light. Spark's keys are
case-sensitive: a case variant (``spark.sql.session.timezone``) would be a key Spark ignores, so it is
refused too, as is a key with surrounding blanks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Key -> what the pipeline sets it to and why (the reason shown when a config tries to set it).
PINNED_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC: transforms turn New York bar labels into UTC instants",
    "spark.sql.legacy.timeParserPolicy": (
        "CORRECTED: a bar label that fits no layout becomes null, flagged bad_timestamp, instead of failing the run"
    ),
    "spark.sql.extensions": "Delta Lake's SQL extension",
    "spark.sql.catalog.spark_catalog": "Delta Lake's catalog",
    "spark.driver.extraJavaOptions": (
        "-Duser.timezone=UTC, the driver's log4j2 configuration and java.io.tmpdir; other JVM options go in "
        "spark.driver.defaultJavaOptions"
    ),
    "spark.executor.extraJavaOptions": (
        "-Duser.timezone=UTC; other JVM options go in spark.executor.defaultJavaOptions"
    ),
    "spark.local.dir": "the process's own temp folder, removed once the process is gone",
    "spark.driver.extraClassPath": "the Delta and S3A jars",
    "spark.jars": "the Delta and S3A jars",
    "spark.jars.packages": "the Delta and S3A jars",
    "spark.jars.ivy": "the Ivy cache of the jars; set STOCK_LAKEHOUSE_IVY_DIR",
    "spark.hadoop.fs.s3a.impl": "S3A for s3a:// lakes",
    "spark.hadoop.fs.s3a.aws.credentials.provider": "S3 keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY only",
}

#: Key -> the setting of its own that sets it (``spark.<setting>`` in the settings file, ``<setting>`` on
#: ``SparkResource``): two ways to set one value would leave one of them silently ignored.
OWN_SETTING: dict[str, str] = {
    "spark.master": "master",
    "spark.app.name": "app_name",
    "spark.driver.memory": "driver_memory",
    "spark.sql.shuffle.partitions": "shuffle_partitions",
}

#: S3 keys in a Spark config would be shown in the UI and in run metadata; they come from the environment.
_SECRET_SUFFIXES = (".access.key", ".secret.key", ".session.token")

_PINNED = {key.lower(): key for key in PINNED_CONF}
_OWN = {key.lower(): key for key in OWN_SETTING}


def refused_conf(conf: Mapping[str, object]) -> list[str]:
    """Why each key of ``conf`` that no config may set is refused (empty: all allowed).

    Args:
        conf: extra Spark settings (``spark.conf`` / ``SparkResource.conf``).
    """
    problems = []
    for raw in conf:
        key = str(raw).strip().lower()
        if key in _PINNED:
            name = _PINNED[key]
            problems.append(f"{raw!r} is pinned by the pipeline ({PINNED_CONF[name]}) and cannot be set")
        elif key in _OWN:
            setting = OWN_SETTING[_OWN[key]]
            problems.append(f"{raw!r} has a setting of its own: spark.{setting} (SparkResource.{setting})")
        elif key.startswith("spark.hadoop.fs.s3a.") and key.endswith(_SECRET_SUFFIXES):
            problems.append(
                f"{raw!r} would put a key in config shown in the UI: S3 keys come from AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY"
            )
    return problems


def check_conf(conf: Mapping[str, object]) -> Mapping[str, object]:
    """``conf`` unchanged when every key may be set.

    Raises:
        ValueError: naming each refused key and why.
    """
    problems = refused_conf(conf)
    if problems:
        raise ValueError("; ".join(problems))
    return conf


#: ``sc://host:port``: a host name or IPv4 address, or a bracketed IPv6 one, and a port; nothing after it.
_ENGINE_URL = re.compile(r"sc://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}/?")


def check_remote(url: str | None) -> str | None:
    """``url`` (the engine's ``spark.remote``) unchanged when it is ``sc://host:port``; None stays None.

    Connect URLs may carry parameters after the port (``;token=...``, ``;user_id=...``): a token would be a
    secret in config the UI shows, and our engine takes none, so any text after the port is refused.

    Raises:
        ValueError: naming the value and the form expected.
    """
    if url is None or url == "":
        return None
    if not _ENGINE_URL.fullmatch(url) or not 0 < int(url.rstrip("/").rsplit(":", 1)[1]) < 65536:
        raise ValueError(
            f"spark.remote {url[:100]!r} is not sc://host:port (the engine's address, e.g. sc://127.0.0.1:15002; "
            "no parameters)"
        )
    return url.rstrip("/")

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

"""The Spark session: Delta-enabled, S3A-ready, quiet, tuned for small local runs.

One session per process: ``getOrCreate`` returns the running one, and the job uses the in-process
executor, so a Dagster run starts at most one JVM. The Delta and S3A jars are resolved by Spark's own
Ivy resolver on first use (``spark.jars.packages``, cached in ``~/.ivy2``); once they are in the cache
later sessions load them straight from disk (``spark.jars``), skipping resolution.
"""

import os
import threading
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_pyspark.resources import spark_session_from_config
from pyspark import SparkContext
from pyspark.sql import SparkSession

DELTA_VERSION = "3.3.2"
HADOOP_AWS_VERSION = "3.3.4"  # must equal the Hadoop bundled in pyspark 3.5
PACKAGES = (f"io.delta:delta-spark_2.12:{DELTA_VERSION}", f"org.apache.hadoop:hadoop-aws:{HADOOP_AWS_VERSION}")
# What Ivy leaves in <ivy>/jars for PACKAGES (transitive dependencies included).
JAR_FILES = (
    f"io.delta_delta-spark_2.12-{DELTA_VERSION}.jar",
    f"io.delta_delta-storage-{DELTA_VERSION}.jar",
    "org.antlr_antlr4-runtime-4.9.3.jar",
    f"org.apache.hadoop_hadoop-aws-{HADOOP_AWS_VERSION}.jar",
    "com.amazonaws_aws-java-sdk-bundle-1.12.262.jar",
    "org.wildfly.openssl_wildfly-openssl-1.0.7.Final.jar",
)

_lock = threading.Lock()
_sessions_started = 0


def ivy_dir() -> Path:
    return Path(os.environ.get("STOCK_LAKEHOUSE_IVY_DIR", Path.home() / ".ivy2")).expanduser()


def cached_jars() -> list[str] | None:
    """Local paths of all needed jars, or None when some are not in the Ivy cache yet."""
    paths = [ivy_dir() / "jars" / name for name in JAR_FILES]
    return [str(p) for p in paths] if all(p.is_file() for p in paths) else None


def sessions_started() -> int:
    """How many Spark sessions (JVMs) this process has started: 0 or 1 in normal use."""
    return _sessions_started


class SparkResource(dg.ConfigurableResource):
    """A Delta-enabled Spark session shared by every step of a run (in-process executor).

    Attributes:
        master: ``local[*]`` (default) or a cluster URL such as ``spark://host:7077``.
        shuffle_partitions: ``spark.sql.shuffle.partitions``; small for local mode, where the default
            200 turns every aggregation into hundreds of tiny tasks.
        driver_memory: ``spark.driver.memory``.
        conf: extra Spark settings. Never put keys here (resource config is shown in the UI): S3 keys
            come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the environment.
        s3_endpoint: S3-compatible endpoint (MinIO, Ceph, ...); None for AWS S3.
        s3_path_style: path-style addressing, needed by most S3-compatible servers.
        s3_region: region used for request signing.
    """

    master: str = "local[*]"
    app_name: str = "stock-lakehouse"
    shuffle_partitions: int = 4
    driver_memory: str = "2g"
    conf: dict[str, str] = {}
    s3_endpoint: str | None = None
    s3_path_style: bool = True
    s3_region: str = "us-east-1"

    def spark_conf(self) -> dict[str, Any]:
        """The full Spark configuration this resource applies (no secrets in it)."""
        jars = cached_jars()
        conf: dict[str, Any] = {
            "spark.master": self.master,
            "spark.app.name": self.app_name,
            "spark.driver.memory": self.driver_memory,
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # Transforms turn New York wall-clock labels into UTC instants; they assume a UTC session.
            "spark.sql.session.timeZone": "UTC",
            # A bar label that fits no layout parses to null (flagged bad_timestamp) instead of raising.
            "spark.sql.legacy.timeParserPolicy": "CORRECTED",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.default.parallelism": str(self.shuffle_partitions),
            "spark.databricks.delta.snapshotPartitions": str(self.shuffle_partitions),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": "-Dlog4j2.rootLogger.level=error -Duser.timezone=UTC",
            "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.path.style.access": str(self.s3_path_style).lower(),
            "spark.hadoop.fs.s3a.endpoint.region": self.s3_region,
            "spark.hadoop.fs.s3a.aws.credentials.provider": (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider,"
                "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
            ),
        }
        if jars:
            conf["spark.jars"] = ",".join(jars)
        else:
            conf["spark.jars.packages"] = ",".join(PACKAGES)
            conf["spark.jars.ivy"] = str(ivy_dir())
        if self.s3_endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = self.s3_endpoint
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(self.s3_endpoint.startswith("https")).lower()
        conf.update(self.conf)
        return conf

    def _apply_s3(self, session: SparkSession) -> None:
        # Set on the live Hadoop configuration, not in the Spark conf: keys stay out of every config
        # Dagster shows, and a session started before the settings changed (tests) still follows them.
        hconf = session.sparkContext._jsc.hadoopConfiguration()
        if self.s3_endpoint:
            hconf.set("fs.s3a.endpoint", self.s3_endpoint)
            hconf.set("fs.s3a.connection.ssl.enabled", str(self.s3_endpoint.startswith("https")).lower())
        hconf.set("fs.s3a.path.style.access", str(self.s3_path_style).lower())
        hconf.set("fs.s3a.endpoint.region", self.s3_region)
        for env_name, key in (
            ("AWS_ACCESS_KEY_ID", "fs.s3a.access.key"),
            ("AWS_SECRET_ACCESS_KEY", "fs.s3a.secret.key"),
        ):
            if os.environ.get(env_name):
                hconf.set(key, os.environ[env_name])

    def get_session(self) -> SparkSession:
        """The process's Spark session, started on first use."""
        global _sessions_started
        with _lock:
            if SparkContext._active_spark_context is not None:
                session = SparkSession.builder.getOrCreate()
            else:
                session = spark_session_from_config(self.spark_conf())
                session.sparkContext.setLogLevel("ERROR")
                _sessions_started += 1
            self._apply_s3(session)
            return session

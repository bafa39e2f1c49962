"""The Spark session: Delta-enabled, S3A-ready, quiet, tuned for small local runs.

One session per process: ``getOrCreate`` returns the running one, and the job uses the in-process
executor, so a Dagster run starts at most one JVM. The Delta and S3A jars are resolved by Spark's own
Ivy resolver on first use (``spark.jars.packages``, cached in ``~/.ivy2``); once they are in the cache
later sessions load them straight from disk, skipping resolution: on the driver's class path for a local
master (``spark.jars`` would copy all 277 MB of them into every session's temp folder), as ``spark.jars``
for a cluster, whose executors need them shipped.

Temp files: each process gets its own folder, ``<temp dir>/stock-lakehouse-spark-<uid>/<pid>-<start>``,
as ``spark.local.dir`` and as the JVM's ``java.io.tmpdir``. Spark puts there the driver's copies of
``spark.jars`` on a cluster (``spark-*/userFiles-*``: 277 MB, almost all of it the AWS SDK bundle), shuffle
and spill blocks (``blockmgr-*``), pyspark's broadcast files and the native libraries it unpacks. A JVM
that ends normally deletes its files; one that is killed cannot, so every new session removes the
folders of processes that are gone (:func:`remove_dead_spark_dirs`).

A warm engine: with ``spark.remote`` set (``sc://host:port``) a run's session is a Spark Connect client of a
long-lived ``stock-lakehouse engine`` (``stock_lakehouse/engine``), which holds the JVM, the jars, the
Delta extensions, the S3A settings and the S3 keys Spark uses; the run starts no JVM. Only the
DataFrame and SQL APIs work over Connect (no ``sparkContext``, no ``_jvm``, no Python ``DeltaTable``), so
the pipeline uses only those. A client gives up on an engine that does not answer after a few seconds of
retries (``ENGINE_RETRY``) instead of Spark's default of about ten minutes.
"""

import contextlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import dagster as dg
import pyspark
from dagster_pyspark.resources import spark_session_from_config
from pydantic import field_validator
from pyspark import SparkContext
from pyspark.sql import SparkSession

from stock_lakehouse.lakehouse.spark_pins import check_conf, check_remote
from stock_lakehouse.runs.recovery import process_alive, process_start_ticks
from stock_lakehouse.runs.root_cause import engine_cause
from stock_lakehouse.settings import SparkSettings

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
#: The Spark Connect server, for the engine only; its version must be the installed pyspark's (client and
#: server of one release), which is why pyproject pins pyspark.
ENGINE_PACKAGES = (f"org.apache.spark:spark-connect_2.12:{pyspark.__version__}",)
ENGINE_JAR_FILES = (
    f"org.apache.spark_spark-connect_2.12-{pyspark.__version__}.jar",
    "org.spark-project.spark_unused-1.0.0.jar",
)
#: How a Connect client retries an engine that does not answer: 5 attempts over about 5 s (Spark's default,
#: 15 attempts with backoff up to 60 s, leaves a run hanging about ten minutes on a dead engine).
ENGINE_RETRY = {"max_retries": 5, "initial_backoff": 50, "backoff_multiplier": 4.0, "max_backoff": 2000}
#: The run-log line a new session writes (``benchmarks/run_costs.py`` reads the seconds from it).
SESSION_STARTED = "Spark session started in {seconds:.2f}s ({master})"
#: The driver's log4j2 configuration: nothing on the terminal below fatal (see the file).
LOG4J2_CONFIG = Path(__file__).resolve().with_name("log4j2.properties")
_LOG4J2_OPT = f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}"


def java_option(option: str) -> str:
    """``option`` as one word of ``spark.driver.extraJavaOptions``: quoted when it holds a space (a path)."""
    return f'"{option}"' if " " in option else option


_lock = threading.Lock()
_sessions_started = 0

#: A run of at most this many partitions (a click, a schedule tick of 50 symbols: up to tens of thousands of
#: bars) runs its queries with Spark's interpreter (``INTERPRETED``); a larger one with Spark's generated code.
#: Why: on small data, generating and compiling Java for every query is most of the query's cost; large
#: backfills gain from compiled code (figures in the README's section on ``spark.conf``).
SMALL_RUN_PARTITIONS = 100
#: Whole-stage code generation off, and expressions evaluated by Spark's interpreter. ``factoryMode`` is an
#: internal Spark setting; Spark's own test suites run every expression both ways and expect the same values.
INTERPRETED = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
#: Per session: the values of INTERPRETED's keys before a run changed them.
_session_defaults: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ivy_dir() -> Path:
    return Path(os.environ.get("STOCK_LAKEHOUSE_IVY_DIR", Path.home() / ".ivy2")).expanduser()


def cached_jars(engine: bool = False) -> list[str] | None:
    """Local paths of all needed jars (with the Spark Connect server's for ``engine``), or None when some are
    not in the Ivy cache yet."""
    paths = [ivy_dir() / "jars" / name for name in JAR_FILES + (ENGINE_JAR_FILES if engine else ())]
    return [str(p) for p in paths] if all(p.is_file() for p in paths) else None


def sessions_started() -> int:
    """How many Spark sessions (JVMs) this process has started: 0 or 1 in normal use."""
    return _sessions_started


def spark_tmp_root() -> Path:
    """The folder holding every process's Spark temp folder (one root per user)."""
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"stock-lakehouse-spark{user}"


def process_spark_dir(pid: int | None = None) -> Path:
    """The Spark temp folder of a process (default: this one): ``<root>/<pid>-<start ticks>``."""
    pid = pid or os.getpid()
    return spark_tmp_root() / f"{pid}-{process_start_ticks(pid) or 0}"


def remove_dead_spark_dirs() -> list[Path]:
    """Delete the Spark temp folders of processes that are gone (killed JVMs cannot clean up).

    Returns:
        The folders removed.
    """
    root = spark_tmp_root()
    removed = []
    for child in root.iterdir() if root.is_dir() else ():
        match = re.fullmatch(r"(\d+)-(\d+)", child.name)
        if not match or process_alive(int(match[1]), int(match[2]) or None):
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


#: The defaults are the settings' (``spark:`` block), stated there once.
_DEFAULTS = SparkSettings()


class SparkResource(dg.ConfigurableResource):
    """A Delta-enabled Spark session shared by every step of a run (in-process executor).

    Attributes:
        master: ``local[*]`` (default) or a cluster URL such as ``spark://host:7077``.
        shuffle_partitions: ``spark.sql.shuffle.partitions``; small for local mode, where the default
            200 turns every aggregation into hundreds of tiny tasks.
        driver_memory: ``spark.driver.memory``.
        remote: ``sc://host:port`` of a running ``stock-lakehouse engine``: sessions are its Spark Connect
            clients (no JVM in the run; the engine's own settings apply, not this resource's). Unset: a
            session in this process.
        conf: extra Spark settings. Never put keys here (resource config is shown in the UI): S3 keys
            come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the environment. The keys the
            pipeline pins (``spark_pins.PINNED_CONF``: time zone, JVM options, temp folder, Delta, jars)
            are refused when the resource is built (also from the Launchpad), before any session starts.

    Where S3 is and its keys are the lake's business (``Lake.configure_spark``); this resource only sets
    what every S3A session needs (credential providers, bounded timeouts).
    """

    master: str = _DEFAULTS.master
    app_name: str = _DEFAULTS.app_name
    shuffle_partitions: int = _DEFAULTS.shuffle_partitions
    driver_memory: str = _DEFAULTS.driver_memory
    remote: str | None = _DEFAULTS.remote
    conf: dict[str, str] = {}

    @field_validator("conf")
    @classmethod
    def _not_pinned(cls, value: dict[str, str]) -> dict[str, str]:
        check_conf(value)
        return value

    @field_validator("remote")
    @classmethod
    def _engine_url(cls, value: str | None) -> str | None:
        return check_remote(value)

    def spark_conf(self, engine: bool = False) -> dict[str, Any]:
        """The full Spark configuration this resource applies (no secrets in it); with the Spark Connect
        server's jar for ``engine``."""
        jars = cached_jars(engine)
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
            # VACUUM lists and deletes files in this many tasks: the default 10,000 empty tasks cost about
            # 40 s per table on a small lake (2 s with this).
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(self.shuffle_partitions),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": "-Dlog4j2.rootLogger.level=error -Duser.timezone=UTC "
            + java_option(_LOG4J2_OPT),
            # A cluster's executors in UTC like the driver (a local master's executor is the driver's JVM).
            "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
            "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.aws.credentials.provider": (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider,"
                "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
            ),
            # An unreachable or stuck store fails in about a minute instead of retrying for many: 5 s to
            # connect, 60 s per read, 3 SDK attempts, 3 S3A retries (Hadoop 3.3.4: 200 s, 20 and 7).
            "spark.hadoop.fs.s3a.connection.establish.timeout": "5000",
            "spark.hadoop.fs.s3a.connection.timeout": "60000",
            "spark.hadoop.fs.s3a.attempts.maximum": "3",
            "spark.hadoop.fs.s3a.retry.limit": "3",
            "spark.hadoop.fs.s3a.retry.interval": "500ms",
        }
        if jars and self.master.startswith("local"):
            # One JVM: the jars go on its class path as they are. spark.jars would copy all of them
            # (277 MB, mostly the AWS SDK bundle) into every session's temp folder for executors that
            # are the same JVM.
            conf["spark.driver.extraClassPath"] = os.pathsep.join(jars)
        elif jars:
            conf["spark.jars"] = ",".join(jars)
        else:
            conf["spark.jars.packages"] = ",".join(PACKAGES + (ENGINE_PACKAGES if engine else ()))
            conf["spark.jars.ivy"] = str(ivy_dir())
        # Every temp file of the driver under this process's folder, removed by the next session once
        # the process is gone (see the module docstring); quoted for the JVM if the path has spaces.
        local_dir = str(process_spark_dir())
        conf["spark.local.dir"] = local_dir
        conf["spark.driver.extraJavaOptions"] += " " + java_option(f"-Djava.io.tmpdir={local_dir}")
        conf.update(self.conf)  # none of PINNED_CONF's keys (refused when the resource was built)
        return conf

    def session_for_run(self, partitions: int) -> SparkSession:
        """The session (``get_session``), set up for a run of ``partitions`` partitions: interpreted queries
        for a small run (``SMALL_RUN_PARTITIONS``), the session's own settings for a larger one. A key set
        in ``conf`` (the user's choice) is never changed. Runtime settings: one process can run runs of
        both sizes, and over the engine they apply to this client's session only."""
        session = self.get_session()
        small = partitions <= SMALL_RUN_PARTITIONS
        defaults = _session_defaults.setdefault(session, {})
        for key in INTERPRETED:
            if key in self.conf:
                continue
            if key not in defaults:
                defaults[key] = session.conf.get(key, None)
            value = INTERPRETED[key] if small else defaults[key]
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)
        return session

    def get_session(self, conf: dict[str, Any] | None = None) -> SparkSession:
        """The process's Spark session, started on first use with ``conf`` (default: ``spark_conf()``; the BI
        endpoint and the engine pass that plus their own settings); a client of the engine when ``remote``
        is set.

        Raises:
            RuntimeError: the engine at ``remote`` does not answer (named, with the cause).
        """
        if self.remote:
            return connect_session(self.remote)
        global _sessions_started
        with _lock:
            if SparkContext._active_spark_context is not None:
                session = SparkSession.builder.getOrCreate()
            else:
                remove_dead_spark_dirs()
                process_spark_dir().mkdir(parents=True, exist_ok=True)
                # Python workers (pandas UDFs, e.g. gold/signals) run this interpreter, with its packages.
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                started = time.perf_counter()
                session = spark_session_from_config(conf if conf is not None else self.spark_conf())
                session.sparkContext.setLogLevel("FATAL")  # as log4j2.properties: errors reach Python
                _sessions_started += 1
                # Inside a step this lands in the run's log: each run pays it (JVM, jars), which is what
                # makes many small runs cost more than one ranged run.
                dg.get_dagster_logger().info(
                    SESSION_STARTED.format(seconds=time.perf_counter() - started, master=self.master)
                )
            return session


def connect_session(url: str) -> SparkSession:
    """This process's Spark Connect session with the engine at ``url``, checked to answer.

    Raises:
        RuntimeError: the engine does not answer, naming it and the cause.
    """
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    started = time.perf_counter()
    # The client warns with a multi-line dump of the gRPC error each time it gives up releasing an operation
    # on a dead engine; the failing call's own error says it (one line, ``root_cause.engine_cause``).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pyspark\.sql\.connect\.")
    with _lock:
        session = SparkSession.builder.remote(url).getOrCreate()
        # No public way to set the retry policy in 3.5; the client reads this dict at every call.
        session.client._retry_policy.update(ENGINE_RETRY)
    try:
        session.conf.get("spark.app.name")
    except Exception as exc:
        # Forgotten, so that the next try connects anew.
        with contextlib.suppress(Exception):
            session.stop()
        ConnectSession._default_session = None
        cause = engine_cause(str(exc)) or f"the Spark engine at {url} failed: {str(exc).splitlines()[0][:300]}"
        raise RuntimeError(f"{cause} (is `stock-lakehouse engine` running at {url}?)") from None
    dg.get_dagster_logger().debug(f"Spark engine {url} answered in {time.perf_counter() - started:.2f}s")
    return session


def cancel_running_jobs() -> bool:
    """Cancel every running Spark job of this process's session, if one was started; whether there was one.

    A terminated run's Python thread can be blocked in a Spark action: cancelling the jobs returns it. For a
    client of the engine, its session's operations are interrupted (other runs' sessions go on)."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    remote = ConnectSession._default_session
    if remote is not None:
        remote.interruptAll()
        return True
    context = SparkContext._active_spark_context
    if context is None:
        return False
    context.cancelAllJobs()
    return True

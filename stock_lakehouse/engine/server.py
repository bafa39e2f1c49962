"""Run the engine: the pipeline's Spark session (``SparkResource``) with a Spark Connect server on it.

The session is started here, in Python, as every run's session is (same jars, Delta, time zone, temp
folder, memory), and the lake's S3A settings and S3 keys are put on its live Hadoop configuration
(``Lake.configure_spark``): the keys stay in this process, clients carry none. The Connect server is then
started on that session's SparkContext. Each client gets a session of its own (temp views, SQL settings).

Warm-up: before it says it is ready, the engine runs the pipeline once on one synthetic partition in a
throw-away lake, in its own session (the same JVM the clients use). A new JVM's JIT is cold: without this
the first click after a start paid tens of seconds the next did not (a Soda scan: 40 s cold, 4 s after).
It is also the engine's self-test: a pipeline that cannot run on it fails its start, not a user's run.

Security: Spark Connect 3.5 has no authentication and no bind address (it listens on every interface), so
unless ``any_client`` is given a gRPC interceptor (``java/.../LoopbackOnly.java``) refuses every call that
does not come from loopback, before Spark sees it. ``any_client`` is for a container on an internal network
whose port is not published (docker compose).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lakehouse.lakehouse.java_classes import compile_java
from stock_lakehouse.ports import port_taken, wait_listening

if TYPE_CHECKING:
    from stock_lakehouse.lakehouse.lake import Lake
    from stock_lakehouse.lakehouse.spark import SparkResource
    from stock_lakehouse.settings import Settings

DEFAULT_PORT = 15002
JAVA_DIR = Path(__file__).resolve().with_name("java")
#: The gRPC interceptor that refuses calls from anywhere but loopback (``spark.connect.grpc.interceptor.classes``).
LOOPBACK_ONLY_CLASS = "stocklakehouse.engine.LoopbackOnly"
#: The line the command prints once clients can connect; scripts and tests wait for its start.
READY_PREFIX = "Spark engine on"
READY = READY_PREFIX + " sc://{host}:{port} ({clients}); memory: {memory}; lake: {lake}   (Ctrl+C to stop)"


def engine_conf(spark: SparkResource, lake: Lake, port: int, classes: Path | None) -> dict[str, Any]:
    """The engine's Spark configuration: ``spark``'s with the Connect server's jar, the lake's S3A settings
    (no keys), the port, and the loopback check when ``classes`` (its compiled folder) is given."""
    conf = spark.spark_conf(engine=True) | lake.s3a_conf()
    conf["spark.app.name"] = f"{spark.app_name}-engine"
    conf["spark.connect.grpc.binding.port"] = str(port)
    if classes is not None:
        conf["spark.connect.grpc.interceptor.classes"] = LOOPBACK_ONLY_CLASS
        conf["spark.driver.extraClassPath"] = os.pathsep.join(
            part for part in (conf.get("spark.driver.extraClassPath"), str(classes)) if part
        )
    return conf


def warm_up(settings: Settings, work: Path) -> float:
    """Run every layer once for one synthetic partition in a lake under ``work``, in this process's Spark
    session; returns the seconds it took.

    Raises:
        RuntimeError: the run failed (its cause in the message).
    """
    import dagster as dg

    from stock_lakehouse.runs.materialize import run_materialize

    day = max(date.fromisoformat(settings.partitions_start), date(2024, 3, 4))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        local = settings.model_copy(
            update={
                "lake_root": str(Path(tmp) / "lake"),
                "source": "synthetic",
                "spark": settings.spark.model_copy(update={"remote": None}),  # this process's session
            }
        )
        with dg.DagsterInstance.ephemeral() as instance:
            ok, _, error = run_materialize(["WARMUP"], day, day, settings=local, instance=instance)
    if not ok:
        raise RuntimeError(f"the Spark engine's warm-up run failed: {error.splitlines()[0] if error else 'unknown'}")
    return time.perf_counter() - started


def serve(
    settings: Settings,
    port: int = DEFAULT_PORT,
    any_client: bool = False,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    warm: bool = True,
) -> None:
    """Serve Spark Connect on ``port`` until ``stop`` is set (or the process is interrupted); first, with
    ``warm``, run the pipeline once (:func:`warm_up`).

    Raises:
        OSError: the port is taken. RuntimeError: the jars are missing, the warm-up run failed or the server
        did not start listening.
    """
    from stock_lakehouse.lakehouse.spark import SparkResource, cached_jars, process_spark_dir

    taken = port_taken("0.0.0.0", port)
    if taken:
        raise OSError(f"cannot start the Spark engine on port {port}: {taken}")
    spark = SparkResource(**settings.spark.model_dump(exclude={"remote"}))
    classes = None
    if not any_client:
        connect_jar = cached_jars(engine=True)
        if connect_jar is None:
            raise RuntimeError("the Spark Connect jar is not in the Ivy cache: run `stock-lakehouse setup-jars`")
        classes = compile_java(
            JAVA_DIR,
            process_spark_dir() / "engine-classes",
            (LOOPBACK_ONLY_CLASS,),
            "the engine's classes",
            connect_jar,
        )
    # Spark Connect keeps each session's artifacts under ./artifacts of the JVM's working directory: the JVM
    # starts in this process's temp folder (writable, removed with the process), not where the command was
    # run (in the image: an application folder the user cannot write). Python goes back at once, so relative
    # settings (a lake_root of "lake") keep meaning what they meant.
    work = process_spark_dir()
    work.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(work)
    try:
        session = spark.get_session(engine_conf(spark, settings.lake, port, classes))
    finally:
        os.chdir(here)
    settings.lake.configure_spark(session)
    if warm:
        echo(f"warmed up in {warm_up(settings, work):.1f} s (one partition of every layer)")
    jvm = session._jvm
    jvm.org.apache.spark.sql.connect.service.SparkConnectService.start(session._jsc.sc())
    if not wait_listening("127.0.0.1", port, timeout=60):
        raise RuntimeError(f"the Spark engine did not start listening on port {port} within 60 s")
    max_heap_mb = jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**20
    echo(
        READY.format(
            host="127.0.0.1" if classes else "0.0.0.0",
            port=port,
            clients="loopback clients only" if classes else "any client: keep the port on an internal network",
            memory=f"{spark.driver_memory} driver (JVM heap limit {max_heap_mb:,.0f} MiB)",
            lake=settings.lake.uri,
        )
    )
    stop = stop or threading.Event()
    try:
        stop.wait()
    finally:
        jvm.org.apache.spark.sql.connect.service.SparkConnectService.stop(
            jvm.scala.Option.empty(), jvm.scala.Option.empty()
        )
        session.stop()

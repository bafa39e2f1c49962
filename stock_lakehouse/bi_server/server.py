"""Run the BI endpoint: one Spark session, its catalog, the Thrift server on it, until stopped.

The session is the pipeline's (``SparkResource``: Delta, S3A, the same jars and memory settings) plus what
an endpoint needs: the Hive catalog in a throw-away Derby database, the read-only guard, no queries on
file paths (``spark.sql.runSQLOnFiles``: a BI user names tables, never files of the machine or the lake),
and HiveServer2's bind address, port and authentication.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from py4j.protocol import Py4JNetworkError

from stock_lakehouse.bi_server.access import Access, decide_access
from stock_lakehouse.bi_server.catalog import register, registered
from stock_lakehouse.bi_server.classes import AUTHENTICATOR_CLASS, GUARD_CLASS, compile_classes
from stock_lakehouse.ports import port_taken, wait_listening
from stock_lakehouse.runs.root_cause import exception_root_cause, redact

if TYPE_CHECKING:
    from stock_lakehouse.lakehouse.spark import SparkResource
    from stock_lakehouse.settings import Settings

DEFAULT_PORT = 10000
#: The line the command prints once clients can connect; scripts and tests wait for its start.
READY_PREFIX = "BI endpoint on"
READY = READY_PREFIX + " {host}:{port}, {access}; tables: {tables}   (Ctrl+C to stop)"


def server_conf(
    spark: SparkResource, host: str, port: int, access: Access, classes: Path, work: Path
) -> dict[str, Any]:
    """The endpoint's Spark configuration: ``spark``'s, plus catalog, guard and HiveServer2 settings.

    Raises:
        ValueError: ``work`` (the process's temp folder) cannot be put in a Derby URL.
    """
    from stock_lakehouse.lakehouse.spark import java_option

    if ";" in str(work):
        raise ValueError(f"the BI endpoint's temp folder {work} has a ';' (set TMPDIR to another folder)")
    conf = spark.spark_conf()
    conf["spark.app.name"] = f"{spark.app_name}-bi"
    conf["spark.sql.extensions"] += f",{GUARD_CLASS}"
    conf["spark.driver.extraClassPath"] = os.pathsep.join(
        part for part in (conf.get("spark.driver.extraClassPath"), str(classes)) if part
    )
    properties = [f"-Dderby.stream.error.file={work / 'derby.log'}"]
    if access.mode == "CUSTOM":
        # Read by HiveServer2's password check from a HiveConf of its own (system properties), not the
        # server's configuration.
        properties.append(f"-Dhive.server2.custom.authentication.class={AUTHENTICATOR_CLASS}")
    conf["spark.driver.extraJavaOptions"] += "".join(" " + java_option(prop) for prop in properties)
    conf |= {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={work / 'metastore_db'};create=true",
        "spark.sql.runSQLOnFiles": "false",
        "spark.sql.hive.thriftServer.singleSession": "false",  # each connection its own session (temp state)
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.server2.enable.doAs": "false",
        "spark.hadoop.hive.server2.authentication": access.mode,
    }
    return conf


def java_class(jvm: Any, name: str) -> Any:
    """A JVM class by its full name, through py4j's package-by-package lookup."""
    return functools.reduce(getattr, name.split("."), jvm)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    refresh_seconds: float = 30.0,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Serve the lake's tables over HiveServer2 until ``stop`` is set (or the process is interrupted).

    Every ``refresh_seconds`` the tables the pipeline created since are registered.

    Raises:
        AccessRefused: a bind beyond loopback without a login (before anything starts).
        OSError: the port is taken. RuntimeError: the Thrift server did not start listening.
    """
    from stock_lakehouse.lakehouse.spark import SparkResource, process_spark_dir

    access = decide_access(host)
    taken = port_taken(host, port)
    if taken:
        raise OSError(f"cannot serve on {host}:{port}: {taken}")
    work = process_spark_dir() / "bi-server"  # removed with the process's other Spark files
    spark = SparkResource(**settings.spark.model_dump())
    conf = server_conf(spark, host, port, access, compile_classes(work / "classes"), work)
    session = settings.lake.configure_spark(spark.get_session(conf))
    jvm = session._jvm
    java_class(jvm, GUARD_CLASS).exempt(session._jsparkSession)  # the owner registers tables; clients cannot
    if access.mode == "CUSTOM":
        java_class(jvm, AUTHENTICATOR_CLASS).configure(access.user, access.password_sha256)
    register(session, settings.lake)
    jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(session._jsparkSession.sqlContext())
    if not wait_listening(host, port, timeout=60):
        raise RuntimeError(f"the BI endpoint did not start listening on {host}:{port} within 60 s")
    names = registered(session)
    echo(READY.format(host=host, port=port, access=access.describe(), tables=", ".join(names) or "none yet"))
    stop = stop or threading.Event()
    while not stop.wait(refresh_seconds):
        try:
            added = register(session, settings.lake)
        except Py4JNetworkError:
            raise  # the JVM is gone: nothing is served any more
        except Exception as exc:  # a store that does not answer now: keep serving what is registered
            cause = redact(exception_root_cause(exc))
            echo(f"warning: registering new tables failed, retrying in {refresh_seconds:g} s: {cause}")
            continue
        if added:
            echo(f"registered: {', '.join(added)}")

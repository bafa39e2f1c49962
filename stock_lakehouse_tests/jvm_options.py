"""The tests' Spark JVM options, and a class data archive that the tests' Spark JVMs map at start.

Why: the suite is CPU-bound (2 test processes or 3 took the same 42.5 min here: the CPU was 90 % busy
throughout), and much of that CPU is short-lived JVMs (CLI runs, run workers launched by the daemon, the
engine) loading and compiling Spark's classes for tiny data. Three options cut it:

- C1 only (``-XX:TieredStopAtLevel=1``, also for executors): halved a 2-day run's CPU (90-109 -> 48-83 s).
- Expressions evaluated by Spark's interpreter (``spark.sql.codegen.factoryMode NO_CODEGEN``): a 1-symbol,
  1-day run took 25.7 s then 15-17 s, against 38-41 s then 24-30 s with generated code. Spark's interpreter
  and its generated code compute the same values (Spark's own suites run both); ``make test-compose`` runs
  the project's own configuration and compares its gold with the tests'.
- A dynamic AppCDS archive (JDK 13+): one JVM writes the classes it loaded at exit
  (``-XX:ArchiveClassesAtExit``), later JVMs with the same class path map them
  (``-XX:SharedArchiveFile``) instead of loading them from the jars. A cold JVM's start and a small Delta
  write and read: 19.3 -> 13.7 CPU-s (start 6.4 -> 4.6-5.1 s). A JVM whose class path differs (the engine's
  has more jars) or another Java build ignores the archive (silently: ``-Xlog:cds=off``) and runs as before.

The options travel in ``SPARK_SUBMIT_OPTS``, the driver JVM's options for every ``spark-submit`` (pyspark's
sessions, in the test process and in subprocesses, and the engine), and Spark settings in it as ``-Dspark.*``
system properties, which ``SparkConf`` reads. Not in a ``spark-defaults.conf`` under ``SPARK_CONF_DIR``:
Spark puts that folder on the JVM's class path, and a JVM whose class path holds a folder that is not empty
cannot use an archive. The project's own runs keep C2 and map no archive (see the README's
``spark.conf`` section): long backfills are faster with C2.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

C1_ONLY = "-XX:TieredStopAtLevel=1"
#: Spark settings of every test JVM, as system properties.
SPARK_PROPERTIES = {"spark.sql.codegen.factoryMode": "NO_CODEGEN", "spark.executor.defaultJavaOptions": C1_ONLY}
#: A JVM that cannot map the archive says so in a warning on stdout; these options keep it quiet.
QUIET_CDS = "-Xlog:cds=off -Xlog:cds+dynamic=off"
#: What the archive's first JVM does: start a session and run what every run does (Delta writes, a partition
#: overwrite, reads, an aggregate, a window). The JVM writes the archive as it exits, after its Python process:
#: the script ends it and waits for it. A whole run of all layers archived a few more classes (171 MB against
#: 162) but took 77-100 s, where this takes 50-60 s (the queries 34 s, writing the archive about 25 s).
ARCHIVE_RUN = """
import sys
from pyspark import SparkContext
from pyspark.sql import Window, functions as F
from stock_lakehouse.lakehouse.spark import SparkResource
spark, path = SparkResource(shuffle_partitions=2).get_session(), sys.argv[1]
bars = spark.range(2000).selectExpr("id % 4 AS day", "id % 3 AS symbol", "CAST(id AS DOUBLE) AS close")
bars.write.format("delta").partitionBy("day").save(path)
bars.where("day = 1").write.format("delta").mode("overwrite").option("replaceWhere", "day = 1").save(path)
table = spark.read.format("delta").load(path)
table.groupBy("symbol", "day").agg(F.avg("close"), F.count("*")).collect()
table.withColumn("previous", F.lag("close").over(Window.partitionBy("symbol").orderBy("close"))).count()
spark.stop()
jvm = SparkContext._gateway.proc
jvm.stdin.close()
sys.exit(jvm.wait(timeout=300))
"""


def archive_path() -> Path | None:
    """Where the archive for this Java, pyspark and jar set lives (None: no Java or the jars are missing).

    The name holds a digest of what the archive depends on (the JVM's class path holds pyspark's folder and
    the jars), so another Java, pyspark or jar set writes one of its own.
    """
    import pyspark

    from stock_lakehouse.lakehouse.spark import cached_jars

    java, jars = shutil.which("java"), cached_jars()
    if java is None or jars is None:
        return None
    real = Path(java).resolve()
    stat = real.stat()
    key = "\n".join([str(real), str(stat.st_size), str(stat.st_mtime_ns), pyspark.__version__, pyspark.__file__, *jars])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"stock-lakehouse-classes-{os.getuid()}-{digest}.jsa"


def submit_opts(archive: Path | None, c2: bool = False, write_archive: Path | None = None) -> str:
    """``SPARK_SUBMIT_OPTS`` for a test JVM.

    Args:
        archive: the class data archive to map (None: none).
        c2: keep the C2 compiler (a long-lived JVM that runs many runs, as the test process's own session).
        write_archive: write the classes this JVM loads to this file at exit (the archive's first run).
    """
    options = [] if c2 else [C1_ONLY]
    options += [f"-D{key}={value}" for key, value in SPARK_PROPERTIES.items()]
    if write_archive is not None:
        options.append(f"-XX:ArchiveClassesAtExit={write_archive}")
    elif archive is not None:
        options.append(f"-XX:SharedArchiveFile={archive}")
    return " ".join([*options, QUIET_CDS])


def ensure_archive(archive: Path, wait: bool = False) -> None:
    """Write ``archive`` (``ARCHIVE_RUN``, 50-60 s) if no test process has yet or is writing it now.

    Args:
        archive: where it goes (``archive_path()``).
        wait: while another process writes it, wait for it (a test of the archive) instead of going on
            without it (the JVMs started meanwhile load their classes from the jars, as before).

    A failed run leaves no archive and a warning: the JVMs then start without one, as slowly as before.
    """
    if archive.exists():
        return
    with open(archive.with_suffix(".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return
        if archive.exists():
            return
        with tempfile.TemporaryDirectory(prefix="stock-lakehouse-archive-run-") as tmp:
            partial = Path(tmp) / archive.name
            from stock_lakehouse_tests.conftest import environment_without_settings  # conftest imports this module

            done = subprocess.run(
                [sys.executable, "-c", ARCHIVE_RUN, str(Path(tmp) / "table")],
                env=environment_without_settings(SPARK_SUBMIT_OPTS=submit_opts(None, write_archive=partial)),
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0 or not partial.is_file():
                warnings.warn(
                    f"no class data archive: the run writing it failed ({done.returncode}): {done.stderr[-2000:]}",
                    stacklevel=2,
                )
                return
            shutil.move(partial, archive)

"""Our few Java classes (the BI endpoint's guard and authenticator, the engine's loopback check), compiled
when their server starts.

Why compile at start: Spark and HiveServer2 load these by class name, so they must be JVM classes; shipping
jars is against the project's rule (no binaries in the repository), and asking users for a JDK only for
this would be a heavier rule. Janino, the compiler Spark itself uses for generated code, is in pyspark's
jars and compiles a file in under a second with a JRE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

_COMPILER_MAIN = "org.codehaus.commons.compiler.samples.CompilerDemo"  # Janino's command-line compiler


def spark_jars_dir() -> Path:
    """The jars of the installed pyspark (Spark, Hive, the Thrift server, Janino)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def java_executable() -> str:
    """The ``java`` Spark uses: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise RuntimeError("no java found (JAVA_HOME or PATH): Spark needs Java 17")
    return found


def compile_java(sources: Path, out: Path, classes: Sequence[str], what: str, extra_jars: Sequence[str] = ()) -> Path:
    """Compile every ``.java`` under ``sources`` into ``out`` (created) against pyspark's jars and
    ``extra_jars``; returns ``out``, the class-path entry to add.

    Args:
        classes: the full names of the classes that must come out.
        what: whose classes, for the error message.

    Raises:
        RuntimeError: the compiler failed, with its first lines.
    """
    jars = spark_jars_dir()
    compiler = [*jars.glob("janino-*.jar"), *jars.glob("commons-compiler-[0-9]*.jar")]
    if len(compiler) != 2:
        raise RuntimeError(f"Janino not found in {jars}: is pyspark 3.5 installed?")
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p) for p in sources.rglob("*.java"))
    classpath = os.pathsep.join([*(str(p) for p in sorted(jars.glob("*.jar"))), *extra_jars])
    cmd = [java_executable(), "-cp", os.pathsep.join(map(str, compiler)), _COMPILER_MAIN]
    done = subprocess.run(
        [*cmd, "-d", str(out), "-classpath", classpath, *files], capture_output=True, text=True, timeout=300
    )
    missing = [name for name in classes if not (out / f"{name.replace('.', '/')}.class").is_file()]
    if done.returncode != 0 or missing:
        detail = " ".join((done.stdout + done.stderr).strip().splitlines()[:3])
        raise RuntimeError(f"compiling {what} ({sources}) failed: {detail or missing}")
    return out

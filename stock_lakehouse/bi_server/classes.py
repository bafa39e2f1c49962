"""The endpoint's Java classes (``java/``), compiled when the server starts.

Why compile at start: HiveServer2 loads its authenticator and Spark its session extensions by class name,
so they must be JVM classes; shipping jars is against the project's rule (no binaries in the repository),
and asking users for a JDK only for this would be a heavier rule. Janino, the compiler Spark itself uses
for generated code, is in pyspark's jars and compiles both files in under a second with a JRE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

JAVA_DIR = Path(__file__).resolve().with_name("java")
#: The check rule that makes every session but the server's own read-only (``spark.sql.extensions``).
GUARD_CLASS = "stocklakehouse.bi.ReadOnlyGuard"
#: HiveServer2's CUSTOM authenticator (``hive.server2.custom.authentication.class``).
AUTHENTICATOR_CLASS = "stocklakehouse.bi.PasswordAuthenticator"
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
        raise RuntimeError("no java found (JAVA_HOME or PATH): Spark and the BI endpoint need Java 17")
    return found


def compile_classes(out: Path) -> Path:
    """Compile ``java/`` into ``out`` (created); returns ``out``, the class-path entry to add.

    Raises:
        RuntimeError: the compiler failed, with its first lines.
    """
    jars = spark_jars_dir()
    compiler = [*jars.glob("janino-*.jar"), *jars.glob("commons-compiler-[0-9]*.jar")]
    if len(compiler) != 2:
        raise RuntimeError(f"Janino not found in {jars}: is pyspark 3.5 installed?")
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in JAVA_DIR.rglob("*.java"))
    classpath = os.pathsep.join(str(p) for p in sorted(jars.glob("*.jar")))
    cmd = [java_executable(), "-cp", os.pathsep.join(map(str, compiler)), _COMPILER_MAIN]
    done = subprocess.run(
        [*cmd, "-d", str(out), "-classpath", classpath, *sources], capture_output=True, text=True, timeout=300
    )
    missing = [
        name for name in (GUARD_CLASS, AUTHENTICATOR_CLASS) if not (out / f"{name.replace('.', '/')}.class").is_file()
    ]
    if done.returncode != 0 or missing:
        detail = " ".join((done.stdout + done.stderr).strip().splitlines()[:3])
        raise RuntimeError(f"compiling the BI endpoint's classes ({JAVA_DIR}) failed: {detail or missing}")
    return out

"""The endpoint's Java classes (``java/``), compiled when the server starts (``lakehouse/java_classes.py``
says why)."""

from __future__ import annotations

from pathlib import Path

from stock_lakehouse.lakehouse.java_classes import compile_java

JAVA_DIR = Path(__file__).resolve().with_name("java")
#: The check rule that makes every session but the server's own read-only (``spark.sql.extensions``).
GUARD_CLASS = "stocklakehouse.bi.ReadOnlyGuard"
#: HiveServer2's CUSTOM authenticator (``hive.server2.custom.authentication.class``).
AUTHENTICATOR_CLASS = "stocklakehouse.bi.PasswordAuthenticator"


def compile_classes(out: Path) -> Path:
    """Compile ``java/`` into ``out`` (created); returns ``out``, the class-path entry to add.

    Raises:
        RuntimeError: the compiler failed, with its first lines.
    """
    return compile_java(JAVA_DIR, out, (GUARD_CLASS, AUTHENTICATOR_CLASS), "the BI endpoint's classes")

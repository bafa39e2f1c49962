"""The one line that says why something failed.

Spark errors reach Python as ``Py4JJavaError: An error occurred while calling o498.save``: the cause is
at the end of the Java ``Caused by:`` chain inside the message (``java.io.IOException: No space left on
device``, ``java.net.ConnectException: Connection refused``). Dagster wraps an asset's exception in its
own step errors. These helpers dig out the cause for error messages (the IO manager, the CLI), and
:func:`redact` keeps secrets out of anything printed or written to a log file.
"""

from __future__ import annotations

import os
import re

#: A Java exception line: ``[Caused by: ]pkg.Class[: message]`` (py4j prefixes the first one with ``: ``).
_JAVA_LINE = re.compile(
    r"^(?P<caused>Caused by: |: )?(?P<cls>(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable|Failure)[\w$]*)"
    r"(?::\s*(?P<msg>.*))?$"
)
#: A gRPC status in a Spark Connect error (the engine's client): the code, its detail, and the engine's address.
_GRPC_STATUS = re.compile(r"StatusCode\.(?P<code>[A-Z_]+)")
_GRPC_DETAILS = re.compile(r'details = "(?P<details>[^"]*)"')
_GRPC_PEER = re.compile(r"ipv[46]:(?P<peer>\[?[\w.:-]+?\]?:\d+)")
#: Exception classes whose name says nothing the message does not (ours, and the generic built-ins).
_PLAIN = ("RuntimeError", "ValueError", "Exception", "OSError", "FileNotFoundError", "PermissionError")
#: Environment variables whose values must never be printed or logged.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "ALPHAVANTAGE_API_KEY")
MAX_CHARS = 400


def java_root_cause(text: str) -> str | None:
    """The innermost Java exception of a Java stack trace (the last ``Caused by:``), as ``class: message``.

    Returns None when ``text`` holds no Java exception line.
    """
    last_cause = first = None
    for raw in text.splitlines():
        match = _JAVA_LINE.match(raw.strip())
        if not match:
            continue
        line = match["cls"] + (f": {match['msg'].strip()}" if match["msg"] and match["msg"].strip() else "")
        if match["caused"] == "Caused by: ":
            last_cause = line
        elif first is None:
            first = line
    cause = last_cause or first
    return _clip(cause) if cause else None


def engine_cause(text: str) -> str | None:
    """The one line for a Spark Connect failure (a run's client of the engine) in ``text``: the engine's
    address, the gRPC status and its detail, instead of the client's multi-line object dump. None when
    ``text`` holds no gRPC status."""
    status = _GRPC_STATUS.search(text)
    if not status:
        return None
    details = _GRPC_DETAILS.search(text)
    peer = _GRPC_PEER.search(text)
    where = f" at {peer['peer']}" if peer else ""
    detail = details["details"] if details else ""
    return _clip(f"the Spark engine{where} failed: {status['code']}{': ' + detail if detail else ''}")


def exception_root_cause(exc: BaseException) -> str:
    """The cause of a Python exception chain: the Java root cause of a Spark/py4j error anywhere in
    it, else the innermost exception as ``Class: first line``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    for item in reversed(chain):
        java = java_root_cause(_exception_text(item))
        if java:
            return java
        engine = engine_cause(_exception_text(item))
        if engine:
            return engine
    inner = chain[-1]
    first = next((ln.strip() for ln in _exception_text(inner).splitlines() if ln.strip()), "")
    name = type(inner).__name__
    return _clip(f"{name}: {first}" if first and name not in _PLAIN else first or name)


def error_info_root_cause(error) -> str:
    """The cause of a Dagster step failure (a ``SerializableErrorInfo`` chain), on one line.

    The outermost error raised by this project or a library (Dagster's own wrappers skipped) says what
    failed; when a Java exception lies below it, its root cause is appended unless already there.
    """
    if error is None:
        return "unknown error"
    chain = []
    while error is not None and len(chain) < 50:
        chain.append(error)
        error = error.cause or error.context
    own = [e for e in chain if not (e.message or "").startswith("dagster.")] or chain[-1:]
    chosen = own[0]
    engine = next((c for e in chain if (c := engine_cause(e.message or ""))), None)
    if engine:
        return engine
    java = next((j for e in reversed(chain[chain.index(chosen) :]) if (j := java_root_cause(e.message or ""))), None)
    text = _first_line(chosen.message or chosen.cls_name or "", chosen.cls_name)
    if (chosen.message or "").startswith("py4j.") or not text:
        return java or text or chosen.cls_name
    if java and java.split(": ", 1)[-1] not in text:
        text = f"{text} (cause: {java})"
    return _clip(text)


def redact(text: str) -> str:
    """``text`` with the values of secret environment variables (keys, tokens) replaced by ``***``."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _first_line(message: str, cls_name: str | None) -> str:
    """The first non-empty line of a formatted exception, without the ``module.Class: `` prefix when the
    class is this project's or a generic built-in (the message says it all)."""
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    prefix, sep, rest = line.partition(": ")
    if sep and cls_name and prefix.endswith(cls_name) and " " not in prefix:
        if prefix.startswith("stock_lakehouse.") or cls_name in _PLAIN:
            return rest.strip()
        return f"{cls_name}: {rest.strip()}"
    return line


def _exception_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # Py4JJavaError.__str__ asks the JVM, which may be gone
        return str(getattr(exc, "errmsg", "")) or type(exc).__name__


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."

"""Who may connect to the BI endpoint: anonymous on loopback only, a user and password anywhere else.

Decided before the server starts, from the bind address and the environment, so a server that would be
open to a network without a login never listens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass

#: Environment variables holding the login (never a settings file: the repository has those).
USER_ENV = "STOCK_LAKEHOUSE_BI_USER"
PASSWORD_ENV = "STOCK_LAKEHOUSE_BI_PASSWORD"


class AccessRefused(ValueError):
    """The endpoint may not start as configured; the message names the setting to change."""


@dataclass(frozen=True)
class Access:
    """How HiveServer2 authenticates: ``NONE`` (anyone, loopback only) or ``CUSTOM`` (one user).

    ``password_sha256`` is all the JVM is given of the password.
    """

    mode: str
    user: str | None = None
    password_sha256: str | None = None

    def describe(self) -> str:
        return "anonymous (loopback only)" if self.mode == "NONE" else f"user {self.user!r} with password"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a host name.

    Raises:
        AccessRefused: anything else (spaces, options, control characters), named.
    """
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.?)*", host) or len(host) > 253:
        raise AccessRefused(f"BI endpoint host {host[:80]!r} is not an IP address or host name")
    return host


def decide_access(host: str, environ: dict[str, str] | None = None) -> Access:
    """The authentication for an endpoint bound to ``host``.

    With ``STOCK_LAKEHOUSE_BI_USER`` and ``STOCK_LAKEHOUSE_BI_PASSWORD`` set, always a login (also on
    loopback); without them, anonymous on loopback only.

    Raises:
        AccessRefused: ``host`` is no address; bound beyond loopback without both variables, or only one
            of them set.
    """
    check_host(host)
    environ = os.environ if environ is None else environ
    user, password = environ.get(USER_ENV, ""), environ.get(PASSWORD_ENV, "")
    if bool(user) != bool(password):
        missing = PASSWORD_ENV if user else USER_ENV
        raise AccessRefused(f"BI endpoint login incomplete: {missing} is not set (set both or neither)")
    if user:
        return Access("CUSTOM", user, hashlib.sha256(password.encode()).hexdigest())
    if not is_loopback(host):
        raise AccessRefused(
            f"BI endpoint bound to {host!r} (--host) without a login: set {USER_ENV} and {PASSWORD_ENV}, "
            "or bind to 127.0.0.1"
        )
    return Access("NONE")

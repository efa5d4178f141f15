"""Argument checks shared by every public entry point: one rule and one wording per kind of value.

Each check returns the value it accepted (as the type it promises) or raises
``InvalidArgumentError`` naming the argument, what it must be, and what it got, before any
request is made. ``describe`` shows a caller's value in a message without ever failing.
"""

from __future__ import annotations

import math
import ssl
from typing import Any

from ._errors import InvalidArgumentError

__all__ = [
    "INT64_MAX",
    "check_bool",
    "check_callable",
    "check_concurrency",
    "check_int",
    "check_number",
    "check_seconds",
    "check_verify_tls",
    "describe",
    "tls_verification_off",
]

INT64_MAX = 2**63 - 1
#: The most workers one fan-out or watch may run.
MAX_CONCURRENCY = 10_000


def describe(value: object, limit: int | None = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters; a ``__repr__`` that fails still gives text."""
    try:
        text = repr(value)
    except Exception:  # a caller's object whose __repr__ fails still gets a clear error
        return f"<{type(value).__name__} object>"
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def check_bool(name: str, value: object) -> bool:
    """A real bool: 0, 1 and "yes" are refused, so that a typo cannot flip a setting."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_verify_tls(value: object, *, with_session: bool = False) -> bool | ssl.SSLContext:
    """A bool, or an ``ssl.SSLContext`` that verifies against the CAs it was given (a
    corporate proxy that inspects TLS signs with its own CA): never 0, 1 or a CA's path.

    ``with_session``: the caller passed their own aiohttp session, whose connector has its
    own TLS settings that ``verify_tls`` cannot change. Anything but the default ``True`` is
    refused then, rather than silently ignored (``False`` would even log "verification is
    OFF" for a session that does verify)."""
    if not isinstance(value, (bool, ssl.SSLContext)):
        raise InvalidArgumentError(
            f"verify_tls must be a bool or an ssl.SSLContext, got {type(value).__name__}"
        )
    if with_session and value is not True:
        raise InvalidArgumentError(
            "verify_tls= applies to the owned session: set ssl= on your session's connector"
        )
    return value


#: The warnings of ``tls_verification_off``; ``%s`` is the base URL.
_TLS_OFF = "TLS certificate verification is OFF for %s"
_HOST_NAME_OFF = (
    "TLS host name checking is OFF for %s: a certificate that any trusted CA signed is "
    "accepted, for any host"
)


def tls_verification_off(verify_tls: bool | ssl.SSLContext) -> str | None:
    """The warning to log (a format with one ``%s``, the base URL) when ``verify_tls`` lets a
    server through without proving it is the host asked for; None when it checks both.

    ``False`` or a context with ``CERT_NONE`` checks no certificate. A context with
    ``check_hostname=False`` (and ``CERT_REQUIRED``) checks the chain but not the name: anyone
    with a certificate from a trusted CA, for any host of theirs, passes."""
    if isinstance(verify_tls, ssl.SSLContext):
        if verify_tls.verify_mode == ssl.CERT_NONE:
            return _TLS_OFF
        return None if verify_tls.check_hostname else _HOST_NAME_OFF
    return None if verify_tls else _TLS_OFF


def check_int(name: str, value: object, *, low: int, high: int = INT64_MAX) -> int:
    """An int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        bound = f">= {low}" if high == INT64_MAX else f"between {low} and {high}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def check_number(
    name: str, value: object, *, low: float = 0.0, allow_low: bool = True, high: float = math.inf
) -> float:
    """A finite int or float (not a bool) from ``low`` (excluded unless ``allow_low``) to
    ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number, got {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}")
    if value < low or (not allow_low and value == low):
        raise InvalidArgumentError(
            f"{name} must be {'>=' if allow_low else '>'} {low}, got {value!r}"
        )
    if value > high:
        raise InvalidArgumentError(f"{name} must be <= {high}, got {value!r}")
    return float(value)


def check_seconds(name: str, value: object, default: float | None = None) -> float:
    """A positive, finite number of seconds; None means ``default`` where there is one."""
    if value is None and default is not None:
        return default
    return check_number(name, value, allow_low=False)


def check_concurrency(value: object) -> int:
    """How many requests one job may have in flight at once."""
    return check_int("concurrency", value, low=1, high=MAX_CONCURRENCY)


def check_callable(name: str, value: object) -> Any:
    """Something to call (a callback, a clock)."""
    if not callable(value):
        raise InvalidArgumentError(f"{name} must be callable, got {type(value).__name__}")
    return value

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


def check_verify_tls(value: object) -> bool | ssl.SSLContext:
    """A bool, or an ``ssl.SSLContext`` that verifies against the CAs it was given (a
    corporate proxy that inspects TLS signs with its own CA): never 0, 1 or a CA's path."""
    if isinstance(value, (bool, ssl.SSLContext)):
        return value
    raise InvalidArgumentError(
        f"verify_tls must be a bool or an ssl.SSLContext, got {type(value).__name__}"
    )


def tls_verification_off(verify_tls: bool | ssl.SSLContext) -> bool:
    """``verify_tls=False``, or a context that checks no certificate (``CERT_NONE``)."""
    if isinstance(verify_tls, ssl.SSLContext):
        return verify_tls.verify_mode == ssl.CERT_NONE
    return not verify_tls


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

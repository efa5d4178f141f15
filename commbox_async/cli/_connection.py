"""Where the command line's token and base URL come from, checked in the user's terms.

The library checks both for Python callers ("base_url must look like ..."); a shell user set
them with a flag or an environment variable, and needs to hear which one, with the value (a
URL, never the token) and what is wrong with it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from dataclasses import dataclass
from typing import Any

from .._config import DEFAULT_BASE_URL
from .._errors import InvalidArgumentError
from .._protocol import check_base_url
from ._errors import CliExit, in_cli_terms

__all__ = ["Connection", "client_options", "connection", "require_token", "token_source"]

BASE_URL_ENV = "COMMBOX_BASE_URL"
TOKEN_ENV = "COMMBOX_TOKEN"
#: Hosts that need no TLS: a fixed URL for them suggests http, https for any other.
_LOCAL = re.compile(r"(localhost|127\.[0-9.]+|\[::1\]|0\.0\.0\.0)(:[0-9]*)?", re.IGNORECASE)
#: "http//host": the colon of the scheme left out.
_NO_COLON = re.compile(r"(https?)//(.+)", re.IGNORECASE)
#: User and password in a URL, hidden when the URL is shown.
_CREDENTIALS = re.compile(r"(//)[^/@?#]*@")


@dataclass(frozen=True)
class Connection:
    """The checked token and base URL, and where each came from (a flag or a variable)."""

    token: str
    token_from: str
    base_url: str
    base_url_from: str


def token_source(args: argparse.Namespace) -> str:
    """``--token`` when the flag was given, else the variable it falls back to."""
    return "--token" if getattr(args, "token", None) is not None else TOKEN_ENV


def require_token(args: argparse.Namespace) -> str:
    """The token from ``--token`` or ``COMMBOX_TOKEN``; a usage error when neither is set or
    it carries the ``Bearer`` prefix (the client adds that)."""
    token: str | None = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is None:
        raise CliExit(f"no token: set {TOKEN_ENV} (or pass --token)")
    if token.strip().lower().startswith("bearer"):
        head = token.strip()[6:7]
        if not head or head.isspace() or head in ":=":
            raise CliExit(
                f"{token_source(args)} starts with 'Bearer': give the token alone, without "
                "the prefix (the client sends 'Authorization: Bearer <token>' itself)"
            )
    return token


def _shown(url: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", url)


def _problem(url: str) -> tuple[str, str | None] | None:
    """What is wrong with a URL the library refused as not URL-shaped, and the URL that was
    probably meant (None when no guess is safe); None when the library's words say it."""
    text = url.strip()
    missing_colon = _NO_COLON.fullmatch(text)
    if missing_colon:
        scheme, rest = missing_colon.groups()
        return f"':' is missing after {scheme!r}", f"{scheme.lower()}://{rest}"
    if "://" not in text:
        host = text.split("/", 1)[0]
        scheme = "http" if _LOCAL.fullmatch(host) else "https"
        guess = f"{scheme}://{text}" if host and " " not in text else None
        return "it has no scheme (https:// or, on this machine, http://)", guess
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https"):
        close = difflib.get_close_matches(scheme.lower(), ["https", "http"], n=1, cutoff=0.6)
        guess = f"{close[0]}://{rest}" if close and rest else None
        return f"the scheme {scheme!r} is neither https nor http", guess
    if not rest.split("/", 1)[0]:
        return "it has no host after '://'", None
    return None


def _checked_base_url(args: argparse.Namespace) -> tuple[str, str]:
    """The base URL, checked as the client will check it, and where it came from."""
    if args.base_url is not None:
        url, source = args.base_url, "--base-url"
    elif os.environ.get(BASE_URL_ENV):
        url, source = os.environ[BASE_URL_ENV], BASE_URL_ENV
    else:
        url, source = DEFAULT_BASE_URL, "the default base URL"
    try:
        return check_base_url(url, allow_insecure_http=args.allow_insecure_http), source
    except InvalidArgumentError as exc:
        found = _problem(url) if url else None
        if found is None:
            # The library's sentence, about "base_url": said of this value, in flags.
            what = in_cli_terms(str(exc).replace("base_url ", "it ", 1))
        else:
            what, guess = found
            if guess is not None:
                what += f"; did you mean {_shown(guess)!r}?"
        raise CliExit(f"{source} is {_shown(url)!r}: {what}") from None


def connection(args: argparse.Namespace) -> Connection:
    """The token and the base URL of a ``get`` or ``fetch``, each checked, with its source."""
    token = require_token(args)
    base_url, base_from = _checked_base_url(args)
    return Connection(token, token_source(args), base_url, base_from)


def client_options(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """Keyword arguments of ``AsyncCommbox`` (but the token) from the connection options."""
    options: dict[str, Any] = {"base_url": base_url}
    if args.allow_insecure_http:
        options["allow_insecure_http"] = True
    if args.rate is not None:
        options["rate_limit"] = args.rate
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.retries is not None:
        options["retries"] = args.retries
    return options

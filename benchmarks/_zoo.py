"""The independent checks' ``throttle_zoo`` (a folder beside the repository, named on the
command line) and a plain aiohttp app that serves its limiters: for the benchmarks that measure
pacing against a limiter written apart from the project."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web


def load_zoo(checks: Path) -> Any:
    """The independent checks' zoo, from the folder given on the command line: it is not part
    of this repository, and a benchmark reads nothing beside it unless told where."""
    if not (checks / "throttle_zoo.py").exists():
        sys.exit(f"{checks}/throttle_zoo.py not found")
    sys.path.insert(0, str(checks.resolve()))
    return importlib.import_module("throttle_zoo")


def limited_app(zoo: Any, limiter_for: Callable[[str], Any | None]) -> web.Application:
    """The endpoint, each request decided by the zoo limiter ``limiter_for`` returns for its
    Authorization header (None: 401); the zoo's own bodies."""

    async def handler(request: web.Request) -> web.Response:
        now = time.monotonic()
        limiter = limiter_for(request.headers.get("Authorization", ""))
        if limiter is None:
            return web.Response(body=zoo.UNAUTH_BODY, status=401, content_type="application/json")
        ok, retry_after = limiter.decide(now)
        if not ok:
            return web.Response(
                body=zoo.THROTTLED_BODY,
                status=429,
                content_type="application/json",
                headers={"Retry-After": retry_after} if retry_after is not None else None,
            )
        ident = int(request.match_info["ident"])
        return web.Response(body=zoo._BODIES[ident], content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/users/identities/{ident}/objects", handler)
    return app

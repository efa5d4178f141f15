"""A loopback CommBox server with a limit the client cannot see, in a process of its own.

    python -m benchmarks.limited_server [--port 0] [--ids 3000]

It prints ``serving on http://127.0.0.1:PORT`` once it listens, and stops when its stdin
closes. The benchmark drives it over
HTTP on the same port:

- ``POST /_bench/start?scenario=NAME&scale=S&seed=N`` arms a fresh limiter of that scenario
  (``benchmarks/throttle_scenarios.py``) and clears the log; the limiter's clock starts at the
  run's first request, so a client's set-up time does not eat into a drop's schedule.
- ``GET /v2/users/identities/{id}/objects`` is the API: 200 with a prebuilt page whose first
  conversation names the identity, or 429 with the limiter's ``Retry-After`` (or none).
- ``GET /_bench/log`` returns every arrival as ``[seconds after the first, status, id]`` and,
  for the in-flight cap, the most requests it held at once and their mean hold.

Why a process of its own: the server's decisions are timed, so they must not wait behind the
client's CPU work; and it stays cheap (a prebuilt body, one list append per request), so it is
never the bottleneck at a few hundred requests a second.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

import msgspec
from aiohttp import web

from .limiters import Limiter
from .payloads import build
from .throttle_scenarios import by_name

TOKEN = "bench-token"
PATH = "/v2/users/identities/{ident}/objects"
_THROTTLED = msgspec.json.encode(
    {"status": 429, "description": "Too Many Requests", "response_time": "2026-02-12T15:09:23.998Z"}
)
_UNAUTHORIZED = msgspec.json.encode(
    {
        "status": 401,
        "description": "Unauthorized access",
        "response_time": "2026-02-12T15:09:23.998Z",
    }
)


class State:
    """The armed limiter and what the server saw since it was armed."""

    def __init__(self, bodies: dict[int, bytes]) -> None:
        self.bodies = bodies
        self.limiter: Limiter | None = None
        self.t0: float | None = None
        self.log: list[tuple[float, int, int]] = []
        self.held = 0.0  # seconds the accepted requests were held, in total
        self.most = 0  # the most requests held at once
        self.holding = 0

    def arm(self, limiter: Limiter) -> None:
        self.limiter, self.t0, self.log = limiter, None, []
        self.held, self.most, self.holding = 0.0, 0, 0


def make_app(bodies: dict[int, bytes]) -> web.Application:
    state = State(bodies)
    auth = f"Bearer {TOKEN}"

    async def objects(request: web.Request) -> web.Response:
        now = time.monotonic()
        ident = int(request.match_info["ident"])
        limiter = state.limiter
        if request.headers.get("Authorization") != auth or limiter is None:
            return web.Response(body=_UNAUTHORIZED, status=401, content_type="application/json")
        if state.t0 is None:
            state.t0 = now
            limiter.start(now)
        verdict = limiter.decide(now)
        if not verdict.accepted:
            state.log.append((now - state.t0, 429, ident))
            ra = verdict.retry_after
            headers = None if ra is None else {"Retry-After": ra}
            return web.Response(
                body=_THROTTLED, status=429, content_type="application/json", headers=headers
            )
        state.log.append((now - state.t0, 200, ident))
        if limiter.hold:
            state.holding += 1
            state.most = max(state.most, state.holding)
            try:
                await asyncio.sleep(limiter.hold)
            finally:
                state.holding -= 1
                limiter.release()
                state.held += time.monotonic() - now
        body = state.bodies.get(ident) or build("page", 1, 1, identity=ident).body
        return web.Response(body=body, content_type="application/json")

    async def start(request: web.Request) -> web.Response:
        query = request.query
        scenario = by_name(float(query.get("scale", "1")))[query["scenario"]]
        state.arm(scenario.limiter(int(query.get("seed", "1"))))
        return web.json_response({"armed": scenario.name})

    async def log(request: web.Request) -> web.Response:
        accepted = sum(1 for _, status, _ in state.log if status == 200)
        return web.json_response(
            {
                "log": state.log,
                "most_held": state.most,
                "mean_hold_ms": 1000 * state.held / accepted if state.held and accepted else None,
            }
        )

    app = web.Application()
    app.router.add_get(PATH, objects)
    app.router.add_post("/_bench/start", start)
    app.router.add_get("/_bench/log", log)
    return app


async def serve(port: int, ids: int) -> None:
    # Prebuilt, so that building a body is never part of a timed answer.
    bodies = {i: build("page", 1, 1, identity=i).body for i in range(1, ids + 1)}
    runner = web.AppRunner(make_app(bodies), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock, backlog=1024).start()
    print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        # Until stdin closes: the benchmark holds the other end, so the server cannot outlive
        # it, however it ends.
        await asyncio.to_thread(sys.stdin.buffer.read)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ids", type=int, default=3000, help="prebuild the pages of 1..IDS")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.ids))


if __name__ == "__main__":
    main()

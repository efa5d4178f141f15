"""examples/fastapi_app.py served by uvicorn on loopback, against the fake server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import httpx
import uvicorn
from example_loading import load_example
from fastapi import FastAPI, Request

from commbox_async import AsyncCommbox
from commbox_async.testing import FakeCommbox, unread_of
from commbox_async.testing._data import error_body

TOKEN = "fastapi-token-3c9d"


@asynccontextmanager
async def _served(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn (lifespan on) on a loopback socket bound before it starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # requests queue in the backlog until uvicorn accepts: no polling
    host, port = sock.getsockname()
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)  # a hang guard, not a timing
        sock.close()


def _recording(module: ModuleType, app: FastAPI, seen: list[AsyncCommbox]) -> None:
    """Remember each client the app's dependency hands out (to check it is one, then closed)."""

    def get_commbox(request: Request) -> Any:
        commbox = module.get_commbox(request)
        seen.append(commbox)
        return commbox

    app.dependency_overrides[module.get_commbox] = get_commbox


async def test_fastapi_app_serves_unread_counts_with_one_client_per_lifespan() -> None:
    """Badges and one identity's total come from one client, opened and closed by the lifespan."""
    module = load_example("fastapi_app")
    seen: list[AsyncCommbox] = []
    async with FakeCommbox(token=TOKEN, not_found={404}) as fake:
        app = module.create_app(token=TOKEN, base_url=fake.url, rate_limit=1000, retries=1)
        _recording(module, app, seen)
        async with _served(app) as url, httpx.AsyncClient(base_url=url) as http:
            badges = await http.get("/badges", params={"ids": "558355,7,404,7"})
            assert badges.status_code == 200
            assert badges.json() == {
                "badges": {"558355": unread_of(558355, 10), "7": unread_of(7, 10)},
                "unavailable": [404],
            }
            one = await http.get("/identities/558355/unread")
            assert one.json() == {
                "identity_id": 558355,
                "unread": unread_of(558355, 10),
                "conversations": 10,
            }
            assert (await http.get("/identities/404/unread")).status_code == 404
            assert seen[0].closed is False
    assert len({id(c) for c in seen}) == 1  # one client for every request
    assert seen[0].closed  # the lifespan closed it at shutdown


async def test_fastapi_app_answers_400_for_bad_ids_before_any_request() -> None:
    """A bad id is the caller's mistake (400) and never reaches CommBox."""
    module = load_example("fastapi_app")
    async with FakeCommbox(token=TOKEN) as fake:
        app = module.create_app(token=TOKEN, base_url=fake.url, rate_limit=1000)
        async with _served(app) as url, httpx.AsyncClient(base_url=url) as http:
            for path in ("/identities/-3/unread", "/identities/0/unread", "/identities/x/unread"):
                assert (await http.get(path)).status_code == 400, path
            for ids in ("x", "", "1,-2", ",".join(["1"] * 101)):
                assert (await http.get("/badges", params={"ids": ids})).status_code == 400, ids
        assert fake.count() == 0


async def test_fastapi_app_answers_502_when_commbox_fails() -> None:
    """A CommBox failure is a 502 for one identity and 'unavailable' among badges, never 0."""
    module = load_example("fastapi_app")
    async with FakeCommbox(token=TOKEN) as fake:
        fake.script(9, 500, 500)
        app = module.create_app(token=TOKEN, base_url=fake.url, rate_limit=1000, retries=1)
        async with _served(app) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/identities/9/unread")).status_code == 502
            badges = await http.get("/badges", params={"ids": "9,8"})
            assert badges.json() == {"badges": {"8": unread_of(8, 10)}, "unavailable": [9]}


async def test_fastapi_app_answers_within_its_deadline_when_commbox_asks_to_wait() -> None:
    """A 429 asking for 20 s: one identity's total answers 503 at once with the Retry-After
    (without the deadline it waited 20 s and answered 200)."""
    module = load_example("fastapi_app")
    assert module.PAGE_DEADLINE < 20
    async with FakeCommbox(token=TOKEN) as fake:
        fake.script(7, (429, {"Retry-After": "20"}, error_body(429)))
        app = module.create_app(token=TOKEN, base_url=fake.url, rate_limit=1000)
        async with _served(app) as url, httpx.AsyncClient(base_url=url) as http:
            one = await http.get("/identities/7/unread")
            assert one.status_code == 503
            assert one.headers["Retry-After"] == "20"


async def test_fastapi_app_badges_answer_within_the_deadline() -> None:
    """A 429 asking for 20 s: /badges answers at once with the identity unavailable."""
    module = load_example("fastapi_app")
    async with FakeCommbox(token=TOKEN) as fake:
        fake.script(7, (429, {"Retry-After": "20"}, error_body(429)))
        app = module.create_app(token=TOKEN, base_url=fake.url, rate_limit=1000)
        async with _served(app) as url, httpx.AsyncClient(base_url=url) as http:
            badges = await http.get("/badges", params={"ids": "7"})
            assert badges.json() == {"badges": {}, "unavailable": [7]}

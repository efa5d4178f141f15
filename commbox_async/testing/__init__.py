"""A fake CommBox server for tests and demos: a real aiohttp.web app on a loopback port.

It serves ``GET /v2/users/identities/{id}/objects`` with bearer auth, deterministic synthetic
conversations for any identity (shaped like the vendor's example, double-encoded ``content``
included), paging and the filters, error bodies in the documented shape, a server-wide
token-bucket throttle that answers 429 with ``Retry-After``, and fault injection (error
statuses, resets, truncated or malformed bodies, slow headers or bodies, absurd Retry-After
values, oversized bodies, refused connections) at a chosen rate. Every request is logged in
``server.requests`` (and counted by outcome in ``server.outcomes``) so that tests can assert
what reached it.

``unused_port()`` gives a loopback port with nothing listening (connection refused) and
``Blackhole`` a port where connecting never completes, for the faults no server can answer.

    async with FakeCommbox(throttling=Throttling(rate=100, burst=10)) as server:
        async with AsyncCommbox(token=server.token, base_url=server.url) as commbox:
            ...

``server.client()`` is an ``AsyncCommbox`` for the server with fast test settings
(``fast_client_settings``: no real rate limit, no real back-off waits).

From a shell: ``commbox-async mock`` (or ``python -m commbox_async.testing``). With pytest
(``pip install 'commbox-async[testing]'``): ``pytest_plugins = ["commbox_async.testing"]``
gives the ``fake_commbox`` and ``fake_commbox_factory`` fixtures (see ``plugin``).

The parts: ``_server`` (the app and its request log), ``_faults`` (the fault table),
``_data`` (pages and error bodies), ``_throttling``, ``_accounts`` (tokens and their
buckets), ``_holding`` (requests in flight by account, held until a test lets them go),
``_clock``, ``_sockets``, ``_settings`` (the client's test settings) and ``plugin``.
"""

from __future__ import annotations

import contextlib

from ._activity import Activity, Message
from ._clock import VirtualClock
from ._data import conversation, unread_of
from ._faults import (
    ABSURD_RETRY_AFTER,
    DEFAULT_FAULT_KINDS,
    FAULT_KINDS,
    PERMANENT_FAULTS,
    TRANSIENT_FAULTS,
    Faults,
)
from ._server import FakeCommbox, RequestRecord
from ._settings import FAST_RATE_LIMIT, FAST_RETRIES, fast_client_settings
from ._sockets import Blackhole, unused_port
from ._throttling import Throttling

__all__ = [
    "ABSURD_RETRY_AFTER",
    "DEFAULT_FAULT_KINDS",
    "FAST_RATE_LIMIT",
    "FAST_RETRIES",
    "FAULT_KINDS",
    "PERMANENT_FAULTS",
    "TRANSIENT_FAULTS",
    "Activity",
    "Blackhole",
    "FakeCommbox",
    "Faults",
    "Message",
    "RequestRecord",
    "Throttling",
    "VirtualClock",
    "conversation",
    "fast_client_settings",
    "unread_of",
    "unused_port",
]

# ``pytest_plugins = ["commbox_async.testing"]`` loads this module as the plugin, so the
# fixtures are visible here too; without pytest-asyncio (a server run from the shell) they are
# simply absent.
with contextlib.suppress(ImportError):  # pytest is a test-time dependency only
    from .plugin import fake_commbox, fake_commbox_factory  # noqa: F401

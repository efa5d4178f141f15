"""A FastAPI app that serves unread counts: one AsyncCommbox for the app's whole life.

    pip install commbox-async fastapi uvicorn
    COMMBOX_TOKEN=... uvicorn examples.fastapi_app:app --port 8000
    curl 'http://127.0.0.1:8000/badges?ids=558355,558356'
    {"badges": {"558355": 3, "558356": 0}, "unavailable": []}
    curl http://127.0.0.1:8000/identities/558355/unread
    {"identity_id": 558355, "unread": 3, "conversations": 10}

The lifespan opens the client at start-up and closes it at shutdown, and hands it to the
requests through the lifespan state, so every request shares one connection pool and one rate
limit. A failed identity is reported as unavailable, never shown as zero unread; a bad id is
the caller's mistake (400), an unknown one a 404, and CommBox failing a 502.

A request waits for CommBox at most ``PAGE_DEADLINE`` seconds, retries and pauses included
(the library's default, 300 s, is a batch job's): past it a badge is listed as unavailable and
one identity's total answers 503, with a Retry-After when CommBox gave one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Query, Request

from commbox_async import (
    AsyncCommbox,
    CommboxError,
    CommboxTimeoutError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    Retries,
)

MAX_IDS = 100
#: Seconds a request waits for CommBox, retries and pauses included. Without it a call may take
#: the library's default of 300 s: retries while CommBox is down, a 429's whole pause.
PAGE_DEADLINE = 3.0


class State(TypedDict):
    """What the lifespan hands to every request (``request.state``)."""

    commbox: AsyncCommbox


def get_commbox(request: Request) -> AsyncCommbox:
    """The app's one client, opened by the lifespan."""
    commbox: AsyncCommbox = request.state.commbox
    return commbox


Commbox = Annotated[AsyncCommbox, Depends(get_commbox)]


def _ids(raw: str) -> list[int]:
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise HTTPException(400, "ids must be comma-separated integers") from None
    if not 0 < len(ids) <= MAX_IDS:
        raise HTTPException(400, f"give 1 to {MAX_IDS} ids")
    if any(i <= 0 for i in ids):
        raise HTTPException(400, "ids must be positive")
    return list(dict.fromkeys(ids))  # each identity once


def create_app(*, deadline: float = PAGE_DEADLINE, **client_options: Any) -> FastAPI:
    """The app; ``client_options`` go to ``AsyncCommbox`` (token and URL default to the env).

    ``deadline`` bounds each call a request makes, retries and waits included: the client's
    ``Retries.max_time`` (for the badges), and each identity call's ``deadline=``.
    """
    client_options.setdefault("retries", Retries(max_time=deadline))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncCommbox(**client_options) as commbox:
            yield {"commbox": commbox}

    app = FastAPI(title="unread badges", lifespan=lifespan)

    @app.get("/badges")
    async def badges(commbox: Commbox, ids: Annotated[str, Query()] = "") -> dict[str, Any]:
        """Total unread chat messages per identity: GET /badges?ids=1,2,3."""
        wanted = _ids(ids)
        # Bounded by the client's Retries(max_time=deadline): an identity that takes longer
        # is left out of the counts and listed as unavailable.
        counts = await commbox.unread_counts(wanted, raise_on_error=False, include_childs=False)
        return {
            "badges": {str(i): counts[i] for i in wanted if i in counts},
            "unavailable": [i for i in wanted if i not in counts],
        }

    @app.get("/identities/{identity_id}/unread")
    async def unread(commbox: Commbox, identity_id: str) -> dict[str, int]:
        """One identity's unread total and how many conversations its first page holds."""
        try:
            page = await commbox.get_user_objects(
                int(identity_id), include_childs=False, deadline=deadline
            )
        except (ValueError, InvalidArgumentError):
            raise HTTPException(400, "identity_id must be a positive integer") from None
        except NotFoundError:
            raise HTTPException(404, "no such identity") from None
        except (RateLimitError, CommboxTimeoutError) as exc:
            # Busy or slow past the deadline: say when to come back, if CommBox said.
            wait = getattr(exc, "retry_after", None)
            headers = {"Retry-After": str(math.ceil(wait))} if wait else None
            raise HTTPException(503, "CommBox is busy, try again shortly", headers) from None
        except CommboxError:
            raise HTTPException(502, "CommBox is unavailable, try again") from None
        return {
            "identity_id": int(identity_id),
            "unread": page.unread_total,
            "conversations": len(page.data),
        }

    return app


# For `uvicorn examples.fastapi_app:app`: nothing is opened until the lifespan starts.
app = create_app()

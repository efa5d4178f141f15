"""One page or every page: what ``--all-pages`` changes, and how to tell that a page is full.

Without ``--all-pages`` a command fetches one page per identity, as the API does; a full page
means there may be more, which the commands say. With it, each identity's pages are read by the
library's paging (``iter_user_objects``) and joined into one page, so the output keeps its shape.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from .._client import AsyncCommbox
from .._fanout import FetchResult
from .._models import UserObjectsPage
from .._protocol import MAX_PAGE_SIZE, Query

__all__ = ["check_filters", "every_page", "fetch_every_page", "is_full"]


def check_filters(filters: dict[str, Any]) -> None:
    """A bad filter is a usage error before any request (``InvalidArgumentError``)."""
    Query.from_filters(filters)


def is_full(page: UserObjectsPage, filters: dict[str, Any]) -> bool:
    """Whether the page holds as many conversations as a page can: there may be more."""
    return page.is_full(filters.get("page_size", MAX_PAGE_SIZE))


async def every_page(
    client: AsyncCommbox, identity_id: int, filters: dict[str, Any]
) -> UserObjectsPage:
    """All the conversations of an identity as one page; ``page_number`` is the first page."""
    options = dict(filters)
    first_page = options.pop("page_number", None)
    if first_page is not None:
        options["first_page"] = first_page
    options["page_size"] = options.get("page_size", MAX_PAGE_SIZE)
    data = [item async for item in client.iter_user_objects(identity_id, **options)]
    # The API's own total comes with each page; the joined page carries the sum it stands for.
    return UserObjectsPage(
        status=200,
        total_unread_chat_messages=sum(item.unread_messages for item in data),
        data=data,
    )


def fetch_every_page(
    client: AsyncCommbox,
    ids: Iterable[int] | AsyncIterator[int],
    *,
    concurrency: int,
    filters: dict[str, Any],
) -> AsyncGenerator[FetchResult, None]:
    """``fetch_many`` with every page of each identity: the same engine, another request."""
    return client._fan_out(ids, functools.partial(every_page, client, filters=filters), concurrency)

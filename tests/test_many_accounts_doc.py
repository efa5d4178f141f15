"""The runnable example of docs/many-accounts.md, run against the fake server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from commbox_async.testing import FakeCommbox, unread_of

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "many-accounts.md"


def _tested_block() -> str:
    """The python block that follows the guide's "tested" marker."""
    text = GUIDE.read_text()
    match = re.search(r"<!-- tested:[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match is not None, "the guide lost its tested example"
    return match.group(1)


async def test_the_guides_example_counts_each_accounts_unread() -> None:
    """unread_by_account sums each account's own unread counts, over one client's pool."""
    namespace: dict[str, Any] = {"__name__": "many_accounts_example"}
    exec(compile(_tested_block(), str(GUIDE), "exec"), namespace)
    async with FakeCommbox(token="acme-key") as server:
        globex = server.add_token("globex-key")
        async with server.client() as commbox:
            totals = await namespace["unread_by_account"](
                commbox, {"acme": "acme-key", "globex": "globex-key"}, [558355, 558356]
            )
    expected = unread_of(558355, 10) + unread_of(558356, 10)
    assert totals == {"acme": expected, "globex": expected}
    assert server.count("ok", account=globex) == 2
    assert server.count("ok") == 4

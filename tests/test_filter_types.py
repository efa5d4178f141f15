"""The keyword filters are typed: mypy catches a misspelt filter or a wrong type, and the
names come from one place (``Query``'s fields) for the types, the wire and the command line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from mypy import api as mypy_api

from commbox_async import Filters, Query
from commbox_async._protocol import FILTER_NAMES, PagingFilters

ROOT = Path(__file__).resolve().parents[1]

#: The vendor's names for the filters (from its spec), by our Python names.
VENDOR_NAMES = {
    "stream_provider_id": "streamProviderId",
    "stream_provider_type": "streamProviderType",
    "stream_id": "stream",
    "sub_stream_id": "subStream",
    "page_number": "pageNumber",
    "page_size": "pageSize",
    "statuses": "status",
    "order": "order",
    "object_id": "objectId",
    "module_id": "moduleId",
    "include_childs": "includeChilds",
    "include_activity_log": "includeActivityLog",
}

CALLS = """
from commbox_async import AsyncCommbox, ObjectStatus

async def use(commbox: AsyncCommbox) -> None:
    await commbox.get_user_objects(1, {args})
"""


def _mypy(tmp_path: Path, source: str) -> str:
    """mypy --strict's report on ``source``, checked against the installed package."""
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(source))
    out, err, _ = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(path),
        ]
    )
    return out + err


def test_misspelt_filters_and_wrong_types_fail_mypy(tmp_path: Path) -> None:
    """include_children="yes" (misspelt) and page_size="big" (a str) are both mypy errors."""
    report = _mypy(tmp_path, CALLS.format(args='include_children="yes", page_size="big"'))
    assert 'Unexpected keyword argument "include_children"' in report, report
    assert '"page_size"' in report and 'incompatible type "str"' in report, report


def test_well_typed_filters_pass_mypy(tmp_path: Path) -> None:
    """Every filter with its right type passes, and so do the fan-out and paging calls."""
    source = CALLS.format(
        args='include_childs=True, page_size=5, statuses=[ObjectStatus.OPEN, 2], order="x", '
        'stream_provider_id="a", stream_provider_type=1, include_activity_log=None'
    )
    source += textwrap.dedent("""
        async def more(commbox: AsyncCommbox) -> None:
            async for _ in commbox.fetch_many([1], concurrency=2, statuses=1, module_id=3):
                pass
            async for _ in commbox.iter_user_objects(1, page_size=10, object_id=4):
                pass
            await commbox.unread_counts([1], include_childs=False)
    """)
    report = _mypy(tmp_path, source)
    assert "Success: no issues found" in report, report


def test_iter_user_objects_refuses_page_number_statically(tmp_path: Path) -> None:
    """iter_user_objects sets the page itself: page_number is a mypy error there."""
    source = textwrap.dedent("""
        from commbox_async import AsyncCommbox

        async def use(commbox: AsyncCommbox) -> None:
            async for _ in commbox.iter_user_objects(1, page_number=2):
                pass
    """)
    assert 'Unexpected keyword argument "page_number"' in _mypy(tmp_path, source)


def test_one_list_of_filter_names() -> None:
    """Query's fields, the typed filters and the wire names list the same filters."""
    query_fields = [item.name for item in dataclasses.fields(Query)]
    assert list(FILTER_NAMES) == query_fields == list(VENDOR_NAMES)
    assert set(Filters.__annotations__) | set(PagingFilters.__annotations__) == set(VENDOR_NAMES)
    assert set(PagingFilters.__annotations__) == set(VENDOR_NAMES) - {"page_number", "page_size"}
    assert Filters.__required_keys__ == frozenset()
    every = Query(
        stream_provider_id="a",
        stream_provider_type=1,
        stream_id=2,
        sub_stream_id=3,
        page_number=4,
        page_size=5,
        statuses=(6,),
        order="o",
        object_id=7,
        module_id=8,
        include_childs=True,
        include_activity_log=False,
    )
    assert list(every.params()) == list(VENDOR_NAMES.values())

"""The docs site's inputs: every public member has a docstring, every logger is documented."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = (
    "commbox_async",
    "commbox_async.blocking",
    "commbox_async.redis",
    "commbox_async.testing",
)

# Public members still without a docstring, by public path. The API reference shows them bare
# until they get one; a member that gains one must leave this list (the test says so).
AWAITING_DOCSTRINGS: frozenset[str] = frozenset()


def _public_members() -> Iterator[tuple[str, object]]:
    """(public path, object) for each class and function in an ``__all__``, and their members."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants are described in the module's docs
            path = f"{module_name}.{name}"
            yield path, obj
            if not inspect.isclass(obj):
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if isinstance(value, property) or inspect.isfunction(value):
                    yield f"{path}.{attr}", value


def test_every_public_member_has_a_docstring() -> None:
    """Each public class, function, method and property has a docstring for the API reference."""
    # __doc__, not inspect.getdoc: the reference does not borrow a base class's docstring.
    missing = {path for path, obj in _public_members() if not (obj.__doc__ or "").strip()}
    assert missing - AWAITING_DOCSTRINGS == set(), "add a docstring"
    assert AWAITING_DOCSTRINGS - missing == set(), "has a docstring now: remove from the list"


def test_logging_guide_names_every_logger() -> None:
    """docs/logging.md names each logger the package creates, so none logs unannounced."""
    source = "\n".join(p.read_text() for p in (ROOT / "commbox_async").rglob("*.py"))
    names = set(re.findall(r"getLogger\(\s*[\"']([\w.]+)[\"']", source))
    assert "commbox_async" in names  # the scan itself works
    guide = (ROOT / "docs" / "logging.md").read_text()
    assert {name for name in names if f"`{name}`" not in guide} == set()

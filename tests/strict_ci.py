"""Under ``CI=true`` a skipped test fails: CI installs every server and file the suite needs.

A test that skips for a missing server (nginx, redis-server) or file on a developer's machine
says how to get it; in CI the same skip would hide that the claim was never checked. Loaded by
``conftest.py`` (and by name, ``-p strict_ci``, in the test that proves it).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def running_in_ci() -> bool:
    """``CI`` set to true (what CI services set), 1 or yes."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _reason(longrepr: Any) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and running_in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, where every test must run: {_reason(report.longrepr)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result())

"""The suite runs on a plain clone: nothing read from beside the repository, and under
``CI=true`` a skipped test fails instead of hiding an unchecked claim."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_vendor_example_tests_run_in_a_clone_without_shared(tmp_path: Path) -> None:
    """A copy of tests/ with no shared/ folder anywhere near runs the tests of the vendor's
    example, under CI=true, with no skip and no failure."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", clone)
    env = {**os.environ, "CI": "true"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/test_models.py",
            "tests/test_protocol.py",
            "-k",
            "seed or reference or null_in_any",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not (tmp_path / "shared").exists() and not (clone.parent.parent / "shared").exists()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "skipped" not in done.stdout
    assert " passed" in done.stdout


def test_no_test_reads_outside_the_repository() -> None:
    """No test or benchmark names the shared folder beside the repository."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("tests", "benchmarks")
        for path in (ROOT / folder).glob("*.py")
        if path.name != Path(__file__).name
        and any(mark in path.read_text() for mark in ('/ "shared"', "parents[2]", "ROOT.parent"))
    ]
    assert offenders == []


INI = '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n'

SKIPPING = """
import pytest

def test_needs_a_server():
    pytest.skip("nginx is not installed")

def test_plain():
    assert True
"""


@pytest.mark.parametrize(("ci", "failed"), [("true", 1), ("", 0)])
def test_a_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, failed: int
) -> None:
    """With CI=true a skipped test is reported failed, naming its reason; without, it skips."""
    monkeypatch.setenv("CI", ci)
    pytester.makepyprojecttoml(INI)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "strict_ci", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=failed, skipped=1 - failed)
    if failed:
        result.stdout.fnmatch_lines(["*skipped under CI=true*nginx is not installed*"])


def test_a_module_level_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole module skipped at import (importorskip of a missing tool) fails under CI too."""
    monkeypatch.setenv("CI", "true")
    pytester.makepyprojecttoml(INI)
    pytester.makepyfile('import pytest\npytest.importorskip("no_such_module_here")\n')
    result = pytester.runpytest("-p", "strict_ci", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped under CI=true*no_such_module_here*"])

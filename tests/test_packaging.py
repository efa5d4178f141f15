"""The distributions as published: built with ``python -m build``, checked by
``twine check --strict``, with the licence, the metadata and a README that works on the index."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built as a release would be (isolated build environment)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    (path,) = dist.glob("*.whl")
    return zipfile.ZipFile(path)


def _metadata(dist: Path) -> Message:
    with _wheel(dist) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(name).decode())


def test_twine_check_strict_passes(dist: Path) -> None:
    """twine check --strict accepts both distributions (metadata and README rendering)."""
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_the_licence_ships_in_the_wheel_and_the_sdist(dist: Path) -> None:
    """LICENSE (MIT) is in the wheel's dist-info and at the root of the sdist."""
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    with _wheel(dist) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(name).decode() == licence
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "tests/fixtures/seed_example_200.json", "README.md"} <= names
    metadata = _metadata(dist)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_metadata_has_urls_classifiers_and_only_user_extras(dist: Path) -> None:
    """Project URLs and classifiers are set; dev and bench tools are not published extras."""
    metadata = _metadata(dist)
    urls = dict(item.split(", ", 1) for item in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Framework :: AsyncIO" in classifiers
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX field says it
    assert sorted(metadata.get_all("Provides-Extra") or []) == ["cli", "redis", "testing", "uvloop"]
    runtime = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(re.split(r"[<>=;\s]", r)[0] for r in runtime) == [
        "aiohttp",
        "aiolimiter",
        "backoff",
        "msgspec",
    ]


def test_readme_links_work_on_the_package_index() -> None:
    """Every link and image of the README is absolute (the index has no repository beside
    it), and the README says how to install from a clone."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets, "no links found"
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    assert relative == []
    assert "install from a clone" in readme

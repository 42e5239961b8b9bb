"""The package's metadata: what CI's lowest-versions run installs is what pyproject declares."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def _lower_bounds():
    """{name: version} of each ``name>=version`` runtime dependency in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(requirement.split(">=") for requirement in project["dependencies"])


def _lowest_pins():
    """{name: version} of .ci/lowest.txt's ``name==version`` (``.*`` dropped)."""
    lines = (ROOT / ".ci" / "lowest.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name: version.removesuffix(".*") for name, version in pins}


def test_ci_installs_the_declared_lower_bounds():
    bounds, pins = _lower_bounds(), _lowest_pins()
    assert set(pins) == {"numpy", "scipy", "scikit-learn"}
    assert {name: bounds[name] for name in pins} == pins


def test_license_and_urls_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(project["urls"])

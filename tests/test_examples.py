"""The example gallery: every ``examples/plot_*.py`` runs in smoke mode and saves its pictures.

Each script runs in its own process, as a user would run it. Marked ``examples``: deselect with
``-m "not examples"``. Skipped without matplotlib (the ``test`` extra installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

pytestmark = pytest.mark.examples

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"
# The pictures each gallery script saves; docs/gallery.md shows them.
PICTURES = {
    "plot_bayesian_optimization.py": ["bayesian_optimization.png"],
    "plot_calibration.py": ["calibration.png"],
    "plot_gp_view.py": ["gp_view.png"],
    "plot_model_selection.py": ["model_selection.png"],
    "plot_out_of_distribution.py": ["out_of_distribution.png"],
    "plot_regression_bands.py": ["regression_bands.png"],
}


def test_every_gallery_script_is_listed():
    assert sorted(path.name for path in EXAMPLES.glob("plot_*.py")) == sorted(PICTURES)


@pytest.mark.parametrize("script", sorted(PICTURES))
def test_example_runs_and_saves_its_pictures(script, tmp_path):
    env = {
        **os.environ,
        "SKBNN_EXAMPLE_SMOKE": "1",
        "SKBNN_EXAMPLE_OUTPUT": str(tmp_path),
        "MPLBACKEND": "agg",
        # One BLAS thread: the scikit-learn baselines are small, and CI shares two cores.
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    for name in PICTURES[script]:
        assert (tmp_path / name).is_file(), f"{script} did not save {name}"
        # The documentation shows these pictures: docs/build.sh reuses them instead of rerunning.
        GALLERY.mkdir(exist_ok=True)
        shutil.copy(tmp_path / name, GALLERY / name)

"""The code reproduces the golden outputs recorded at fixed seeds (tests/golden/).

A refactor must leave these numbers as they are; a change meant to change numbers re-records them
(``python tests/golden/configurations.py``) and says so in its commit.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.golden.configurations import CONFIGURATIONS, OUTPUTS, compute


@pytest.fixture(scope="module")
def recorded():
    with np.load(OUTPUTS) as arrays:
        return dict(arrays)


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_outputs_match_the_recorded_ones(recorded, name):
    outputs = compute(name)
    expected_keys = {key.split("/", 1)[1] for key in recorded if key.startswith(f"{name}/")}
    assert set(outputs) == expected_keys
    for key, value in outputs.items():
        assert_allclose(value, recorded[f"{name}/{key}"], rtol=1e-10, atol=0, err_msg=key)

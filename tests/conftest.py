"""Data fixtures shared by several test modules (torch threads and the gpu skip: ../conftest.py).

Each fixture is module-scoped, so every module gets its own arrays, drawn from the same seed as
when each module defined its own copy.
"""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def linear_data():
    """A linear-Gaussian regression: X (60, 3), y = Xw + 0.7 + noise, and X_test (7, 3)."""
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.7 + 0.3 * rng.randn(60)
    X_test = rng.randn(7, 3) * 2
    return X, y, X_test


@pytest.fixture(scope="module")
def logistic_data():
    """Logistic regression: X (100, 2), labels of Xw + 0.3 + logistic noise, X_test (5, 2)."""
    rng = np.random.RandomState(0)
    X = rng.randn(100, 2)
    y = (X @ np.array([1.5, -1.0]) + 0.3 + rng.logistic(size=100) > 0).astype(int)
    X_test = rng.randn(5, 2) * 3
    return X, y, X_test

"""Prediction is read-only: concurrent calls on one fitted estimator give the serial result.

Web servers and joblib's threading backend call ``predict`` of one estimator from several threads
at once; nothing on the predict path may be shared and mutated (a generator, a cache, the
module's parameters swapped by ``torch.func.functional_call``).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

N_THREADS, N_CALLS = 4, 12


def _concurrent_results(method):
    with ThreadPoolExecutor(N_THREADS) as pool:
        return list(pool.map(lambda _: method(), range(N_CALLS)))


def _assert_same(result, expected):
    if isinstance(result, tuple | list):
        for part, expected_part in zip(result, expected, strict=True):
            _assert_same(part, expected_part)
    elif isinstance(result, dict):
        assert result.keys() == expected.keys()
        for key in result:
            _assert_same(result[key], expected[key])
    else:
        # To rounding: a BLAS call may sum in another order when threads share the cores.
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(80, 3)
    y = np.sin(X[:, 0]) + 0.1 * rng.randn(80)
    return X, y, (X[:, 0] + X[:, 1] > 0).astype(int), rng.randn(300, 3)


SMALL = dict(hidden_layer_sizes=(8,), max_iter=100, random_state=0)


@pytest.mark.parametrize(
    "params", [dict(ensemble_size=3), dict(hessian_structure="kron"), dict(noise="heteroscedastic")]
)
def test_concurrent_regressor_predictions_equal_the_serial_ones(data, params):
    X, y, _, X_test = data
    model = LaplaceMLPRegressor(**SMALL, **params).fit(X, y)
    methods = [
        lambda: model.predict(X_test, return_std=True),
        lambda: model.sample_y(X_test, 3),
        lambda: model.predict_uncertainty(X_test),
    ]
    for method in methods:
        expected = method()
        for result in _concurrent_results(method):
            _assert_same(result, expected)


@pytest.mark.parametrize("link_approx", ["mc", "probit"])
def test_concurrent_classifier_predictions_equal_the_serial_ones(data, link_approx):
    X, _, labels, X_test = data
    model = LaplaceMLPClassifier(**SMALL, link_approx=link_approx).fit(X, labels)
    methods = [
        lambda: model.predict_proba(X_test),
        lambda: model.predict_log_proba(X_test),
        lambda: model.predict_uncertainty(X_test),
    ]
    for method in methods:
        expected = method()
        for result in _concurrent_results(method):
            _assert_same(result, expected)

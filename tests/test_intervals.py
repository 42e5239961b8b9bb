"""predict_interval: the Gaussian interval of one network, the mixture's quantiles of several."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm

from skbnn import LaplaceMLPRegressor
from skbnn._predictive import mixture_quantile


def _smooth_task(n, rng):
    X = rng.uniform(-3, 3, size=(n, 1))
    return X, np.sin(X[:, 0]) + 0.2 * rng.normal(size=n)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _smooth_task(200, rng), _smooth_task(1000, rng)


@pytest.fixture(scope="module")
def ensemble(data):
    (X, y), _ = data
    params = dict(hidden_layer_sizes=(20,), max_iter=500, random_state=0)
    return LaplaceMLPRegressor(**params).fit(X, y)


def test_one_network_gives_the_gaussian_interval(data):
    (X, y), (X_test, _) = data
    reg = LaplaceMLPRegressor(hidden_layer_sizes=(10,), max_iter=100, ensemble_size=1).fit(X, y)
    mean, std = reg.predict(X_test[:20], return_std=True)
    lower, upper = reg.predict_interval(X_test[:20], confidence=0.8)
    z = norm.ppf(0.9)
    assert_allclose(lower, mean - z * std, rtol=1e-10, atol=1e-12)
    assert_allclose(upper, mean + z * std, rtol=1e-10, atol=1e-12)


def test_mixture_quantiles_solve_the_mixture_cdf():
    rng = np.random.default_rng(1)
    means, stds = rng.normal(size=(3, 7, 2)), rng.uniform(0.1, 2.0, size=(3, 7, 2))
    for probability in (0.01, 0.3, 0.95):
        x = mixture_quantile(means, stds, probability)
        cdf = norm.cdf((x - means) / stds).mean(0)
        assert_allclose(cdf, probability, atol=1e-12)


def test_ensemble_interval_holds_its_coverage_on_held_out_rows(ensemble, data):
    _, (X_test, y_test) = data
    assert ensemble.ensemble_size_ > 1
    lower, upper = ensemble.predict_interval(X_test, confidence=0.9)
    assert np.all(lower < upper)
    coverage = np.mean((lower <= y_test) & (y_test <= upper))
    assert 0.80 <= coverage <= 0.97
    # Wider intervals for a higher confidence.
    lower_99, upper_99 = ensemble.predict_interval(X_test, confidence=0.99)
    assert np.all(lower_99 < lower) and np.all(upper < upper_99)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 2])
def test_confidence_outside_the_open_unit_interval_is_refused(ensemble, data, confidence):
    (X, _), _ = data
    with pytest.raises(ValueError, match="confidence"):
        ensemble.predict_interval(X[:3], confidence=confidence)

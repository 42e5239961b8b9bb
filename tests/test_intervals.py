"""predict_interval: the Gaussian interval of one network, the mixture's quantiles of several,
and the conformal rescaling calibrated by the leave-one-out residuals."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm
from sklearn.base import clone

from skbnn import LaplaceMLPRegressor
from skbnn._conformal import conformal_quantile
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


def test_conformity_scores_are_the_residuals_of_refits_without_the_row():
    """For a linear model at fixed δ and σ the cavity is the exact posterior of the other rows:
    each score is |y_i − μ₋ᵢ(x_i)| / σ₋ᵢ(x_i) of a refit with the row's weight set to 0."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    y = X @ [1.0, -0.5] + 0.3 * rng.normal(size=30)
    params = dict(hidden_layer_sizes=(), prior_precision=2.0, sigma_noise=0.4, normalize_y=False)
    model = LaplaceMLPRegressor(**params, random_state=0).fit(X, y)
    scores, _ = model._loo_conformity
    for i in [0, 7, 19]:
        weights = np.ones(len(y))
        weights[i] = 0.0
        refit = clone(model).fit(X, y, sample_weight=weights)
        mean, std = refit.predict(X[i : i + 1], return_std=True)
        assert_allclose(scores[i, 0], abs(y[i] - mean[0]) / std[0], rtol=1e-6)


def test_weighted_conformal_quantile_counts_each_unit_of_weight_as_a_row():
    scores = np.array([[3.0], [1.0], [2.0], [4.0]])
    repeated = np.repeat(scores, [1, 2, 1, 3], axis=0)
    for confidence in [0.5, 0.7, 0.85]:
        weighted = conformal_quantile(scores, np.array([1.0, 2.0, 1.0, 3.0]), confidence)
        assert weighted == conformal_quantile(repeated, np.ones(7), confidence)
    # ⌈(n + 1) · 0.5⌉ = 4th smallest of 7
    assert conformal_quantile(repeated, np.ones(7), 0.5) == 3.0


@pytest.mark.parametrize("noise", ["student-t", "heteroscedastic"])
def test_conformal_intervals_hold_their_coverage_where_the_noise_model_is_wrong(noise):
    rng = np.random.default_rng(2)

    def task(n):
        X = rng.uniform(-3, 3, size=(n, 1))
        if noise == "student-t":
            return X, np.sin(X[:, 0]) + 0.2 * rng.standard_t(2.5, size=n)
        return X, np.sin(X[:, 0]) + 0.05 * (1 + X[:, 0] ** 2) * rng.normal(size=n)

    (X, y), (X_cal, y_cal), (X_test, y_test) = task(300), task(300), task(3000)
    params = dict(hidden_layer_sizes=(20,), max_iter=300, ensemble_size=2, random_state=0)
    model = LaplaceMLPRegressor(**params).fit(X, y).conformalize(X_cal, y_cal)
    _, std = model.predict(X_test, return_std=True)
    for method in ["conformal", "loo"]:
        lower, upper = model.predict_interval(X_test, confidence=0.9, method=method)
        assert 0.86 <= np.mean((lower <= y_test) & (y_test <= upper)) <= 0.94, method
        assert_allclose((upper - lower) / (2 * std), (upper - lower)[0] / (2 * std[0]))  # one q


def test_held_out_scores_are_the_normalised_residuals_and_refits_discard_them(ensemble, data):
    (X, y), (X_test, y_test) = data
    model = clone(ensemble).fit(X, y).conformalize(X_test[:99], y_test[:99])
    mean, std = model.predict(X_test[:99], return_std=True)
    scores = np.sort(np.abs(y_test[:99] - mean) / std)
    lower, upper = model.predict_interval(X_test[:5], confidence=0.9, method="conformal")
    mean, std = model.predict(X_test[:5], return_std=True)
    assert_allclose(upper - mean, scores[89] * std)  # the ⌈100 · 0.9⌉ = 90th smallest of 99
    assert_allclose(mean - lower, scores[89] * std)
    model.fit(X, y)
    with pytest.raises(ValueError, match="conformalize"):
        model.predict_interval(X_test, method="conformal")


def test_loo_interval_after_partial_fit_and_pickling(data):
    import pickle

    (X, y), (X_test, _) = data
    model = LaplaceMLPRegressor(hidden_layer_sizes=(10,), max_iter=50, random_state=0)
    model.partial_fit(X[:100], y[:100]).partial_fit(X[100:], y[100:])
    assert model._loo_conformity[0].shape == (100, 1)  # the last chunk calibrates
    bounds = model.predict_interval(X_test, method="loo")
    restored = pickle.loads(pickle.dumps(model)).predict_interval(X_test, method="loo")
    assert_allclose(restored, bounds)


def test_conformal_confidence_beyond_what_the_rows_support_is_refused(ensemble, data):
    (X, _), _ = data
    with pytest.raises(ValueError, match="calibration rows"):
        ensemble.predict_interval(X, confidence=0.999, method="loo")  # 200 rows
    with pytest.raises(ValueError, match="method must be"):
        ensemble.predict_interval(X, method="quantile")

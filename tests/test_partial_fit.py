"""partial_fit: sequential Laplace, exact for the linear-Gaussian model."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import norm

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.7 + 0.3 * rng.randn(60)
    return X, y, rng.randn(7, 3) * 2


@pytest.mark.parametrize("structure", ["full", "kron"])
def test_linear_gaussian_partial_fit_equals_fit(linear_data, structure):
    X, y, X_test = linear_data
    params = dict(
        hidden_layer_sizes=(),
        normalize_y=False,
        prior_precision=2.0,
        sigma_noise=0.4,
        hessian_structure=structure,
        max_iter=400,
        learning_rate_init=0.05,
        random_state=0,
    )
    batch = LaplaceMLPRegressor(**params).fit(X, y)
    stream = LaplaceMLPRegressor(**params)
    for chunk in np.array_split(np.arange(len(y)), 10):
        stream.partial_fit(X[chunk], y[chunk])
    mean, std = batch.predict(X_test, return_std=True)
    stream_mean, stream_std = stream.predict(X_test, return_std=True)
    assert_allclose(stream_std, std, rtol=1e-6)
    assert_allclose(stream_mean, mean, atol=1e-3 * np.ptp(mean))


def test_mlp_partial_fit_is_close_to_fit():
    rng = np.random.RandomState(1)
    X = rng.uniform(-2, 2, size=(600, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 / 2 + 0.2 * rng.randn(600)
    X_test = rng.uniform(-2, 2, size=(400, 2))
    y_test = np.sin(2 * X_test[:, 0]) + X_test[:, 1] ** 2 / 2 + 0.2 * rng.randn(400)
    params = dict(hidden_layer_sizes=(20,), max_iter=400, learning_rate_init=1e-2, random_state=0)

    def test_ll(model):
        mean, std = model.predict(X_test, return_std=True)
        return norm.logpdf(y_test, mean, std).mean()

    batch = LaplaceMLPRegressor(**params).fit(X, y)
    stream = LaplaceMLPRegressor(**params)
    for chunk in np.array_split(np.arange(len(y)), 3):
        stream.partial_fit(X[chunk], y[chunk])
    assert abs(test_ll(stream) - test_ll(batch)) < 0.1
    assert stream.n_iter_ == 3 * 400


def test_classifier_partial_fit_needs_and_checks_classes():
    rng = np.random.RandomState(0)
    X = rng.randn(80, 2)
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(5,), max_iter=50, learning_rate_init=1e-2, random_state=0
    )
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    # The first chunk may hold one class only: `classes` says what the problem has.
    first = y == "yes"
    clf.partial_fit(X[first], y[first], classes=["no", "yes"])
    clf.partial_fit(X[~first], y[~first])
    assert_array_equal(clf.classes_, ["no", "yes"])
    assert clf.score(X, y) > 0.8
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:3], np.array(["no", "maybe", "yes"]))
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X, y, classes=["no", "yes", "maybe"])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :1], y)
    assert_array_equal(clf.predict_proba(X), before)


def test_partial_fit_is_only_offered_for_laplace():
    assert hasattr(LaplaceMLPRegressor(), "partial_fit")
    assert not hasattr(LaplaceMLPRegressor(inference="ggn-vi"), "partial_fit")
    assert not hasattr(LaplaceMLPClassifier(inference="ggn-vi"), "partial_fit")

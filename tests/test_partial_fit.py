"""partial_fit: sequential Laplace (and Gaussian GGN-VI), exact for the linear-Gaussian model."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize
from scipy.stats import multivariate_normal, norm

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor


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


@pytest.mark.parametrize("inference", ["laplace", "ggn-vi"])
def test_mlp_partial_fit_is_close_to_fit(inference):
    rng = np.random.RandomState(1)
    X = rng.uniform(-2, 2, size=(600, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 / 2 + 0.2 * rng.randn(600)
    X_test = rng.uniform(-2, 2, size=(400, 2))
    y_test = np.sin(2 * X_test[:, 0]) + X_test[:, 1] ** 2 / 2 + 0.2 * rng.randn(400)
    params = dict(
        hidden_layer_sizes=(20,),
        max_iter=400,
        learning_rate_init=1e-2,
        random_state=0,
        inference=inference,
    )

    def test_ll(model):
        mean, std = model.predict(X_test, return_std=True)
        return norm.logpdf(y_test, mean, std).mean()

    batch = LaplaceMLPRegressor(**params).fit(X, y)
    stream = LaplaceMLPRegressor(**params)
    for chunk in np.array_split(np.arange(len(y)), 3):
        stream.partial_fit(X[chunk], y[chunk])
    assert abs(test_ll(stream) - test_ll(batch)) < 0.1
    # Laplace trains on every chunk; GGN-VI updates the linearised network without training.
    assert stream.n_iter_ == (3 if inference == "laplace" else 1) * 400


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


@pytest.mark.parametrize("structure", ["full", "kron"])
def test_linear_gaussian_vi_streams_the_exact_posterior_mean_after_short_training(
    linear_data, structure
):
    # Five epochs leave the weights far from the MAP; the linearised model's posterior mean is
    # one exact Newton step away, in fit and in each partial_fit (the chunk under the previous
    # posterior as prior), so both reach the closed-form posterior of all the data.
    X, y, X_test = linear_data
    delta, sigma = 2.0, 0.4
    params = dict(
        hidden_layer_sizes=(),
        normalize_y=False,
        prior_precision=delta,
        sigma_noise=sigma,
        hessian_structure=structure,
        max_iter=5,
        learning_rate_init=0.05,
        map_refinement_steps=0,
        random_state=0,
    )
    Phi = np.hstack([X, np.ones((len(y), 1))])
    mean = np.linalg.solve(Phi.T @ Phi / sigma**2 + delta * np.eye(4), Phi.T @ y / sigma**2)
    exact = np.hstack([X_test, np.ones((len(X_test), 1))]) @ mean
    laplace = LaplaceMLPRegressor(inference="laplace", **params).fit(X, y)
    assert np.abs(laplace.predict(X_test) - exact).max() > 0.1  # short training shows
    batch = LaplaceMLPRegressor(inference="ggn-vi", **params).fit(X, y)
    stream = LaplaceMLPRegressor(**params)  # "auto" is "ggn-vi" for homoscedastic noise
    for chunk in np.array_split(np.arange(len(y)), 10):
        stream.partial_fit(X[chunk], y[chunk])
    assert stream.inference_ == "ggn-vi"
    assert_allclose(batch.predict(X_test), exact, rtol=1e-10)
    assert_allclose(stream.predict(X_test), exact, rtol=1e-10)
    assert_allclose(
        stream.predict(X_test, return_std=True)[1], batch.predict(X_test, return_std=True)[1]
    )
    # An ELBO over all rows cannot be updated from a chunk: partial_fit drops it.
    assert hasattr(batch, "elbo_") and not hasattr(stream, "elbo_")


def test_partial_fit_is_offered_where_its_recursion_exists():
    assert hasattr(LaplaceMLPRegressor(), "partial_fit")
    assert hasattr(LaplaceMLPRegressor(inference="ggn-vi"), "partial_fit")
    assert hasattr(LaplaceMLPClassifier(), "partial_fit")
    # Classification GGN-VI iterates over all rows; no recursion updates it from a chunk.
    assert not hasattr(LaplaceMLPClassifier(inference="ggn-vi"), "partial_fit")


def _evidence_optimal_linear_regression(X, y, X_test):
    """Bayesian linear regression on [X, 1] with δ and σ maximising the exact evidence."""
    Phi, Phi_test = (np.hstack([A, np.ones((len(A), 1))]) for A in (X, X_test))

    def negative_log_evidence(log_params):
        delta, sigma = np.exp(log_params)
        covariance = sigma**2 * np.eye(len(y)) + Phi @ Phi.T / delta
        return -multivariate_normal(np.zeros(len(y)), covariance).logpdf(y)

    result = minimize(
        negative_log_evidence,
        np.zeros(2),
        method="Nelder-Mead",
        options=dict(xatol=1e-10, fatol=1e-12, maxiter=4000),
    )
    delta, sigma = np.exp(result.x)
    precision = Phi.T @ Phi / sigma**2 + delta * np.eye(Phi.shape[1])
    mean = np.linalg.solve(precision, Phi.T @ y / sigma**2)
    variance = np.einsum("np,pq,nq->n", Phi_test, np.linalg.inv(precision), Phi_test)
    return Phi_test @ mean, np.sqrt(variance + sigma**2), delta, sigma


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(8, 59), min_size=1, max_size=4, unique=True))
def test_default_partial_fit_of_a_linear_model_is_the_evidence_optimal_posterior(linear_data, cuts):
    # δ and σ by the evidence, as by default: over any chunking into two or more chunks the
    # streamed GGN-VI posterior is the exact one of all rows at the exact evidence maximum,
    # however short the training of the first chunk.
    X, y, X_test = linear_data
    stream = LaplaceMLPRegressor(
        hidden_layer_sizes=(), normalize_y=False, max_iter=20, random_state=0
    )
    for chunk in np.split(np.arange(len(y)), sorted(cuts)):
        stream.partial_fit(X[chunk], y[chunk])
    mean, std, delta, sigma = _evidence_optimal_linear_regression(X, y, X_test)
    assert_allclose(stream.prior_precision_, delta, rtol=1e-5)
    assert_allclose(stream.sigma_noise_, sigma, rtol=1e-5)
    stream_mean, stream_std = stream.predict(X_test, return_std=True)
    assert_allclose(stream_mean, mean, rtol=1e-6, atol=1e-8)
    assert_allclose(stream_std, std, rtol=1e-6)


@pytest.mark.parametrize("structure", ["auto", "kron"])
@pytest.mark.parametrize("case", ["sorted", "shifted"])
def test_default_partial_fit_of_a_network_tracks_a_refit(case, structure):
    # Chunks that disagree with the model so far: sorted inputs (each chunk a new region), or a
    # chunk whose targets are shifted by +3. The streamed default predicts within three noise
    # levels of a default refit on all rows, and never outside the refit's range by more.
    rng = np.random.RandomState(0)
    if case == "sorted":
        X = np.sort(rng.uniform(-3, 3, 200))[:, None]
        y = np.sin(X[:, 0]) + 0.1 * rng.randn(200)
    else:
        X = rng.uniform(-2, 2, (200, 1))
        y = 0.5 * X[:, 0] + 0.1 * rng.randn(200) + np.where(np.arange(200) < 100, 0.0, 3.0)
    # "auto" is the full GGN here; KFAC's quadratic forms only approximate the residuals'.
    stream = LaplaceMLPRegressor(hessian_structure=structure, random_state=0)
    for chunk in np.array_split(np.arange(200), 4 if case == "sorted" else 2):
        stream.partial_fit(X[chunk], y[chunk])
    refit = LaplaceMLPRegressor(hessian_structure=structure, random_state=0).fit(X, y)
    X_grid = np.linspace(X.min(), X.max(), 300)[:, None]
    streamed, refitted = stream.predict(X_grid), refit.predict(X_grid)
    tolerance = 3 * refit.sigma_noise_
    assert np.abs(streamed - refitted).max() < tolerance
    assert streamed.min() > refitted.min() - tolerance
    assert streamed.max() < refitted.max() + tolerance


@pytest.mark.filterwarnings("error:hessian_structure=")
@pytest.mark.parametrize("structure", ["diag", "full", "kron"])
def test_streaming_with_a_diagonal_ggn_warns_that_it_can_forget(structure):
    # On sorted sin(x) in four chunks of 50 the diagonal's streamed predictions end 0.96 from a
    # refit's (three noise levels: 0.61), so it says so; structures with cross terms do not warn.
    rng = np.random.RandomState(0)
    X = np.sort(rng.uniform(-3, 3, 120))[:, None]
    y = np.sin(X[:, 0]) + 0.1 * rng.randn(120)
    model = LaplaceMLPRegressor(hessian_structure=structure, max_iter=200, random_state=0)
    model.partial_fit(X[:60], y[:60])
    if structure == "diag":
        with pytest.warns(UserWarning, match="only the diagonal of the earlier chunks"):
            model.partial_fit(X[60:], y[60:])
    else:
        model.partial_fit(X[60:], y[60:])

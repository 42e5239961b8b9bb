"""Exact oracles: the linear-Gaussian model is Bayesian linear regression, and the GGN is a GGN.

With ``hidden_layer_sizes=()`` and a Gaussian likelihood the Laplace-GGN posterior is exact, so
the posterior, the predictive and the evidence must equal closed-form Bayesian linear regression
at the same prior precision δ and noise σ (MacKay 1992; Bishop, PRML §3.3–3.5).
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.optimize import minimize
from scipy.stats import multivariate_normal
from sklearn.linear_model import BayesianRidge

from skbnn import LaplaceMLPRegressor
from skbnn._evidence import (
    EvidenceTerms,
    log_marginal_likelihood,
    log_marginal_likelihood_gradient,
    log_marginal_likelihood_hessian,
    maximize_log_marginal_likelihood,
)

DELTA, SIGMA = 2.0, 0.4


def with_bias(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


def blr_posterior(X, y, delta, sigma):
    """Closed-form posterior mean and covariance of w ~ N(0, δ⁻¹I), y ~ N(Φw, σ²I)."""
    Phi = with_bias(X)
    cov = np.linalg.inv(Phi.T @ Phi / sigma**2 + delta * np.eye(Phi.shape[1]))
    return cov @ Phi.T @ y / sigma**2, cov


def blr_log_evidence(X, y, delta, sigma):
    Phi = with_bias(X)
    cov = sigma**2 * np.eye(len(y)) + Phi @ Phi.T / delta
    return multivariate_normal(np.zeros(len(y)), cov).logpdf(y)


def linear_regressor(**params):
    defaults = dict(
        hidden_layer_sizes=(),
        normalize_y=False,
        max_iter=3000,
        learning_rate_init=0.05,
        random_state=0,
    )
    return LaplaceMLPRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def fixed_fit(linear_data):
    X, y, _ = linear_data
    return linear_regressor(prior_precision=DELTA, sigma_noise=SIGMA).fit(X, y)


def test_linear_posterior_equals_bayesian_linear_regression(linear_data, fixed_fit):
    X, y, _ = linear_data
    mean, cov = blr_posterior(X, y, DELTA, SIGMA)
    # Parameters are ordered (weight row-major, then bias), like [X, 1] @ w.
    assert_allclose(fixed_fit.posterior_.mean.numpy(), mean, rtol=1e-6, atol=1e-8)
    assert_allclose(fixed_fit.posterior_.covariance().numpy(), cov, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("wrong_delta", [None, DELTA * 1.01])
def test_linear_predictive_equals_closed_form(linear_data, fixed_fit, wrong_delta):
    X, y, X_test = linear_data
    delta = DELTA if wrong_delta is None else wrong_delta
    mean, cov = blr_posterior(X, y, delta, SIGMA)
    Phi = with_bias(X_test)
    std_ref = np.sqrt(np.einsum("ij,jk,ik->i", Phi, cov, Phi) + SIGMA**2)
    y_mean, y_std = fixed_fit.predict(X_test, return_std=True)
    matches = np.allclose(y_std, std_ref, rtol=1e-6, atol=0)
    # The tolerance is tight enough that a 1% error in δ is detected.
    assert matches == (wrong_delta is None)
    if wrong_delta is None:
        spread = np.ptp(Phi @ mean)
        assert_allclose(y_mean, Phi @ mean, atol=1e-6 * spread)


def test_linear_predictive_covariance_and_std_agree(linear_data, fixed_fit):
    _, _, X_test = linear_data
    _, std = fixed_fit.predict(X_test, return_std=True)
    _, cov = fixed_fit.predict(X_test, return_cov=True)
    _, cov_ref = blr_posterior(*linear_data[:2], DELTA, SIGMA)
    Phi = with_bias(X_test)
    assert_allclose(cov, Phi @ cov_ref @ Phi.T + SIGMA**2 * np.eye(len(X_test)), rtol=1e-8)
    assert_allclose(np.sqrt(np.diag(cov)), std, rtol=1e-12)


@pytest.mark.parametrize("wrong_delta", [None, DELTA * 1.01])
def test_linear_evidence_equals_closed_form(linear_data, fixed_fit, wrong_delta):
    X, y, _ = linear_data
    delta = DELTA if wrong_delta is None else wrong_delta
    reference = blr_log_evidence(X, y, delta, SIGMA)
    value = fixed_fit.log_marginal_likelihood_value_
    assert np.isclose(value, reference, rtol=1e-6, atol=0) == (wrong_delta is None)
    assert_allclose(fixed_fit.log_marginal_likelihood(), value, rtol=1e-12)


@pytest.fixture(scope="module")
def closed_form_optimum(linear_data):
    X, y, _ = linear_data

    def negative_evidence(log_params):
        return -blr_log_evidence(X, y, *np.exp(log_params))

    result = minimize(
        negative_evidence,
        [0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10000},
    )
    return np.exp(result.x), -result.fun


def test_evidence_tuning_reaches_closed_form_optimum(linear_data, closed_form_optimum):
    X, y, _ = linear_data
    (delta_opt, sigma_opt), evidence_opt = closed_form_optimum
    reg = linear_regressor().fit(X, y)
    assert_allclose(reg.prior_precision_, delta_opt, rtol=1e-2)
    assert_allclose(reg.sigma_noise_, sigma_opt, rtol=1e-2)
    assert_allclose(reg.log_marginal_likelihood_value_, evidence_opt, rtol=1e-6)


def test_evidence_tuning_matches_bayesian_ridge(linear_data):
    """BayesianRidge's MacKay fixed point (no hyperpriors, bias as a feature) is that optimum."""
    X, y, _ = linear_data
    ridge = BayesianRidge(
        fit_intercept=False,
        alpha_1=0,
        alpha_2=0,
        lambda_1=0,
        lambda_2=0,
        tol=1e-12,
        max_iter=100000,
    ).fit(with_bias(X), y)
    reg = linear_regressor().fit(X, y)
    assert_allclose(reg.prior_precision_, ridge.lambda_, rtol=1e-2)
    assert_allclose(reg.sigma_noise_, 1 / np.sqrt(ridge.alpha_), rtol=1e-2)


def test_normalize_y_is_reported_in_original_units(linear_data):
    """Standardised targets: BLR on (y − ȳ)/s, whose evidence maps back to y by −N log s."""
    X, y, X_test = linear_data
    y_mean, y_scale = y.mean(), y.std()
    reg = linear_regressor(normalize_y=True, prior_precision=DELTA, sigma_noise=SIGMA).fit(X, y)
    y_std = (y - y_mean) / y_scale
    sigma_std = SIGMA / y_scale
    mean, cov = blr_posterior(X, y_std, DELTA, sigma_std)
    Phi = with_bias(X_test)
    std_ref = y_scale * np.sqrt(np.einsum("ij,jk,ik->i", Phi, cov, Phi) + sigma_std**2)
    pred_mean, pred_std = reg.predict(X_test, return_std=True)
    assert_allclose(pred_std, std_ref, rtol=1e-6)
    assert_allclose(pred_mean, y_mean + y_scale * Phi @ mean, rtol=1e-5)
    evidence = blr_log_evidence(X, y_std, DELTA, sigma_std) - len(y) * np.log(y_scale)
    assert_allclose(reg.log_marginal_likelihood_value_, evidence, rtol=1e-6)


def test_sample_weights_are_frequency_weights(linear_data):
    X, y, X_test = linear_data
    weights = np.random.RandomState(1).randint(0, 4, size=len(y))
    weighted = linear_regressor().fit(X, y, sample_weight=weights)
    repeated = linear_regressor().fit(X.repeat(weights, 0), y.repeat(weights))
    assert_allclose(weighted.prior_precision_, repeated.prior_precision_, rtol=1e-8)
    assert_allclose(
        weighted.predict(X_test, return_std=True),
        repeated.predict(X_test, return_std=True),
        rtol=1e-8,
    )


def test_last_layer_laplace_is_linear_regression_on_features():
    """With fixed features φ(x), last-layer Laplace is BLR on [φ(x), 1] (ALGORITHMS T12)."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(80, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.randn(80)
    reg = LaplaceMLPRegressor(
        hidden_layer_sizes=(8,),
        subset_of_weights="last_layer",
        prior_precision=DELTA,
        sigma_noise=SIGMA,
        normalize_y=False,
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    with torch.no_grad():
        features = reg.module_[:-1](torch.tensor(X)).numpy()
    _, cov = blr_posterior(features, y, DELTA, SIGMA)
    assert_allclose(reg.posterior_.covariance().numpy(), cov, rtol=1e-8, atol=1e-12)


# -- the evidence function itself ------------------------------------------------------------------


def random_terms(gaussian=True, n_params=12, seed=0):
    rng = np.random.RandomState(seed)
    return EvidenceTerms(
        eigenvalues=rng.gamma(0.5, 20.0, size=n_params),
        map_norm_sq=3.0,
        n_data=40.0,
        n_outputs=1,
        data_fit=25.0,
        gaussian=gaussian,
        log_noise_ref=0.1,
    )


@pytest.mark.parametrize("point", [(0.5, 0.8), (3.0, 1.5), (1e-3, 0.2)])
def test_evidence_gradient_and_hessian_match_finite_differences(point):
    terms = random_terms()
    x = np.log(point)
    h = 1e-5

    def f(x):
        return log_marginal_likelihood(terms, *np.exp(x))

    def grad(x):
        return np.array(log_marginal_likelihood_gradient(terms, *np.exp(x)))

    eye = np.eye(2)
    numeric_grad = np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye])
    assert_allclose(grad(x), numeric_grad, rtol=1e-6, atol=1e-7)
    numeric_hess = np.array([(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in eye])
    assert_allclose(
        log_marginal_likelihood_hessian(terms, *np.exp(x)), numeric_hess, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("gaussian", [True, False])
def test_evidence_maximiser_is_a_stationary_point(gaussian):
    terms = random_terms(gaussian=gaussian)
    delta, c, value = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None
    )
    gradient = log_marginal_likelihood_gradient(terms, delta, c)
    assert_allclose(gradient, 0.0, atol=1e-8 * terms.n_data)
    perturbations = [(1.01, 1), (0.99, 1)] + ([(1, 1.01), (1, 0.99)] if gaussian else [])
    for dd, dc in perturbations:
        assert log_marginal_likelihood(terms, delta * dd, c * dc) <= value + 1e-12
    # MacKay's fixed point: δ = γ/‖θ‖², c² = R/(NK − γ).
    gamma = np.sum(terms.eigenvalues / c**2 / (terms.eigenvalues / c**2 + delta))
    assert_allclose(delta, gamma / terms.map_norm_sq, rtol=1e-8)
    if gaussian:
        assert_allclose(c**2, terms.data_fit / (terms.n_data - gamma), rtol=1e-8)


def test_logistic_regression_laplace_equals_numpy_newton_reference(logistic_data):
    """One logit, no hidden layer: Bayesian logistic regression with MacKay's probit predictive."""
    from skbnn import LaplaceMLPClassifier

    X, y, X_test = logistic_data
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(),
        prior_precision=DELTA,
        posterior_temperature=1.0,  # the Laplace posterior itself
        far_field_variance=0.0,  # no GP term beyond the training box
        max_iter=3000,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(X, y)

    # Independent reference: Newton's method on the log posterior, then the Hessian.
    Phi = with_bias(X)
    w = np.zeros(3)
    for _ in range(100):
        p = 1 / (1 + np.exp(-Phi @ w))
        precision = Phi.T @ (Phi * (p * (1 - p))[:, None]) + DELTA * np.eye(3)
        w -= np.linalg.solve(precision, Phi.T @ (p - y) + DELTA * w)
    p = 1 / (1 + np.exp(-Phi @ w))
    covariance = np.linalg.inv(Phi.T @ (Phi * (p * (1 - p))[:, None]) + DELTA * np.eye(3))

    assert_allclose(clf.posterior_.mean.numpy(), w, atol=1e-5)
    assert_allclose(clf.posterior_.covariance().numpy(), covariance, atol=1e-5)
    Phi_test = with_bias(X_test)
    m = Phi_test @ w
    v = np.einsum("ij,jk,ik->i", Phi_test, covariance, Phi_test)
    mackay = 1 / (1 + np.exp(-m / np.sqrt(1 + np.pi * v / 8)))
    assert_allclose(clf.predict_proba(X_test)[:, 1], mackay, atol=1e-5)

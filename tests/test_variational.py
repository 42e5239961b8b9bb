"""GGN-VI: exact for the linear-Gaussian model, the Gaussian-VI optimum for logistic regression."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

DELTA, SIGMA = 2.0, 0.4


def with_bias(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


def blr(X, y, delta, sigma):
    Phi = with_bias(X)
    cov = np.linalg.inv(Phi.T @ Phi / sigma**2 + delta * np.eye(Phi.shape[1]))
    evidence = multivariate_normal(
        np.zeros(len(y)), sigma**2 * np.eye(len(y)) + Phi @ Phi.T / delta
    ).logpdf(y)
    return cov @ Phi.T @ y / sigma**2, cov, evidence


def vi_regressor(**params):
    defaults = dict(
        hidden_layer_sizes=(),
        normalize_y=False,
        inference="ggn-vi",
        max_iter=3000,
        learning_rate_init=0.05,
        random_state=0,
    )
    return LaplaceMLPRegressor(**{**defaults, **params})


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_linear_gaussian_vi_is_the_exact_posterior(linear_data, structure):
    X, y, X_test = linear_data
    reg = vi_regressor(prior_precision=DELTA, sigma_noise=SIGMA, hessian_structure=structure)
    reg.fit(X, y)
    mean, cov, evidence = blr(X, y, DELTA, SIGMA)
    Phi = with_bias(X_test)
    y_mean, y_std = reg.predict(X_test, return_std=True)
    if structure == "diag":
        # A diagonal q cannot be the exact (correlated) posterior; it must still be a valid bound.
        assert reg.elbo_ < evidence
        return
    std = np.sqrt(np.einsum("ij,jk,ik->i", Phi, cov, Phi) + SIGMA**2)
    assert_allclose(y_std, std, rtol=1e-5)
    assert_allclose(y_mean, Phi @ mean, atol=1e-3 * np.ptp(Phi @ mean))
    assert_allclose(reg.elbo_, evidence, rtol=1e-4)
    assert_allclose(reg.elbo_, reg.expected_log_likelihood_ - reg.kl_divergence_)


def test_linear_gaussian_elbo_tuning_reaches_closed_form_optimum(linear_data):
    X, y, _ = linear_data

    def negative_evidence(log_params):
        return -blr(X, y, *np.exp(log_params))[2]

    opt = minimize(
        negative_evidence,
        [0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10000},
    )
    reg = vi_regressor().fit(X, y)
    assert_allclose(reg.prior_precision_, np.exp(opt.x[0]), rtol=1e-2)
    assert_allclose(reg.sigma_noise_, np.exp(opt.x[1]), rtol=1e-2)
    assert_allclose(reg.elbo_, -opt.fun, rtol=1e-4)


def gaussian_vi_logistic_reference(Phi, y, delta, n_nodes=32):
    """Gaussian VI for Bayesian logistic regression by direct ELBO maximisation over (μ, chol Σ)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / weights.sum()
    p = Phi.shape[1]
    tril = np.tril_indices(p)

    def unpack(x):
        L = np.zeros((p, p))
        L[tril] = x[p:]
        L[np.diag_indices(p)] = np.exp(np.diag(L))
        return x[:p], L

    def negative_elbo(x):
        mu, L = unpack(x)
        m = Phi @ mu
        s = np.sqrt(np.sum((Phi @ L) ** 2, axis=1))
        f = m[:, None] + s[:, None] * nodes
        expected = np.sum((y[:, None] * f - np.logaddexp(0, f)) @ weights)
        cov = L @ L.T
        kl = 0.5 * (
            delta * np.trace(cov)
            + delta * mu @ mu
            - p
            - p * np.log(delta)
            - 2 * np.sum(np.log(np.diag(L)))
        )
        return kl - expected

    x0 = np.concatenate([np.zeros(p), np.eye(p)[tril] * np.log(0.1)])
    result = minimize(negative_elbo, x0, method="BFGS", options={"gtol": 1e-10, "maxiter": 10000})
    mu, L = unpack(result.x)
    return mu, L @ L.T, -result.fun


def test_logistic_regression_vi_matches_direct_elbo_maximisation():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 2)
    y = (X @ np.array([2.0, -1.0]) + rng.logistic(size=50) > 0).astype(int)
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(),
        inference="ggn-vi",
        prior_precision=DELTA,
        max_iter=3000,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(X, y)
    mu, cov, elbo = gaussian_vi_logistic_reference(with_bias(X), y, DELTA)
    assert_allclose(clf.posterior_.mean.numpy(), mu, atol=1e-4)
    assert_allclose(clf.posterior_.covariance().numpy(), cov, atol=1e-4)
    assert_allclose(clf.elbo_, elbo, rtol=1e-6)
    # VI differs from Laplace here: its mean leaves the MAP.
    laplace = LaplaceMLPClassifier(
        hidden_layer_sizes=(),
        prior_precision=DELTA,
        max_iter=3000,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(X, y)
    assert np.abs(laplace.posterior_.mean.numpy() - mu).max() > 1e-3


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_classification_elbo_increases_and_predictions_are_sound(structure):
    rng = np.random.RandomState(0)
    X = rng.randn(90, 2)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.randn(90), [-0.5, 0.8])
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(8,),
        inference="ggn-vi",
        max_iter=200,
        hessian_structure=structure,
        random_state=0,
    ).fit(X, y)
    assert np.all(np.diff(clf.elbo_curve_) >= -1e-9 * np.abs(clf.elbo_curve_[1:]))
    proba = clf.predict_proba(X)
    assert_allclose(proba.sum(1), 1.0)
    assert clf.score(X, y) > 0.7
    assert np.isfinite(clf.elbo_) and clf.kl_divergence_ > 0

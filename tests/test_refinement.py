"""Levenberg–Marquardt refinement of the trained weights (``map_refinement_steps``).

For linear models the MAP is known in closed form (ridge regression) or by Newton's method
(logistic regression), so a few damped GGN steps after deliberately short training must reach it.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor
from skbnn._curvature import fit_curvature
from skbnn._likelihoods import GaussianLikelihood
from skbnn._network import build_mlp, flat_parameters
from skbnn._posterior import GaussianPosterior
from skbnn._refinement import damped_newton_step, regularized_loss

DELTA, SIGMA = 2.0, 0.4
# Adam for this many epochs stops well short of the linear models' MAP.
SHORT_TRAINING = dict(max_iter=15, learning_rate_init=0.01, random_state=0)


@pytest.fixture(scope="module")
def ridge_data():
    rng = np.random.RandomState(0)
    X = rng.randn(80, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.7 + 0.3 * rng.randn(80)
    return X, y


def ridge_map(X, y, delta, sigma):
    """argmin ½‖y − Φw‖²/σ² + ½δ‖w‖² with Φ = [X, 1] (bias last, as the parameters are ordered)."""
    Phi = np.hstack([X, np.ones((X.shape[0], 1))])
    return np.linalg.solve(Phi.T @ Phi / sigma**2 + delta * np.eye(Phi.shape[1]), Phi.T @ y) / (
        sigma**2
    )


def linear_regressor(steps, **params):
    return LaplaceMLPRegressor(
        hidden_layer_sizes=(),
        inference="laplace",
        normalize_y=False,
        prior_precision=DELTA,
        sigma_noise=SIGMA,
        map_refinement_steps=steps,
        **SHORT_TRAINING,
        **params,
    )


def test_refinement_reaches_the_ridge_solution(ridge_data):
    X, y = ridge_data
    expected = ridge_map(X, y, DELTA, SIGMA)
    trained = linear_regressor(steps=0).fit(X, y).posterior_.mean.numpy()
    refined = linear_regressor(steps=20).fit(X, y).posterior_.mean.numpy()
    assert np.abs(trained - expected).max() > 1e-2  # the training alone is short of the MAP
    assert_allclose(refined, expected, rtol=1e-8, atol=1e-10)


def test_refinement_reaches_the_logistic_regression_map(logistic_data):
    X, y, _ = logistic_data

    # Independent reference: Newton's method on the log posterior.
    Phi = np.hstack([X, np.ones((100, 1))])
    w = np.zeros(3)
    for _ in range(100):
        p = 1 / (1 + np.exp(-Phi @ w))
        precision = Phi.T @ (Phi * (p * (1 - p))[:, None]) + DELTA * np.eye(3)
        w -= np.linalg.solve(precision, Phi.T @ (p - y) + DELTA * w)

    def fit(steps):
        return LaplaceMLPClassifier(
            hidden_layer_sizes=(),
            prior_precision=DELTA,
            map_refinement_steps=steps,
            **SHORT_TRAINING,
        ).fit(X, y)

    assert np.abs(fit(0).posterior_.mean.numpy() - w).max() > 1e-2
    assert_allclose(fit(20).posterior_.mean.numpy(), w, atol=1e-6)


@pytest.fixture(scope="module")
def small_network():
    generator = torch.Generator().manual_seed(0)
    module = build_mlp(3, [5], 2, "tanh", dtype=torch.float64, generator=generator)
    X = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(30, 2, generator=generator, dtype=torch.float64)
    weights = torch.rand(30, generator=generator, dtype=torch.float64) + 0.5
    names = [name for name, _ in module.named_parameters()]
    likelihood = GaussianLikelihood(torch.tensor([0.5, 2.0], dtype=torch.float64))
    curvature = fit_curvature(module, likelihood, X, weights, names, "full")
    posterior = GaussianPosterior(
        mean=flat_parameters(module, names),
        curvature=curvature,
        prior_precision=0.8,
        noise_scale=1.3,
        param_names=names,
        layer_sizes=(20, 12),
    )
    return module, likelihood, (X, y, weights), posterior


def test_regularized_loss_gradient_matches_finite_differences(small_network):
    module, likelihood, data, posterior = small_network
    theta = posterior.mean + 0.1 * torch.randn(
        posterior.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    _, gradient = regularized_loss(module, likelihood, *data, posterior, theta, gradient=True)
    h = 1e-6
    numeric = torch.tensor(
        [
            (
                regularized_loss(module, likelihood, *data, posterior, theta + h * e)[0]
                - regularized_loss(module, likelihood, *data, posterior, theta - h * e)[0]
            )
            / (2 * h)
            for e in torch.eye(posterior.n_params, dtype=torch.float64)
        ]
    )
    assert_allclose(gradient.numpy(), numeric.numpy(), rtol=1e-6, atol=1e-7)


def test_regularized_loss_is_the_weighted_nll_plus_the_layerwise_prior(small_network):
    module, likelihood, (X, y, weights), posterior = small_network
    posterior = replace(posterior, prior_precision=np.array([0.5, 3.0]))
    nll = likelihood.negative_log_likelihood(module(X), y, posterior.noise_scale)
    theta = posterior.mean
    prior = 0.5 * 0.5 * theta[:20].square().sum() + 0.5 * 3.0 * theta[20:].square().sum()
    expected = float((weights * nll).sum().detach() + prior)
    loss, _ = regularized_loss(module, likelihood, X, y, weights, posterior, theta)
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("damping", [0.0, 0.7])
def test_damped_newton_step_solves_the_damped_dense_system(small_network, damping):
    _, _, _, posterior = small_network
    gradient = torch.randn(
        posterior.n_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    V = posterior.curvature.to_eigenbasis(torch.eye(posterior.n_params, dtype=torch.float64))
    ggn = (V * posterior.curvature.eigenvalues) @ V.T
    precision = ggn / posterior.noise_scale**2 + torch.diag(
        posterior.prior_precision_vector + damping
    )
    expected = torch.linalg.solve(precision, gradient)
    step = damped_newton_step(posterior, gradient, damping)
    assert_allclose(step.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)


def test_refinement_never_lowers_the_evidence():
    """The trained point is a candidate, so the kept point's evidence is at least its evidence."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(150, 2))
    y = np.sin(2 * X[:, 0]) * X[:, 1] + 0.05 * rng.randn(150)

    def evidence(steps):
        reg = LaplaceMLPRegressor(
            hidden_layer_sizes=(16,),
            inference="laplace",
            map_refinement_steps=steps,
            max_iter=200,
            random_state=0,
        ).fit(X, y)
        return reg.log_marginal_likelihood_value_

    assert evidence(20) >= evidence(0) - 1e-9


def test_auto_steps_follow_the_training_length():
    auto = LaplaceMLPRegressor()
    assert auto._map_refinement_steps(3000) == 20  # full-batch training of small data
    assert auto._map_refinement_steps(50) == 5  # minibatches of large data: fewer passes
    assert LaplaceMLPRegressor(noise="heteroscedastic")._map_refinement_steps(3000) == 20
    assert LaplaceMLPRegressor(map_refinement_steps=3)._map_refinement_steps(3000) == 3
    assert LaplaceMLPClassifier()._map_refinement_steps(3000) == 0


def test_early_stopping_keeps_its_validation_weights(ridge_data):
    X, y = ridge_data
    with_steps = linear_regressor(steps=20, early_stopping=True).fit(X, y)
    without = linear_regressor(steps=0, early_stopping=True).fit(X, y)
    assert_allclose(with_steps.posterior_.mean.numpy(), without.posterior_.mean.numpy(), rtol=0)

"""The fit recipe's steps (skbnn._fitting) and the 'auto' rules (skbnn._auto).

Each step is checked on its own: the online-evidence schedule, the evidence checkpoint, the
Laplace step's refusal of non-finite curvature, the validation loss during a warm-up, and that
the whole recipe on a linear-Gaussian problem ends at the closed-form Bayesian linear regression.
"""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from skbnn import TrainingDivergedError, _auto
from skbnn._fitting import (
    ONLINE_EVIDENCE_UPDATES,
    EvidenceCheckpoint,
    EvidenceSchedule,
    EvidenceSettings,
    FitSettings,
    Hyperparameters,
    Problem,
    fit_networks,
    train_with_online_evidence,
)
from skbnn._laplace import laplace_at
from skbnn._likelihoods import GaussianLikelihood, HeteroscedasticGaussianLikelihood
from skbnn._network import build_mlp, flat_parameters
from skbnn._training import TrainingConfig


def problem_of(X, y, hidden=(), n_outputs=1, likelihood=None, seed=0):
    module = build_mlp(
        X.shape[1],
        hidden,
        n_outputs,
        "tanh",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(seed),
    )
    likelihood = likelihood or GaussianLikelihood(torch.ones(1, dtype=torch.float64))
    names = [name for name, _ in module.named_parameters()]
    weights = torch.ones(X.shape[0], dtype=torch.float64)
    return Problem(module, likelihood, names, "full", torch.tensor(X), torch.tensor(y), weights)


def settings_of(max_iter, *, online=True, fixed=(None, None), warm_up=0, refinement=0, lr=0.05):
    return FitSettings(
        training=TrainingConfig(max_iter=max_iter, batch_size=10**6, learning_rate_init=lr),
        evidence=EvidenceSettings(
            fixed_prior_precision=fixed[0],
            fixed_noise_scale=fixed[1],
            layerwise=False,
            online=online,
            keep_best=False,
        ),
        refinement_steps=refinement,
        inference="laplace",
        warm_up_epochs=warm_up,
    )


# -- the online-evidence schedule ------------------------------------------------------------------


@pytest.mark.parametrize("n_epochs", [20, 100, 3000])
def test_schedule_refreshes_about_twenty_times_after_the_burn_in(n_epochs):
    schedule = EvidenceSchedule(n_epochs, warm_up_epochs=0, online=True)
    epochs = [e for e in range(1, n_epochs + 1) if schedule.refreshes_after(e)]
    assert epochs[0] == math.ceil(0.1 * n_epochs)
    assert n_epochs not in epochs  # the post-hoc step covers the last epoch
    assert abs(len(epochs) - ONLINE_EVIDENCE_UPDATES) <= 0.2 * ONLINE_EVIDENCE_UPDATES + 1
    assert len(set(np.diff(epochs))) == 1  # evenly spaced


def test_schedule_waits_for_the_warm_up_and_does_nothing_post_hoc():
    schedule = EvidenceSchedule(100, warm_up_epochs=30, online=True)
    refreshes = [e for e in range(1, 101) if schedule.refreshes_after(e)]
    assert min(refreshes) >= 30
    assert [e for e in range(1, 101) if schedule.warming_up(e)] == list(range(1, 31))
    posthoc = EvidenceSchedule(100, warm_up_epochs=0, online=False)
    assert not any(posthoc.refreshes_after(e) for e in range(1, 101))


# -- the evidence checkpoint ----------------------------------------------------------------------


def test_checkpoint_keeps_the_best_offer_and_restores_it():
    X = np.random.RandomState(0).randn(10, 2)
    problem = problem_of(X, X[:, :1])
    best = EvidenceCheckpoint()
    first = flat_parameters(problem.module).clone()
    best.offer(-5.0, problem, Hyperparameters(2.0, 0.5))
    with torch.no_grad():
        problem.module[0].weight.add_(1.0)
    best.offer(-7.0, problem, Hyperparameters(3.0, 0.7))  # worse: ignored
    assert best.restore(problem) == Hyperparameters(2.0, 0.5)
    assert torch.equal(flat_parameters(problem.module), first)


# -- the Laplace step ------------------------------------------------------------------------------


def test_laplace_step_refuses_non_finite_outputs_at_the_weights():
    """A finite training loss can still leave float64 outputs that overflow: a clear error."""
    X = np.random.RandomState(0).randn(10, 2)
    problem = problem_of(X, X[:, :1], hidden=(3,))
    with torch.no_grad():
        problem.module[0].weight.fill_(1e300)
        problem.module[2].weight.fill_(1e300)
    with pytest.raises(TrainingDivergedError, match="outputs or curvature at the trained weights"):
        laplace_at(problem)


# -- training with a warm-up -----------------------------------------------------------------------


def test_validation_during_the_warm_up_scores_the_likelihood():
    """The warm-up trains on the mean alone; the validation score must stay the likelihood's."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(40, 1))
    y = np.sin(X) + 0.1 * (1 + np.abs(X)) * rng.randn(40, 1)
    likelihood = HeteroscedasticGaussianLikelihood()
    problem = problem_of(X, y, hidden=(8,), n_outputs=2, likelihood=likelihood)
    settings = settings_of(15, online=False, fixed=(1.0, 1.0), warm_up=15)
    settings = FitSettings(
        **{**settings.__dict__, "training": TrainingConfig(15, 40, 0.01, early_stopping=True)}
    )
    validation = (problem.X, problem.y, problem.weights)
    (network,) = train_with_online_evidence(
        [problem], settings, [torch.Generator().manual_seed(0)], validation
    )
    training = network.training
    with torch.no_grad():
        nll = likelihood.negative_log_likelihood(problem.module(problem.X), problem.y).mean()
    assert training.best_validation_score == pytest.approx(-float(nll), rel=1e-12)
    assert training.best_validation_score == max(training.validation_scores)


# -- the whole recipe ------------------------------------------------------------------------------


def test_recipe_on_a_linear_model_is_bayesian_linear_regression():
    """No hidden layer, fixed δ and σ: the posterior is the closed-form one (refinement reaches
    the exact MAP, the GGN is ΦᵀΦ/σ²)."""
    rng = np.random.RandomState(1)
    X = rng.randn(30, 2)
    y = X @ np.array([[1.5], [-0.5]]) + 0.3 + 0.2 * rng.randn(30, 1)
    delta, sigma = 2.0, 0.2
    problem = problem_of(
        X, y, likelihood=GaussianLikelihood(torch.tensor([sigma], dtype=torch.float64))
    )
    settings = settings_of(50, online=False, fixed=(delta, 1.0), refinement=5)
    (fitted,) = fit_networks([problem], settings, [torch.Generator().manual_seed(0)], [None])
    Phi = np.hstack([X, np.ones((30, 1))])
    precision = Phi.T @ Phi / sigma**2 + delta * np.eye(3)
    mean = np.linalg.solve(precision, Phi.T @ y[:, 0] / sigma**2)
    assert_allclose(fitted.posterior.mean.numpy(), mean, rtol=1e-8)
    assert_allclose(fitted.posterior.covariance().numpy(), np.linalg.inv(precision), rtol=1e-8)
    assert fitted.scores[-1] == pytest.approx(
        settings.evidence.log_evidence(fitted.terms, fitted.hyperparameters)
    )


# -- the 'auto' rules ------------------------------------------------------------------------------


def test_auto_rules_resolve_as_documented():
    assert _auto.batch_size("auto", 1024) == 1024
    assert _auto.batch_size("auto", 1025) == _auto.AUTO_MINIBATCH_SIZE
    assert _auto.batch_size(64, 10) == 10
    assert _auto.max_iter("auto", 500, 500) == 3000
    assert _auto.max_iter("auto", 10**6, 256) == 20
    assert _auto.max_iter(7, 500, 500) == 7
    assert _auto.hessian_structure("auto", 2500, layerwise=False) == "full"
    assert _auto.hessian_structure("auto", 2501, layerwise=False) == "kron"
    assert _auto.hessian_structure("auto", 10, layerwise=True) == "kron"
    assert _auto.hessian_structure("diag", 10, layerwise=False) == "diag"
    assert _auto.map_refinement_steps("auto", 3000) == 20
    assert _auto.map_refinement_steps("auto", 40) == 4
    assert _auto.ensemble_size("auto", 2000, 1, streaming=False) == 3
    assert _auto.ensemble_size("auto", 2001, 1, streaming=False) == 1
    assert _auto.ensemble_size("auto", 100, 0, streaming=False) == 1
    assert _auto.ensemble_size("auto", 100, 1, streaming=True) == 1
    assert _auto.regression_inference("auto", "homoscedastic") == "ggn-vi"
    assert _auto.regression_inference("auto", "heteroscedastic") == "laplace"
    assert _auto.keep_best_evidence("auto", "heteroscedastic") is True
    assert _auto.warm_up_epochs(True, 100) == 30 and _auto.warm_up_epochs(False, 100) == 0

"""Leave-one-out cavities of the Laplace posterior, and the posterior temperature they choose.

The cavities are compared with dense references: the posterior precision minus the row's share of
each GGN structure, inverted densely. The Newton step behind the cavity mean is compared with
refitting Bayesian logistic regression without the row.
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.datasets import make_classification

from skbnn import LaplaceMLPClassifier
from skbnn._curvature import fit_curvature, ggn_matrix
from skbnn._jacobians import jacobians
from skbnn._kron import KronCurvature
from skbnn._likelihoods import BernoulliLikelihood, CategoricalLikelihood, GaussianLikelihood
from skbnn._links import probit_proba
from skbnn._loo import loo_logits, output_curvature_and_gradient
from skbnn._network import build_mlp, layer_sizes
from skbnn._posterior import GaussianPosterior
from skbnn._predictive import glm_outputs

DELTA = 0.7


def make_problem(n_classes, structure, n=15, seed=0, gaussian_outputs=2):
    """A random tanh network, labelled data with weights in {0, 0.5, 1, 2} and its posterior.

    ``n_classes=None`` gives ``gaussian_outputs`` Gaussian outputs with noise scale c = 1.7 and
    a GGN-VI mean μ ≠ θ* instead.
    """
    gen = torch.Generator().manual_seed(seed)
    k = gaussian_outputs if n_classes is None else 1 if n_classes == 2 else n_classes
    module = build_mlp(3, (4,), k, "tanh", dtype=torch.float64, generator=gen)
    X = 2 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    weights = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64).repeat(n)[:n]
    theta = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    if n_classes is None:
        y = torch.randn(n, k, generator=gen, dtype=torch.float64)
        likelihood = GaussianLikelihood(torch.tensor([0.5, 2.0][:k], dtype=torch.float64))
        c, mean = 1.7, theta + 0.1 * torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
    else:
        labels = torch.randint(n_classes, (n,), generator=gen)
        y = labels.to(torch.float64) if n_classes == 2 else labels
        likelihood = BernoulliLikelihood() if n_classes == 2 else CategoricalLikelihood()
        c, mean = 1.0, theta
    names = [name for name, _ in module.named_parameters()]
    curvature = fit_curvature(module, likelihood, X, weights, names, structure)
    posterior = GaussianPosterior(
        mean=mean,
        curvature=curvature,
        prior_precision=torch.tensor([DELTA, 2 * DELTA]) if structure != "full" else DELTA,
        noise_scale=c,
        param_names=names,
        layer_sizes=layer_sizes(module, names),
        linearization_point=None if mean is theta else theta,
    )
    return module, likelihood, X, y, weights, posterior


def reference_cavities(module, likelihood, X, y, weights, posterior, row_share):
    """Cavities from the dense precision minus ``row_share(J_i, Λ_i)`` for each row."""
    f, J = jacobians(module, X, posterior.param_names)
    if posterior.mean_offset is not None:
        f = f + J @ posterior.mean_offset  # the linearised mean
    L, g = output_curvature_and_gradient(likelihood, f, y, posterior.noise_scale)
    precision = torch.linalg.inv(posterior.covariance())
    means, covs = [], []
    for i in range(X.shape[0]):
        unit = min(float(weights[i]), 1.0)
        Lambda = L[i] @ L[i].T / posterior.noise_scale**2
        cavity = torch.linalg.inv(precision - unit * row_share(J[i], Lambda))
        cov = J[i] @ cavity @ J[i].T
        means.append(f[i] - unit * cov @ g[i])
        covs.append(cov)
    return torch.stack(means), torch.stack(covs)


# What each structure's cavity removes from the precision: the row's GGN, or its diagonal.
ROW_SHARES = {
    "full": lambda J, Lambda: J.T @ Lambda @ J,
    "diag": lambda J, Lambda: torch.diag(torch.diagonal(J.T @ Lambda @ J)),
}


@pytest.mark.parametrize("structure", sorted(ROW_SHARES))
@pytest.mark.parametrize("n_classes", [2, 3, None])
def test_cavity_is_the_dense_precision_without_the_rows_share(structure, n_classes):
    problem = make_problem(n_classes, structure)
    module, likelihood, X, y, weights, posterior = problem
    mean, cov = loo_logits(module, posterior, likelihood, X, y, weights)
    ref_mean, ref_cov = reference_cavities(*problem, ROW_SHARES[structure])
    assert_allclose(cov, ref_cov, rtol=1e-8, atol=1e-10)
    assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "n_classes, gaussian_outputs",
    [(2, None), (3, None), (None, 2), (None, 1)],
    ids=["binary", "three classes", "two gaussian outputs", "one gaussian output"],
)
def test_kron_cavity_removes_the_rows_kfac_share(n_classes, gaussian_outputs):
    """Per layer, (G_l − u G_{l,i}) ⊗ A_l: the output factor built from the bias Jacobian. With
    one output (binary, one Gaussian output) the row's share is rank one and removed in closed
    form; with more, by an eigendecomposition per row."""
    module, likelihood, X, y, weights, posterior = make_problem(
        n_classes, "kron", gaussian_outputs=gaussian_outputs
    )
    mean, cov = loo_logits(module, posterior, likelihood, X, y, weights)
    _, input_factors = posterior.curvature.factors()
    bias_columns = []  # the bias Jacobian is ∂f/∂s_l, the back-propagated output of layer l
    start = 0
    for size, lin in zip(posterior.layer_sizes, [module[0], module[2]], strict=True):
        bias_columns.append(slice(start + size - lin.out_features, start + size))
        start += size

    def share(J, Lambda):
        blocks = []
        for layer, columns in enumerate(bias_columns):
            G_row = J[:, columns].T @ Lambda @ J[:, columns]
            remaining = KronCurvature.from_factors([G_row], [input_factors[layer]])
            blocks.append(remaining.dense())
        return torch.block_diag(*blocks)

    ref_mean, ref_cov = reference_cavities(module, likelihood, X, y, weights, posterior, share)
    assert_allclose(cov, ref_cov, rtol=1e-7, atol=1e-10)
    assert_allclose(mean, ref_mean, rtol=1e-7, atol=1e-10)


def test_full_ggn_of_the_posterior_contains_each_row():
    """The precision is δI plus the GGN of all rows, so removing one row's GGN leaves a prior."""
    module, likelihood, X, _, weights, posterior = make_problem(3, "full")
    ggn = ggn_matrix(module, likelihood, X, weights, posterior.param_names)
    assert_allclose(
        torch.linalg.inv(posterior.covariance()) - DELTA * torch.eye(posterior.n_params),
        ggn,
        atol=1e-8,
    )


def test_cavity_matches_refitting_logistic_regression_without_the_row():
    """The cavity's logits at x_i approximate the GLM predictive of a refit without row i."""
    X, y = make_classification(n_samples=80, n_features=3, n_redundant=0, random_state=0)
    params = dict(hidden_layer_sizes=(), prior_precision=1.0, map_refinement_steps=30)
    clf = LaplaceMLPClassifier(**params, random_state=0).fit(X, y)
    y_t = torch.tensor(y, dtype=torch.float64)
    X_t = torch.tensor(X, dtype=torch.float64)
    mean, cov = loo_logits(
        clf.module_, clf.posterior_, clf._likelihood, X_t, y_t, torch.ones(len(y))
    )
    for i in [0, 1, 2]:
        weights = np.ones(len(y))
        weights[i] = 0.0
        refit = clone(clf).fit(X, y, sample_weight=weights)
        ref_mean, ref_cov = glm_outputs(refit.module_, refit.posterior_, X_t[i : i + 1])
        with torch.no_grad():
            shift = float(ref_mean[0, 0] - clf.module_(X_t[i : i + 1])[0, 0])
        assert abs(shift) > 1e-3  # leaving the row out moves its logit
        assert_allclose(float(mean[i, 0]), float(ref_mean[0, 0]), rtol=0, atol=0.05 * abs(shift))
        # The cavity keeps the other rows' curvature at θ*, so its variance is only close; but
        # closer than the full-data posterior's.
        assert_allclose(float(cov[i, 0, 0]), float(ref_cov[0, 0, 0]), rtol=0.05)
        _, full_cov = glm_outputs(clf.module_, clf.posterior_, X_t[i : i + 1])
        assert abs(cov[i, 0, 0] - ref_cov[0, 0, 0]) < abs(full_cov[0, 0, 0] - ref_cov[0, 0, 0])


def test_temperature_one_is_the_laplace_predictive_and_zero_the_map():
    X, y = make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0, random_state=1
    )
    clf = LaplaceMLPClassifier((6,), max_iter=200, random_state=0, posterior_temperature=1.0)
    clf.fit(X, y)
    X_t = torch.tensor(X, dtype=torch.float64)
    mean, cov = glm_outputs(clf.module_, clf.posterior_, X_t)
    assert_allclose(clf.predict_proba(X), probit_proba(mean, cov).numpy(), rtol=1e-12)
    cold = clone(clf).set_params(posterior_temperature=0.0).fit(X, y)
    assert_allclose(cold.predict_proba(X)[:, 1], torch.sigmoid(mean[:, 0]).numpy(), rtol=1e-12)
    assert_allclose(cold.kernel(X[:5]), 0.0, atol=0)


def test_loo_temperature_is_the_best_of_the_grid():
    X, y = make_classification(
        n_samples=90, n_features=5, n_informative=3, n_classes=3, random_state=2
    )
    clf = LaplaceMLPClassifier((8,), max_iter=300, random_state=0).fit(X, y)
    assert 0.0 <= clf.posterior_temperature_ <= 1.0
    for temperature in [0.0, 0.1, 1.0]:
        fixed = clone(clf).set_params(posterior_temperature=temperature).fit(X, y)
        assert fixed.posterior_temperature_ == temperature
        assert clf.loo_log_likelihood_ >= fixed.loo_log_likelihood_
    # The predictive and the kernel use the chosen temperature.
    one = clone(clf).set_params(posterior_temperature=1.0).fit(X, y)
    assert_allclose(
        clf.kernel(X[:4]), clf.posterior_temperature_ * one.kernel(X[:4]), rtol=1e-10, atol=1e-14
    )


def test_gaussian_cavity_is_the_exact_leave_one_out_posterior_of_a_linear_model():
    """Bayesian linear regression with noise std c σ and a GGN-VI mean μ ≠ θ*: the cavity is the
    closed-form posterior of the other rows."""
    gen = torch.Generator().manual_seed(1)
    n, d, delta, sigma, c = 12, 3, 0.8, 0.5, 1.7
    module = build_mlp(d, (), 1, "tanh", dtype=torch.float64, generator=gen)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3
    y = y + 0.4 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    weights = torch.ones(n, dtype=torch.float64)
    likelihood = GaussianLikelihood(torch.tensor([sigma], dtype=torch.float64))
    names = [name for name, _ in module.named_parameters()]
    design = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)  # [weight, bias]
    noise_var = (c * sigma) ** 2

    def exact_posterior(keep):
        precision = delta * torch.eye(d + 1, dtype=torch.float64)
        precision = precision + design[keep].T @ design[keep] / noise_var
        covariance = torch.linalg.inv(precision)
        return covariance @ design[keep].T @ y[keep, 0] / noise_var, covariance

    mean, _ = exact_posterior(torch.ones(n, dtype=torch.bool))
    posterior = GaussianPosterior(
        mean=mean,
        curvature=fit_curvature(module, likelihood, X, weights, names, "full"),
        prior_precision=delta,
        noise_scale=c,
        param_names=names,
        layer_sizes=layer_sizes(module, names),
        linearization_point=torch.cat([p.detach().reshape(-1) for p in module.parameters()]),
    )
    cavity_mean, cavity_cov = loo_logits(module, posterior, likelihood, X, y, weights)
    for i in range(n):
        keep = torch.arange(n) != i
        ref_mean, ref_cov = exact_posterior(keep)
        assert_allclose(cavity_mean[i, 0], design[i] @ ref_mean, rtol=1e-9)
        assert_allclose(cavity_cov[i, 0, 0], design[i] @ ref_cov @ design[i], rtol=1e-9)

"""Per-layer prior precisions: the evidence, its derivatives and maximiser, and the estimators."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from skbnn import LaplaceMLPRegressor
from skbnn._curvature import fit_curvature
from skbnn._evidence import (
    EvidenceTerms,
    log_marginal_likelihood,
    log_marginal_likelihood_gradient,
    log_marginal_likelihood_hessian,
    maximize_log_marginal_likelihood,
)
from skbnn._likelihoods import GaussianLikelihood
from skbnn._network import build_mlp, layer_sizes
from skbnn._posterior import GaussianPosterior

SIZES = (5, 3, 4)


def layered_terms(gaussian=True):
    rng = np.random.RandomState(0)
    return EvidenceTerms(
        eigenvalues=rng.gamma(0.5, 20.0, size=sum(SIZES)),
        map_norm_sq=6.0,
        n_data=40.0,
        n_outputs=1,
        data_fit=25.0,
        gaussian=gaussian,
        group_sizes=SIZES,
        group_norms_sq=(1.0, 2.0, 3.0),
    )


@pytest.mark.parametrize("point", [([0.5, 2.0, 0.1], 0.8), ([3.0, 3.0, 3.0], 1.5)])
def test_layerwise_evidence_derivatives_match_finite_differences(point):
    terms = layered_terms()
    x = np.log(np.append(*point))
    h = 1e-5

    def f(x):
        return log_marginal_likelihood(terms, np.exp(x[:-1]), np.exp(x[-1]))

    def grad(x):
        d_delta, d_c = log_marginal_likelihood_gradient(terms, np.exp(x[:-1]), np.exp(x[-1]))
        return np.append(d_delta, d_c)

    eye = np.eye(len(x))
    assert_allclose(
        grad(x), [(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye], rtol=1e-6, atol=1e-7
    )
    numeric = np.array([(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in eye])
    hessian = log_marginal_likelihood_hessian(terms, np.exp(x[:-1]), np.exp(x[-1]))
    assert_allclose(hessian, numeric, rtol=1e-5, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(hessian) < 0)


def test_layerwise_maximiser_is_macKays_fixed_point_per_layer():
    terms = layered_terms()
    delta, c, value = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None, layerwise=True
    )
    assert delta.shape == (3,)
    a = terms.eigenvalues / c**2
    blocks = np.split(a / (a + np.repeat(delta, SIZES)), np.cumsum(SIZES)[:-1])
    gammas = np.array([b.sum() for b in blocks])
    assert_allclose(delta, gammas / np.array(terms.group_norms_sq), rtol=1e-8)
    assert_allclose(c**2, terms.data_fit / (terms.n_data - gammas.sum()), rtol=1e-8)
    scalar_delta, _, scalar_value = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None
    )
    # More freedom can only raise the maximum, and equal δs reproduce the scalar evidence.
    assert value >= scalar_value - 1e-9
    assert_allclose(
        log_marginal_likelihood(terms, np.full(3, scalar_delta), c),
        log_marginal_likelihood(terms, scalar_delta, c),
        rtol=1e-12,
    )


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_layerwise_posterior_matches_dense_structured_precision(structure):
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(3, (4,), 2, "tanh", dtype=torch.float64, generator=gen)
    X = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    weights = torch.ones(30, dtype=torch.float64)
    likelihood = GaussianLikelihood(torch.tensor([0.5, 1.0], dtype=torch.float64))
    names = [n for n, _ in module.named_parameters()]
    curvature = fit_curvature(module, likelihood, X, weights, names, structure)
    sizes = layer_sizes(module, names)
    delta, c = np.array([0.3, 2.0]), 1.7
    posterior = GaussianPosterior(
        torch.zeros(curvature.n_params, dtype=torch.float64),
        curvature,
        delta,
        c,
        names,
        layer_sizes=sizes,
    )
    precision = curvature.dense() / c**2 + torch.diag(
        torch.repeat_interleave(torch.tensor(delta), torch.tensor(sizes))
    )
    assert_allclose(posterior.covariance(), torch.linalg.inv(precision), rtol=1e-8, atol=1e-12)
    assert_allclose(posterior.log_det_precision(), torch.logdet(precision), rtol=1e-10)
    J = torch.randn(4, 2, curvature.n_params, dtype=torch.float64)
    assert_allclose(
        posterior.functional_covariance(J),
        J @ torch.linalg.inv(precision) @ J.transpose(1, 2),
        rtol=1e-8,
        atol=1e-12,
    )


def test_layerwise_estimator_tunes_one_precision_per_layer():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(120, 2))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.randn(120)
    reg = LaplaceMLPRegressor(
        hidden_layer_sizes=(8, 8), prior_structure="layerwise", max_iter=100, random_state=0
    ).fit(X, y)
    assert reg.hessian_structure_ == "kron"
    assert reg.prior_precision_.shape == (3,)
    assert np.all(np.isfinite(reg.predict_std(X)))
    with pytest.raises(ValueError, match="layerwise"):
        LaplaceMLPRegressor(hessian_structure="full", prior_structure="layerwise").fit(X, y)

"""The GGN, its structures and the posterior operations against dense references."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch.func import functional_call, hessian, jacrev

from skbnn import _jacobians
from skbnn._curvature import (
    DenseGGN,
    DiagCurvature,
    FullCurvature,
    fit_curvature,
    ggn_matrix,
    ggn_spectrum,
)
from skbnn._likelihoods import BernoulliLikelihood, CategoricalLikelihood, GaussianLikelihood
from skbnn._links import mc_proba, probit_proba
from skbnn._network import build_mlp, last_layer_parameter_names
from skbnn._posterior import GaussianPosterior

LIKELIHOODS = {
    "gaussian": (lambda: GaussianLikelihood(torch.tensor([0.5, 2.0], dtype=torch.float64)), 2),
    "bernoulli": (BernoulliLikelihood, 1),
    "categorical": (CategoricalLikelihood, 3),
}


def make_problem(name, n=23, seed=0, hidden=(5, 4)):
    make_likelihood, k = LIKELIHOODS[name]
    gen = torch.Generator().manual_seed(seed)
    module = build_mlp(3, hidden, k, "tanh", dtype=torch.float64, generator=gen)
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) * 3
    return module, make_likelihood(), X, weights


def dense_reference_ggn(module, likelihood, X, weights, names):
    """Σ w Jᵀ Λ J from jacrev on the whole data set and Λ from autograd of the log-likelihood."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    sub = {k: params[k] for k in names}

    def outputs(theta):
        return functional_call(module, {**params, **theta}, (X,))

    jac = jacrev(outputs)(sub)
    J = torch.cat([jac[k].flatten(2) for k in names], dim=2)  # (n, K, P)
    f = outputs(sub).detach()
    y = {
        "gaussian": lambda: f + 1.0,
        "bernoulli": lambda: (f[:, 0] > 0).double(),
        "categorical": lambda: f.argmax(-1),
    }[likelihood.name]()
    ggn = torch.zeros(J.shape[-1], J.shape[-1], dtype=torch.float64)
    for i in range(len(X)):
        # Λ = ∂²(−log p)/∂f², which for these likelihoods does not depend on y.
        yi = y[i : i + 1]
        lam = hessian(lambda fi, yi=yi: likelihood.negative_log_likelihood(fi[None], yi)[0])(f[i])
        ggn += weights[i] * J[i].T @ lam @ J[i]
    return ggn


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
@pytest.mark.parametrize("last_layer", [False, True])
def test_batched_ggn_equals_dense_jacrev_reference(name, last_layer, monkeypatch):
    module, likelihood, X, weights = make_problem(name)
    names = (
        last_layer_parameter_names(module)
        if last_layer
        else [n for n, _ in module.named_parameters()]
    )
    reference = dense_reference_ggn(module, likelihood, X, weights, names)
    # Force several Jacobian blocks so that the accumulation over batches is exercised.
    monkeypatch.setattr(_jacobians, "_JACOBIAN_BLOCK_ELEMENTS", 7 * 3 * reference.shape[0])
    assert_allclose(ggn_matrix(module, likelihood, X, weights, names), reference, atol=1e-12)
    diagonal = ggn_matrix(module, likelihood, X, weights, names, diagonal=True)
    assert_allclose(diagonal, torch.diagonal(reference), atol=1e-12)


def test_ggn_is_the_hessian_for_logistic_regression():
    """For a model linear in θ the GGN is the exact Hessian of the negative log-likelihood."""
    module, likelihood, X, weights = make_problem("bernoulli", hidden=())
    y = (X[:, 0] > 0).double()
    params = {k: v.detach() for k, v in module.named_parameters()}
    names = list(params)

    def loss(flat):
        theta, start = {}, 0
        for k in names:
            theta[k] = flat[start : start + params[k].numel()].view_as(params[k])
            start += params[k].numel()
        f = functional_call(module, theta, (X,))
        return (weights * likelihood.negative_log_likelihood(f, y)).sum()

    flat = torch.cat([params[k].reshape(-1) for k in names])
    assert_allclose(
        ggn_matrix(module, likelihood, X, weights, names), hessian(loss)(flat), atol=1e-12
    )


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_low_rank_eigenbasis_equals_dense_decomposition(name):
    """With fewer rows than parameters the Gram-matrix route gives the same GGN and posterior."""
    module, likelihood, X, weights = make_problem(name, n=4)
    names = [n for n, _ in module.named_parameters()]
    low_rank = fit_curvature(module, likelihood, X, weights, names, "full")
    dense = FullCurvature.from_matrix(ggn_matrix(module, likelihood, X, weights, names))
    assert low_rank.eigenvalues.shape[0] < low_rank.n_params
    assert_allclose(low_rank.dense(), dense.dense(), atol=1e-10)
    mean = torch.zeros(low_rank.n_params, dtype=torch.float64)
    posteriors = [GaussianPosterior(mean, c, 0.7, 1.3, names) for c in (low_rank, dense)]
    assert_allclose(posteriors[0].covariance(), posteriors[1].covariance(), atol=1e-10)
    assert_allclose(
        posteriors[0].log_det_precision(), posteriors[1].log_det_precision(), rtol=1e-10
    )
    J = torch.randn(5, 2, low_rank.n_params, dtype=torch.float64)
    assert_allclose(
        posteriors[0].functional_covariance(J), posteriors[1].functional_covariance(J), atol=1e-10
    )


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
@pytest.mark.parametrize("n", [4, 40])  # fewer rows than parameters (the Gram route), and more
def test_spectrum_without_eigenvectors_is_the_curvatures_spectrum(structure, n):
    module, likelihood, X, weights = make_problem("categorical", n=n)
    names = [n for n, _ in module.named_parameters()]
    reference = fit_curvature(module, likelihood, X, weights, names, structure).spectrum()
    spectrum = ggn_spectrum(module, likelihood, X, weights, names, structure)
    assert spectrum.shape == reference.shape
    scale = float(reference.max())
    assert_allclose(spectrum.sort().values, reference.sort().values, rtol=0, atol=1e-12 * scale)
    if structure == "full":  # and the dense GGN's own eigenvalues
        dense = torch.linalg.eigvalsh(dense_reference_ggn(module, likelihood, X, weights, names))
        assert_allclose(spectrum.sort().values, dense.clamp_min(0), rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("n", [4, 40])  # through the Gram matrix (Woodbury), and G itself
def test_dense_ggn_damped_solve_is_the_dense_solve(n):
    module, likelihood, X, weights = make_problem("gaussian", n=n)
    names = [n for n, _ in module.named_parameters()]
    ggn = DenseGGN.at(module, likelihood, X, weights, names)
    assert (ggn.factor is not None) == (2 * n < 49)  # 49 weights, two outputs per row
    dense = dense_reference_ggn(module, likelihood, X, weights, names)
    v = torch.randn(dense.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noise_scale, shift = 0.7, 0.3
    system = dense / noise_scale**2 + shift * torch.eye(dense.shape[0], dtype=torch.float64)
    expected = torch.linalg.solve(system, v)
    assert_allclose(ggn.damped_solve(v, noise_scale, shift), expected, rtol=1e-9, atol=1e-12)


def _clamped_shifted_solve(matrix, shift, rhs):
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ ((vectors.T @ rhs) / (values.clamp_min(0.0) + shift))


@pytest.mark.parametrize("route", ["matrix", "factor"])
def test_dense_ggn_damped_solve_survives_a_shift_below_round_off(route):
    """A PSD matrix whose zero eigenvalue round-off has pushed below −shift (as in a fit whose
    weights blew up: eigenvalues near 1e25, shifts near 1e-8; here scaled down so that the
    reference is accurate): the Cholesky factorisation fails, and the solve goes through the
    eigenbasis with the eigenvalues floored at 0 instead of raising torch's error."""
    gen = torch.Generator().manual_seed(3)
    Q = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))[0]
    A = (Q * torch.tensor([1e4, 1.0, -1e-3, 0.0], dtype=torch.float64)) @ Q.T
    shift = 1e-4
    with pytest.raises(torch.linalg.LinAlgError):  # what a plain factorisation does here
        torch.linalg.cholesky(A + shift * torch.eye(4, dtype=torch.float64))
    if route == "matrix":
        v = torch.randn(4, generator=gen, dtype=torch.float64)
        step = DenseGGN(matrix=A).damped_solve(v, 1.0, shift)
        expected = _clamped_shifted_solve(A, shift, v)
    else:  # A stands for the Gram matrix of a factor M (4 × 6)
        M = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        v = torch.randn(6, generator=gen, dtype=torch.float64)
        step = DenseGGN(factor=M, gram=A).damped_solve(v, 1.0, shift)
        expected = (v - M.T @ _clamped_shifted_solve(A, shift, M @ v)) / shift
    assert torch.isfinite(step).all()
    assert_allclose(step, expected, rtol=1e-8, atol=1e-9 * float(expected.abs().max()))


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_posterior_operations_match_dense_precision(structure):
    module, likelihood, X, weights = make_problem("categorical")
    names = [n for n, _ in module.named_parameters()]
    curvature = fit_curvature(module, likelihood, X, weights, names, structure)
    delta, noise_scale = 0.3, 2.0
    posterior = GaussianPosterior(
        torch.zeros(curvature.n_params, dtype=torch.float64), curvature, delta, noise_scale, names
    )
    ggn = ggn_matrix(module, likelihood, X, weights, names, diagonal=structure == "diag")
    ggn = torch.diag(ggn) if structure == "diag" else ggn
    precision = ggn / noise_scale**2 + delta * torch.eye(ggn.shape[0], dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    assert_allclose(posterior.covariance(), covariance, rtol=1e-8, atol=1e-12)
    assert_allclose(posterior.log_det_precision(), torch.logdet(precision), rtol=1e-10)
    J = torch.randn(6, 3, ggn.shape[0], dtype=torch.float64)
    assert_allclose(
        posterior.functional_covariance(J),
        J @ covariance @ J.transpose(1, 2),
        rtol=1e-8,
        atol=1e-12,
    )
    cross = posterior.functional_cross_covariance(J[:2], J[2:])
    assert_allclose(
        cross, torch.einsum("akp,pq,blq->akbl", J[:2], covariance, J[2:]), rtol=1e-8, atol=1e-12
    )
    samples = posterior.sample(40000, torch.Generator().manual_seed(0))
    assert_allclose(torch.cov(samples.T), covariance, atol=0.05 * covariance.diag().max())


def test_diag_structure_is_the_diagonal_of_the_full_ggn():
    module, likelihood, X, weights = make_problem("gaussian")
    names = [n for n, _ in module.named_parameters()]
    full = fit_curvature(module, likelihood, X, weights, names, "full")
    diag = fit_curvature(module, likelihood, X, weights, names, "diag")
    assert isinstance(diag, DiagCurvature)
    assert_allclose(diag.dense(), torch.diag(torch.diagonal(full.dense())), atol=1e-10)


def exact_binary_predictive(mean, var, n_nodes=200):
    """∫ sigmoid(f) N(f; m, v) df by Gauss–Hermite quadrature."""
    nodes, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    f = mean[:, None] + np.sqrt(var)[:, None] * nodes
    return (1 / (1 + np.exp(-f))) @ w / math.sqrt(2 * math.pi)


def test_mc_predictive_converges_and_probit_is_close():
    mean = torch.tensor([[-3.0], [-0.5], [0.0], [1.0], [4.0]], dtype=torch.float64)
    var = torch.tensor([0.1, 2.0, 5.0, 10.0, 1.0], dtype=torch.float64)
    cov = var[:, None, None]
    exact = exact_binary_predictive(mean[:, 0].numpy(), var.numpy())
    gen = torch.Generator().manual_seed(0)
    errors = [
        np.abs(mc_proba(mean, cov, s, gen)[:, 1].numpy() - exact).max() for s in (100, 100000)
    ]
    assert errors[1] < 0.01
    assert errors[1] < errors[0]
    assert np.abs(probit_proba(mean, cov)[:, 1].numpy() - exact).max() < 0.02
    assert_allclose(probit_proba(mean[2:3], cov[2:3])[:, 1], 0.5)
    # No uncertainty: the predictive is the plain link.
    assert_allclose(probit_proba(mean, 0 * cov)[:, 1], torch.sigmoid(mean[:, 0]), rtol=1e-12)

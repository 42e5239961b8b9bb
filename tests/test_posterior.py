"""GaussianPosterior against dense numpy: P = s·G + δI (s = 1/c²) and Σ = P⁻¹ for each structure.

Each case builds a curvature object from known matrices and the same GGN G as a dense (P, P)
array, independently of the curvature's own ``dense()``: a random PSD matrix (full), a low-rank
factor M with G = MᵀM (full, fewer eigenvectors than parameters), a diagonal, and Kronecker
factors per layer, permuted from the [W | b] row-major order into the parameter order
(W row-major, then b) by an explicit index map.
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.linalg import block_diag

from skbnn._curvature import DiagCurvature, FullCurvature
from skbnn._kron import KronCurvature
from skbnn._posterior import GaussianPosterior

NOISE_SCALE = 1.7  # c; the likelihood curvature is scaled by s = 1/c²
KRON_LAYERS = [(3, 2), (2, 3)]  # (out, in) of each Linear layer: 3·(2+1) + 2·(3+1) = 17 params


def random_psd(rng, n, rank=None):
    factor = rng.randn(rank or n, n)
    return factor.T @ factor


def kron_permutation(out, inp):
    """perm[p] = index in the [W | b] (out, inp+1) row-major order of parameter p (W, then b)."""
    weight = [i * (inp + 1) + j for i in range(out) for j in range(inp)]
    bias = [i * (inp + 1) + inp for i in range(out)]
    return np.array(weight + bias)


def kron_case(rng):
    G = [random_psd(rng, out) for out, _ in KRON_LAYERS]
    A = [random_psd(rng, inp + 1) for _, inp in KRON_LAYERS]
    blocks = []
    for (out, inp), g, a in zip(KRON_LAYERS, G, A, strict=True):
        perm = kron_permutation(out, inp)
        blocks.append(np.kron(g, a)[np.ix_(perm, perm)])
    curvature = KronCurvature.from_factors(
        [torch.tensor(g) for g in G], [torch.tensor(a) for a in A]
    )
    return curvature, block_diag(*blocks), tuple(out * (inp + 1) for out, inp in KRON_LAYERS)


def make_case(structure, seed=0):
    """(curvature, dense G, layer sizes) for one structure."""
    rng = np.random.RandomState(seed)
    if structure == "full":
        G = random_psd(rng, 7)
        return FullCurvature.from_matrix(torch.tensor(G)), G, None
    if structure == "low-rank":
        M = rng.randn(3, 8)
        return FullCurvature.from_factor(torch.tensor(M)), M.T @ M, None
    if structure == "diag":
        d = rng.gamma(1.0, 2.0, size=9)
        d[4] = 0.0  # a parameter the data do not determine
        return DiagCurvature.from_diagonal(torch.tensor(d)), np.diag(d), (2, 4, 3)
    if structure == "kron":
        return kron_case(rng)
    raise ValueError(structure)


STRUCTURES = ["full", "low-rank", "diag", "kron"]
# (structure, δ): scalar δ for all; per-layer δ where the eigenbasis does not mix layers.
PRIORS = [(s, 0.6) for s in STRUCTURES] + [
    ("diag", np.array([0.3, 2.0, 5.0])),
    ("kron", np.array([0.4, 3.0])),
]


def build(structure, delta, seed=0, linearization_point=False):
    curvature, G, sizes = make_case(structure, seed)
    P = G.shape[0]
    rng = np.random.RandomState(seed + 100)
    mean = torch.tensor(rng.randn(P))
    point = torch.tensor(rng.randn(P)) if linearization_point else None
    posterior = GaussianPosterior(
        mean,
        curvature,
        delta,
        NOISE_SCALE,
        [f"p{i}" for i in range(P)],
        linearization_point=point,
        layer_sizes=sizes if np.ndim(delta) else None,
    )
    delta_vector = np.repeat(delta, sizes) if np.ndim(delta) else np.full(P, delta)
    precision = G / NOISE_SCALE**2 + np.diag(delta_vector)
    return posterior, precision


def case_id(case):
    structure, delta = case
    return f"{structure}-{'layerwise' if np.ndim(delta) else 'scalar'}"


@pytest.fixture(params=PRIORS, ids=case_id)
def case(request):
    return build(*request.param)


def test_low_rank_case_has_fewer_eigenvectors_than_parameters():
    posterior, _ = build("low-rank", 0.6)
    assert posterior.curvature.eigenvalues.shape[0] == 3 < posterior.n_params == 8


def test_covariance_is_the_inverse_precision(case):
    posterior, precision = case
    assert_allclose(posterior.covariance().numpy(), np.linalg.inv(precision), rtol=1e-9, atol=1e-12)


def test_precision_and_covariance_vector_products(case):
    posterior, precision = case
    v = np.random.RandomState(1).randn(4, 2, precision.shape[0])  # any leading batch shape
    covariance = np.linalg.inv(precision)
    assert_allclose(
        posterior.precision_vector_product(torch.tensor(v)).numpy(),
        v @ precision,
        rtol=1e-10,
        atol=1e-12,
    )
    assert_allclose(
        posterior.covariance_vector_product(torch.tensor(v)).numpy(),
        v @ covariance,
        rtol=1e-9,
        atol=1e-12,
    )


def test_log_det_precision(case):
    posterior, precision = case
    sign, log_det = np.linalg.slogdet(precision)
    assert sign > 0
    assert_allclose(posterior.log_det_precision(), log_det, rtol=1e-11)


def test_precision_eigenvalues_are_the_spectrum(case):
    """The r stored values plus δ for each of the P − r directions outside the eigenbasis."""
    posterior, precision = case
    stored = posterior.precision_eigenvalues.numpy()
    missing = precision.shape[0] - stored.shape[0]
    if missing:  # only the low-rank full GGN, which takes a scalar δ
        stored = np.concatenate([stored, np.full(missing, float(posterior.prior_precision))])
    assert_allclose(np.sort(stored), np.linalg.eigvalsh(precision), rtol=1e-10, atol=1e-12)
    if posterior.structure == "diag":  # the eigenbasis is the parameter basis, in order
        assert_allclose(posterior.precision_eigenvalues.numpy(), np.diag(precision), rtol=1e-14)


def test_functional_covariances(case):
    posterior, precision = case
    rng = np.random.RandomState(2)
    P = precision.shape[0]
    covariance = np.linalg.inv(precision)
    J, J_other = rng.randn(5, 2, P), rng.randn(5, 2, P)
    reference = np.einsum("nkp,pq,nlq->nkl", J, covariance, J)
    tolerances = dict(rtol=1e-9, atol=1e-12)
    assert_allclose(
        posterior.functional_covariance(torch.tensor(J)).numpy(), reference, **tolerances
    )
    assert_allclose(
        posterior.functional_covariance(torch.tensor(J), torch.tensor(J_other)).numpy(),
        np.einsum("nkp,pq,nlq->nkl", J, covariance, J_other),
        **tolerances,
    )
    J_a, J_b = rng.randn(3, 2, P), rng.randn(4, 2, P)
    assert_allclose(
        posterior.functional_cross_covariance(torch.tensor(J_a), torch.tensor(J_b)).numpy(),
        np.einsum("akp,pq,blq->akbl", J_a, covariance, J_b),
        **tolerances,
    )


def test_mean_offset_is_relative_to_the_linearization_point():
    laplace, _ = build("full", 0.6)
    assert laplace.mean_offset is None
    moved, _ = build("kron", np.array([0.4, 3.0]), linearization_point=True)
    assert_allclose(
        moved.mean_offset.numpy(), (moved.mean - moved.linearization_point).numpy(), rtol=0
    )
    assert moved.mean_offset.abs().min() > 0


N_SAMPLES = 40000


@pytest.mark.parametrize("prior", PRIORS, ids=case_id)
def test_sample_moments_approach_the_posterior(prior):
    """The empirical mean and covariance of N draws, within 5 standard errors of each entry.

    For Gaussian samples the sample covariance has Var(Σ̂_ij) = (Σ_ii Σ_jj + Σ_ij²)/N and the
    sample mean Var(μ̂_i) = Σ_ii/N; a 5σ bound on each of the ≤ 17² entries has a false-failure
    chance below 1e-4 (and the seed is fixed).
    """
    posterior, precision = build(*prior)
    covariance = np.linalg.inv(precision)
    samples = posterior.sample(N_SAMPLES, torch.Generator().manual_seed(0)).numpy()
    assert samples.shape == (N_SAMPLES, precision.shape[0])
    variances = np.diag(covariance)
    mean_error = np.abs(samples.mean(0) - posterior.mean.numpy())
    assert np.all(mean_error < 5 * np.sqrt(variances / N_SAMPLES))
    cov_se = np.sqrt((np.outer(variances, variances) + covariance**2) / N_SAMPLES)
    cov_error = np.abs(np.cov(samples.T) - covariance)
    assert np.all(cov_error < 5 * cov_se), (cov_error / cov_se).max()


def test_sampling_is_determined_by_the_generator():
    posterior, _ = build("low-rank", 0.6)
    first = posterior.sample(5, torch.Generator().manual_seed(3))
    again = posterior.sample(5, torch.Generator().manual_seed(3))
    other = posterior.sample(5, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)

"""The classification links far from the data: log-space twins, huge and zero covariances.

References are computed in 50-digit arithmetic with mpmath (a dependency of torch, through sympy).
"""

import math

import mpmath
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from skbnn._links import (
    _logit_samples,
    bridge_log_proba,
    bridge_proba,
    link_samples,
    mc_log_proba,
    mc_proba,
    probit_log_proba,
    probit_proba,
)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
mpmath.mp.dps = 50
N_SAMPLES = 64


def mc(link):
    return lambda mean, cov: link(mean, cov, N_SAMPLES, torch.Generator().manual_seed(0))


LINKS = {
    "probit": (probit_proba, probit_log_proba),
    "bridge": (bridge_proba, bridge_log_proba),
    "mc": (mc(mc_proba), mc(mc_log_proba)),
}


def random_problem(n_classes, mean_scale=1.0, cov_scale=1.0, n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mean = mean_scale * torch.randn(n, n_classes, generator=gen, dtype=torch.float64)
    A = torch.randn(n, n_classes, n_classes, generator=gen, dtype=torch.float64)
    cov = A @ A.mT + 1e-3 * torch.eye(n_classes, dtype=torch.float64)
    return mean, cov_scale * cov


# -- high-precision references ---------------------------------------------------------------------


def mp_log_softmax(logits):
    """log softmax of a list of mpf logits (one logit f: the two-class model (0, f))."""
    logits = [mpmath.mpf(0), *logits] if len(logits) == 1 else list(logits)
    top = max(logits)
    log_total = top + mpmath.log(mpmath.fsum(mpmath.exp(f - top) for f in logits))
    return [f - log_total for f in logits]


def mp_probit_log_proba(mean, cov):
    return [
        mp_log_softmax(
            [
                mpmath.mpf(m) / mpmath.sqrt(1 + mpmath.pi / 8 * mpmath.mpf(c[k][k]))
                for k, m in enumerate(ms)
            ]
        )
        for ms, c in zip(mean.tolist(), cov.tolist(), strict=True)
    ]


def mp_bridge_log_proba(mean, cov):
    """The bridge's log Dirichlet mean from its formula, with the projection along 1."""
    out = []
    for ms, c in zip(mean.tolist(), cov.tolist(), strict=True):
        if len(ms) == 1:
            ms, c = (
                [-ms[0] / 2, ms[0] / 2],
                [[c[0][0] / 4, -c[0][0] / 4], [-c[0][0] / 4, c[0][0] / 4]],
            )
        k = len(ms)
        m = mpmath.matrix([mpmath.mpf(x) for x in ms])
        V = mpmath.matrix([[mpmath.mpf(x) for x in row] for row in c])
        v_one = V * mpmath.matrix([1] * k)
        total = sum(v_one)
        if total > 0:
            m = m - v_one * (sum(m) / total)
            V = V - v_one * v_one.T / total
        log_neg = mpmath.log(mpmath.fsum(mpmath.exp(-x) for x in m))
        log_alpha = [
            mpmath.log(1 - mpmath.mpf(2) / k + mpmath.exp(m[i] - 2 * mpmath.log(k) + log_neg))
            - mpmath.log(max(V[i, i], mpmath.mpf(1e-12)))
            for i in range(k)
        ]
        out.append(mp_log_softmax(log_alpha))
    return out


def mp_mc_log_proba(logits):
    """log of the mean over draws of softmax, from the draws' logits (batch, S, K)."""
    out = []
    for row in logits.tolist():
        per_draw = [mp_log_softmax([mpmath.mpf(f) for f in draw]) for draw in row]
        out.append(
            [
                mpmath.log(mpmath.fsum(mpmath.exp(d[c]) for d in per_draw) / len(per_draw))
                for c in range(len(per_draw[0]))
            ]
        )
    return out


def as_array(values):
    return np.array([[float(v) for v in row] for row in values])


# -- the log-space twins ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [1, 2, 3, 5])
@pytest.mark.parametrize("link", sorted(LINKS))
def test_log_links_are_the_log_of_the_links_on_ordinary_inputs(link, n_classes):
    proba, log_proba = LINKS[link]
    mean, cov = random_problem(n_classes, mean_scale=1.5)
    # Near log p = 0 only an absolute error is meaningful: log(p) itself is only that accurate.
    assert_allclose(log_proba(mean, cov), torch.log(proba(mean, cov)), rtol=1e-12, atol=1e-15)


EXTREME_MEANS = {
    1: [[-1e6], [40.0], [-745.5], [1e300]],
    3: [[1e6, 0.0, -1e6], [800.0, -800.0, 0.0], [1e300, -1e300, 3.0], [-2e3, 2e3, 1.0]],
}


@pytest.mark.parametrize("n_classes", [1, 3])
@pytest.mark.parametrize("cov_scale", [0.0, 1e-3, 1.0, 1e12])
def test_probit_log_proba_far_from_the_data(n_classes, cov_scale):
    """Where a class probability underflows to 0, its logarithm is finite and correct."""
    mean = torch.tensor(EXTREME_MEANS[n_classes], dtype=torch.float64)
    cov = cov_scale * random_problem(n_classes, n=4)[1]
    log_p = probit_log_proba(mean, cov)
    assert torch.isfinite(log_p).all()
    assert_allclose(log_p, as_array(mp_probit_log_proba(mean, cov)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_classes", [1, 3])
@pytest.mark.parametrize("cov_scale", [1e-3, 1.0, 1e12])
def test_bridge_log_proba_far_from_the_data(n_classes, cov_scale):
    # Logits of 1e150 rather than 1e300: the projection along 1 multiplies logits by variances.
    mean = torch.tensor(EXTREME_MEANS[n_classes], dtype=torch.float64).clamp(-1e150, 1e150)
    cov = cov_scale * random_problem(n_classes, n=4)[1]
    log_p = bridge_log_proba(mean, cov)
    assert torch.isfinite(log_p).all()
    assert_allclose(log_p, as_array(mp_bridge_log_proba(mean, cov)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_classes", [1, 3])
@pytest.mark.parametrize("mean_scale", [1.0, 1e3, 1e6])
def test_mc_log_proba_is_the_log_mean_exp_of_the_draws(n_classes, mean_scale):
    mean, cov = random_problem(n_classes, mean_scale=mean_scale, n=3)
    log_p = mc_log_proba(mean, cov, 16, torch.Generator().manual_seed(0))
    logits = _logit_samples(mean, cov, 16, torch.Generator().manual_seed(0))
    assert torch.isfinite(log_p).all()
    assert_allclose(log_p, as_array(mp_mc_log_proba(logits)), rtol=1e-12, atol=1e-15)


# -- huge and zero covariances ---------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [1, 2, 3])
@pytest.mark.parametrize("mean_scale", [0.0, 1.0, 1e6, 1e20])
@pytest.mark.parametrize("cov_scale", [0.0, 1e-30, 1e12, 1e300])
@pytest.mark.parametrize("link", sorted(LINKS))
def test_links_are_sound_for_huge_and_zero_covariances(link, n_classes, mean_scale, cov_scale):
    """Finite probabilities summing to 1 and finite log-probabilities that agree with them."""
    mean, cov = random_problem(n_classes, n=6, seed=1)
    mean = mean_scale * (mean + 0.5)  # logits whose sum is far from 0
    if cov_scale != 1.0:
        cov = cov_scale * cov / cov.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None]
    proba, log_proba = LINKS[link]
    p, log_p = proba(mean, cov), log_proba(mean, cov)
    assert torch.isfinite(p).all() and bool(((p >= 0) & (p <= 1)).all())
    assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    assert torch.isfinite(log_p).all() and bool((log_p <= 0).all())
    assert_allclose(torch.logsumexp(log_p, -1), 0.0, atol=1e-12)
    visible = p > 1e-250  # where p is a normal number, exp(log p) is p
    assert_allclose(torch.exp(log_p)[visible], p[visible], rtol=1e-9)


def test_probit_with_infinite_variance_is_uniform():
    mean = torch.tensor([[3.0], [-1e300]], dtype=torch.float64)
    cov = torch.full((2, 1, 1), float("inf"), dtype=torch.float64)
    assert_allclose(probit_proba(mean, cov), 0.5)
    assert_allclose(probit_log_proba(mean, cov), np.log(0.5))


@pytest.mark.parametrize("n_classes", [1, 3, 4])
def test_bridge_with_zero_covariance_is_the_softmax(n_classes):
    """No uncertainty (posterior temperature 0): the bridge is the MAP network's softmax."""
    mean = random_problem(n_classes, mean_scale=2.0, n=5)[0]
    zero = torch.zeros(5, n_classes, n_classes, dtype=torch.float64)
    logits = torch.cat([torch.zeros_like(mean), mean], -1) if n_classes == 1 else mean
    assert_allclose(bridge_proba(mean, zero), torch.softmax(logits, -1), rtol=1e-14)
    assert_allclose(bridge_log_proba(mean, zero), torch.log_softmax(logits, -1), rtol=1e-14)


@pytest.mark.parametrize("factor", [2.0**-20, 2.0**20, 2.0**332, 2.0**963])
def test_bridge_does_not_depend_on_the_scale_of_the_covariance(factor):
    """α ∝ 1/v, so the Dirichlet mean is the same for V and cV, also where cV is huge."""
    mean, cov = random_problem(3, mean_scale=1e20, n=8, seed=2)
    mean[:4] /= 1e19  # and some moderate logits
    expected = bridge_proba(mean, cov)
    assert_allclose(bridge_proba(mean, factor * cov), expected, rtol=1e-12, atol=1e-300)
    assert_allclose(bridge_log_proba(mean, factor * cov), bridge_log_proba(mean, cov), rtol=1e-12)


def test_mc_square_root_survives_covariances_that_are_not_positive_definite():
    """Cholesky where it exists (the usual draws, bit for bit), a clamped eigen-root elsewhere."""
    mean, cov = random_problem(3, n=4, seed=3)
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    cov[1] = (Q * torch.tensor([1.0, 1e-3, -1e-6], dtype=torch.float64)) @ Q.T  # round-off
    cov[2] = 0.0
    cov[3] = 1e300 * torch.ones(3, 3, dtype=torch.float64)  # rank one, huge
    p = mc_proba(mean, cov, N_SAMPLES, torch.Generator().manual_seed(0))
    assert torch.isfinite(p).all()
    assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    alone = mc_proba(mean[:1], cov[:1], N_SAMPLES, torch.Generator().manual_seed(0))
    assert torch.equal(p[:1], alone)  # a positive definite row keeps its Cholesky draws

    # The indefinite row draws with Q diag(√max(λ, 0)), from the same standard normal draws.
    z = torch.randn((N_SAMPLES, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values, vectors = torch.linalg.eigh(cov[1])
    logits = mean[1] + z @ (vectors * values.clamp_min(0).sqrt()).T
    assert_allclose(p[1], torch.softmax(logits, -1).mean(0), rtol=1e-12)
    samples = link_samples(mean, cov, N_SAMPLES, torch.Generator().manual_seed(0))
    assert_allclose(samples.mean(1), p, rtol=1e-12)


def test_bridge_of_ordinary_covariances_is_unchanged_bit_for_bit():
    """Rows with variances within 2^±64 go through the arithmetic of the unscaled formula."""

    def unscaled_bridge(mean, cov):  # the formula before huge covariances were scaled
        k = mean.shape[-1]
        ones = torch.ones(k, dtype=mean.dtype)
        v_one = cov @ ones
        total = (v_one @ ones).clamp_min(1e-300)[:, None]
        mean = mean - v_one * (mean @ ones)[:, None] / total
        cov = cov - v_one[:, :, None] * v_one[:, None, :] / total[:, :, None]
        variance = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(1e-12)
        log_alpha = torch.logaddexp(
            torch.log(torch.tensor(1 - 2 / k, dtype=mean.dtype)),
            mean - 2 * math.log(k) + torch.logsumexp(-mean, dim=-1, keepdim=True),
        ) - torch.log(variance)
        return torch.softmax(log_alpha, dim=-1)

    for n_classes, cov_scale in [(2, 1.0), (3, 1e-9), (3, 1.0), (5, 1e15)]:
        mean, cov = random_problem(n_classes, mean_scale=3.0, cov_scale=cov_scale, n=64)
        assert torch.equal(bridge_proba(mean, cov), unscaled_bridge(mean, cov))

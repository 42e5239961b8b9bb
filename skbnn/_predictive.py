"""The linearised (GLM) predictive of one network, and the mixture of several.

Linearised at θ*, the network is f_lin(x; θ) = f(x; θ*) + J(x)(θ − θ*), J = ∂f/∂θ at θ*; under a
Gaussian posterior N(μ, Σ) its outputs are Gaussian (Immer, Korzepa & Bauer 2021):

    f(x) ~ N(f(x; θ*) + J(x)(μ − θ*),  J(x) Σ J(x)ᵀ),

jointly over points with cross-covariances J(x) Σ J(x')ᵀ (the GP view of Khan et al. 2019).
μ = θ* for Laplace; GGN-VI moves the mean off the MAP. How J Σ Jᵀ is formed is the curvature's
business (:meth:`Curvature.glm_outputs`: per-sample Jacobians in blocks of rows, or KFAC's
rank-one layer form with no Jacobian at all); joint draws push posterior samples through J.

An ensemble of Laplace approximations (Eschenhagen et al. 2021) predicts with the mixture
(1/M) Σ_m N(μ_m, Σ_m), one Gaussian per network. Its mean is μ̄ = (1/M) Σ_m μ_m and, by the law
of total covariance, its covariance is (1/M) Σ_m Σ_m + (1/M) Σ_m (μ_m − μ̄)(μ_m − μ̄)ᵀ: the
networks' own uncertainty plus their disagreement. The mixture functions take the networks'
values stacked along a leading axis of length M.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtr, ndtri
from torch import nn

from skbnn._jacobians import jacobian_blocks


def glm_outputs(module: nn.Module, posterior, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearised outputs at X (float64): means f + J(μ − θ*) (n, K), covariances J Σ Jᵀ (n, K, K).

    The posterior's curvature chooses how (:meth:`skbnn._curvature_base.Curvature.glm_outputs`).
    """
    return posterior.curvature.glm_outputs(module, posterior, X)


def jacobian_glm_outputs(module, posterior, X) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`glm_outputs` through per-sample Jacobians, a block of rows at a time."""
    means, covs = [], []
    offset = posterior.mean_offset
    for _, f, J in jacobian_blocks(module, X, posterior.param_names):
        means.append(f if offset is None else f + J @ offset)
        covs.append(posterior.functional_covariance(J))
    return torch.cat(means), torch.cat(covs)


def glm_jacobians(module, posterior, X) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearised means f + J(μ − θ*) (n, K) and the Jacobians J (n, K, P) at X."""
    means, jacobian_rows = [], []
    offset = posterior.mean_offset
    for _, f, J in jacobian_blocks(module, X, posterior.param_names):
        means.append(f if offset is None else f + J @ offset)
        jacobian_rows.append(J)
    return torch.cat(means), torch.cat(jacobian_rows)


def glm_samples(module, posterior, X, n_samples: int, generator) -> torch.Tensor:
    """Joint draws (n, K, S) of the linearised outputs at X: f + J(θ_s − θ*), θ_s ~ N(μ, Σ)."""
    centre = (
        posterior.mean if posterior.linearization_point is None else posterior.linearization_point
    )
    offsets = posterior.sample(n_samples, generator) - centre  # (S, P), from θ*
    blocks = [
        f[:, :, None] + torch.einsum("nkp,sp->nks", J, offsets)
        for _, f, J in jacobian_blocks(module, X, posterior.param_names)
    ]
    return torch.cat(blocks)


def mixture_mean_and_variance(
    means: torch.Tensor, variances: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise mean and variance of the mixture of N(means[m], variances[m]), m < M."""
    mean = means.mean(0)
    return mean, variances.mean(0) + ((means - mean) ** 2).mean(0)


def mixture_cross_covariance(
    means_x: torch.Tensor, means_y: torch.Tensor, covariances: torch.Tensor
) -> torch.Tensor:
    """Cross-covariance of the mixture between the points x and the points y.

    ``means_x`` (M, n_x, k), ``means_y`` (M, n_y, l) and ``covariances`` (M, n_x, n_y, k, l) give
    the (n_x, n_y, k, l) covariance of the outputs k at x with the outputs l at y.
    """
    deviations_x = means_x - means_x.mean(0)
    deviations_y = means_y - means_y.mean(0)
    spread = torch.einsum("mak,mbl->abkl", deviations_x, deviations_y) / means_x.shape[0]
    return covariances.mean(0) + spread


def mixture_quantile(
    means: np.ndarray, stds: np.ndarray, probability: float, n_bisections: int = 80
) -> np.ndarray:
    """The ``probability`` quantile of the mixture (1/M) Σ_m N(means[m], stds[m]²), elementwise.

    The mixture's CDF F(x) = (1/M) Σ_m Φ((x − μ_m)/σ_m) is increasing, and at the smallest of
    the members' own quantiles μ_m + z σ_m every Φ is at most ``probability`` (at the largest, at
    least), so bisection between them converges to the root of F(x) = probability; 80 halvings
    take the bracket below float64 resolution.
    """
    z = ndtri(probability)
    member_quantiles = means + z * stds
    low, high = member_quantiles.min(0), member_quantiles.max(0)
    for _ in range(n_bisections):
        middle = 0.5 * (low + high)
        below = ndtr((middle - means) / stds).mean(0) < probability
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return 0.5 * (low + high)


def mixture_interval(
    means: torch.Tensor, stds: torch.Tensor, confidence: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The central ``confidence`` interval of the mixture of N(means[m], stds[m]²) (M, n, k)."""
    tail = 0.5 * (1.0 - confidence)
    with np.errstate(invalid="ignore"):  # overflowed stds give NaN, for the caller to refuse
        lower, upper = (
            mixture_quantile(means.numpy(), stds.numpy(), p) for p in (tail, 1.0 - tail)
        )
    return torch.as_tensor(lower), torch.as_tensor(upper)

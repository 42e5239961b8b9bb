"""The equal-weight mixture of several networks' Gaussian predictives, by its first two moments.

An ensemble of Laplace approximations (Eschenhagen et al. 2021) predicts with the mixture
(1/M) Σ_m N(μ_m, Σ_m), one Gaussian per network. Its mean is μ̄ = (1/M) Σ_m μ_m and, by the law
of total covariance, its covariance is (1/M) Σ_m Σ_m + (1/M) Σ_m (μ_m − μ̄)(μ_m − μ̄)ᵀ: the
networks' own uncertainty plus their disagreement. Every function takes the networks' values
stacked along a leading axis of length M.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtr, ndtri


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

"""Approximate leave-one-out (LOO) logits of the linearised network, from its Laplace posterior.

Leaving out one unit of weight u_i = min(w_i, 1) of training row i removes u_i J_iᵀ Λ_i J_i from
the posterior precision, and one Newton step from the MAP θ* moves the weights by
−Σ₋ᵢ J_iᵀ u_i g_i, with Λ_i = −∇²_f log p(y_i | f_i) and g_i = ∇_f log p(y_i | f_i) at the MAP.
The row's linearised logits without it are then

    N(m_i − u_i V₋ᵢ g_i, V₋ᵢ),      V₋ᵢ = J_i Σ₋ᵢ J_iᵀ,

with m_i = f_i + J_i(μ − θ*) the linearised mean (f_i itself for Laplace, μ = θ*) and g_i taken
there: for a Gaussian likelihood this is the exact leave-one-out posterior of the linearised
model. A noise scale c enters as the posterior does: Λ_i/c² and g_i at noise std cσ. This is
the cavity distribution of the Laplace approximation (LA-LOO; Vehtari et al. 2016), found
without refitting. Each GGN structure removes the row's share of *its own* curvature, so the
cavity precision stays positive definite:

- ``full``: Σ₋ᵢ⁻¹ = Σ⁻¹ − u J_iᵀ L Lᵀ J_i, and by Woodbury (K × K per row, with V = J_i Σ J_iᵀ)
  V₋ᵢ = V + V L (I − u Lᵀ V L)⁻¹ Lᵀ V;
- ``diag``: the diagonal GGN is Σ_i diag(J_iᵀ Λ_i J_i), so the row's diagonal is subtracted;
- ``kron``: KFAC's share of row i in layer l is u G_{l,i} ⊗ A_l, with G_{l,i} = D_iᵀ Λ_i D_i
  and D_i = ∂f_i/∂s_l (the factor A_l is a mean over rows, G_l a sum), so the cavity layer
  block is (G_l − u G_{l,i}) ⊗ A_l + δ_l I: one small eigendecomposition per row and layer.

Vehtari, A., Mononen, T., Tolvanen, V., Sivula, T. and Winther, O. (2016). Bayesian leave-one-out
cross-validation approximations for Gaussian latent variable models. JMLR 17(103).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Floor of the eigenvalues of I − u Lᵀ V L: round-off (or a low-rank GGN) may push them to 0.
MIN_CAVITY_EIGENVALUE = 1e-10
# Rows per call of the link when scoring the cavities.
_LINK_BLOCK_ROWS = 1024


def loo_logits(
    module: nn.Sequential,
    posterior,
    likelihood,
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cavity means (n, K) and covariances (n, K, K) of the linearised logits of each training row.

    ``posterior`` is a Laplace posterior at the module's weights, fitted to (X, y, weights), all
    float64 and on the module's device. Each curvature removes the row's share of itself
    (:meth:`skbnn._curvature_base.Curvature.loo_cavities`).
    """
    unit = weights.clamp(max=1.0)
    return posterior.curvature.loo_cavities(module, posterior, likelihood, X, y, unit)


def output_curvature_and_gradient(
    likelihood, f: torch.Tensor, y: torch.Tensor, noise_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """L with L Lᵀ = −∇²_f log p(y | f) at noise scale 1 (n, K, C), as the GGN holds it (the
    posterior divides by c²), and g = ∇_f log p(y | f) at noise scale c (n, K)."""
    f = f.detach().requires_grad_(True)
    with torch.enable_grad():
        nll = likelihood.negative_log_likelihood(f, y, noise_scale).sum()
        (gradient,) = torch.autograd.grad(-nll, f)
    return likelihood.output_hessian_sqrt(f.detach()), gradient


def woodbury_cavity_covariance(V: torch.Tensor, L: torch.Tensor, unit: torch.Tensor):
    """(V⁻¹ − u L Lᵀ)⁻¹ per row, as V + V L (I − u Lᵀ V L)⁻¹ Lᵀ V (V need not be invertible)."""
    VL = V @ L
    inner = torch.eye(L.shape[-1], dtype=V.dtype, device=V.device) - unit[:, None, None] * (
        L.mT @ VL
    )
    values, vectors = torch.linalg.eigh(0.5 * (inner + inner.mT))
    inverse = (vectors / values.clamp_min(MIN_CAVITY_EIGENVALUE).unsqueeze(-2)) @ vectors.mT
    cov = V + unit[:, None, None] * (VL @ inverse @ VL.mT)
    return 0.5 * (cov + cov.mT)


def loo_log_likelihood(
    mean: torch.Tensor,
    cov: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    proba: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """Weighted mean over rows of log p(y_i | cavity), with ``proba(mean, cov)`` the link.

    Rows go through the link in blocks: a Monte Carlo link holds samples for a whole block.
    """
    total = 0.0
    for begin in range(0, y.shape[0], _LINK_BLOCK_ROWS):
        rows = slice(begin, begin + _LINK_BLOCK_ROWS)
        p = proba(mean[rows], cov[rows])
        picked = p[torch.arange(p.shape[0]), y[rows].long()]
        total += float((weights[rows] * torch.log(picked.clamp_min(1e-300))).sum())
    return total / float(weights.sum())

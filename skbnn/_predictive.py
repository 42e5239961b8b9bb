"""Class probabilities from the linearised (GLM) logit distribution f ~ N(m, V).

For regression the GLM predictive is Gaussian and needs no approximation: mean m, variance
diag(V) + σ². For classification the integral of the link over N(m, V) has no closed form:

- ``"probit"``: MacKay's approximation, σ(m / √(1 + π v / 8)) for one logit, and per class
  softmax(m_k / √(1 + π V_kk / 8)) for several (the heuristic laplace-torch uses by default).
- ``"mc"``: Monte Carlo over logits, f_s = m + chol(V) z_s with *the same* standard normal draws z_s
  for every row, so each row's probabilities do not depend on what else is in the batch.
- ``"bridge"``: the Laplace bridge to a Dirichlet (Hobbhahn, Kristiadi & Hennig 2022), using its
  mean; for one logit it is applied to the equivalent two-logit model (−f/2, f/2).
"""

from __future__ import annotations

import math

import torch


def probit_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Probit approximation; returns probabilities of shape (batch, n_classes)."""
    variance = torch.diagonal(cov, dim1=-2, dim2=-1)
    scaled = mean / torch.sqrt(1.0 + math.pi / 8.0 * variance)
    if mean.shape[-1] == 1:
        p = torch.sigmoid(scaled)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(scaled, dim=-1)


def link_samples(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Class probabilities of logit samples from N(mean, cov), shape (batch, n_samples, classes).

    The same standard normal draws serve every row, so a row's samples do not depend on the batch.
    """
    k = mean.shape[-1]
    eye = torch.eye(k, dtype=cov.dtype, device=cov.device)
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1.0)[:, None, None]
    chol = torch.linalg.cholesky(cov + 1e-10 * scale * eye)
    z = torch.randn((n_samples, k), generator=generator, dtype=mean.dtype).to(mean.device)
    logits = mean[:, None, :] + torch.einsum("bkl,sl->bsk", chol, z)
    if k == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


def mc_proba(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Monte Carlo average of the link over N(mean, cov) with shared draws across rows."""
    return link_samples(mean, cov, n_samples, generator).mean(1)


def bridge_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Mean of the Laplace-bridge Dirichlet."""
    if mean.shape[-1] == 1:
        # The symmetric two-logit model (−f/2, f/2) gives the same softmax; its covariance
        # (v/4)[[1, −1], [−1, 1]] has no component along 1, which the projection below removes.
        mean = torch.cat([-mean / 2, mean / 2], dim=-1)
        quarter = cov[:, 0, 0] / 4
        sign = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=cov.dtype, device=cov.device)
        cov = quarter[:, None, None] * sign
    k = mean.shape[-1]
    ones = torch.ones(k, dtype=mean.dtype, device=mean.device)
    # Remove the unidentified direction 1 (the softmax is invariant to adding a constant).
    v_one = cov @ ones
    total = (v_one @ ones).clamp_min(1e-300)[:, None]
    mean = mean - v_one * (mean @ ones)[:, None] / total
    cov = cov - v_one[:, :, None] * v_one[:, None, :] / total[:, :, None]
    variance = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(1e-12)
    # α_k = (1 − 2/k + e^{m_k} Σ_j e^{−m_j} / k²) / v_k, in log space: large logits overflow exp.
    log_sum_exp_neg = torch.logsumexp(-mean, dim=-1, keepdim=True)
    log_alpha = torch.logaddexp(
        torch.log(torch.tensor(1 - 2 / k, dtype=mean.dtype, device=mean.device)),
        mean - 2 * math.log(k) + log_sum_exp_neg,
    ) - torch.log(variance)
    return torch.softmax(log_alpha, dim=-1)

"""Class probabilities from the linearised (GLM) logit distribution f ~ N(m, V).

For regression the GLM predictive is Gaussian and needs no approximation: mean m, variance
diag(V) + σ². For classification the integral of the link over N(m, V) has no closed form:

- ``"probit"``: MacKay's approximation, σ(m / √(1 + π v / 8)) for one logit, and per class
  softmax(m_k / √(1 + π V_kk / 8)) for several (the heuristic laplace-torch uses by default).
- ``"mc"``: Monte Carlo over logits, f_s = m + chol(V) z_s with *the same* standard normal draws z_s
  for every row, so each row's probabilities do not depend on what else is in the batch.
- ``"bridge"``: the Laplace bridge to a Dirichlet (Hobbhahn, Kristiadi & Hennig 2022), using its
  mean; for one logit it is applied to the equivalent two-logit model (−f/2, f/2).

Each link has a log-space twin (``*_log_proba``) for log-probabilities far from the data, where a
probability underflows to 0 but its logarithm is an ordinary number: log σ(±s) and log-softmax for
probit, the log-mean-exp of the draws' log-softmax for MC, and the log-softmax of log α for the
bridge. Huge and zero covariances are handled: the MC square root falls back from Cholesky to a
clamped eigendecomposition for rows that are not numerically positive definite; the bridge scales
rows whose variances are beyond 2^±64 by a power of two (its Dirichlet mean is the same for V and
cV), so its products of logits and variances overflow only for logits beyond about 10²⁸⁹; and
it returns softmax(m), the exact predictive, where V = 0 (posterior temperature 0). Rows of
ordinary size go through exactly the arithmetic they did before, bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def probit_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Probit approximation; returns probabilities of shape (batch, n_classes)."""
    scaled = _probit_logits(mean, cov)
    if mean.shape[-1] == 1:
        p = torch.sigmoid(scaled)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(scaled, dim=-1)


def probit_log_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Logarithm of :func:`probit_proba`, computed in log space (finite far from the data)."""
    scaled = _probit_logits(mean, cov)
    if mean.shape[-1] == 1:
        return torch.cat([F.logsigmoid(-scaled), F.logsigmoid(scaled)], dim=-1)
    return torch.log_softmax(scaled, dim=-1)


def _probit_logits(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """m / √(1 + π v / 8); an infinite variance gives 0, a uniform prediction."""
    variance = torch.diagonal(cov, dim1=-2, dim2=-1)
    return mean / torch.sqrt(1.0 + math.pi / 8.0 * variance)


def link_samples(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Class probabilities of logit samples from N(mean, cov), shape (batch, n_samples, classes).

    The same standard normal draws serve every row, so a row's samples do not depend on the batch.
    """
    logits = _logit_samples(mean, cov, n_samples, generator)
    if mean.shape[-1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


def link_log_samples(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Logarithm of :func:`link_samples` (the same draws), computed in log space."""
    logits = _logit_samples(mean, cov, n_samples, generator)
    if mean.shape[-1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=-1)
    return torch.log_softmax(logits, dim=-1)


def mc_proba(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Monte Carlo average of the link over N(mean, cov) with shared draws across rows."""
    return link_samples(mean, cov, n_samples, generator).mean(1)


def mc_log_proba(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Logarithm of :func:`mc_proba`: the log-mean-exp of the draws' log-probabilities."""
    log_samples = link_log_samples(mean, cov, n_samples, generator)
    return torch.logsumexp(log_samples, dim=1) - math.log(n_samples)


def _logit_samples(
    mean: torch.Tensor, cov: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Logits m + V^{1/2} z_s (batch, n_samples, K) with the same draws z_s for every row."""
    k = mean.shape[-1]
    root = _covariance_root(cov)
    z = torch.randn((n_samples, k), generator=generator, dtype=mean.dtype).to(mean.device)
    return mean[:, None, :] + torch.einsum("bkl,sl->bsk", root, z)


def _covariance_root(cov: torch.Tensor) -> torch.Tensor:
    """Per-row square roots R Rᵀ ≈ V (batch, K, K) that exist for every PSD V, however scaled.

    The Cholesky factor of V + 10⁻¹⁰ max(1, mean V_kk) I where it exists; elsewhere (V indefinite
    by round-off beyond the jitter) Q diag(√max(λ, 0)) from the eigendecomposition V = Q diag(λ) Qᵀ.
    """
    k = cov.shape[-1]
    eye = torch.eye(k, dtype=cov.dtype, device=cov.device)
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1.0)[:, None, None]
    root, info = torch.linalg.cholesky_ex(cov + 1e-10 * scale * eye)
    failed = info != 0
    if bool(failed.any()):
        values, vectors = torch.linalg.eigh(0.5 * (cov[failed] + cov[failed].mT))
        root[failed] = vectors * values.clamp_min(0.0).sqrt()[:, None, :]
    return root


def bridge_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Mean of the Laplace-bridge Dirichlet (softmax(m) where the covariance is 0)."""
    log_alpha, logits, certain = _bridge_log_alpha(mean, cov)
    return torch.where(
        certain[:, None], torch.softmax(logits, dim=-1), torch.softmax(log_alpha, dim=-1)
    )


def bridge_log_proba(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Logarithm of :func:`bridge_proba`, computed in log space."""
    log_alpha, logits, certain = _bridge_log_alpha(mean, cov)
    return torch.where(
        certain[:, None], torch.log_softmax(logits, dim=-1), torch.log_softmax(log_alpha, dim=-1)
    )


def _bridge_log_alpha(
    mean: torch.Tensor, cov: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log α of the bridge (up to a constant per row), the K ≥ 2 logits, rows with V = 0."""
    if mean.shape[-1] == 1:
        # The symmetric two-logit model (−f/2, f/2) gives the same softmax; its covariance
        # (v/4)[[1, −1], [−1, 1]] has no component along 1, which the projection below removes.
        mean = torch.cat([-mean / 2, mean / 2], dim=-1)
        quarter = cov[:, 0, 0] / 4
        sign = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=cov.dtype, device=cov.device)
        cov = quarter[:, None, None] * sign
    k = mean.shape[-1]
    # α ∝ 1/v, so the Dirichlet mean is the same for V and cV. Rows whose largest variance is
    # beyond 2^±64 are scaled by a power of two near it, so that V 1 (mean · 1) and V 1 (V 1)ᵀ
    # below neither overflow nor underflow; other rows are left as they are, bit for bit.
    largest = torch.diagonal(cov, dim1=-2, dim2=-1).amax(-1)
    certain = largest <= 0  # V = 0 (T = 0, or only a shift of all logits): softmax(m) is exact
    exponent = torch.frexp(largest).exponent
    exponent = torch.where(exponent.abs() > 64, exponent.clamp(-1000, 1000), 0)
    cov = torch.ldexp(cov, -exponent[:, None, None])
    ones = torch.ones(k, dtype=mean.dtype, device=mean.device)
    # Remove the unidentified direction 1 (the softmax is invariant to adding a constant).
    v_one = cov @ ones
    total = (v_one @ ones).clamp_min(1e-300)[:, None]
    mean = mean - v_one * (mean @ ones)[:, None] / total
    cov = cov - v_one[:, :, None] * v_one[:, None, :] / total[:, :, None]
    # Variances below 10⁻¹² (before scaling) are taken as 10⁻¹².
    floor = torch.ldexp(torch.full_like(largest, 1e-12), -exponent)[:, None]
    variance = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(floor)
    # α_k = (1 − 2/k + e^{m_k} Σ_j e^{−m_j} / k²) / v_k, in log space: large logits overflow exp.
    log_sum_exp_neg = torch.logsumexp(-mean, dim=-1, keepdim=True)
    log_alpha = torch.logaddexp(
        torch.log(torch.tensor(1 - 2 / k, dtype=mean.dtype, device=mean.device)),
        mean - 2 * math.log(k) + log_sum_exp_neg,
    ) - torch.log(variance)
    return log_alpha, mean, certain

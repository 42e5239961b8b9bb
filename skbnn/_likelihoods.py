"""Likelihoods p(y | f): per-sample negative log-likelihood and the output-space curvature.

Each likelihood gives the square root ``L`` of its output Hessian Λ = −∇²_f log p(y | f), with
``L Lᵀ = Λ``, so that the GGN is accumulated as Σ_n (Lₙᵀ Jₙ)ᵀ (Lₙᵀ Jₙ) without forming Λ.

The Gaussian likelihood's noise is a reference standard deviation per output, σ_k, times a common
noise scale c that the evidence may tune. Its curvature (``output_hessian_sqrt``) and ``data_fit``
are taken at c = 1; the evidence rescales them by 1/c² (:mod:`skbnn._evidence`).

``data_fit`` is the per-sample quantity the evidence needs at the MAP: the squared standardised
residual ‖(y − f)/σ‖² for the Gaussian, the negative log-likelihood otherwise.

The per-sample losses take outputs f of shape (..., n, K) and targets of the same leading shape,
so that the networks of an ensemble, trained as one batched model, are scored in one call; the
Gaussian's ``noise_scale`` may then be a tensor of shape (..., 1), one c per network.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def gaussian_log_normalizer(n_outputs: int, noise_scale: float, log_noise_ref: float) -> float:
    """log of the Gaussian normaliser per row, K log c + Σ_k log σ_k + (K/2) log 2π."""
    return (
        n_outputs * math.log(noise_scale) + log_noise_ref + 0.5 * n_outputs * math.log(2 * math.pi)
    )


class GaussianLikelihood:
    """Independent Gaussian noise per output with standard deviations ``noise_std`` (K,)."""

    name = "gaussian"

    def __init__(self, noise_std: torch.Tensor):
        self.noise_std = noise_std

    @property
    def log_noise_ref(self) -> float:
        return float(torch.log(self.noise_std).sum())

    def negative_log_likelihood(
        self, f: torch.Tensor, y: torch.Tensor, noise_scale: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        """Per-sample −log p(y | f) with noise std ``noise_scale * noise_std``, shape (..., n)."""
        if isinstance(noise_scale, torch.Tensor):
            k = f.shape[-1]
            log_norm = k * torch.log(noise_scale) + gaussian_log_normalizer(
                k, 1.0, self.log_noise_ref
            )
        else:
            log_norm = gaussian_log_normalizer(f.shape[-1], noise_scale, self.log_noise_ref)
        return 0.5 * self.data_fit(f, y) / noise_scale**2 + log_norm

    def data_fit(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((y - f) / self.noise_std.to(f)).square().sum(-1)

    def output_hessian_sqrt(self, f: torch.Tensor) -> torch.Tensor:
        """``L = diag(1/σ)`` broadcast over the batch, shape (batch, K, K)."""
        precision_sqrt = torch.diag(1.0 / self.noise_std.to(f))
        return precision_sqrt.expand(f.shape[0], -1, -1)


class HeteroscedasticGaussianLikelihood:
    """Gaussian noise whose variance the network predicts: f = (μ_1..μ_K, log σ²_1..log σ²_K).

    The output curvature is the Fisher information of N(μ, σ²) in (μ, log σ²), diag(1/σ², ½),
    which is positive definite everywhere (the Hessian of the negative log-likelihood is not, away
    from the optimum); this is the usual GGN choice for this parameterisation.
    """

    name = "heteroscedastic"
    log_noise_ref = 0.0

    def negative_log_likelihood(self, f: torch.Tensor, y: torch.Tensor, noise_scale=1.0):
        k = f.shape[-1] // 2
        mean, log_var = f[..., :k], f[..., k:]
        residual_sq = (y - mean).square() * torch.exp(-log_var)
        return 0.5 * (residual_sq + log_var).sum(-1) + 0.5 * k * math.log(2 * math.pi)

    data_fit = negative_log_likelihood

    def warm_up_loss(self, f: torch.Tensor, y: torch.Tensor, noise_scale=1.0):
        """The mean's squared error alone (unit variance), to train μ before the variance.

        Trained jointly from the start, the variance can grow to explain residuals that the mean
        has not yet fitted; the mean's gradient, scaled by 1/σ², then vanishes and it never does
        (Skafte, Jørgensen & Hauberg 2019). The log-variance outputs only feel the weight decay.
        """
        k = f.shape[-1] // 2
        return 0.5 * (y - f[..., :k]).square().sum(-1)

    def output_hessian_sqrt(self, f: torch.Tensor) -> torch.Tensor:
        k = f.shape[-1] // 2
        root = torch.cat([torch.exp(-0.5 * f[:, k:]), torch.full_like(f[:, k:], 0.5**0.5)], -1)
        return torch.diag_embed(root)


class BernoulliLikelihood:
    """Binary labels in {0, 1} with one logit: p(y=1 | f) = sigmoid(f)."""

    name = "bernoulli"
    log_noise_ref = 0.0

    def negative_log_likelihood(self, f: torch.Tensor, y: torch.Tensor, noise_scale=1.0):
        return F.binary_cross_entropy_with_logits(f[..., 0], y.to(f), reduction="none")

    data_fit = negative_log_likelihood

    def output_hessian_sqrt(self, f: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(f)
        return torch.sqrt(p * (1 - p)).unsqueeze(-1)


class CategoricalLikelihood:
    """Integer labels in {0, ..., K-1} with a softmax over K logits."""

    name = "categorical"
    log_noise_ref = 0.0

    def negative_log_likelihood(self, f: torch.Tensor, y: torch.Tensor, noise_scale=1.0):
        nll = F.cross_entropy(f.reshape(-1, f.shape[-1]), y.reshape(-1), reduction="none")
        return nll.view(y.shape)

    data_fit = negative_log_likelihood

    def output_hessian_sqrt(self, f: torch.Tensor) -> torch.Tensor:
        """``L = diag(√p) − p √pᵀ``, which satisfies ``L Lᵀ = diag(p) − p pᵀ`` since Σ p = 1."""
        p = torch.softmax(f, dim=-1)
        sqrt_p = p.sqrt()
        return torch.diag_embed(sqrt_p) - p.unsqueeze(-1) * sqrt_p.unsqueeze(-2)


def stacked_negative_log_likelihood(likelihoods, noise_scales):
    """The loss of networks trained as one batched model: ``loss(f, y)`` with outputs f of shape
    (M, b, K) is each network's per-row −log p(y | f) under its own likelihood and noise scale,
    shape (M, b); one call when the networks share their reference noise."""
    first = likelihoods[0]
    if all(_same_reference_noise(likelihood, first) for likelihood in likelihoods):
        noise_scale = torch.tensor(noise_scales, dtype=torch.float64)[:, None]
        return lambda f, y: first.negative_log_likelihood(f, y, noise_scale.to(f))

    def per_network(f, y):  # the reference noise was tuned per network (per-output noise)
        return torch.stack(
            [
                likelihood.negative_log_likelihood(f_m, y_m, c)
                for likelihood, c, f_m, y_m in zip(likelihoods, noise_scales, f, y, strict=True)
            ]
        )

    return per_network


def _same_reference_noise(likelihood, other) -> bool:
    noise, other_noise = getattr(likelihood, "noise_std", None), getattr(other, "noise_std", None)
    return noise is None or torch.equal(noise, other_noise)

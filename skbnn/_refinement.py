"""Levenberg–Marquardt steps of the trained network towards the MAP, in the GGN's eigenbasis.

Adam stops short of the MAP where the noise is small: the gradient of the regularised loss

    L(θ) = Σ_n w_n NLL(y_n | f(x_n; θ), c) + ½ Σ_l δ_l ‖θ_l‖²

is still large after training. The damped Gauss–Newton step

    θ ← θ − (G/c² + Λ₀ + λI)⁻¹ ∇L(θ),    Λ₀ = diag(δ),

reuses the Laplace posterior's eigendecomposition of the GGN G (its precision is G/c² + Λ₀, so
the step is the posterior's covariance with δ raised to δ + λ). Each step costs one backward pass
for the gradient and one forward pass per trial point. Without damping it is the mean shift of
GGN-VI for a Gaussian likelihood (:func:`skbnn._variational.gaussian_glm_posterior_mean`), but
taken by the network itself, accepted only where L decreases.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.func import functional_call

from skbnn._network import row_blocks, unflatten_parameters
from skbnn._posterior import GaussianPosterior


def regularized_loss(
    module: torch.nn.Module,
    likelihood,
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    posterior: GaussianPosterior,
    theta: torch.Tensor,
    *,
    gradient: bool = False,
) -> tuple[float, torch.Tensor | None]:
    """L(θ) for the posterior's parameters set to ``theta`` (the others as in ``module``).

    Uses the posterior's δ (per parameter) and noise scale c; returns L and, with ``gradient``,
    ∇L with respect to ``theta`` (P,), accumulated a block of rows at a time.
    """
    theta = theta.detach().requires_grad_(gradient)
    params = unflatten_parameters(module, posterior.param_names, theta)
    delta = posterior.prior_precision_vector.to(theta)
    penalty = 0.5 * (delta * theta.square()).sum()
    total = float(penalty.detach())
    grad = torch.autograd.grad(penalty, theta)[0] if gradient else None
    with torch.set_grad_enabled(gradient):
        for rows in row_blocks(X.shape[0]):
            f = functional_call(module, params, (X[rows],))
            nll = likelihood.negative_log_likelihood(f, y[rows], posterior.noise_scale)
            block = (weights[rows] * nll).sum()
            total += float(block.detach())
            if gradient:
                grad = grad + torch.autograd.grad(block, theta)[0]
    return total, grad


def damped_newton_step(
    posterior: GaussianPosterior, gradient: torch.Tensor, damping: float
) -> torch.Tensor:
    """(G/c² + Λ₀ + λI)⁻¹ ∇L: the posterior's covariance with δ raised by the damping λ."""
    damped = replace(posterior, prior_precision=posterior.prior_precision + damping)
    return damped.covariance_vector_product(gradient)

"""Levenberg–Marquardt steps of the trained network towards the MAP, in the GGN's eigenbasis.

Adam stops short of the MAP where the noise is small: the gradient of the regularised loss

    L(θ) = Σ_n w_n NLL(y_n | f(x_n; θ), c) + ½ Σ_l δ_l ‖θ_l‖²

is still large after training. The damped Gauss–Newton step

    θ ← θ − (G/c² + Λ₀ + λI)⁻¹ ∇L(θ),    Λ₀ = diag(δ),

is the posterior's covariance with δ raised to δ + λ (its precision is G/c² + Λ₀). A
:class:`LocalModel` takes it in the eigenbasis of a decomposed GGN, or, for the full GGN, by one
Cholesky factorisation per trial λ (:class:`~skbnn._curvature.DenseGGN`): the path's points need
only the GGN's spectrum for their evidence, never its eigenvectors. Each step costs one backward
pass for the gradient and one forward pass per trial point. Without damping it is the mean shift of
GGN-VI for a Gaussian likelihood (:func:`skbnn._variational.gaussian_glm_posterior_mean`), but
taken by the network itself, accepted only where L decreases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from skbnn._curvature import DenseGGN
from skbnn._network import flat_parameters, layer_sizes, row_blocks, unflatten_parameters
from skbnn._posterior import GaussianPosterior


@dataclass(frozen=True)
class LocalModel:
    """The Gauss–Newton model of L at the weights of ``module`` (float64): its GGN, δ and c.

    ``ggn`` is a decomposed :class:`~skbnn._curvature_base.Curvature` or, for the full GGN, a
    :class:`~skbnn._curvature.DenseGGN` (whose prior precision is then one scalar).
    """

    module: nn.Sequential
    param_names: list[str]
    ggn: object
    prior_precision: float | np.ndarray
    noise_scale: float

    @property
    def mean(self) -> torch.Tensor:
        return flat_parameters(self.module, self.param_names)

    @property
    def prior_precision_vector(self) -> torch.Tensor:
        """δ per parameter, shape (P,)."""
        sizes = layer_sizes(self.module, self.param_names)
        delta = np.broadcast_to(np.asarray(self.prior_precision, dtype=float), (len(sizes),))
        return torch.repeat_interleave(torch.tensor(delta), torch.tensor(sizes))

    def damped_newton_step(self, gradient: torch.Tensor, damping: float) -> torch.Tensor:
        """(G/c² + Λ₀ + λI)⁻¹ ∇L for the damping λ."""
        if isinstance(self.ggn, DenseGGN):
            shift = float(self.prior_precision) + damping
            return self.ggn.damped_solve(gradient, self.noise_scale, shift)
        return damped_newton_step(self._posterior(), gradient, damping)

    def _posterior(self) -> GaussianPosterior:
        return GaussianPosterior(
            mean=self.mean,
            curvature=self.ggn,
            prior_precision=self.prior_precision,
            noise_scale=self.noise_scale,
            param_names=self.param_names,
            layer_sizes=layer_sizes(self.module, self.param_names),
        )


def regularized_loss(
    module: torch.nn.Module,
    likelihood,
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    posterior: GaussianPosterior | LocalModel,
    theta: torch.Tensor,
    *,
    gradient: bool = False,
) -> tuple[float, torch.Tensor | None]:
    """L(θ) for the posterior's parameters set to ``theta`` (the others as in ``module``).

    Uses the posterior's (or local model's) δ per parameter and noise scale c; returns L and,
    with ``gradient``, ∇L with respect to ``theta`` (P,), accumulated a block of rows at a time.
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

"""The protocol every GGN structure implements, with the defaults that per-sample Jacobians give.

A curvature G is kept as an eigendecomposition G = V diag(λ) Vᵀ (V may have fewer columns than P).
What the rest of the package asks of it:

- its spectrum (all P eigenvalues, zeros outside a low-rank basis), for the evidence;
- the two basis changes J ↦ JV and z ↦ zVᵀ, for the posterior's products and draws;
- ``accumulate``: the GGN of the union of two data sets (``partial_fit``);
- ``glm_outputs``: the GLM predictive's mean and J Σ Jᵀ at inputs X;
- ``loo_cavities``: the leave-one-out cavities of the training rows (:mod:`skbnn._loo`), which
  remove each row's share of *this* curvature, so each structure defines its own share.

The defaults of the last two go through per-sample Jacobians a block of rows at a time; KFAC
overrides both with its rank-one layer form (:mod:`skbnn._kron`), and the diagonal GGN overrides
the row's share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from skbnn._jacobians import jacobian_blocks
from skbnn._loo import output_curvature_and_gradient, woodbury_cavity_covariance
from skbnn._predictive import jacobian_glm_outputs


class Curvature(ABC):
    """A GGN in its eigenbasis; see the module docstring for what each method is for."""

    structure: ClassVar[str]
    # The r eigenvalues along the basis (r ≤ P), and P, the number of parameters covered: fields
    # or properties of each structure.
    eigenvalues: torch.Tensor
    n_params: int
    # A pickle stores the training rows instead of this curvature, and recomputes it at load
    # time (skbnn._persistence): worth it where the curvature is far larger than the rows.
    rebuild_when_pickled: ClassVar[bool] = False
    # Whether G keeps the cross terms between weights. Without them the earlier chunks of a
    # stream survive only as a diagonal quadratic, and a later chunk can overwrite what they
    # taught (catastrophic forgetting; skbnn._sequential warns).
    couples_weights: ClassVar[bool] = True

    @abstractmethod
    def to(self, device) -> Curvature:
        """A copy on ``device``."""

    @abstractmethod
    def to_eigenbasis(self, J: torch.Tensor) -> torch.Tensor:
        """Coordinates of rows of J (..., P) along the eigenvectors: J V, shape (..., r)."""

    @abstractmethod
    def from_eigenbasis(self, z: torch.Tensor) -> torch.Tensor:
        """Map eigenbasis coordinates (..., r) back to parameters: z Vᵀ."""

    @abstractmethod
    def dense(self) -> torch.Tensor:
        """The GGN as a dense P × P matrix (for tests and small problems)."""

    @abstractmethod
    def accumulate(self, update: Curvature, weight: float, update_weight: float) -> Curvature:
        """The GGN of the union of this curvature's data (total weight ``weight``) and
        ``update``'s (``update_weight``)."""

    def cpu(self) -> Curvature:
        return self.to("cpu")

    def decomposed(self) -> Curvature:
        """Itself: it is kept decomposed (the full GGN may also be held as a
        :class:`~skbnn._curvature.DenseGGN`, whose ``decomposed`` gives one of these)."""
        return self

    def spectrum(self) -> torch.Tensor:
        """All P eigenvalues of the GGN, including the zeros outside a low-rank eigenbasis."""
        missing = self.n_params - self.eigenvalues.shape[0]
        return torch.cat([self.eigenvalues, self.eigenvalues.new_zeros(missing)])

    def glm_outputs(self, module, posterior, X) -> tuple[torch.Tensor, torch.Tensor]:
        """GLM predictive means f + J(μ − θ*) (n, K) and covariances J Σ Jᵀ (n, K, K) at X."""
        return jacobian_glm_outputs(module, posterior, X)

    def loo_cavities(self, module, posterior, likelihood, X, y, unit):
        """Cavity means (n, K) and covariances (n, K, K) of the linearised logits of each
        training row, with ``unit`` (n,) the weight left out of each row."""
        means, covs = [], []
        offset, c = posterior.mean_offset, posterior.noise_scale
        for rows, f, J in jacobian_blocks(module, X, posterior.param_names):
            mean = f if offset is None else f + J @ offset  # the linearised mean m_i
            L, g = output_curvature_and_gradient(likelihood, mean, y[rows], c)
            cov = self.cavity_covariance(posterior, J, L, unit[rows])
            means.append(mean - unit[rows, None] * (cov @ g.unsqueeze(-1)).squeeze(-1))
            covs.append(cov)
        return torch.cat(means), torch.cat(covs)

    def cavity_covariance(self, posterior, J, L, unit) -> torch.Tensor:
        """J Σ₋ᵢ Jᵀ per row, Σ₋ᵢ⁻¹ = Σ⁻¹ − u J_iᵀ L Lᵀ J_i / c² (by Woodbury, K × K per row)."""
        V = posterior.functional_covariance(J)
        return woodbury_cavity_covariance(V, L / posterior.noise_scale, unit)

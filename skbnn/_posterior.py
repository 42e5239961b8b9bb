"""The Gaussian posterior N(θ*, P⁻¹) with P = s·G + δI, G = V diag(λ) Vᵀ a structured GGN.

Everything is computed in G's eigenbasis, where P is diagonal with entries sλ + δ (and δ in the
directions outside a low-rank basis V, written ⊥ below):

    Σ = V diag(1/(sλ + δ)) Vᵀ + (I − VVᵀ)/δ,
    J Σ Jᵀ = (JV) diag(1/(sλ + δ)) (JV)ᵀ + J⊥ J⊥ᵀ/δ,
    θ = θ* + V diag((sλ + δ)^{-1/2}) z + z⊥/√δ,   z ~ N(0, I).

No P×P inverse or Cholesky factor is ever formed, and the result is PSD by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from skbnn._curvature_base import Curvature


@dataclass
class GaussianPosterior:
    """Posterior over the parameters named ``param_names`` of the fitted module.

    Attributes
    ----------
    mean : tensor of shape (P,)
        The MAP weights θ*.
    curvature : Curvature
        The GGN at reference noise, in its eigenbasis (full, KFAC or diagonal).
    prior_precision : float or ndarray of shape (n_layers,)
        δ, the precision of the Gaussian prior: one value, or one per layer (``layer_sizes``).
    noise_scale : float
        c; the likelihood curvature is scaled by s = 1/c² (1 for classification).
    param_names : list of str
        Which module parameters the posterior covers (all, or the last layer's).
    linearization_point : tensor of shape (P,) or None
        θ* where the network is linearised for the GLM predictive, when it differs from the mean
        (GGN-VI moves the mean off the MAP); None means the mean itself (Laplace).
    layer_sizes : tuple of int or None
        Parameters per layer, in order; needed for a per-layer δ, which is exact for the kron and
        diag structures because their eigenbases do not mix layers.
    """

    mean: torch.Tensor
    curvature: Curvature
    prior_precision: float
    noise_scale: float
    param_names: list[str]
    linearization_point: torch.Tensor | None = None
    layer_sizes: tuple[int, ...] | None = None

    @property
    def prior_precision_vector(self) -> torch.Tensor:
        """δ per parameter (and per eigenvalue: layer blocks coincide), shape (P,)."""
        delta = torch.as_tensor(self.prior_precision, dtype=torch.float64, device=self.mean.device)
        if delta.ndim == 0:
            return delta.expand(self.n_params)
        return torch.repeat_interleave(delta, torch.tensor(self.layer_sizes, device=delta.device))

    @property
    def mean_offset(self) -> torch.Tensor | None:
        """μ − θ*, the shift of the GLM predictive mean per unit Jacobian (None for Laplace)."""
        if self.linearization_point is None:
            return None
        return self.mean - self.linearization_point

    def precision_vector_product(self, v: torch.Tensor) -> torch.Tensor:
        """Σ⁻¹ v = (sG + δI) v for vectors v (..., P), in the eigenbasis."""
        rotated, orthogonal = self._split(v)
        product = self.curvature.from_eigenbasis(rotated * self.precision_eigenvalues.to(v))
        if orthogonal is not None:
            product = product + orthogonal * self.prior_precision
        return product

    def covariance_vector_product(self, v: torch.Tensor) -> torch.Tensor:
        """Σ v for vectors v (..., P), in the eigenbasis."""
        rotated, orthogonal = self._split(v)
        product = self.curvature.from_eigenbasis(rotated / self.precision_eigenvalues)
        if orthogonal is not None:
            product = product + orthogonal / self.prior_precision
        return product

    @property
    def structure(self) -> str:
        return self.curvature.structure

    @property
    def n_params(self) -> int:
        return self.mean.shape[0]

    @property
    def precision_eigenvalues(self) -> torch.Tensor:
        """sλ + δ along the r eigenvectors of the GGN; the other P − r directions have δ."""
        delta = self.prior_precision
        if torch.as_tensor(delta).ndim:
            delta = self.prior_precision_vector.to(self.curvature.eigenvalues)
        return self.curvature.eigenvalues / self.noise_scale**2 + delta

    @property
    def _has_complement(self) -> bool:
        return self.curvature.eigenvalues.shape[0] < self.n_params

    def _complement(self, A: torch.Tensor) -> torch.Tensor:
        """The part of rows of A (..., P) orthogonal to the GGN's eigenvectors."""
        return self._split(A)[1]

    def log_det_precision(self) -> float:
        log_det = float(torch.log(self.precision_eigenvalues).sum())
        missing = self.n_params - self.curvature.eigenvalues.shape[0]
        if missing:  # only a full GGN is low-rank, and it takes a scalar δ
            log_det += missing * math.log(float(self.prior_precision))
        return log_det

    def functional_covariance(
        self, J: torch.Tensor, J_other: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample output covariances J Σ Jᵀ, shape (batch, K, K), from J (batch, K, P).

        With ``J_other`` (batch, K, P) it returns the per-sample cross-covariances J Σ J_otherᵀ.
        """
        return self._jacobian_covariance("bkp,p,blp->bkl", "bkp,blp->bkl", J, J_other)

    def functional_cross_covariance(self, J_a: torch.Tensor, J_b: torch.Tensor) -> torch.Tensor:
        """Covariances between all pairs, shape (n_a, K, n_b, K), from J_a, J_b of (n, K, P)."""
        return self._jacobian_covariance("akp,p,blp->akbl", "akp,blp->akbl", J_a, J_b)

    def _jacobian_covariance(self, pattern, complement_pattern, J, J_other=None):
        """J Σ J_otherᵀ contracted by ``pattern``; each Jacobian is projected only once."""
        inv = 1.0 / self.precision_eigenvalues.to(J)
        Jv, Jc = self._split(J)
        Jw, Jd = (Jv, Jc) if J_other is None else self._split(J_other)
        cov = torch.einsum(pattern, Jv, inv, Jw)
        if Jc is not None:
            cov = cov + torch.einsum(complement_pattern, Jc, Jd) / self.prior_precision
        return cov

    def _split(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows of A (..., P) in the GGN's eigenbasis, and their part orthogonal to it (or None)."""
        rotated = self.curvature.to_eigenbasis(A)
        if not self._has_complement:
            return rotated, None
        return rotated, A - self.curvature.from_eigenbasis(rotated)

    def sample(self, n_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n_samples`` parameter vectors θ ~ N(θ*, Σ), shape (n_samples, P)."""
        r = self.curvature.eigenvalues.shape[0]
        z = torch.randn((n_samples, r), generator=generator, dtype=self.mean.dtype)
        theta = self.mean + self.curvature.from_eigenbasis(z / self.precision_eigenvalues.sqrt())
        if self._has_complement:
            z = torch.randn((n_samples, self.n_params), generator=generator, dtype=self.mean.dtype)
            theta = theta + self._complement(z) / self.prior_precision**0.5
        return theta

    def covariance(self) -> torch.Tensor:
        """The dense posterior covariance Σ (P×P); only for small P and for tests."""
        eye = torch.eye(self.n_params, dtype=self.mean.dtype, device=self.mean.device)
        rotated = self.curvature.to_eigenbasis(eye)  # V (or I for diag)
        cov = (rotated / self.precision_eigenvalues) @ rotated.T
        if self._has_complement:
            cov = cov + self._complement(eye) / self.prior_precision
        return cov

"""The Gaussian posterior N(θ*, P⁻¹) with P = s·G + δI, G = V diag(λ) Vᵀ a structured GGN.

Everything is computed in G's eigenbasis, where P is diagonal with entries sλ + δ (and δ in the
directions outside a low-rank basis V, written ⊥ below):

    Σ = V diag(1/(sλ + δ)) Vᵀ + (I − VVᵀ)/δ,
    J Σ Jᵀ = (JV) diag(1/(sλ + δ)) (JV)ᵀ + J⊥ J⊥ᵀ/δ,
    θ = θ* + V diag((sλ + δ)^{-1/2}) z + z⊥/√δ,   z ~ N(0, I).

No P×P inverse or Cholesky factor is ever formed, and the result is PSD by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from skbnn._curvature import DiagCurvature, FullCurvature


@dataclass
class LaplacePosterior:
    """Posterior over the parameters named ``param_names`` of the fitted module.

    Attributes
    ----------
    mean : tensor of shape (P,)
        The MAP weights θ*.
    curvature : FullCurvature or DiagCurvature
        The GGN at reference noise, in its eigenbasis.
    prior_precision : float
        δ, the precision of the isotropic Gaussian prior.
    noise_scale : float
        c; the likelihood curvature is scaled by s = 1/c² (1 for classification).
    param_names : list of str
        Which module parameters the posterior covers (all, or the last layer's).
    """

    mean: torch.Tensor
    curvature: FullCurvature | DiagCurvature
    prior_precision: float
    noise_scale: float
    param_names: list[str]

    @property
    def structure(self) -> str:
        return self.curvature.structure

    @property
    def n_params(self) -> int:
        return self.mean.shape[0]

    @property
    def precision_eigenvalues(self) -> torch.Tensor:
        """sλ + δ along the r eigenvectors of the GGN; the other P − r directions have δ."""
        return self.curvature.eigenvalues / self.noise_scale**2 + self.prior_precision

    @property
    def _has_complement(self) -> bool:
        return self.curvature.eigenvalues.shape[0] < self.n_params

    def _complement(self, A: torch.Tensor) -> torch.Tensor:
        """The part of rows of A (..., P) orthogonal to the GGN's eigenvectors."""
        return A - self.curvature.from_eigenbasis(self.curvature.to_eigenbasis(A))

    def log_det_precision(self) -> float:
        missing = self.n_params - self.curvature.eigenvalues.shape[0]
        return float(torch.log(self.precision_eigenvalues).sum()) + missing * float(
            torch.log(torch.tensor(self.prior_precision, dtype=torch.float64))
        )

    def functional_covariance(
        self, J: torch.Tensor, J_other: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample output covariances J Σ Jᵀ, shape (batch, K, K), from J (batch, K, P).

        With ``J_other`` (batch, K, P) it returns the per-sample cross-covariances J Σ J_otherᵀ.
        """
        J_other = J if J_other is None else J_other
        inv = 1.0 / self.precision_eigenvalues.to(J)
        Jv, Jw = self.curvature.to_eigenbasis(J), self.curvature.to_eigenbasis(J_other)
        cov = torch.einsum("bkp,p,blp->bkl", Jv, inv, Jw)
        if self._has_complement:
            Jc, Jd = self._complement(J), self._complement(J_other)
            cov = cov + torch.einsum("bkp,blp->bkl", Jc, Jd) / self.prior_precision
        return cov

    def functional_cross_covariance(self, J_a: torch.Tensor, J_b: torch.Tensor) -> torch.Tensor:
        """Covariances between all pairs, shape (n_a, K, n_b, K), from J_a, J_b of (n, K, P)."""
        inv = 1.0 / self.precision_eigenvalues.to(J_a)
        Ja, Jb = self.curvature.to_eigenbasis(J_a), self.curvature.to_eigenbasis(J_b)
        cov = torch.einsum("akp,p,blp->akbl", Ja, inv, Jb)
        if self._has_complement:
            Jc, Jd = self._complement(J_a), self._complement(J_b)
            cov = cov + torch.einsum("akp,blp->akbl", Jc, Jd) / self.prior_precision
        return cov

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
        eye = torch.eye(self.n_params, dtype=self.mean.dtype)
        rotated = self.curvature.to_eigenbasis(eye)  # V (or I for diag)
        cov = (rotated / self.precision_eigenvalues) @ rotated.T
        if self._has_complement:
            cov = cov + self._complement(eye) / self.prior_precision
        return cov

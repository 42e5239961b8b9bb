"""Generalized Gauss–Newton curvature of an MLP, kept in an eigenbasis.

The GGN of the weights θ (all of them, or the last layer's) is

    G = Σ_n w_n J_nᵀ Λ_n J_n,      J_n = ∂f(x_n; θ)/∂θ ∈ R^{K×P},

accumulated over minibatches in float64 from :mod:`torch.func` per-sample Jacobians, so the
Jacobians of all data never exist at once. Every structure is stored as an eigendecomposition
G = V diag(λ) Vᵀ (the identity basis for ``diag``; V may have fewer columns than P when the data
determine fewer directions, the rest having eigenvalue 0), because then a prior δ is added exactly,
log|sG + δI| = Σ log(sλ + δ) is O(P) for any δ and s, and the GLM predictive and sampling need only
products with V. The evidence code (:mod:`skbnn._evidence`) and the posterior
(:mod:`skbnn._posterior`) see nothing but ``eigenvalues`` and the two basis changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from skbnn._curvature_base import Curvature
from skbnn._jacobians import jacobian_blocks
from skbnn._kron import fit_kron_curvature

# A dense GGN is refused before training when its matrices would exceed this share of the RAM.
FULL_GGN_MAX_MEMORY_FRACTION = 0.5


def ggn_factor_blocks(
    module: nn.Module,
    likelihood,
    X: torch.Tensor,
    weights: torch.Tensor,
    param_names: Sequence[str],
    hessian_sqrt: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield blocks of rows of M, with MᵀM = Σ w_n J_nᵀ Λ_n J_n: each row is √w_n (L_nᵀ J_n)_c.

    ``module`` must already be in float64; X and weights on the module's device. ``hessian_sqrt``
    (n_samples, K, C), when given, replaces the likelihood's L_n (GGN-VI's E_q[Λ_n]^{1/2}).
    """
    for rows, f, J in jacobian_blocks(module, X, param_names):
        L = likelihood.output_hessian_sqrt(f) if hessian_sqrt is None else hessian_sqrt[rows]
        M = torch.einsum("bkc,bkp->bcp", L, J) * weights[rows, None, None].sqrt()
        yield M.reshape(-1, J.shape[-1])


def ggn_matrix(
    module: nn.Module,
    likelihood,
    X: torch.Tensor,
    weights: torch.Tensor,
    param_names: Sequence[str],
    *,
    diagonal: bool = False,
    hessian_sqrt: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weighted GGN Σ w_n J_nᵀ Λ_n J_n as a (P, P) matrix, or with ``diagonal`` its diagonal."""
    ggn = None
    for M in ggn_factor_blocks(module, likelihood, X, weights, param_names, hessian_sqrt):
        block = M.square().sum(0) if diagonal else M.T @ M
        ggn = block if ggn is None else ggn + block
    return ggn


@dataclass
class FullCurvature(Curvature):
    """A dense GGN G = V diag(λ) Vᵀ with V of shape (P, r), r ≤ P orthonormal columns.

    When r < P (fewer data rows times outputs than parameters) the other P − r eigenvalues are zero:
    the prior alone sets the posterior in those directions.
    """

    eigenvalues: torch.Tensor  # (r,)
    eigenvectors: torch.Tensor  # (P, r)

    structure = "full"
    rebuild_when_pickled = True  # P × r eigenvectors

    @classmethod
    def from_matrix(cls, ggn: torch.Tensor) -> FullCurvature:
        ggn = 0.5 * (ggn + ggn.T)
        eigenvalues, eigenvectors = torch.linalg.eigh(ggn)
        # The GGN is PSD by construction; round-off can only make tiny eigenvalues negative.
        return cls(eigenvalues.clamp_min(0.0), eigenvectors)

    @classmethod
    def from_factor(cls, M: torch.Tensor, gram: torch.Tensor | None = None) -> FullCurvature:
        """Decompose G = MᵀM through the smaller Gram matrix M Mᵀ (rows of M fewer than P),
        given or computed."""
        eigenvalues, U = torch.linalg.eigh(M @ M.T if gram is None else gram)
        keep = _significant(eigenvalues, M)
        eigenvalues, U = eigenvalues[keep], U[:, keep]
        return cls(eigenvalues, (M.T @ U) / eigenvalues.sqrt())

    @property
    def n_params(self) -> int:
        return self.eigenvectors.shape[0]

    def to(self, device) -> FullCurvature:
        return FullCurvature(self.eigenvalues.to(device), self.eigenvectors.to(device))

    def accumulate(self, update, weight, update_weight) -> FullCurvature:
        """G₁ + G₂, exactly (the weights of the data sets do not matter)."""
        return FullCurvature.from_matrix(self.dense() + update.dense())

    def to_eigenbasis(self, J: torch.Tensor) -> torch.Tensor:
        """Coordinates of rows of J (..., P) along the eigenvectors: J V, shape (..., r)."""
        return J @ self.eigenvectors.to(J.device)

    def from_eigenbasis(self, z: torch.Tensor) -> torch.Tensor:
        """Map eigenbasis coordinates (..., r) back to parameters: z Vᵀ."""
        return z @ self.eigenvectors.T.to(z.device)

    def dense(self) -> torch.Tensor:
        """The GGN as a dense matrix (for tests and small problems)."""
        return (self.eigenvectors * self.eigenvalues) @ self.eigenvectors.T


@dataclass
class DiagCurvature(Curvature):
    """A diagonal GGN: the eigenbasis is the parameter basis itself."""

    eigenvalues: torch.Tensor  # (P,)

    structure = "diag"
    couples_weights = False

    @classmethod
    def from_diagonal(cls, diagonal: torch.Tensor) -> DiagCurvature:
        return cls(diagonal.clamp_min(0.0))

    @property
    def n_params(self) -> int:
        return self.eigenvalues.shape[0]

    def to(self, device) -> DiagCurvature:
        return DiagCurvature(self.eigenvalues.to(device))

    def accumulate(self, update, weight, update_weight) -> DiagCurvature:
        """diag(G₁) + diag(G₂), exactly."""
        return DiagCurvature.from_diagonal(self.eigenvalues + update.eigenvalues)

    def to_eigenbasis(self, J: torch.Tensor) -> torch.Tensor:
        return J

    def from_eigenbasis(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def dense(self) -> torch.Tensor:
        return torch.diag(self.eigenvalues)

    def cavity_covariance(self, posterior, J, L, unit) -> torch.Tensor:
        """J diag(1 / (p − u d_i)) Jᵀ, with d_i the diagonal of the row's GGN J_iᵀ L Lᵀ J_i: the
        diagonal GGN is Σ_i diag(J_iᵀ Λ_i J_i), so the row's share is its diagonal."""
        share = torch.einsum("nkc,nkp->ncp", L, J).square().sum(1) / posterior.noise_scale**2
        precision = posterior.precision_eigenvalues.to(J) - unit[:, None] * share
        floor = posterior.prior_precision_vector.to(J)  # the prior's part is never removed
        return torch.einsum("nkp,np,nlp->nkl", J, 1.0 / torch.maximum(precision, floor), J)


def fit_curvature(
    module: nn.Module,
    likelihood,
    X: torch.Tensor,
    weights: torch.Tensor,
    param_names: Sequence[str],
    structure: str,
    hessian_sqrt: torch.Tensor | None = None,
) -> Curvature:
    """Accumulate the GGN of ``structure`` ("full", "kron" or "diag") and decompose it."""
    if structure == "diag":
        return DiagCurvature.from_diagonal(
            ggn_matrix(
                module,
                likelihood,
                X,
                weights,
                param_names,
                diagonal=True,
                hessian_sqrt=hessian_sqrt,
            )
        )
    if structure == "kron":
        return fit_kron_curvature(module, likelihood, X, weights, param_names, hessian_sqrt)
    if structure != "full":
        raise ValueError(f"Unknown hessian_structure {structure!r}.")
    return DenseGGN.at(module, likelihood, X, weights, param_names, hessian_sqrt).decomposed()


def ggn_spectrum(module, likelihood, X, weights, param_names, structure) -> torch.Tensor:
    """``fit_curvature(...).spectrum()`` without the dense GGN's eigenvectors: one eigvalsh,
    about a third of the cost of an eigh with its eigenvectors (the other structures' are cheap)."""
    if structure != "full":
        return fit_curvature(module, likelihood, X, weights, param_names, structure).spectrum()
    return DenseGGN.at(module, likelihood, X, weights, param_names).spectrum()


def gauss_newton_ggn(module, likelihood, X, weights, param_names, structure):
    """The GGN in the form a damped Gauss–Newton step solves with: the full GGN as a
    :class:`DenseGGN` (no eigenvectors), the other structures decomposed (they are cheap)."""
    if structure == "full":
        return DenseGGN.at(module, likelihood, X, weights, param_names)
    return fit_curvature(module, likelihood, X, weights, param_names, structure)


@dataclass(frozen=True)
class DenseGGN:
    """The full GGN without its eigenvectors, for its spectrum and damped solves.

    Held as G itself (P × P), or, when the data have fewer rows r (times outputs) than weights,
    as its factor M (r × P, G = MᵀM) with the Gram matrix M Mᵀ. A damped solve is then one
    Cholesky factorisation, of G/c² + aI or through the Woodbury identity

        (MᵀM/c² + aI)⁻¹ v = (v − Mᵀ (M Mᵀ + a c² I)⁻¹ M v) / a,

    where an eigendecomposition with eigenvectors costs several times as much.
    """

    matrix: torch.Tensor | None = None
    factor: torch.Tensor | None = None
    gram: torch.Tensor | None = None

    @classmethod
    def at(cls, module, likelihood, X, weights, param_names, hessian_sqrt=None) -> DenseGGN:
        """The GGN of the module's weights ``param_names`` on rows X (module in float64);
        ``hessian_sqrt`` as in :func:`ggn_factor_blocks`."""
        if _rank_below_size(module, X, param_names):
            # Few data, many weights: the rank of G is at most n_rows; keep the Gram matrix.
            blocks = ggn_factor_blocks(module, likelihood, X, weights, param_names, hessian_sqrt)
            M = torch.cat(list(blocks))
            return cls(factor=M, gram=M @ M.T)
        ggn = ggn_matrix(module, likelihood, X, weights, param_names, hessian_sqrt=hessian_sqrt)
        return cls(matrix=0.5 * (ggn + ggn.T))

    def decomposed(self) -> FullCurvature:
        """Its eigendecomposition, with eigenvectors (what the posterior needs)."""
        if self.factor is None:
            return FullCurvature.from_matrix(self.matrix)
        return FullCurvature.from_factor(self.factor, self.gram)

    def spectrum(self) -> torch.Tensor:
        """All P eigenvalues of G, the zeros outside a factor's row space included."""
        if self.factor is None:
            return torch.linalg.eigvalsh(self.matrix).clamp_min(0.0)
        eigenvalues = torch.linalg.eigvalsh(self.gram)
        kept = eigenvalues[_significant(eigenvalues, self.factor)]
        return torch.cat([kept, kept.new_zeros(self.factor.shape[1] - kept.shape[0])])

    def damped_solve(self, v: torch.Tensor, noise_scale: float, shift: float) -> torch.Tensor:
        """(G/c² + aI)⁻¹ v for the noise scale c and a scalar shift a > 0 (prior plus damping)."""
        if self.factor is None:
            return _shifted_solve(self.matrix / noise_scale**2, shift, v)
        M = self.factor
        inner = _shifted_solve(self.gram, shift * noise_scale**2, M @ v)
        return (v - M.T @ inner) / shift


def _shifted_solve(matrix: torch.Tensor, shift: float, rhs: torch.Tensor) -> torch.Tensor:
    """(A + sI)⁻¹ rhs for a positive semi-definite A and s > 0: one Cholesky factorisation, or,
    where round-off makes A + sI numerically indefinite (A's eigenvalues dwarf s), the solve in
    A's eigenbasis with its eigenvalues floored at 0."""
    system = matrix.clone()
    system.diagonal().add_(shift)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(rhs[:, None], factor)[:, 0]
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return vectors @ ((vectors.T @ rhs) / (values.clamp_min(0.0) + shift))


def _rank_below_size(module, X, param_names) -> bool:
    """Fewer rows (times outputs) than parameters: G is low-rank, its Gram matrix smaller."""
    n_params = sum(dict(module.named_parameters())[name].numel() for name in param_names)
    return X.shape[0] * module(X[:1]).shape[-1] < n_params


def _significant(gram_eigenvalues: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """The eigenvalues of M Mᵀ above its round-off level (the others are the GGN's zeros)."""
    floor = gram_eigenvalues.max().clamp_min(0.0) * M.shape[0] * torch.finfo(M.dtype).eps
    return gram_eigenvalues > floor


def check_structure(structure: str, n_params: int, layerwise: bool) -> None:
    """A dense GGN neither mixes with a layerwise prior nor may exceed the machine's memory."""
    if structure != "full":
        return
    if layerwise:
        raise ValueError(
            "prior_structure='layerwise' needs a GGN that does not mix layers: use "
            "hessian_structure='kron', 'diag' or 'auto' (which then picks 'kron')."
        )
    needed = 2 * 8 * n_params**2  # the GGN and its eigenvectors, float64
    available = _physical_memory_bytes() * FULL_GGN_MAX_MEMORY_FRACTION
    if needed > available:
        raise ValueError(
            f"hessian_structure='full' needs {needed / 2**30:.1f} GiB for the "
            f"{n_params}×{n_params} GGN of this network, more than "
            f"{available / 2**30:.1f} GiB available; use hessian_structure='kron' or "
            "'diag', or subset_of_weights='last_layer'."
        )


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        return 8 * 2**30

"""Kronecker-factored (KFAC) GGN of an MLP's Linear layers, kept in its Kronecker eigenbasis.

For a Linear layer l, s = W a + b with W of shape (out, in), write its weights as one matrix
M = [W | b] of shape (out, in + 1) and its input as ã = [a, 1]. The GGN block of layer l, in the
row-major order of M, is Σ_n w_n (Σ_c g_nc g_ncᵀ) ⊗ ã_n ã_nᵀ, with g_nc = (∂f_n/∂s_l)ᵀ L_n[:, c]
the back-propagated column c of L_n, L_n L_nᵀ = Λ_n. KFAC replaces it by G_l ⊗ A_l, with the
exact ("type-2", KFLR: all K columns of L back-propagated, nothing sampled) factors

    G_l = Σ_n w_n Σ_c g_nc g_ncᵀ                  (out × out, a weighted sum),
    A_l = Σ_n w_n ã_n ã_nᵀ / Σ_n w_n              (in+1 × in+1, a weighted mean),

and drops all cross-layer blocks (Martens & Grosse 2015; Botev et al. 2017; Ritter et al. 2018 for
the Laplace approximation). Folding the bias into A keeps the W–b correlations. G_l ⊗ A_l is exact
for a single Linear layer with a Gaussian likelihood (then G_l = (Σ_n w_n) Λ), for the last layer
with a Gaussian likelihood, and within each layer for one data point.

With G_l = Q_G diag(λ) Q_Gᵀ and A_l = Q_A diag(ν) Q_Aᵀ, G_l ⊗ A_l = (Q_G ⊗ Q_A) diag(λ ⊗ ν)
(Q_G ⊗ Q_A)ᵀ: the eigenbasis coordinates of a layer's parameters M are Q_Gᵀ M Q_A (row-major) with
eigenvalues λ_i ν_j, so the posterior (:mod:`skbnn._posterior`) and the evidence
(:mod:`skbnn._evidence`) use it exactly as the full and diagonal structures, with P eigenvalues.

The factors are accumulated over blocks of rows of X in the module's dtype (float64 in the
estimators), from :mod:`torch.func` per-sample Jacobians ∂f_n/∂s_l of the outputs with respect to
a zero perturbation added to each pre-activation s_l.

Wide inputs (fewer rows n than in_l + 1, e.g. 50 rows of 2000 features): A_l = RᵀR with the root
R = [√(w_n / Σw) ã_nᵀ]_n of shape (n, in_l + 1) has rank ≤ n, so it is decomposed through R
instead of by a dense O(in³) eigh. A Householder QR Rᵀ = Q₁T gives A_l = Q₁ (TTᵀ) Q₁ᵀ; the n × n
eigh TTᵀ = U diag(ν) Uᵀ gives the nonzero eigenpairs (ν, Q₁U), and the other reflector columns
complete the basis with eigenvalue 0. The full orthonormal (in_l + 1)² basis is formed in
O(in² n) as I − V S⁻¹ Vᵀ from the reflectors V (the compact "UT" form of their product,
S = striu(VᵀV) + diag(1/τ); Joffrain et al. 2006), so every consumer of Q_A sees the same
structure as on ordinary data, where nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import jacrev, vmap
from torch.nn import functional as F

from skbnn._curvature_base import Curvature
from skbnn._jacobians import jacobian_batch_size
from skbnn._loo import MIN_CAVITY_EIGENVALUE, output_curvature_and_gradient


@dataclass
class KronCurvature(Curvature):
    """A block-diagonal GGN ⊕_l G_l ⊗ A_l, one block per Linear layer, from the factors' eigh.

    The parameter vector is, layer after layer, W_l flattened row-major then b_l; the Kronecker
    block of layer l acts on M_l = [W_l | b_l] flattened row-major.
    """

    output_eigenvalues: list[torch.Tensor]  # λ of each G_l, (out_l,)
    output_eigenvectors: list[torch.Tensor]  # Q_G of each G_l, (out_l, out_l)
    input_eigenvalues: list[torch.Tensor]  # ν of each A_l, (in_l + 1,)
    input_eigenvectors: list[torch.Tensor]  # Q_A of each A_l, (in_l + 1, in_l + 1)

    structure = "kron"

    def to(self, device) -> KronCurvature:
        return KronCurvature(
            *(
                [t.to(device) for t in factors]
                for factors in (
                    self.output_eigenvalues,
                    self.output_eigenvectors,
                    self.input_eigenvalues,
                    self.input_eigenvectors,
                )
            )
        )

    def accumulate(self, update, weight, update_weight) -> KronCurvature:
        """Online KFAC (as laplace-torch): a sum of Kronecker products is not one, so the output
        factors G add and the input factors A (means over the data) are pooled by the data
        weights, (N₁A₁ + N₂A₂)/(N₁ + N₂), which is exact when A₁ = A₂."""
        return pool_kron_curvatures(self, update, weight, update_weight)

    def glm_outputs(self, module, posterior, X) -> tuple[torch.Tensor, torch.Tensor]:
        """The rank-one layer form of :func:`kron_glm_outputs`: no (n, K, P) Jacobian."""
        return kron_glm_outputs(module, X, posterior)

    def loo_cavities(self, module, posterior, likelihood, X, y, unit):
        """KFAC's share of row i in layer l is u G_{l,i} ⊗ A_l, with G_{l,i} = D_iᵀ Λ_i D_i and
        D_i = ∂f_i/∂s_l (A_l is a mean over rows, G_l a sum), so the cavity layer block is
        (G_l − u G_{l,i}) ⊗ A_l + δ_l I: removed in closed form where G_{l,i} is rank one
        (:meth:`_rank_one_cavity_covariance`), else by one small eigendecomposition per row and
        layer (:meth:`_cavity_covariance`)."""
        layer_indices = kron_layer_indices(module, posterior.param_names)
        output_factors, _ = self.factors()  # G_l, for the per-row eigendecompositions
        sizes = [Q_G.shape[0] * Q_A.shape[0] for Q_G, Q_A in self._eigenvector_pairs()]
        deltas = [float(d[0]) for d in posterior.prior_precision_vector.split(sizes)]
        scale = posterior.noise_scale**-2
        offsets = _mean_offset_matrices(posterior, self._layer_shapes(), X)
        means, covs = [], []
        for begin, (backprops, f, inputs) in layer_backprops(module, layer_indices, X):
            rows = slice(begin, begin + f.shape[0])
            f = _linearised_mean(f, backprops, inputs, offsets)
            L, g = output_curvature_and_gradient(likelihood, f, y[rows], posterior.noise_scale)
            if L.shape[-1] == 1:
                layer_covariance = self._rank_one_cavity_covariance
            else:
                layer_covariance = functools.partial(self._cavity_covariance, output_factors)
            cov = sum(
                layer_covariance(layer, D, a, L, unit[rows], scale, deltas[layer])
                for layer, (D, a) in enumerate(zip(backprops, inputs, strict=True))
            )
            means.append(f - unit[rows, None] * (cov @ g.unsqueeze(-1)).squeeze(-1))
            covs.append(cov)
        return torch.cat(means).detach(), torch.cat(covs).detach()

    def _cavity_covariance(self, output_factors, layer, D, a, L, unit, scale, delta):
        """Layer l's part of J_i Σ₋ᵢ J_iᵀ (n, K, K): the eigendecomposition of G_l − u G_{l,i}
        per row (``output_factors`` holds each G_l)."""
        DL = D.mT @ L  # (n, out, C): the row's output factor is DL DLᵀ
        remaining = output_factors[layer].to(D) - unit[:, None, None] * (DL @ DL.mT)
        lam, Q = torch.linalg.eigh(0.5 * (remaining + remaining.mT))
        nu = self.input_eigenvalues[layer].to(D)
        precision = scale * lam.clamp_min(0.0)[:, :, None] * nu + delta
        input_vectors = self.input_eigenvectors[layer].to(D)
        return kron_layer_covariance(D, a, Q, input_vectors, 1.0 / precision)

    def _rank_one_cavity_covariance(self, layer, D, a, L, unit, scale, delta):
        """Layer l's part of J_i Σ₋ᵢ J_iᵀ (n, K, K) when L_i has one column (one output), so
        that the row's share of G_l is v vᵀ, v = D_iᵀ L_i: no eigendecomposition per row.

        In the direction q_j of A_l (eigenvalue ν_j) the cavity precision is B_j − ρ_j v vᵀ,
        with B_j = s ν_j G_l + δ I (diagonal in Q_G) and ρ_j = u s ν_j, and Sherman–Morrison
        gives D (B_j − ρ_j v vᵀ)⁻¹ Dᵀ = S_j + ρ_j S_j L Lᵀ S_j / (1 − ρ_j Lᵀ S_j L), where
        S_j = D B_j⁻¹ Dᵀ. The layer's part is Σ_j (q_jᵀ ã)² times that.
        """
        lam = self.output_eigenvalues[layer].to(D).clamp_min(0.0)
        nu = self.input_eigenvalues[layer].to(D)
        E = D @ self.output_eigenvectors[layer].to(D)  # (n, K, out): D in the basis Q_G
        S = torch.einsum("nko,nlo,jo->njkl", E, E, 1.0 / (scale * nu[:, None] * lam + delta))
        SL = S @ L[:, None]  # (n, J, K, 1)
        rho = unit[:, None] * scale * nu  # (n, J)
        remaining = 1.0 - rho * (L[:, None].mT @ SL)[..., 0, 0]  # > 0: G_l − u v vᵀ ⪰ 0
        cavity = S + (rho / remaining.clamp_min(MIN_CAVITY_EIGENVALUE))[..., None, None] * (
            SL @ SL.mT
        )
        a_rot = _with_bias(a) @ self.input_eigenvectors[layer].to(D)  # (n, J)
        return torch.einsum("nj,njkl->nkl", a_rot.square(), cavity)

    def _eigenvector_pairs(self):
        return zip(self.output_eigenvectors, self.input_eigenvectors, strict=True)

    @classmethod
    def from_factors(
        cls,
        output_factors: Sequence[torch.Tensor],
        input_factors: Sequence[torch.Tensor | FactorRoot],
    ) -> KronCurvature:
        """Decompose the factors G_l (out_l, out_l) and A_l (in_l + 1, in_l + 1) of each layer.

        An input factor may be given as a :class:`FactorRoot` R (A_l = RᵀR, fewer rows than
        columns): it is then decomposed through its rank, without a dense eigh.
        """
        outputs = [_symmetric_eigh(G) for G in output_factors]
        inputs = [
            A.eigh() if isinstance(A, FactorRoot) else _symmetric_eigh(A) for A in input_factors
        ]
        return cls(
            output_eigenvalues=[lam for lam, _ in outputs],
            output_eigenvectors=[Q for _, Q in outputs],
            input_eigenvalues=[nu for nu, _ in inputs],
            input_eigenvectors=[Q for _, Q in inputs],
        )

    def factors(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The factors G_l and A_l rebuilt from their eigendecompositions."""

        def rebuild(values, vectors):
            return [(Q * lam) @ Q.T for lam, Q in zip(values, vectors, strict=True)]

        return (
            rebuild(self.output_eigenvalues, self.output_eigenvectors),
            rebuild(self.input_eigenvalues, self.input_eigenvectors),
        )

    @property
    def eigenvalues(self) -> torch.Tensor:
        """All P eigenvalues λ_i ν_j, layer after layer, in the order of the eigenbasis."""
        per_layer = [
            torch.outer(lam, nu).flatten()
            for lam, nu in zip(self.output_eigenvalues, self.input_eigenvalues, strict=True)
        ]
        return torch.cat(per_layer).clamp_min(0.0)

    @property
    def n_params(self) -> int:
        return sum(out * inp for out, inp in self._layer_shapes())

    def to_eigenbasis(self, J: torch.Tensor) -> torch.Tensor:
        """Coordinates of rows of J (..., P) along the eigenvectors: Q_Gᵀ [W | b] Q_A per layer."""
        self._check_last_axis(J)
        parts, start = [], 0
        for (out, inp), Q_G, Q_A in self._layers():
            M = _parameters_to_matrix(J[..., start : start + out * inp], out, inp)
            rotated = Q_G.T.to(J.device) @ M @ Q_A.to(J.device)
            parts.append(rotated.flatten(start_dim=-2))
            start += out * inp
        return torch.cat(parts, dim=-1)

    def from_eigenbasis(self, z: torch.Tensor) -> torch.Tensor:
        """Map eigenbasis coordinates (..., P) back to parameters: Q_G Z Q_Aᵀ per layer."""
        self._check_last_axis(z)
        parts, start = [], 0
        for (out, inp), Q_G, Q_A in self._layers():
            Z = z[..., start : start + out * inp].unflatten(-1, (out, inp))
            M = Q_G.to(z.device) @ Z @ Q_A.T.to(z.device)
            parts.append(_matrix_to_parameters(M))
            start += out * inp
        return torch.cat(parts, dim=-1)

    def dense(self) -> torch.Tensor:
        """The GGN as a dense (P, P) matrix in parameter order (for tests and small problems)."""
        Q = self.output_eigenvectors[0]
        eye = torch.eye(self.n_params, dtype=Q.dtype, device=Q.device)
        V = self.to_eigenbasis(eye)  # row p: parameter direction p in eigenbasis coordinates
        return (V * self.eigenvalues) @ V.T

    def _layer_shapes(self) -> list[tuple[int, int]]:
        """(out_l, in_l + 1) for each layer."""
        return [
            (Q_G.shape[0], Q_A.shape[0])
            for Q_G, Q_A in zip(self.output_eigenvectors, self.input_eigenvectors, strict=True)
        ]

    def _layers(self) -> Iterable[tuple[tuple[int, int], torch.Tensor, torch.Tensor]]:
        return zip(
            self._layer_shapes(), self.output_eigenvectors, self.input_eigenvectors, strict=True
        )

    def _check_last_axis(self, A: torch.Tensor) -> None:
        if A.shape[-1] != self.n_params:
            raise ValueError(f"Expected a last axis of size {self.n_params}, got {A.shape[-1]}.")


@dataclass
class FactorRoot:
    """A PSD factor RᵀR of size m × m given by its root R of shape (n, m), n < m (wide inputs)."""

    root: torch.Tensor  # (n, m)

    def eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (m,) and an orthonormal eigenbasis (m, m) of RᵀR in O(m² n), not O(m³).

        The m − n directions outside the row space of R come first, with eigenvalue exactly 0.
        """
        R = self.root
        n, m = R.shape
        reflectors, tau = torch.geqrf(R.T)  # Rᵀ = Q₁ T, Q = H_1 ⋯ H_n
        T = reflectors[:n].triu()
        nu, U = _symmetric_eigh(T @ T.T)
        # Q = I − V S⁻¹ Vᵀ with V the unit lower-trapezoidal reflectors. A reflector with τ = 0
        # is the identity: its column of V is dropped (zeroed, with a unit diagonal entry of S).
        V = reflectors.tril(-1)
        V.diagonal().fill_(1.0)
        identity_reflector = tau == 0
        V[:, identity_reflector] = 0.0
        S = (V.T @ V).triu(1)
        S.diagonal().copy_(torch.where(identity_reflector, torch.ones_like(tau), 1.0 / tau))
        Q = -(V @ torch.linalg.solve_triangular(S, V.T, upper=True))
        Q.diagonal().add_(1.0)  # I − V S⁻¹ Vᵀ, without an m × m identity
        eigenvalues = torch.cat([nu.new_zeros(m - n), nu])
        return eigenvalues, torch.cat([Q[:, n:], Q[:, :n] @ U], dim=1)


def pool_kron_curvatures(
    previous: KronCurvature, update: KronCurvature, previous_weight: float, update_weight: float
) -> KronCurvature:
    """G₁ + G₂ and (N₁A₁ + N₂A₂)/(N₁ + N₂) per layer, decomposed (online KFAC; partial_fit).

    Where the two input factors have fewer nonzero eigenvalues together than their size (wide
    chunks), the pooled factor is decomposed through the root [√(N_i/N) √ν_i Q_iᵀ]_i of its
    nonzero eigenpairs; otherwise, as always, densely.
    """
    (G1, A1), (G2, A2) = previous.factors(), update.factors()
    total = previous_weight + update_weight
    inputs: list[torch.Tensor | FactorRoot] = []
    for layer, (a, b) in enumerate(zip(A1, A2, strict=True)):
        parts = [
            (weight / total) ** 0.5 * (Q[:, nu > 0] * nu[nu > 0].sqrt()).T
            for weight, nu, Q in (
                (
                    previous_weight,
                    previous.input_eigenvalues[layer],
                    previous.input_eigenvectors[layer],
                ),
                (update_weight, update.input_eigenvalues[layer], update.input_eigenvectors[layer]),
            )
        ]
        root = torch.cat(parts)
        if root.shape[0] < root.shape[1]:
            inputs.append(FactorRoot(root))
        else:
            inputs.append((previous_weight * a + update_weight * b) / total)
    return KronCurvature.from_factors([a + b for a, b in zip(G1, G2, strict=True)], inputs)


def _symmetric_eigh(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clamped at 0: the factors are PSD up to round-off) and eigenvectors of S."""
    eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (S + S.T))
    return eigenvalues.clamp_min(0.0), eigenvectors


def _parameters_to_matrix(theta: torch.Tensor, out: int, inp: int) -> torch.Tensor:
    """(..., out·in + out) laid out as W.flatten() then b  ->  [W | b] of shape (..., out, in+1)."""
    n_weight = out * (inp - 1)
    W = theta[..., :n_weight].unflatten(-1, (out, inp - 1))
    b = theta[..., n_weight:].unsqueeze(-1)
    return torch.cat([W, b], dim=-1)


def _matrix_to_parameters(M: torch.Tensor) -> torch.Tensor:
    """[W | b] of shape (..., out, in+1)  ->  W.flatten() then b, shape (..., out·(in+1))."""
    return torch.cat([M[..., :-1].flatten(start_dim=-2), M[..., -1]], dim=-1)


def kron_layer_indices(module: nn.Module, param_names: Sequence[str]) -> list[int]:
    """Indices in the Sequential of the Linear layers that ``param_names`` covers, in order.

    Raises ValueError unless ``param_names`` is, layer after layer, ``"i.weight", "i.bias"`` of
    whole ``nn.Linear`` layers with a bias.
    """
    names = list(param_names)
    if not isinstance(module, nn.Sequential) or not names or len(names) % 2:
        raise _not_whole_layers(names)
    indices = []
    for weight_name, bias_name in zip(names[::2], names[1::2], strict=True):
        prefix, _, leaf = weight_name.rpartition(".")
        if leaf != "weight" or bias_name != f"{prefix}.bias" or not prefix.isdigit():
            raise _not_whole_layers(names)
        index = int(prefix)
        layer = module[index] if index < len(module) else None
        if not isinstance(layer, nn.Linear) or layer.bias is None or index in indices:
            raise _not_whole_layers(names)
        indices.append(index)
    return indices


def _not_whole_layers(names: Sequence[str]) -> ValueError:
    return ValueError(
        'hessian_structure="kron" needs the parameters of whole Linear layers with biases, '
        f"each as weight then bias; got {names!r}."
    )


def _forward_with_perturbations(
    module: nn.Sequential,
    layer_indices: Sequence[int],
    perturbations: tuple[torch.Tensor, ...],
    x: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
    """f(x) of one sample with s_l + e_l at each covered layer; aux: (f, the inputs a_l)."""
    position = {index: i for i, index in enumerate(layer_indices)}
    inputs: list[torch.Tensor | None] = [None] * len(layer_indices)
    h = x
    for index, layer in enumerate(module):
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.detach()
            s = F.linear(h, layer.weight.detach(), bias)
        else:
            s = layer(h)
        if index in position:
            inputs[position[index]] = h
            s = s + perturbations[position[index]]
        h = s
    return h, (h, tuple(inputs))


def layer_backprops(module: nn.Sequential, layer_indices: Sequence[int], X: torch.Tensor):
    """Per block of rows: (start, (∂f/∂s_l per layer (n, K, out_l)), f (n, K), inputs a_l)."""
    layers = [module[index] for index in layer_indices]
    zeros = tuple(torch.zeros(lin.out_features, dtype=X.dtype, device=X.device) for lin in layers)

    def single(perturbations: tuple[torch.Tensor, ...], x: torch.Tensor):
        return _forward_with_perturbations(module, layer_indices, perturbations, x)

    per_sample = vmap(jacrev(single, has_aux=True), in_dims=(None, 0))
    n_outputs = module[-1].out_features
    per_row = sum(n_outputs * lin.out_features + lin.in_features + 1 for lin in layers)
    step = jacobian_batch_size(n_outputs, per_row)
    for begin in range(0, X.shape[0], step):
        jacs, (f, inputs) = per_sample(zeros, X[begin : begin + step])
        yield begin, (jacs, f, inputs)


def kron_glm_outputs(
    module: nn.Sequential, X: torch.Tensor, posterior
) -> tuple[torch.Tensor, torch.Tensor]:
    """GLM predictive means f + J(μ − θ*) and covariances J Σ Jᵀ (n, K, K) of a KFAC posterior.

    The Jacobian of layer l for output k is the outer product g_lk ã_lᵀ, so its eigenbasis
    coordinates (Q_Gᵀ g)(Q_Aᵀ ã)ᵀ are rank one and J Σ Jᵀ = Σ_l Σ_ij (Q_Gᵀg_k)_i (Q_Gᵀg_k')_i
    (Q_Aᵀã)_j² / (sλ_i ν_j + δ_l): O(K² Σ_l out_l in_l) per row, with no (n, K, P) Jacobian.
    """
    curvature = posterior.curvature
    layer_indices = kron_layer_indices(module, posterior.param_names)
    shapes = curvature._layer_shapes()
    sizes = [out * inp for out, inp in shapes]
    inverse = [
        (1.0 / block).reshape(shape).to(X)
        for block, shape in zip(posterior.precision_eigenvalues.split(sizes), shapes, strict=True)
    ]
    offsets = _mean_offset_matrices(posterior, shapes, X)
    means, covs = [], []
    for _, (jacs, f, inputs) in layer_backprops(module, layer_indices, X):
        cov = f.new_zeros(f.shape[0], f.shape[1], f.shape[1])
        for i, (jac, a) in enumerate(zip(jacs, inputs, strict=True)):
            cov += kron_layer_covariance(
                jac,
                a,
                curvature.output_eigenvectors[i].to(X),
                curvature.input_eigenvectors[i].to(X),
                inverse[i],
            )
        means.append(_linearised_mean(f, jacs, inputs, offsets).detach())
        covs.append(cov.detach())
    return torch.cat(means), torch.cat(covs)


def _mean_offset_matrices(posterior, shapes, X) -> list[torch.Tensor] | None:
    """μ − θ* as one (out, in + 1) matrix per layer, or None for Laplace (μ = θ*)."""
    offset = posterior.mean_offset
    if offset is None:
        return None
    sizes = [out * inp for out, inp in shapes]
    return [
        _parameters_to_matrix(block, out, inp).to(X)
        for block, (out, inp) in zip(offset.split(sizes), shapes, strict=True)
    ]


def _linearised_mean(f, jacs, inputs, offsets) -> torch.Tensor:
    """f + J(μ − θ*), layer by layer: J_l's rows are the outer products (∂f/∂s_l) ãᵀ."""
    if offsets is None:
        return f
    for jac, a, offset in zip(jacs, inputs, offsets, strict=True):
        a_tilde = _with_bias(a)
        f = f + torch.einsum("nko,oi,ni->nk", jac, offset, a_tilde)
    return f


def _with_bias(a: torch.Tensor) -> torch.Tensor:
    """ã = [a, 1] for each row of a layer's inputs a (n, in)."""
    return torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)


def kron_layer_covariance(
    backprop: torch.Tensor,
    a: torch.Tensor,
    output_eigenvectors: torch.Tensor,
    input_eigenvectors: torch.Tensor,
    inverse_precision: torch.Tensor,
) -> torch.Tensor:
    """One layer's part of J Σ Jᵀ (n, K, K) under a precision diagonal in a Kronecker eigenbasis.

    ``backprop`` (n, K, out) holds ∂f/∂s_l and ``a`` (n, in) the layer's inputs; the eigenbasis is
    Q_G ⊗ Q_A and ``inverse_precision`` holds 1/(sλ_i ν_j + δ) as (out, in + 1). Q_G and the
    inverse precisions may also be given per row, (n, out, out) and (n, out, in + 1): the
    leave-one-out cavities (:mod:`skbnn._loo`) change the output factor row by row.
    """
    g_rot = backprop @ output_eigenvectors  # (n, K, out)
    a_rot = _with_bias(a) @ input_eigenvectors  # (n, in + 1)
    inverse = inverse_precision.expand(a.shape[0], -1, -1)
    weight = torch.einsum("nj,nij->ni", a_rot.square(), inverse)  # Σ_j ã_j² / (sλ_i ν_j + δ)
    return torch.einsum("nki,nli,ni->nkl", g_rot, g_rot, weight)


def _kron_factor_sums(
    module: nn.Sequential,
    likelihood,
    X: torch.Tensor,
    weights: torch.Tensor,
    layer_indices: Sequence[int],
    hessian_sqrt: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor | FactorRoot]]:
    """Σ_n w_n Σ_c g_nc g_ncᵀ and Σ_n w_n ã_n ã_nᵀ for each layer, over blocks of rows of X.

    For a layer with more inputs than X has rows, the second sum is returned as a
    :class:`FactorRoot` of the rows √w_n ã_nᵀ (n, in + 1), to be decomposed through its rank.
    """
    layers = [module[index] for index in layer_indices]
    dtype, device = X.dtype, X.device
    wide = [X.shape[0] < lin.in_features + 1 for lin in layers]
    G = [
        torch.zeros(lin.out_features, lin.out_features, dtype=dtype, device=device)
        for lin in layers
    ]
    A = [
        None
        if is_wide
        else torch.zeros(lin.in_features + 1, lin.in_features + 1, dtype=dtype, device=device)
        for lin, is_wide in zip(layers, wide, strict=True)
    ]
    roots: list[list[torch.Tensor]] = [[] for _ in layers]

    for begin, (jacs, f, inputs) in layer_backprops(module, layer_indices, X):
        step = f.shape[0]
        w = weights[begin : begin + step]
        if hessian_sqrt is None:
            L = likelihood.output_hessian_sqrt(f)  # (batch, K, C)
        else:
            L = hessian_sqrt[begin : begin + step]
        for i, (jac, a) in enumerate(zip(jacs, inputs, strict=True)):
            g = torch.einsum("bko,bkc->bco", jac, L)  # g_nc, (batch, C, out)
            G[i] += torch.einsum("b,bco,bcp->op", w, g, g)
            a_tilde = _with_bias(a)
            if wide[i]:
                roots[i].append(w.sqrt()[:, None] * a_tilde)
            else:
                A[i] += torch.einsum("b,bi,bj->ij", w, a_tilde, a_tilde)
    inputs = [
        FactorRoot(torch.cat(rows)) if is_wide else A_i
        for A_i, rows, is_wide in zip(A, roots, wide, strict=True)
    ]
    return G, inputs


def fit_kron_curvature(
    module: nn.Sequential,
    likelihood,
    X: torch.Tensor,
    weights: torch.Tensor,
    param_names: Sequence[str],
    hessian_sqrt: torch.Tensor | None = None,
) -> KronCurvature:
    """The KFAC GGN of the Linear layers in ``param_names`` (all of them, or the last layer's).

    Parameters
    ----------
    module : nn.Sequential
        The network, in the dtype of X (float64 in the estimators).
    likelihood : object
        Provides ``output_hessian_sqrt(f)`` of shape (batch, K, C) with L Lᵀ = Λ.
    X : tensor of shape (n_samples, n_features)
    weights : tensor of shape (n_samples,)
        Frequency weights w_n.
    param_names : sequence of str
        Whole Linear layers, each as ``"i.weight", "i.bias"``; otherwise ValueError.
    hessian_sqrt : tensor of shape (n_samples, K, C), optional
        Per-row square roots of the output curvature to use instead of the likelihood's at f
        (GGN-VI uses its expected curvature E_q[Λ_n]).
    """
    layer_indices = kron_layer_indices(module, param_names)
    G, A_sum = _kron_factor_sums(module, likelihood, X, weights, layer_indices, hessian_sqrt)
    total_weight = weights.sum()
    inputs = [
        FactorRoot(A.root / total_weight.sqrt()) if isinstance(A, FactorRoot) else A / total_weight
        for A in A_sum
    ]
    return KronCurvature.from_factors(G, inputs)

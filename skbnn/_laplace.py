"""The Laplace approximation at a network's current weights: its float64 copy, the GGN and the
evidence's data terms.

Given a fit's problem (network, likelihood, training rows, GGN structure; see
:class:`skbnn._fitting.Problem`), :func:`laplace_at` returns the GGN decomposed at the current
weights with the terms of the Laplace evidence (:mod:`skbnn._evidence`), and
:func:`evidence_terms_at` the terms alone, from the GGN's spectrum without eigenvectors: all that
an online refresh of δ and c needs; :func:`gauss_newton_at` the terms with the GGN in the form a
refinement step solves with (:class:`GaussNewtonModel`), decomposed only where it is kept.
Outputs or curvature that are not finite at the trained weights raise
:class:`~skbnn._training.TrainingDivergedError`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from skbnn._curvature import fit_curvature, gauss_newton_ggn, ggn_spectrum
from skbnn._evidence import EvidenceTerms
from skbnn._network import flat_parameters, layer_sizes, row_blocks
from skbnn._posterior import GaussianPosterior
from skbnn._training import TrainingDivergedError


@dataclass(frozen=True)
class Laplace:
    """The network in float64 at the current weights, its GGN and the evidence's data terms."""

    module: nn.Sequential
    curvature: object
    terms: EvidenceTerms

    def posterior(self, hyper, param_names) -> GaussianPosterior:
        """N(θ*, (G/c² + δI)⁻¹) at these weights and the given δ, c."""
        return GaussianPosterior(
            mean=flat_parameters(self.module, param_names),
            curvature=self.curvature,
            prior_precision=hyper.prior_precision,
            noise_scale=hyper.noise_scale,
            param_names=param_names,
            layer_sizes=layer_sizes(self.module, param_names),
        )

    def decomposed(self) -> Laplace:
        """Itself: its GGN is decomposed (as :meth:`GaussNewtonModel.decomposed`)."""
        return self


@dataclass(frozen=True)
class GaussNewtonModel:
    """The network in float64 at the current weights, its GGN in the form a refinement step
    solves with (the full GGN without eigenvectors) and the evidence's data terms."""

    module: nn.Sequential
    ggn: object
    terms: EvidenceTerms

    def decomposed(self) -> Laplace:
        """The Laplace approximation at these weights: the GGN decomposed, the terms holding
        the decomposition's eigenvalues (as :func:`laplace_at` gives them)."""
        curvature = self.ggn.decomposed()
        return Laplace(self.module, curvature, _with_spectrum(self.terms, curvature.spectrum()))


def laplace_at(problem) -> Laplace:
    """The GGN at the module's current weights (float64) and the evidence's data terms."""
    module64, data_terms, curvature = _at_float64(problem, fit_curvature)
    return Laplace(module64, curvature, _evidence_terms(data_terms, curvature.spectrum()))


def evidence_terms_at(problem) -> EvidenceTerms:
    """The evidence's data terms at the current weights, from the GGN's spectrum alone (no
    eigenvectors: all that an online refresh of δ and c needs)."""
    _, data_terms, spectrum = _at_float64(problem, ggn_spectrum)
    return _evidence_terms(data_terms, spectrum)


def gauss_newton_at(problem) -> GaussNewtonModel:
    """The GGN at the current weights as a refinement step needs it: the full GGN as a
    :class:`~skbnn._curvature.DenseGGN` (its spectrum, no eigenvectors), the other structures
    decomposed; with the evidence's data terms."""
    module64, data_terms, ggn = _at_float64(problem, gauss_newton_ggn)
    return GaussNewtonModel(module64, ggn, _evidence_terms(data_terms, ggn.spectrum()))


def _at_float64(problem, build):
    """The module in float64, the evidence's data terms and ``build`` (the GGN or its spectrum)
    of the problem's rows at the current weights."""
    module64, data_terms = _float64_data_terms(problem)
    X, _, weights = problem.float64
    built = _decomposed(
        build, module64, problem.likelihood, X, weights, problem.param_names, problem.structure
    )
    return module64, data_terms, built


def _float64_data_terms(problem):
    """The module in float64 and the evidence's terms that need no curvature, checked finite."""
    module64 = copy.deepcopy(problem.module).to(torch.float64)
    X, y, weights = problem.float64
    likelihood, names = problem.likelihood, problem.param_names
    with torch.no_grad():  # in blocks: one float64 forward pass of all rows is large
        data_fit = sum(
            float((weights[rows] * likelihood.data_fit(module64(X[rows]), y[rows])).sum())
            for rows in row_blocks(X.shape[0])
        )
    map_norm_sq = float(flat_parameters(module64, names).square().sum())
    # The training loss was finite, yet float64 outputs or curvature may still overflow.
    _check_finite_at_map([data_fit, map_norm_sq])
    return module64, dict(
        map_norm_sq=map_norm_sq,
        n_data=float(weights.sum()),
        n_outputs=module64[-1].out_features,
        data_fit=data_fit,
        gaussian=likelihood.name == "gaussian",
        log_noise_ref=likelihood.log_noise_ref,
        group_sizes=layer_sizes(module64, names),
        group_norms_sq=_layer_norms_sq(module64, names),
    )


def _evidence_terms(data_terms, spectrum: torch.Tensor) -> EvidenceTerms:
    terms = EvidenceTerms(eigenvalues=spectrum.cpu().numpy(), **data_terms)
    _check_finite_at_map(terms.eigenvalues)
    return terms


def _with_spectrum(terms: EvidenceTerms, spectrum: torch.Tensor) -> EvidenceTerms:
    """The terms with the eigenvalues of another decomposition of the same GGN."""
    return replace(terms, eigenvalues=spectrum.cpu().numpy())


def _decomposed(decompose, *args):
    """``decompose(*args)``, a failed eigendecomposition reported as diverged training."""
    try:
        return decompose(*args)
    except torch.linalg.LinAlgError as error:
        raise TrainingDivergedError(
            f"The GGN at the trained weights could not be decomposed ({error}). Lower "
            "learning_rate_init or standardise X and y."
        ) from error


def _layer_norms_sq(module, names):
    """‖θ_l‖² of each Linear layer among ``names``, in order."""
    params = dict(module.named_parameters())
    norms: dict[str, float] = {}
    for name in names:
        layer = name.rsplit(".", 1)[0]
        norms[layer] = norms.get(layer, 0.0) + float(params[name].detach().square().sum())
    return tuple(norms.values())


def _check_finite_at_map(values):
    if not np.isfinite(values).all():
        raise TrainingDivergedError(
            "The network's outputs or curvature at the trained weights are not finite. Lower "
            "learning_rate_init or standardise X and y."
        )

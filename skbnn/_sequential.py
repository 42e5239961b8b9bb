"""One ``partial_fit`` step: the posterior after one more chunk of rows.

Laplace (Ritter, Botev & Barber 2018). With the previous posterior N(μ, Λ⁻¹) as the prior, the
chunk's weights θ_t minimise

    Σ_n w_n ℓ_n(θ) + ½ (θ − μ)ᵀ Λ (θ − μ)

(weights outside the posterior: an isotropic δ around their previous values); the chunk's GGN at
θ_t is added to the accumulated one, Λ_t = Λ_GGN + G_chunk (+ δI), and δ, c set to 'evidence' are
re-estimated on all data seen so far.

GGN-VI (Gaussian likelihood). The posterior is that of the network linearised at θ*, the weights
of the first fit, f_lin(x, θ) = f(x; θ*) + J(x)(θ − θ*): a linear-Gaussian model, which Bayes'
rule updates chunk by chunk with no training. With hyperparameters (δ, c) and the GGN G at θ*,
its posterior after a fit is

    Σ⁻¹ = G/c² + δI,    μ = θ* + Σ (b/c² − δθ*),    b = Σ_n w_n J_nᵀ Λ (y_n − f_n),      (1)

so the previous posterior gives b back, b = c²(Σ⁻¹(μ − θ*) + δθ*), and the residual
R = Σ_n w_n ‖y_n − f_lin(x_n)‖²_Λ at μ, from R at θ*, is

    R(μ) = R − 2bᵀ(μ − θ*) + (μ − θ*)ᵀ G (μ − θ*).                                   (2)

After a chunk, the earlier rows enter as the same quadratic about the previous mean μ_p, where
their residual's gradient balances the prior's (eq. 1),

    R_old(μ) = R_old(μ_p) − 2c_p²δ_p μ_pᵀ(μ − μ_p) + (μ − μ_p)ᵀ G_old (μ − μ_p),        (3)

and the chunk's rows exactly, by Jacobian-vector products in blocks of rows. The new mean
minimises (R_old + R_chunk)/(2c²) + ½δ‖μ‖², by steps preconditioned with the new Σ (Newton's:
one step with the full GGN, a few with KFAC or the diagonal, whose quadratic forms approximate
G); Σ⁻¹ gains the chunk's GGN. δ and c set to 'evidence' maximise the evidence of all rows seen,
by MacKay's iteration (maximise at fixed μ, then move μ), whose fixed point is the stationary
point of the linearised model's evidence. With the full GGN the streamed posterior equals that of
one fit of the linearised model on all rows, however the rows after the first fit are chunked.

Ritter, H., Botev, A. and Barber, D. (2018). Online structured Laplace approximations for
overcoming catastrophic forgetting. NeurIPS.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from skbnn._curvature import fit_curvature
from skbnn._evidence import EvidenceTerms
from skbnn._fitting import (
    FitSettings,
    Hyperparameters,
    Problem,
    posterior_to_cpu,
)
from skbnn._laplace import laplace_at
from skbnn._network import flat_parameters
from skbnn._posterior import GaussianPosterior
from skbnn._training import TrainingResult, train_map
from skbnn._variational import (
    linearized_data_fit,
    linearized_residual_sq,
)

# MacKay's iteration for δ and c of the linearised model: at most this many rounds, stopping
# once the log-hyperparameters move by less than the tolerance.
MACKAY_MAX_ROUNDS = 100
MACKAY_TOLERANCE = 1e-9
# Conjugate gradients for the mean: at most this many steps, stopping once a step would lower
# the negative log posterior by less than this many nats per row.
CG_MAX_STEPS = 100
CG_TOLERANCE = 1e-13


@dataclass
class SequentialUpdate:
    """A network after one more chunk (on the CPU)."""

    module: torch.nn.Sequential
    posterior: GaussianPosterior
    terms: EvidenceTerms
    hyperparameters: Hyperparameters
    training: TrainingResult


def update_network(
    module, posterior, terms, chunk: Problem, settings: FitSettings, inference, generator
) -> SequentialUpdate:
    """The network ``module`` with ``posterior`` and evidence ``terms`` after the chunk.

    ``chunk.module`` is a copy of ``module`` in the training dtype and device; the Laplace
    update trains it in place, GGN-VI (only offered for a Gaussian likelihood) leaves it be.
    """
    if not posterior.curvature.couples_weights:
        warnings.warn(
            f"hessian_structure={chunk.structure!r} keeps only the diagonal of the earlier "
            "chunks' curvature, so a chunk from a new region of the data can overwrite what "
            "the earlier ones taught the model, and the streamed predictions can differ from "
            "a refit on all rows by more than the noise. Use 'full' or 'kron' to stream.",
            UserWarning,
            stacklevel=4,
        )
    if inference == "ggn-vi":
        return _update_linearized_model(module, posterior, terms, chunk, settings)
    return _update_laplace(posterior, terms, chunk, settings, generator)


def _update_laplace(posterior, terms, chunk, settings, generator) -> SequentialUpdate:
    """Sequential Laplace: train on the chunk under the previous posterior, add its GGN."""
    device = chunk.X.device
    previous = replace(
        posterior, mean=posterior.mean.to(device), curvature=posterior.curvature.to(device)
    )
    c = posterior.noise_scale
    training = train_map(
        chunk.module,
        lambda f, t: chunk.likelihood.negative_log_likelihood(f, t, c),
        chunk.X,
        chunk.y,
        chunk.weights,
        config=settings.training,
        prior_precision=0.0,
        generator=generator,
        prior_penalty=_previous_posterior_penalty(chunk.module, previous),
    )
    laplace = laplace_at(chunk)
    curvature = posterior.curvature.accumulate(
        laplace.curvature.cpu(), terms.n_data, laplace.terms.n_data
    )
    terms = replace(
        terms,
        eigenvalues=curvature.spectrum().numpy(),
        map_norm_sq=laplace.terms.map_norm_sq,
        n_data=terms.n_data + laplace.terms.n_data,
        data_fit=terms.data_fit + laplace.terms.data_fit,
    )
    hyper = settings.evidence.maximize(
        terms, Hyperparameters(posterior.prior_precision, posterior.noise_scale)
    )
    updated = replace(
        previous,
        mean=flat_parameters(laplace.module, chunk.param_names),
        curvature=curvature.to(device),
        prior_precision=hyper.prior_precision,
        noise_scale=hyper.noise_scale,
    )
    return SequentialUpdate(laplace.module.cpu(), posterior_to_cpu(updated), terms, hyper, training)


def _update_linearized_model(module, posterior, terms, chunk, settings) -> SequentialUpdate:
    """GGN-VI: the linearised model's posterior with the chunk's rows added (module docstring)."""
    X, y, weights = chunk.float64
    module64 = copy.deepcopy(module).to(device=X.device, dtype=torch.float64)
    previous = replace(
        posterior,
        mean=posterior.mean.to(X.device),
        curvature=posterior.curvature.to(X.device),
        linearization_point=posterior.linearization_point.to(X.device),
    )
    names, likelihood = chunk.param_names, chunk.likelihood
    curvature_rows = fit_curvature(module64, likelihood, X, weights, names, chunk.structure)
    n_rows = float(weights.sum())
    model = replace(
        previous, curvature=previous.curvature.accumulate(curvature_rows, terms.n_data, n_rows)
    )
    terms = replace(terms, eigenvalues=model.curvature.spectrum().cpu().numpy())
    earlier = _earlier_rows_fit(previous, terms)

    def residuals(mean):
        """½R over all rows seen at μ (eq. 3 and the chunk's own) and its gradient."""
        offset = mean - previous.linearization_point
        fit, gradient = linearized_data_fit(
            module64, likelihood, X, y, weights, names, offset, gradient=True
        )
        earlier_fit, earlier_gradient = earlier(mean)
        return 0.5 * (fit + earlier_fit), gradient + earlier_gradient

    hyper = Hyperparameters(previous.prior_precision, previous.noise_scale)
    mean = previous.mean
    for _ in range(MACKAY_MAX_ROUNDS):
        model = replace(model, prior_precision=hyper.prior_precision, noise_scale=hyper.noise_scale)
        mean, half_fit = _posterior_mean(model, residuals, mean, terms.n_data + n_rows)
        new = settings.evidence.maximize(_terms_at_mean(terms, mean, 2 * half_fit, n_rows), hyper)
        converged = _log_distance(new, hyper) < MACKAY_TOLERANCE
        hyper = new
        if converged:
            break
    model = replace(model, prior_precision=hyper.prior_precision, noise_scale=hyper.noise_scale)
    mean, half_fit = _posterior_mean(model, residuals, mean, terms.n_data + n_rows)
    model = replace(model, mean=mean)
    update_terms = _terms_at_mean(terms, mean, 2 * half_fit, n_rows)
    return SequentialUpdate(module, posterior_to_cpu(model), update_terms, hyper, TrainingResult())


def _posterior_mean(model, residuals, mean, n_data):
    """The minimiser of the quadratic ½R(μ)/c² + ½δ‖μ‖², and ½R there.

    Conjugate gradients preconditioned with the new Σ, started at ``mean``: with the full GGN, Σ
    is the inverse Hessian and the first step (Newton's) is exact; KFAC and the diagonal take a
    few more. The gradient is affine in μ, so a Hessian-vector product is a difference of two.
    """
    delta, c2 = model.prior_precision_vector, model.noise_scale**2

    def gradient(mean):
        return residuals(mean)[1] / c2 + delta * mean

    g = gradient(mean)
    z = model.covariance_vector_product(g)
    direction, gz = -z, float(g @ z)
    for iteration in range(CG_MAX_STEPS):
        # ½gᵀΣg is the decrease a Newton step would give; the first step is always taken.
        if gz == 0.0 or (iteration and 0.5 * gz <= CG_TOLERANCE * n_data):
            break
        curved = gradient(mean + direction) - g  # H d
        curvature = float(direction @ curved)
        if not curvature > 0.0:  # d is below the gradient's rounding: converged
            break
        step = gz / curvature
        mean, g = mean + step * direction, g + step * curved
        z = model.covariance_vector_product(g)
        gz, previous_gz = float(g @ z), gz
        direction = -z + (gz / previous_gz) * direction
    return mean, max(residuals(mean)[0], 0.0)


def _earlier_rows_gradient(previous) -> torch.Tensor:
    """b of the rows seen so far, recovered from the previous posterior by eq. (1)."""
    theta_star = previous.linearization_point
    return previous.noise_scale**2 * (
        previous.precision_vector_product(previous.mean - theta_star)
        + previous.prior_precision_vector * theta_star
    )


def _earlier_rows_fit(previous, terms):
    """R of the rows seen so far and ∇½R as functions of μ: eq. (3), about the previous mean."""
    theta_star, anchor = previous.linearization_point, previous.mean
    if terms.at_posterior_mean:
        anchor_fit = terms.data_fit
    else:  # the terms of a fit, at θ*: eq. (2) moves them to the mean
        b = _earlier_rows_gradient(previous)
        anchor_fit = linearized_residual_sq(
            terms.data_fit, b, previous.curvature, anchor - theta_star
        )
    # At the previous mean, −½∇R balances the prior's gradient, by eq. (1).
    balance = previous.noise_scale**2 * previous.prior_precision_vector * anchor
    curvature = previous.curvature

    def fit(mean):
        shift = mean - anchor
        curved = curvature.from_eigenbasis(curvature.eigenvalues * curvature.to_eigenbasis(shift))
        value = anchor_fit - 2 * float(balance @ shift) + float(shift @ curved)
        return value, curved - balance

    return fit


def _terms_at_mean(terms, mean, data_fit, n_rows) -> EvidenceTerms:
    """The evidence terms at the mean μ of the linearised model, with the chunk's rows added."""
    blocks = mean.split(list(terms.group_sizes)) if terms.group_sizes else [mean]
    return replace(
        terms,
        map_norm_sq=float(mean.square().sum()),
        group_norms_sq=tuple(float(block.square().sum()) for block in blocks),
        n_data=terms.n_data + n_rows,
        data_fit=data_fit,
        at_posterior_mean=True,
    )


def _log_distance(a: Hyperparameters, b: Hyperparameters) -> float:
    """The largest change of a log-hyperparameter between ``a`` and ``b``."""
    return float(
        np.max(
            np.abs(
                np.log(np.append(a.prior_precision, a.noise_scale))
                - np.log(np.append(b.prior_precision, b.noise_scale))
            )
        )
    )


def _previous_posterior_penalty(module, previous):
    """−log N(θ; μ, Λ⁻¹) up to a constant, and δ/2 ‖θ − θ_prev‖² for weights outside it."""
    names = previous.param_names
    others = {
        name: p.detach().clone() for name, p in module.named_parameters() if name not in set(names)
    }
    other_delta = float(np.mean(previous.prior_precision))
    dtype = next(module.parameters()).dtype

    def penalty(params):
        """The penalty at the named parameters ``params`` (views of the trained network's)."""
        shift = torch.cat([params[n].reshape(-1) for n in names]).to(torch.float64)
        shift = shift - previous.mean
        value = 0.5 * (shift * previous.precision_vector_product(shift)).sum()
        for name, centre in others.items():
            value = value + 0.5 * other_delta * (params[name] - centre).square().sum()
        return value.to(dtype)

    return penalty

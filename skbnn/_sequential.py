"""One ``partial_fit`` step: the posterior after one more chunk of rows.

Laplace (Ritter, Botev & Barber 2018). With the previous posterior N(μ, Λ⁻¹) as the prior, the
chunk's weights θ_t minimise

    Σ_n w_n ℓ_n(θ) + ½ (θ − μ)ᵀ Λ (θ − μ)

(weights outside the posterior: an isotropic δ around their previous values); the chunk's GGN at
θ_t is added to the accumulated one, Λ_t = Λ_GGN + G_chunk (+ δI), and δ, c set to 'evidence' are
re-estimated on all data seen so far.

GGN-VI (Gaussian likelihood), with the full GGN. The posterior is that of the network linearised
at θ*, the weights of the first fit, f_lin(x, θ) = f(x; θ*) + J(x)(θ − θ*): a linear-Gaussian
model, which Bayes' rule updates exactly, chunk by chunk, with no training. Its sufficient
statistics at θ* are the GGN G, b = Σ_n w_n J_nᵀ Λ (y_n − f_n) and R = Σ_n w_n ‖y_n − f_n‖²_Λ,
each a sum over chunks. For hyperparameters (δ, c) the posterior is

    Σ⁻¹ = G/c² + δI,    μ = θ* + Σ (b/c² − δθ*),                                    (1)

so b need not be stored: the previous posterior gives it back, b = c²(Σ⁻¹(μ − θ*) + δθ*). The
evidence of the linear model is the Laplace evidence at μ, whose residual after a fit is

    R(μ) = R − 2bᵀ(μ − θ*) + (μ − θ*)ᵀ G (μ − θ*),                                   (2)

and after a chunk, for the earlier rows, the same quadratic about the previous mean μ_p, where
the residual's gradient balances the prior's (eq. 1), plus the chunk's own residual at μ (one
Jacobian-vector product per block of rows):

    R_old(μ) = R_old(μ_p) − 2c_p²δ_p μ_pᵀ(μ − μ_p) + (μ − μ_p)ᵀ G_old (μ − μ_p).        (3)

δ and c set to 'evidence' maximise it over all rows seen, by MacKay's iteration (maximise at
fixed μ, then move μ by (1)), whose fixed point is the stationary point of the exact evidence.
The streamed posterior is the one of a single fit of the linearised model on all rows.

With an approximate GGN (KFAC, diagonal) these quadratic forms are not the residuals' (a large
step from θ* goes astray), so GGN-VI starts from the sequential Laplace update θ_t and moves to
the mean of the chunk's model linearised at θ_t under the previous posterior as prior,

    μ = θ_t + Σ_t (b_t/c² − Λ_p (θ_t − μ_p)),    Λ_p = G_old/c² + δI,                 (4)

with Λ_p at the new δ and c, as Σ_t⁻¹ = Λ_p + G_t/c² is.

Ritter, H., Botev, A. and Barber, D. (2018). Online structured Laplace approximations for
overcoming catastrophic forgetting. NeurIPS.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch

from skbnn._curvature import fit_curvature
from skbnn._evidence import EvidenceTerms
from skbnn._fitting import (
    FitSettings,
    Hyperparameters,
    Problem,
    laplace_at,
    posterior_to_cpu,
)
from skbnn._network import flat_parameters
from skbnn._posterior import GaussianPosterior
from skbnn._training import TrainingResult, train_map
from skbnn._variational import (
    gaussian_residual_statistics,
    linearized_data_fit,
    linearized_residual_sq,
)

# MacKay's iteration for δ and c of the linearised model: at most this many rounds, stopping
# once the log-hyperparameters move by less than the tolerance.
MACKAY_MAX_ROUNDS = 100
MACKAY_TOLERANCE = 1e-9


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
    if inference != "ggn-vi":
        return _update_laplace(posterior, terms, chunk, settings, generator)
    if posterior.curvature.is_exact_ggn:
        return _update_linearized_model(module, posterior, terms, chunk, settings)
    update = _update_laplace(posterior, terms, chunk, settings, generator)
    return _linearized_mean_step(update, posterior, chunk)


def _linearized_mean_step(update, previous, chunk) -> SequentialUpdate:
    """GGN-VI with an approximate GGN: from the sequential Laplace update θ_t, the mean of the
    chunk's model linearised at θ_t, with the previous posterior as prior, eq. (4)."""
    X, y, weights = chunk.float64
    module64 = copy.deepcopy(update.module).to(device=X.device, dtype=torch.float64)
    posterior = update.posterior
    posterior = replace(
        posterior, mean=posterior.mean.to(X.device), curvature=posterior.curvature.to(X.device)
    )
    theta = posterior.mean
    # The earlier rows' precision at the new δ and c, like the rest of Σ⁻¹.
    earlier = replace(
        previous,
        mean=previous.mean.to(X.device),
        curvature=previous.curvature.to(X.device),
        prior_precision=posterior.prior_precision,
        noise_scale=posterior.noise_scale,
    )
    _, b = gaussian_residual_statistics(
        module64, chunk.likelihood, X, y, weights, chunk.param_names
    )
    gradient = b / posterior.noise_scale**2 - earlier.precision_vector_product(theta - earlier.mean)
    step = posterior.covariance_vector_product(gradient)
    posterior = replace(posterior, mean=theta + step, linearization_point=theta)
    return replace(update, posterior=posterior_to_cpu(posterior))


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
    _, b = gaussian_residual_statistics(module64, likelihood, X, y, weights, names)
    b = b + _earlier_rows_gradient(previous)
    curvature_rows = fit_curvature(module64, likelihood, X, weights, names, chunk.structure)
    n_rows = float(weights.sum())
    model = replace(
        previous, curvature=previous.curvature.accumulate(curvature_rows, terms.n_data, n_rows)
    )
    earlier_fit = _earlier_rows_fit(previous, terms)
    terms = replace(terms, eigenvalues=model.curvature.spectrum().cpu().numpy())

    def terms_at(model):
        """The evidence terms of all rows seen, at the mean μ of the linearised model."""
        offset = model.mean - model.linearization_point
        fit = linearized_data_fit(module64, likelihood, X, y, weights, names, offset)
        return _terms_at_mean(terms, model, earlier_fit(model.mean) + fit, n_rows)

    hyper = Hyperparameters(previous.prior_precision, previous.noise_scale)
    for _ in range(MACKAY_MAX_ROUNDS):
        model = _linearized_posterior_mean(model, b, hyper)
        new = settings.evidence.maximize(terms_at(model), hyper)
        converged = _log_distance(new, hyper) < MACKAY_TOLERANCE
        hyper = new
        if converged:
            break
    model = _linearized_posterior_mean(model, b, hyper)
    return SequentialUpdate(
        module, posterior_to_cpu(model), terms_at(model), hyper, TrainingResult()
    )


def _earlier_rows_gradient(previous) -> torch.Tensor:
    """b of the rows seen so far, recovered from the previous posterior by eq. (1)."""
    theta_star = previous.linearization_point
    return previous.noise_scale**2 * (
        previous.precision_vector_product(previous.mean - theta_star)
        + previous.prior_precision_vector * theta_star
    )


def _earlier_rows_fit(previous, terms):
    """R of the rows seen so far as a function of μ: eq. (3), anchored at the previous mean."""
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

    def fit(mean):
        shift = mean - anchor
        return max(linearized_residual_sq(anchor_fit, balance, previous.curvature, shift), 0.0)

    return fit


def _linearized_posterior_mean(model, b, hyper) -> GaussianPosterior:
    """Eq. (1) at the hyperparameters ``hyper``."""
    model = replace(model, prior_precision=hyper.prior_precision, noise_scale=hyper.noise_scale)
    theta_star = model.linearization_point
    prior_gradient = model.prior_precision_vector * theta_star
    step = model.covariance_vector_product(b / hyper.noise_scale**2 - prior_gradient)
    return replace(model, mean=theta_star + step)


def _terms_at_mean(terms, model, data_fit, n_rows) -> EvidenceTerms:
    """The evidence terms at the mean μ of the linearised model, with the chunk's rows added."""
    mean = model.mean
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

    def penalty(module):
        params = dict(module.named_parameters())
        shift = torch.cat([params[n].reshape(-1) for n in names]).to(torch.float64)
        shift = shift - previous.mean
        value = 0.5 * (shift * previous.precision_vector_product(shift)).sum()
        for name, centre in others.items():
            value = value + 0.5 * other_delta * (params[name] - centre).square().sum()
        return value.to(dtype)

    return penalty

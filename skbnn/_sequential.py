"""One ``partial_fit`` step: the sequential Laplace update (Ritter, Botev & Barber 2018).

With the previous posterior N(μ, Λ⁻¹) as the prior, the chunk's weights θ_t minimise

    Σ_n w_n ℓ_n(θ) + ½ (θ − μ)ᵀ Λ (θ − μ)

(weights outside the posterior: an isotropic δ around their previous values); the chunk's GGN at
θ_t is added to the accumulated one, Λ_t = Λ_GGN + G_chunk (+ δI), and δ, c set to 'evidence' are
re-estimated on all data seen so far. For GGN-VI the mean then moves to the exact posterior mean
of the chunk's linearised model under the previous posterior as prior (one linear solve).

Ritter, H., Botev, A. and Barber, D. (2018). Online structured Laplace approximations for
overcoming catastrophic forgetting. NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

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
from skbnn._variational import gaussian_glm_posterior_mean


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

    ``chunk.module`` is a copy of ``module`` in the training dtype and device, trained in place.
    """
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
    if inference == "ggn-vi":
        # Only offered for a Gaussian likelihood: the chunk's linearised model under the
        # previous posterior as prior has a closed-form posterior mean.
        theta = updated.mean
        updated, _, _ = gaussian_glm_posterior_mean(
            laplace.module,
            chunk.likelihood,
            *chunk.float64,
            replace(updated, linearization_point=theta),
            prior_gradient=previous.precision_vector_product(theta - previous.mean),
        )
    return SequentialUpdate(laplace.module.cpu(), posterior_to_cpu(updated), terms, hyper, training)


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

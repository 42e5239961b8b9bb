"""The networks of a regression ensemble as records, and each network's part of the predictive.

Every member is an independently initialised network with its own posterior and evidence-tuned
δ and σ; the regressor predicts with their equal-weight mixture (:mod:`skbnn._predictive`;
Eschenhagen et al. 2021). A member's predictive at x, in the units of the standardised targets:

    mean  f(x) + J(x)(μ − θ*),      model variance  diag J(x) Σ J(x)ᵀ,
    noise variance  σ²  (homoscedastic),  or  E[σ²(x)] = exp(m_s + v_s/2)  (heteroscedastic:
    the network's log-variance output s is N(m_s, v_s) under the linearised posterior, and
    σ² = e^s is log-normal).

Far outside the data the linearised variance v_s of the log-variance grows without bound (and
e^{v_s/2} with it), so v_s is capped at 2 ln 100: the posterior's uncertainty about s may widen the
noise variance by a factor of at most 100 (10 in std). Inside the data v_s ≪ 1 and the cap is
never reached; joint draws of s shrink towards m_s to the same capped variance.

Eschenhagen, R. et al. (2021). Mixtures of Laplace approximations for improved post-hoc
uncertainty in deep learning. arXiv:2111.03577.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from skbnn._evidence import EvidenceTerms
from skbnn._fitting import rebuild_curvature
from skbnn._loo import loo_logits
from skbnn._persistence import rebuildable
from skbnn._posterior import GaussianPosterior
from skbnn._predictive import glm_jacobians, glm_outputs, glm_samples, mixture_cross_covariance

# The cap on v_s, the linearised variance of a heteroscedastic network's log-variance output.
MAX_LOG_NOISE_VARIANCE_VARIANCE = 2 * math.log(100.0)


@dataclass(frozen=True)
class NetworkMember:
    """One fitted network of a :class:`~skbnn.LaplaceMLPRegressor` ensemble.

    Attributes
    ----------
    module : torch.nn.Sequential
        The trained network (float64, on the CPU), mapping X to standardised targets.
    posterior : GaussianPosterior
        Its Gaussian posterior over the weights in ``posterior.param_names``.
    prior_precision : float or ndarray of shape (n_layers,)
        Its prior precision δ.
    sigma_noise : ndarray of shape (n_targets,) or None
        Its observation noise std in the units of y; None with heteroscedastic noise.
    log_marginal_likelihood : float
        Its Laplace log evidence at its δ and σ, in the units of y.
    random_state : int or None
        The seed it was fitted from; None for the estimator's own network (its
        ``random_state``).
    """

    module: nn.Sequential
    posterior: GaussianPosterior
    prior_precision: float | np.ndarray
    sigma_noise: np.ndarray | None
    log_marginal_likelihood: float
    random_state: int | None
    likelihood: object = field(repr=False)
    terms: EvidenceTerms = field(repr=False)
    # The training rows that rebuild the posterior's curvature (see skbnn._fitting.FittedNetwork).
    ggn_rows: tuple | None = field(default=None, repr=False)

    def compact(self) -> NetworkMember:
        """This member without a dense curvature that ``ggn_rows`` rebuilds (for pickling)."""
        if not rebuildable(self.posterior, self.ggn_rows):
            return self
        return replace(self, posterior=replace(self.posterior, curvature=None))

    def rebuilt(self, structure: str) -> NetworkMember:
        """The member with the curvature that :meth:`compact` dropped recomputed."""
        if self.posterior.curvature is not None:
            return self
        posterior = rebuild_curvature(
            self.module, self.posterior, self.likelihood, self.ggn_rows, structure
        )
        return replace(self, posterior=posterior)


def member_moments(member, X, y_scale):
    """Mean, model variance and noise variance (n, k) of one network at X, standardised."""
    f, cov = glm_outputs(member.module, member.posterior, X)
    variance = torch.diagonal(cov, dim1=1, dim2=2)
    k = y_scale.shape[0]
    return f[:, :k], variance[:, :k], _noise_variance(member, f, variance, y_scale)


def member_cavity_moments(member, X, y, weights, y_scale):
    """Leave-one-out mean and predictive variance (n, k) of one network at its training rows
    (X, y standardised, frequency weights), from its cavities (:mod:`skbnn._loo`)."""
    f, cov = loo_logits(member.module, member.posterior, member.likelihood, X, y, weights)
    variance = torch.diagonal(cov, dim1=1, dim2=2)
    k = y_scale.shape[0]
    return f[:, :k], variance[:, :k] + _noise_variance(member, f, variance, y_scale)


def member_covariance(member, X, y_scale):
    """Mean (n, k), model covariance across points (n, n, k) and noise variance (n, k)."""
    f, J = glm_jacobians(member.module, member.posterior, X)
    cross = member.posterior.functional_cross_covariance(J, J)  # (n, Kₙ, n, Kₙ)
    variance = torch.diagonal(torch.diagonal(cross, dim1=0, dim2=2), dim1=0, dim2=1)
    k = y_scale.shape[0]
    covariance = torch.diagonal(cross[:, :k, :, :k], dim1=1, dim2=3)
    return f[:, :k], covariance, _noise_variance(member, f, variance, y_scale)


def member_kernel(member, X, Y=None, prior=False):
    """J(X) Σ J(Y)ᵀ (or the prior's J P₀⁻¹ Jᵀ) in output space, (n_X, K, n_Y, K)."""
    J_x = glm_jacobians(member.module, member.posterior, X)[1]
    J_y = J_x if Y is None else glm_jacobians(member.module, member.posterior, Y)[1]
    if prior:
        prior_variance = 1.0 / member.posterior.prior_precision_vector.to(J_x)
        return torch.einsum("akp,p,blp->akbl", J_x, prior_variance, J_y)
    return member.posterior.functional_cross_covariance(J_x, J_y)


def member_samples(member, X, n_samples, seed, y_mean, y_scale):
    """Joint draws (n, k, S) of y at X from one network's GLM predictive, in y's units."""
    generator = torch.Generator().manual_seed(seed)
    f_samples = glm_samples(member.module, member.posterior, X, n_samples, generator)
    k = y_scale.shape[0]
    scale = torch.as_tensor(y_scale)[None, :, None]
    if member.sigma_noise is None:
        noise_std = torch.exp(0.5 * _capped_log_variance_draws(member, X, f_samples[:, k:]))
        noise_std = noise_std * scale
    else:
        noise_std = torch.as_tensor(member.sigma_noise)[None, :, None]
    noise = torch.randn(f_samples[:, :k].shape, generator=generator, dtype=f_samples.dtype)
    location = f_samples[:, :k] * scale + torch.as_tensor(y_mean)[None, :, None]
    return (location + noise * noise_std).numpy()


def mixture_kernel(members, X, Y, n_targets, prior=False):
    """The mixture's kernel between targets k at X and l at Y, (n_X, n_Y, k, l), standardised.

    The posterior kernel is the mean of the members' kernels plus the covariance of their means;
    the prior kernel the mean of theirs.
    """
    k = n_targets
    kernels = torch.stack([member_kernel(m, X, Y, prior)[:, :k, :, :k] for m in members])
    kernels = kernels.permute(0, 1, 3, 2, 4)  # (M, n_X, n_Y, k, l)
    if prior or len(members) == 1:  # no spread of means to add (one network: no work)
        return kernels.mean(0)
    Y = X if Y is None else Y
    means_x = torch.stack([glm_outputs(m.module, m.posterior, X)[0][:, :k] for m in members])
    means_y = torch.stack([glm_outputs(m.module, m.posterior, Y)[0][:, :k] for m in members])
    return mixture_cross_covariance(means_x, means_y, kernels)


def mixture_noise_std(members) -> np.ndarray:
    """The noise std (k,) of the members' mixture in y's units: √(mean of their σ²)."""
    return np.sqrt(np.mean([member.sigma_noise**2 for member in members], axis=0))


def _noise_variance(member, f, variance, y_scale):
    """Noise variance (n, k) from the outputs f and their variances (n, Kₙ), standardised."""
    k = y_scale.shape[0]
    if member.sigma_noise is None:
        log_variance_variance = variance[:, k:].clamp_max(MAX_LOG_NOISE_VARIANCE_VARIANCE)
        return torch.exp(f[:, k:] + 0.5 * log_variance_variance)
    sigma = torch.as_tensor(member.sigma_noise / y_scale)
    return (sigma**2).expand(f.shape[0], k)


def _capped_log_variance_draws(member, X, draws):
    """Draws (n, k, S) of the log-variance s, shrunk towards m_s where v_s exceeds the cap."""
    f, cov = glm_outputs(member.module, member.posterior, X)
    k = draws.shape[1]
    mean, variance = f[:, k:], torch.diagonal(cov, dim1=1, dim2=2)[:, k:]
    capped = variance.clamp_max(MAX_LOG_NOISE_VARIANCE_VARIANCE)
    shrink = torch.where(variance > capped, (capped / variance).sqrt(), torch.ones_like(variance))
    return mean[..., None] + (draws - mean[..., None]) * shrink[..., None]

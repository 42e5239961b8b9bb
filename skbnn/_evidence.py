"""The Laplace log marginal likelihood (evidence) and its maximisation over δ and σ.

With the posterior precision P = s·G + δI, G = V diag(λ) Vᵀ the GGN computed at reference noise, a
scalar prior precision δ and a noise scale c (every output's noise std multiplied by c, s = 1/c²):

    log Z(δ, c) = log p(D | θ*) − ½ δ ‖θ*‖² − ½ Σ_i log(s λ_i + δ) + ½ P log δ,

    log p(D | θ*) = −R / (2c²) − N (K log c + Σ_k log σ_k + K/2 log 2π)    (Gaussian)
                  = −Σ_n w_n ℓ_n(θ*)                                       (classification)

where R = Σ_n w_n ‖(y_n − f_n)/σ‖² and N = Σ_n w_n (MacKay 1992; Immer et al. 2021). Given the
eigenvalues, one evaluation costs O(P), so the two hyperparameters are found in log-space with
the analytic gradient

    ∂ log Z / ∂ log δ = ½ (γ − δ ‖θ*‖²),     ∂ log Z / ∂ log c = R/c² − N K + γ,

γ = Σ sλ_i/(sλ_i + δ) the effective number of parameters. log Z is concave in (log δ, log c), and
its stationary point is MacKay's fixed point δ = γ/‖θ*‖², c² = R/(NK − γ); a projected Newton
method finds it to machine precision in a handful of O(P) steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Search box for the hyperparameters (natural units, log-space optimisation).
PRIOR_PRECISION_BOUNDS = (1e-8, 1e8)
NOISE_SCALE_BOUNDS = (1e-6, 1e6)


@dataclass(frozen=True)
class EvidenceTerms:
    """What the evidence needs from the data, fixed once the MAP θ* and its GGN are known."""

    eigenvalues: np.ndarray  # (P,) eigenvalues λ of the GGN at reference noise
    map_norm_sq: float  # ‖θ*‖² over the posterior's parameters
    n_data: float  # N = Σ w_n
    n_outputs: int  # K
    data_fit: float  # Gaussian: R; classification: Σ w_n ℓ_n(θ*)
    gaussian: bool
    log_noise_ref: float = 0.0  # Σ_k log σ_k of the reference noise (Gaussian only)

    @property
    def n_params(self) -> int:
        return self.eigenvalues.shape[0]


def effective_n_parameters(terms: EvidenceTerms, prior_precision, noise_scale=1.0) -> float:
    """γ = Σ sλ/(sλ + δ), the number of parameters determined by the data."""
    scaled = terms.eigenvalues / noise_scale**2
    return float(np.sum(scaled / (scaled + prior_precision)))


def log_marginal_likelihood(terms: EvidenceTerms, prior_precision, noise_scale=1.0) -> float:
    """The Laplace evidence log Z(δ, c) of the module docstring."""
    delta, c = float(prior_precision), float(noise_scale)
    if terms.gaussian:
        n, k = terms.n_data, terms.n_outputs
        log_likelihood = -terms.data_fit / (2 * c**2) - n * (
            k * math.log(c) + terms.log_noise_ref + 0.5 * k * math.log(2 * math.pi)
        )
    else:
        log_likelihood = -terms.data_fit
    log_det_precision = np.sum(np.log(terms.eigenvalues / c**2 + delta))
    return float(
        log_likelihood
        - 0.5 * delta * terms.map_norm_sq
        - 0.5 * log_det_precision
        + 0.5 * terms.n_params * math.log(delta)
    )


def log_marginal_likelihood_gradient(
    terms: EvidenceTerms, prior_precision, noise_scale=1.0
) -> tuple[float, float]:
    """(∂ log Z/∂ log δ, ∂ log Z/∂ log c); the second is 0 for classification."""
    gamma = effective_n_parameters(terms, prior_precision, noise_scale)
    d_log_delta = 0.5 * (gamma - prior_precision * terms.map_norm_sq)
    d_log_c = 0.0
    if terms.gaussian:
        d_log_c = terms.data_fit / noise_scale**2 - terms.n_data * terms.n_outputs + gamma
    return float(d_log_delta), float(d_log_c)


def log_marginal_likelihood_hessian(
    terms: EvidenceTerms, prior_precision, noise_scale=1.0
) -> np.ndarray:
    """The 2×2 Hessian of log Z in (log δ, log c); negative definite, so log Z is concave there."""
    a = terms.eigenvalues / noise_scale**2
    q = float(np.sum(a * prior_precision / (a + prior_precision) ** 2))
    h_delta = -0.5 * (q + prior_precision * terms.map_norm_sq)
    if not terms.gaussian:
        return np.array([[h_delta, 0.0], [0.0, -1.0]])
    h_noise = -2.0 * (terms.data_fit / noise_scale**2 + q)
    return np.array([[h_delta, -q], [-q, h_noise]])


def maximize_log_marginal_likelihood(
    terms: EvidenceTerms,
    *,
    prior_precision: float | None,
    noise_scale: float | None,
    init: tuple[float, float] = (1.0, 1.0),
    max_iter: int = 100,
) -> tuple[float, float, float]:
    """Maximise log Z over the hyperparameters passed as ``None``; the others stay fixed.

    log Z is concave in (log δ, log c) (its Hessian has a positive determinant), so a projected
    Newton method with backtracking converges to the unique maximiser in the search box, to
    machine precision and independently of round-off in the data terms. Returns
    ``(prior_precision, noise_scale, log_marginal_likelihood)``; the noise scale is only free for
    a Gaussian likelihood.
    """
    free = np.array([prior_precision is None, noise_scale is None and terms.gaussian])
    x = np.log(
        [init[0] if free[0] else prior_precision, init[1] if noise_scale is None else noise_scale]
    )
    lower = np.log([PRIOR_PRECISION_BOUNDS[0], NOISE_SCALE_BOUNDS[0]])
    upper = np.log([PRIOR_PRECISION_BOUNDS[1], NOISE_SCALE_BOUNDS[1]])
    x = np.where(free, np.clip(x, lower, upper), x)

    def value(x):
        return log_marginal_likelihood(terms, math.exp(x[0]), math.exp(x[1]))

    current = value(x)
    for _ in range(max_iter if free.any() else 0):
        gradient = np.array(log_marginal_likelihood_gradient(terms, *np.exp(x)))
        hessian = log_marginal_likelihood_hessian(terms, *np.exp(x))
        # Coordinates pinned at a bound with the gradient pushing outwards stay fixed.
        active = free & ~((x <= lower) & (gradient < 0)) & ~((x >= upper) & (gradient > 0))
        if not active.any():
            break
        idx = np.flatnonzero(active)
        step = np.zeros(2)
        step[idx] = -np.linalg.solve(hessian[np.ix_(idx, idx)], gradient[idx])
        t = 1.0
        while True:
            candidate = np.where(free, np.clip(x + t * step, lower, upper), x)
            new = value(candidate)
            if new >= current - 1e-12 * abs(current) or t < 1e-10:
                break
            t *= 0.5
        moved = np.max(np.abs(candidate - x))
        x, current = candidate, new
        if moved < 1e-13:
            break
    delta = float(np.exp(x[0])) if free[0] else prior_precision
    c = float(np.exp(x[1])) if free[1] else x_fixed_noise(noise_scale, init)
    return delta, c, log_marginal_likelihood(terms, delta, c)


def x_fixed_noise(noise_scale, init):
    """The noise scale when it is not optimised: the fixed value, else the initial one."""
    return init[1] if noise_scale is None else noise_scale

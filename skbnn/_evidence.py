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

from skbnn._likelihoods import gaussian_log_normalizer

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
    # Per-layer priors: the eigenvalues come in consecutive blocks, one per layer, of these sizes
    # (kron and diag structures), with these squared norms ‖θ*_l‖².
    group_sizes: tuple[int, ...] | None = None
    group_norms_sq: tuple[float, ...] | None = None
    # GGN-VI after partial_fit: the terms are those of the linearised model at its mean μ,
    # not at the weights θ* where it is linearised.
    at_posterior_mean: bool = False

    @property
    def n_params(self) -> int:
        return self.eigenvalues.shape[0]


def _per_eigenvalue(terms: EvidenceTerms, prior_precision):
    """δ broadcast to the eigenvalues: a scalar stays one, per-layer values repeat per block."""
    if np.ndim(prior_precision) == 0:
        return float(prior_precision)
    return np.repeat(np.asarray(prior_precision, dtype=np.float64), terms.group_sizes)


def _layerwise_sums(terms: EvidenceTerms, values: np.ndarray) -> np.ndarray:
    """Sums of per-eigenvalue ``values`` within each layer block."""
    return np.add.reduceat(values, np.cumsum((0, *terms.group_sizes[:-1])))


def _log_prior_terms(terms: EvidenceTerms, prior_precision):
    """(Σ_l δ_l ‖θ*_l‖², Σ_l P_l log δ_l) for a scalar or per-layer δ."""
    if np.ndim(prior_precision) == 0:
        delta = float(prior_precision)
        return delta * terms.map_norm_sq, terms.n_params * math.log(delta)
    delta = np.asarray(prior_precision, dtype=np.float64)
    return (
        float(delta @ np.asarray(terms.group_norms_sq)),
        float(np.asarray(terms.group_sizes) @ np.log(delta)),
    )


def log_marginal_likelihood(terms: EvidenceTerms, prior_precision, noise_scale=1.0) -> float:
    """The Laplace evidence log Z(δ, c) of the module docstring (δ scalar or per layer)."""
    delta, c = _per_eigenvalue(terms, prior_precision), float(noise_scale)
    if terms.gaussian:
        log_norm = gaussian_log_normalizer(terms.n_outputs, c, terms.log_noise_ref)
        log_likelihood = -terms.data_fit / (2 * c**2) - terms.n_data * log_norm
    else:
        log_likelihood = -terms.data_fit
    log_det_precision = np.sum(np.log(terms.eigenvalues / c**2 + delta))
    weight_term, log_det_prior = _log_prior_terms(terms, prior_precision)
    return float(log_likelihood - 0.5 * weight_term - 0.5 * log_det_precision + 0.5 * log_det_prior)


def log_marginal_likelihood_gradient(terms: EvidenceTerms, prior_precision, noise_scale=1.0):
    """(∂ log Z/∂ log δ, ∂ log Z/∂ log c); the second is 0 for classification.

    For a per-layer δ the first is an array, ½(γ_l − δ_l ‖θ*_l‖²) per layer.
    """
    a = terms.eigenvalues / noise_scale**2
    ratio = a / (a + _per_eigenvalue(terms, prior_precision))
    gamma = float(np.sum(ratio))
    if np.ndim(prior_precision) == 0:
        d_log_delta = float(0.5 * (gamma - prior_precision * terms.map_norm_sq))
    else:
        delta = np.asarray(prior_precision, dtype=np.float64)
        norms = np.asarray(terms.group_norms_sq)
        d_log_delta = 0.5 * (_layerwise_sums(terms, ratio) - delta * norms)
    d_log_c = 0.0
    if terms.gaussian:
        d_log_c = terms.data_fit / noise_scale**2 - terms.n_data * terms.n_outputs + gamma
    return d_log_delta, float(d_log_c)


def log_marginal_likelihood_hessian(
    terms: EvidenceTerms, prior_precision, noise_scale=1.0
) -> np.ndarray:
    """The Hessian of log Z in (log δ, log c), 2×2 (or L+1 square for per-layer δ).

    It is negative definite (its Schur complement is −2R/c² − 2Σ_l q_l δ_l‖θ_l‖²/(q_l +
    δ_l‖θ_l‖²) < 0), so log Z is concave in the log-hyperparameters.
    """
    a = terms.eigenvalues / noise_scale**2
    delta = _per_eigenvalue(terms, prior_precision)
    # Σ aδ/(a + δ)² as a product of two ratios in [0, 1]: no overflow or 0/0 at extreme δ.
    q_all = a / (a + delta) * (delta / (a + delta))
    if np.ndim(prior_precision) == 0:
        q = np.array([float(np.sum(q_all))])
        weight = np.array([prior_precision * terms.map_norm_sq])
    else:
        q = _layerwise_sums(terms, q_all)
        weight = np.asarray(prior_precision) * np.asarray(terms.group_norms_sq)
    n = q.shape[0]
    hessian = np.zeros((n + 1, n + 1))
    hessian[np.arange(n), np.arange(n)] = -0.5 * (q + weight)
    if terms.gaussian:
        hessian[:n, n] = hessian[n, :n] = -q
        hessian[n, n] = -2.0 * (terms.data_fit / noise_scale**2 + q.sum())
    else:
        hessian[n, n] = -1.0
    return hessian


def maximize_log_marginal_likelihood(
    terms: EvidenceTerms,
    *,
    prior_precision,
    noise_scale: float | None,
    init: tuple = (1.0, 1.0),
    layerwise: bool = False,
    max_iter: int = 100,
) -> tuple:
    """Maximise log Z over the hyperparameters passed as ``None``; the others stay fixed.

    log Z is concave in the log-hyperparameters (see the Hessian), so a projected Newton method
    with backtracking converges to the unique maximiser in the search box, to machine precision
    and independently of round-off in the data terms. With ``layerwise`` (and ``terms`` with
    layer blocks) δ is one value per layer. Returns ``(prior_precision, noise_scale,
    log_marginal_likelihood)``; the noise scale is only free for a Gaussian likelihood.
    """
    n_layers = len(terms.group_sizes) if layerwise else 1
    tune_delta = prior_precision is None
    delta0 = init[0] if tune_delta else prior_precision
    delta0 = np.broadcast_to(np.asarray(delta0, dtype=np.float64), (n_layers,)).copy()
    free = np.array([tune_delta] * n_layers + [noise_scale is None and terms.gaussian])
    x = np.log(np.append(delta0, init[1] if noise_scale is None else noise_scale))
    lower = np.log([PRIOR_PRECISION_BOUNDS[0]] * n_layers + [NOISE_SCALE_BOUNDS[0]])
    upper = np.log([PRIOR_PRECISION_BOUNDS[1]] * n_layers + [NOISE_SCALE_BOUNDS[1]])
    x = np.where(free, np.clip(x, lower, upper), x)

    def unpack(x):
        delta = np.exp(x[:-1])
        return (delta if layerwise else float(delta[0])), float(np.exp(x[-1]))

    def value(x):
        return log_marginal_likelihood(terms, *unpack(x))

    current = value(x)
    for _ in range(max_iter if free.any() else 0):
        d_delta, d_c = log_marginal_likelihood_gradient(terms, *unpack(x))
        gradient = np.append(d_delta, d_c)
        hessian = log_marginal_likelihood_hessian(terms, *unpack(x))
        # Coordinates pinned at a bound with the gradient pushing outwards stay fixed.
        active = free & ~((x <= lower) & (gradient < 0)) & ~((x >= upper) & (gradient > 0))
        if not active.any():
            break
        idx = np.flatnonzero(active)
        if not np.any(gradient[idx]):
            break
        step = np.zeros_like(x)
        step[idx] = _ascent_direction(
            hessian[np.ix_(idx, idx)], gradient[idx], (upper - lower)[idx]
        )
        candidate, new = _backtrack(value, x, current, step, free, (lower, upper))
        moved = np.max(np.abs(candidate - x))
        x, current = candidate, new
        if moved < 1e-13:
            break
    delta, c = unpack(x)
    if not tune_delta:
        delta = prior_precision
    if not free[-1]:
        c = init[1] if noise_scale is None else noise_scale
    return delta, c, log_marginal_likelihood(terms, delta, c)


def _backtrack(value, x, current, step, free, bounds):
    """Halve the step from x until log Z does not drop (beyond round-off); x itself if none."""
    lower, upper = bounds
    t = 1.0
    while True:
        candidate = np.where(free, np.clip(x + t * step, lower, upper), x)
        new = value(candidate)
        if new >= current - 1e-12 * abs(current):
            return candidate, new
        if t < 1e-10:  # no ascent left at round-off level: stay where we are
            return x, current
        t *= 0.5


def _ascent_direction(hessian: np.ndarray, gradient: np.ndarray, box_width: np.ndarray):
    """The Newton step −H⁻¹g, or a step along g's signs across the box where H is singular.

    H is singular where log Z is linear in a coordinate (R = 0 and all λ = 0 give
    log Z = −NK log c + const); the maximiser is then on the bound the gradient points to.
    """
    step = np.sign(gradient) * box_width
    try:
        newton = -np.linalg.solve(hessian, gradient)
    except np.linalg.LinAlgError:
        newton = None
    if newton is not None and np.all(np.isfinite(newton)) and np.any(newton):
        # Scaled before the dot product, which could overflow for huge gradients.
        if (newton / np.abs(newton).max()) @ (gradient / np.abs(gradient).max()) > 0:
            step = newton
    # Nothing useful lies beyond the box, and the backtracking starts from a step that stays in it.
    return step * min(1.0, float(np.min(box_width / np.maximum(np.abs(step), 1e-300))))

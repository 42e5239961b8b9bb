"""GGN variational inference: Gaussian VI on the network linearised at its MAP (GLM-VI).

Laplace and Gaussian VI both give a Gaussian posterior through the GGN, and differ in what they
approximate (Immer, Korzepa & Bauer 2021). Linearising the network at the MAP θ*,

    f_lin(x, θ) = f(x; θ*) + J(x)(θ − θ*),

turns it into a generalised linear model (GLM). Laplace-GGN is the Laplace approximation of that
GLM; GGN-VI fits q(θ) = N(μ, Σ) to the same GLM by maximising the evidence lower bound

    ELBO(q) = Σ_n w_n E_{f_n ~ N(m_n, V_n)}[log p(y_n | f_n)] − KL(q ‖ N(0, δ⁻¹I)),
    m_n = f(x_n; θ*) + J_n(μ − θ*),   V_n = J_n Σ J_nᵀ.

Each expectation is K-dimensional: exact for the Gaussian likelihood, Gauss–Hermite quadrature for
one logit, and Monte Carlo with fixed draws (so the objective is deterministic) for a softmax.
The optimiser is natural-gradient VI (the Bayesian learning rule, Khan & Rue 2023) with step ρ:

    Σ⁻¹ ← Σ_n w_n J_nᵀ E_q[Λ_n] J_n + δI,        μ ← μ + ρ Σ (Σ_n w_n J_nᵀ E_q[r_n] − δμ),

with the GGN structure of the Laplace posterior (full, kron or diag; E_q[Λ_n] enters where Λ_n did)
and ρ = 1, halved whenever the ELBO decreases. For classification the prior precision takes its
closed-form ELBO maximiser δ = P / (‖μ‖² + tr Σ) between steps (EM; its fixed point is MacKay's).

For a Gaussian likelihood the optimal q for given (δ, σ) is the linearised model's exact posterior
and is computed in one step. Its δ and σ are those of the Laplace evidence at θ* (tuned online
during training and after it): for a linear model they are exactly the ELBO's optimum (tested);
for a network, maximising the ELBO of the *linearised* model over σ instead lets the Jacobian
features, which were trained on the same targets, interpolate them when P ≳ N, driving σ → 0 at
the linear convergence rate of EM (Antorán et al. 2022 discuss this pitfall of the linearised
evidence). The reported ELBO is that of the returned q at those hyperparameters.

Why this route: it reuses the Laplace machinery, is deterministic, and has exact
tests — for a Gaussian likelihood the GLM is linear-Gaussian, so q* is the exact GLM posterior
(Laplace-GGN at the GLM's MAP) and the optimal ELBO is the exact log evidence. For classification
it genuinely differs from Laplace: it averages the curvature over q instead of taking it at θ*,
moves the mean off θ*, and its ELBO is a lower bound on the GLM evidence. Weight-space VOGN trains
the network itself with sampled weights and per-example gradients; it is costlier and more
sensitive to its own hyperparameters, so skbnn does not offer it.

References: Immer, Korzepa & Bauer (2021), AISTATS; Khan et al. (2018), ICML; Khan & Rue (2023),
JMLR; Opper & Archambeau (2009), Neural Computation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from skbnn._curvature import fit_curvature
from skbnn._evidence import PRIOR_PRECISION_BOUNDS
from skbnn._jacobians import jacobian_blocks
from skbnn._likelihoods import gaussian_log_normalizer
from skbnn._network import row_blocks
from skbnn._posterior import GaussianPosterior

# Quadrature nodes for one logit and Monte Carlo draws for several.
GAUSS_HERMITE_NODES = 32
MC_DRAWS = 512


@dataclass(frozen=True)
class ElboParts:
    """The ELBO of a fitted q and its two parts (nats)."""

    expected_log_likelihood: float
    kl_divergence: float

    @property
    def elbo(self) -> float:
        return self.expected_log_likelihood - self.kl_divergence


@dataclass
class _PassStatistics:
    """Sums over the data at the current q for a classification likelihood, from one pass."""

    expected_log_likelihood: float  # Σ w E_q[log p]
    gradient: torch.Tensor  # Σ w J_nᵀ E_q[r_n]
    hessian_sqrt: torch.Tensor  # E_q[Λ_n]^{1/2} per row


def kl_divergence(posterior: GaussianPosterior) -> float:
    """KL(N(μ, Σ) ‖ N(0, P₀⁻¹)) = ½ (tr P₀Σ + μᵀP₀μ − P − log|P₀| + log|Σ⁻¹|), P₀ = diag(δ)."""
    delta = posterior.prior_precision_vector.to(posterior.mean)
    return 0.5 * (
        float(_prior_weighted_variances(posterior).sum())
        + float((delta * posterior.mean.square()).sum())
        - posterior.n_params
        - float(torch.log(delta).sum())
        + posterior.log_det_precision()
    )


def _prior_weighted_variances(posterior: GaussianPosterior) -> torch.Tensor:
    """δ/(sλ + δ) per eigen-direction, and 1 for each direction outside a low-rank basis.

    Their sum is tr(P₀Σ); per layer block (kron, diag) the sum over the block is δ_l tr Σ_ll.
    """
    delta = posterior.prior_precision_vector.to(posterior.mean)
    ratios = delta[: posterior.precision_eigenvalues.shape[0]] / posterior.precision_eigenvalues
    missing = posterior.n_params - posterior.curvature.eigenvalues.shape[0]
    return torch.cat([ratios, ratios.new_ones(missing)])


def layer_traces(posterior: GaussianPosterior) -> torch.Tensor:
    """tr Σ_ll per layer for a per-layer δ, else tr Σ as a one-element tensor."""
    variances = _prior_weighted_variances(posterior) / posterior.prior_precision_vector.to(
        posterior.mean
    )
    if np.ndim(posterior.prior_precision) == 0:
        return variances.sum()[None]
    return torch.stack([block.sum() for block in variances.split(list(posterior.layer_sizes))])


def fit_glm_vi(
    module: torch.nn.Module,
    likelihood,
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    laplace: GaussianPosterior,
    structure: str,
    *,
    tune_prior: bool,
    generator: torch.Generator,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[GaussianPosterior, ElboParts, list[float]]:
    """Maximise the ELBO of the GLM at ``module``'s weights, starting from the Laplace posterior.

    ``module``, X, y and weights are float64 on one device; ``laplace`` covers ``param_names`` of
    the module, and its prior precision and noise scale are the starting hyperparameters.
    Returns the variational posterior (its ``linearization_point`` is θ*), the ELBO parts at the
    returned q and hyperparameters, and the ELBO after each iteration.
    """
    n_outputs = module[-1].out_features
    q = replace(laplace, linearization_point=laplace.mean.clone())
    if likelihood.name == "gaussian":
        return _fit_gaussian_glm_vi(module, likelihood, X, y, weights, q)
    draws = torch.randn((MC_DRAWS, n_outputs), generator=generator, dtype=torch.float64)
    draws = draws.to(X.device)

    def evaluate(q):
        stats = _pass_statistics(module, likelihood, X, y, weights, q, draws)
        return stats, ElboParts(stats.expected_log_likelihood, kl_divergence(q)).elbo

    stats, elbo = evaluate(q)
    trace, rho = [elbo], 1.0
    for _ in range(max_iter):
        candidate = _m_step(q, tune_prior)
        candidate = _natural_gradient_step(
            module, likelihood, X, weights, candidate, stats, structure, rho
        )
        candidate_stats, candidate_elbo = evaluate(candidate)
        if candidate_elbo < elbo - 1e-12 * abs(elbo):
            rho /= 2  # the mean step overshot: retry it shorter from the same q
            if rho < 1e-6:
                break
            continue
        converged = candidate_elbo - elbo <= tol * abs(candidate_elbo)
        q, stats, elbo = candidate, candidate_stats, candidate_elbo
        trace.append(elbo)
        if converged:
            break
    return q, ElboParts(stats.expected_log_likelihood, kl_divergence(q)), trace


def _fit_gaussian_glm_vi(module, likelihood, X, y, weights, q):
    """GLM-VI for a Gaussian likelihood: the exact optimum q for the given (δ, c), in one step.

    The optimal q is the linearised model's posterior (:func:`gaussian_glm_posterior_mean`
    with the prior N(0, δ⁻¹I)). With R the weighted residual sum of squares at θ*, b the
    gradient vector and G the GGN (all at unit noise scale), its expected fit is
    Σ_n w_n E_q‖y_n − f_lin(x_n)‖²_Λ = R − 2bᵀΔ + ΔᵀGΔ + tr(GΣ) with Δ = μ − θ*. The quadratic
    form uses the posterior's GGN structure, exact for ``"full"``.
    """
    n_data, n_outputs = float(weights.sum()), module[-1].out_features
    theta_star = q.linearization_point
    delta = q.prior_precision_vector.to(theta_star)
    q, residual_sq, b = gaussian_glm_posterior_mean(
        module, likelihood, X, y, weights, q, prior_gradient=delta * theta_star
    )
    eigenvalues = q.curvature.eigenvalues
    fit = linearized_residual_sq(residual_sq, b, q.curvature, q.mean - theta_star)
    trace = float((eigenvalues / q.precision_eigenvalues).sum())
    c = q.noise_scale
    log_norm = gaussian_log_normalizer(n_outputs, c, likelihood.log_noise_ref)
    expected_ll = -(fit + trace) / (2 * c**2) - n_data * log_norm
    parts = ElboParts(expected_ll, kl_divergence(q))
    return q, parts, [parts.elbo]


def gaussian_glm_posterior_mean(module, likelihood, X, y, weights, q, prior_gradient):
    """The mean of the linearised model's posterior under a Gaussian likelihood and prior.

    Linearised at θ* (``q.linearization_point``, the module's weights), the log posterior is
    quadratic with precision ``q``'s Σ⁻¹ = G/c² + Λ₀, so its mean is one Newton step from θ*:

        μ = θ* + Σ (b/c² − g₀),    b = Σ_n w_n J_nᵀ Λ (y_n − f(x_n; θ*)),

    with Λ = diag(1/σ_ref²) and g₀ the gradient of −log prior at θ* (δθ* for N(0, δ⁻¹I),
    Λ₀(θ* − μ₀) for N(μ₀, Λ₀⁻¹)). It differs from θ* wherever training stopped short of the
    MAP or δ, σ moved after it (R and b: :func:`gaussian_residual_statistics`).

    Returns q with mean μ, and R = Σ_n w_n ‖y_n − f_n‖²_Λ and b (unit noise scale).
    """
    residual_sq, b = gaussian_residual_statistics(module, likelihood, X, y, weights, q.param_names)
    step = q.covariance_vector_product(b / q.noise_scale**2 - prior_gradient)
    return replace(q, mean=q.linearization_point + step), residual_sq, b


def linearized_residual_sq(residual_sq, b, curvature, offset) -> float:
    """Σ_n w_n ‖y_n − f_lin(x_n)‖²_Λ = R − 2bᵀΔ + ΔᵀGΔ at μ = θ* + Δ (exact for ``"full"``)."""
    quadratic = float((curvature.eigenvalues * curvature.to_eigenbasis(offset) ** 2).sum())
    return residual_sq - 2 * float(b @ offset) + quadratic


def linearized_data_fit(
    module, likelihood, X, y, weights, param_names, offset, gradient=False
) -> float | tuple[float, torch.Tensor]:
    """R(Δ) = Σ_n w_n ‖y_n − f(x_n; θ*) − J_n Δ‖²_Λ exactly, by forward-mode passes in row blocks.

    ``offset`` is Δ over the parameters ``param_names``. With ``gradient``, also ∇_Δ ½R(Δ) =
    −Σ_n w_n J_nᵀ Λ (y_n − f_n − J_n Δ), by one more (reverse-mode) pass.
    """
    params = dict(module.named_parameters())
    chosen = {name: params[name].detach() for name in param_names}
    sizes = [p.numel() for p in chosen.values()]
    tangents = {
        name: t.reshape(chosen[name].shape)
        for name, t in zip(chosen, offset.split(sizes), strict=True)
    }
    total, grad = 0.0, torch.zeros_like(offset)
    for rows in row_blocks(X.shape[0]):

        def outputs(weights_, rows=rows):
            return torch.func.functional_call(module, weights_, (X[rows],), strict=False)

        with torch.no_grad():
            f, Jv = torch.func.jvp(outputs, (chosen,), (tangents,))
        f_lin = (f + Jv).requires_grad_(gradient)
        with torch.enable_grad():
            fit = (weights[rows] * likelihood.data_fit(f_lin, y[rows])).sum()
        total += float(fit.detach())
        if gradient:
            (cotangent,) = torch.autograd.grad(0.5 * fit, f_lin)
            _, pullback = torch.func.vjp(outputs, chosen)
            (grads,) = pullback(cotangent)
            grad += torch.cat([grads[name].reshape(-1) for name in chosen])
    return (total, grad) if gradient else total


def gaussian_residual_statistics(module, likelihood, X, y, weights, param_names):
    """R = Σ_n w_n ‖y_n − f_n‖²_Λ and b = Σ_n w_n J_nᵀ Λ (y_n − f_n) at the module's weights.

    b is minus the gradient of ½R with respect to the parameters ``param_names``, so one
    backward pass per block of rows gives it, without per-sample Jacobians.
    """
    params = dict(module.named_parameters())
    chosen = [params[name] for name in param_names]
    b = torch.zeros(sum(p.numel() for p in chosen), dtype=torch.float64, device=X.device)
    residual_sq = 0.0
    with torch.enable_grad():
        for rows in row_blocks(X.shape[0]):
            fit = (weights[rows] * likelihood.data_fit(module(X[rows]), y[rows])).sum()
            grads = torch.autograd.grad(0.5 * fit, chosen)
            b -= torch.cat([g.reshape(-1) for g in grads]).to(b)
            residual_sq += float(fit.detach())
    return residual_sq, b


def _pass_statistics(module, likelihood, X, y, weights, q, draws) -> _PassStatistics:
    """E_q[log p], the gradient and E_q[Λ]^{1/2} of a classification likelihood, one data pass."""
    theta_star = q.linearization_point
    offset = q.mean - theta_star
    gradient = torch.zeros_like(q.mean)
    expected_ll = 0.0
    roots = []
    for rows, f, J in jacobian_blocks(module, X, q.param_names):
        w, yb = weights[rows], y[rows]
        m = f + J @ offset
        V = q.functional_covariance(J)
        ll, r, root = _expected_classification_terms(likelihood, yb, m, V, draws)
        expected_ll += float((w * ll).sum())
        roots.append(root)
        gradient += torch.einsum("nkp,nk->p", J, w[:, None] * r)
    return _PassStatistics(expected_ll, gradient, torch.cat(roots))


def _expected_classification_terms(likelihood, y, m, V, draws):
    """E_q[log p(y|f)], E_q[r] = E[∇_f log p] and E_q[Λ]^{1/2} per row, for f ~ N(m, V)."""
    if likelihood.name == "bernoulli":
        nodes, node_weights = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)
        nodes = torch.as_tensor(nodes, dtype=m.dtype, device=m.device)
        node_weights = torch.as_tensor(
            node_weights / node_weights.sum(), dtype=m.dtype, device=m.device
        )
        f = m + V[:, 0, :1].clamp_min(0.0).sqrt() * nodes  # (n, H)
        p = torch.sigmoid(f)
        yy = y.to(m)[:, None]
        ll = ((yy * f - F.softplus(f)) * node_weights).sum(-1)
        r = ((yy - p) * node_weights).sum(-1, keepdim=True)
        curvature = ((p * (1 - p)) * node_weights).sum(-1)
        return ll, r, curvature.sqrt()[:, None, None]
    k = m.shape[-1]
    chol = torch.linalg.cholesky(V + 1e-10 * torch.eye(k, dtype=V.dtype, device=V.device))
    f = m[:, None, :] + torch.einsum("nkl,sl->nsk", chol, draws)  # (n, S, K)
    log_p = torch.log_softmax(f, dim=-1)
    p = log_p.exp()
    ll = log_p.gather(-1, y[:, None, None].expand(-1, f.shape[1], 1))[..., 0].mean(1)
    r = F.one_hot(y, k).to(m) - p.mean(1)
    curvature = torch.diag_embed(p.mean(1)) - torch.einsum("nsk,nsl->nkl", p, p) / f.shape[1]
    eigenvalues, vectors = torch.linalg.eigh(0.5 * (curvature + curvature.transpose(1, 2)))
    return ll, r, vectors * eigenvalues.clamp_min(0.0).sqrt()[:, None, :]


def _m_step(q, tune_prior) -> GaussianPosterior:
    """The closed-form ELBO maximiser of δ for fixed q: δ_l = P_l / (‖μ_l‖² + tr Σ_ll)."""
    if not tune_prior:
        return q
    if np.ndim(q.prior_precision):
        sizes = list(q.layer_sizes)
        norms = torch.stack([block.square().sum() for block in q.mean.split(sizes)])
        counts = torch.tensor(sizes, dtype=q.mean.dtype, device=q.mean.device)
        delta = (counts / (norms + layer_traces(q))).cpu().numpy()
        return replace(q, prior_precision=np.clip(delta, *PRIOR_PRECISION_BOUNDS))
    delta = q.n_params / (float(q.mean.square().sum()) + float(layer_traces(q)[0]))
    return replace(q, prior_precision=float(np.clip(delta, *PRIOR_PRECISION_BOUNDS)))


def _natural_gradient_step(module, likelihood, X, weights, q, stats, structure, rho):
    """One NGVI step for a classification likelihood: precision from E_q[Λ], then the mean."""
    curvature = fit_curvature(
        module, likelihood, X, weights, q.param_names, structure, hessian_sqrt=stats.hessian_sqrt
    )
    q = replace(q, curvature=curvature)
    prior_gradient = q.prior_precision_vector.to(q.mean) * q.mean
    direction = q.covariance_vector_product(stats.gradient - prior_gradient)
    return replace(q, mean=q.mean + rho * direction)

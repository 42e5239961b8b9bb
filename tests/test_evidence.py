"""The evidence functions against Bayesian linear regression and finite differences.

The reference problem is a linear model with K = 2 outputs that share the design X (N, D) and
have their own weights θ_k, reference noise stds σ_k and a noise scale c: y_k ~ N(Xθ_k, c²σ_k²I),
θ_k ~ N(0, δ_k⁻¹I). Its GGN at reference noise is block-diagonal, XᵀX/σ_k² per output, so the
outputs are exact "layers" for a per-layer δ. At the MAP θ* of (δ, c) the Laplace evidence is
exact (the model is linear-Gaussian) and must equal Σ_k log N(y_k; 0, c²σ_k²I + XXᵀ/δ_k). The
EvidenceTerms are filled as skbnn._fitting's ``laplace_at`` fills them: the GGN's eigenvalues,
‖θ*‖², N = Σw, K, R = Σ_n w_n ‖(y_n − f_n)/σ‖², and Σ_k log σ_k as ``log_noise_ref``.
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import multivariate_normal

from skbnn._evidence import (
    EvidenceTerms,
    log_marginal_likelihood,
    log_marginal_likelihood_gradient,
    log_marginal_likelihood_hessian,
    maximize_log_marginal_likelihood,
)

SIGMA_REF = np.array([0.5, 1.5])  # σ_k of the two outputs
N, D = 25, 3


def regression_data(seed=0):
    rng = np.random.RandomState(seed)
    X = np.hstack([rng.randn(N, D - 1), np.ones((N, 1))])  # the bias as a feature
    W = np.array([[1.0, -0.5], [2.0, 0.3], [0.5, -1.0]])
    Y = X @ W + SIGMA_REF * rng.randn(N, 2)
    weights = rng.randint(1, 4, size=N)  # frequency weights
    return X, Y, weights


def blr_terms(X, Y, weights, delta, noise_scale):
    """EvidenceTerms at the closed-form MAP of per-output prior precisions ``delta`` (K,)."""
    delta = np.broadcast_to(delta, (2,))
    theta, eigenvalues, data_fit = [], [], 0.0
    for k in range(2):
        ggn = X.T @ (weights[:, None] * X) / SIGMA_REF[k] ** 2  # at reference noise
        precision = ggn / noise_scale**2 + delta[k] * np.eye(D)
        t = np.linalg.solve(
            precision, X.T @ (weights * Y[:, k]) / (noise_scale * SIGMA_REF[k]) ** 2
        )
        theta.append(t)
        eigenvalues.append(np.linalg.eigvalsh(ggn))
        data_fit += np.sum(weights * ((Y[:, k] - X @ t) / SIGMA_REF[k]) ** 2)
    return EvidenceTerms(
        eigenvalues=np.concatenate(eigenvalues),
        map_norm_sq=float(sum(t @ t for t in theta)),
        n_data=float(weights.sum()),
        n_outputs=2,
        data_fit=float(data_fit),
        gaussian=True,
        log_noise_ref=float(np.log(SIGMA_REF).sum()),
        group_sizes=(D, D),
        group_norms_sq=tuple(float(t @ t) for t in theta),
    )


def blr_log_evidence(X, Y, weights, delta, noise_scale):
    """Σ_k log N(y_k; 0, c²σ_k²I + XXᵀ/δ_k) on the data with each row repeated w_n times."""
    X, Y = X.repeat(weights, 0), Y.repeat(weights, 0)
    delta = np.broadcast_to(delta, (2,))
    return sum(
        multivariate_normal(
            np.zeros(len(X)),
            (noise_scale * SIGMA_REF[k]) ** 2 * np.eye(len(X)) + X @ X.T / delta[k],
        ).logpdf(Y[:, k])
        for k in range(2)
    )


@pytest.fixture(scope="module")
def data():
    return regression_data()


@pytest.mark.parametrize(
    "delta", [0.05, 2.0, np.array([0.3, 4.0])], ids=["small", "large", "layerwise"]
)
@pytest.mark.parametrize("noise_scale", [0.6, 1.0, 2.5])
def test_evidence_equals_bayesian_linear_regression(data, delta, noise_scale):
    terms = blr_terms(*data, delta, noise_scale)
    reference = blr_log_evidence(*data, delta, noise_scale)
    assert_allclose(log_marginal_likelihood(terms, delta, noise_scale), reference, rtol=1e-11)


def test_evidence_at_a_wrong_map_is_not_the_closed_form(data):
    """The formula is the evidence only at the MAP of the δ, c it is evaluated at."""
    terms = blr_terms(*data, 2.0, 1.0)
    assert not np.isclose(
        log_marginal_likelihood(terms, 2.2, 1.0), blr_log_evidence(*data, 2.2, 1.0), rtol=1e-6
    )


def test_classification_evidence_is_the_dense_laplace_formula():
    """log p(D|θ*) + log p(θ*) + P/2 log 2π − ½ log|H + δI|, with a dense log-determinant."""
    rng = np.random.RandomState(3)
    factor = rng.randn(4, 6)
    hessian = factor.T @ factor  # rank 4 < P = 6: two zero eigenvalues
    theta = rng.randn(6)
    nll, delta = 7.3, 0.8
    terms = EvidenceTerms(
        eigenvalues=np.clip(np.linalg.eigvalsh(hessian), 0, None),
        map_norm_sq=float(theta @ theta),
        n_data=30.0,
        n_outputs=1,
        data_fit=nll,
        gaussian=False,
    )
    log_prior = multivariate_normal(np.zeros(6), np.eye(6) / delta).logpdf(theta)
    reference = (
        -nll
        + log_prior
        + 3 * np.log(2 * np.pi)
        - 0.5 * np.linalg.slogdet(hessian + delta * np.eye(6))[1]
    )
    assert_allclose(log_marginal_likelihood(terms, delta), reference, rtol=1e-12)


# -- derivatives in (log δ, log c) ---------------------------------------------------------------


def terms_for(kind, data):
    terms = blr_terms(*data, np.array([0.3, 4.0]), 1.3)
    if kind == "classification":
        # The same spectrum and norms with a negative log-likelihood as the data term.
        return EvidenceTerms(**{**terms.__dict__, "gaussian": False, "data_fit": 11.0})
    return terms


def unpack(x, layerwise):
    return (np.exp(x[:-1]) if layerwise else float(np.exp(x[0]))), float(np.exp(x[-1]))


def packed_gradient(terms, x, layerwise):
    d_delta, d_c = log_marginal_likelihood_gradient(terms, *unpack(x, layerwise))
    return np.append(d_delta, d_c)


@pytest.mark.parametrize("kind", ["gaussian", "classification"])
@pytest.mark.parametrize("layerwise", [False, True])
@pytest.mark.parametrize("point", [(0.5, 0.8), (3.0, 1.5), (1e-3, 0.2)])
def test_gradient_and_hessian_match_finite_differences(data, kind, layerwise, point):
    """Central differences in the free log-hyperparameters: (log δ_l..., log c), or log δ alone.

    A classifier has c = 1 and its gradient's c-entry is 0 by definition; the Hessian's c row
    and column are a placeholder (−1 on the diagonal), so only the δ block is compared.
    """
    terms = terms_for(kind, data)
    delta, c = point
    if kind == "classification":
        c = 1.0
    x = np.log([delta, 3 * delta, c] if layerwise else [delta, c])
    n_free = len(x) - (kind == "classification")
    h = 1e-5
    eye = np.eye(len(x))[:n_free]

    def value(x):
        return log_marginal_likelihood(terms, *unpack(x, layerwise))

    numeric_gradient = np.array([(value(x + h * e) - value(x - h * e)) / (2 * h) for e in eye])
    gradient = packed_gradient(terms, x, layerwise)
    assert gradient.shape == (len(x),)
    if kind == "classification":
        assert gradient[-1] == 0.0
    scale = np.abs(numeric_gradient).max()
    assert_allclose(gradient[:n_free], numeric_gradient, rtol=1e-7, atol=1e-8 * scale)
    # The Hessian of log Z, by central differences of the (just checked) analytic gradient.
    numeric_hessian = np.array(
        [
            (
                packed_gradient(terms, x + h * e, layerwise)
                - packed_gradient(terms, x - h * e, layerwise)
            )[:n_free]
            / (2 * h)
            for e in eye
        ]
    )
    hessian = log_marginal_likelihood_hessian(terms, *unpack(x, layerwise))
    assert hessian.shape == (len(x), len(x))
    hessian = hessian[:n_free, :n_free]
    scale = np.abs(numeric_hessian).max()
    assert_allclose(hessian, numeric_hessian, rtol=1e-6, atol=1e-7 * scale)
    assert np.all(np.linalg.eigvalsh(hessian) < 0)  # concave in the log-hyperparameters


# -- the maximiser ---------------------------------------------------------------------------------

GRID = np.geomspace(1e-3, 1e3, 61)


def grid_maximum(terms, fixed_delta=None, fixed_c=None, layerwise=False):
    deltas = [fixed_delta] if fixed_delta is not None else GRID
    if layerwise and fixed_delta is None:
        deltas = [np.array(pair) for pair in itertools.product(GRID[::3], GRID[::3])]
    scales = [fixed_c] if fixed_c is not None else GRID[::2]
    return max(log_marginal_likelihood(terms, d, c) for d in deltas for c in scales)


# (layerwise, which hyperparameters are free); with δ fixed there is nothing layerwise to tune.
MAXIMIZER_CASES = [
    (False, "both"),
    (False, "prior"),
    (False, "noise"),
    (True, "both"),
    (True, "prior"),
]


@pytest.mark.parametrize(("layerwise", "free"), MAXIMIZER_CASES)
def test_maximizer_is_stationary_and_beats_a_grid(data, layerwise, free):
    terms = blr_terms(*data, np.array([0.3, 4.0]), 1.3)
    fixed_delta = np.array([0.3, 4.0]) if layerwise else 0.7
    fixed_c = 1.3
    delta, c, value = maximize_log_marginal_likelihood(
        terms,
        prior_precision=None if free in ("both", "prior") else fixed_delta,
        noise_scale=None if free in ("both", "noise") else fixed_c,
        layerwise=layerwise,
    )
    assert_allclose(value, log_marginal_likelihood(terms, delta, c), rtol=1e-14)
    if free == "prior":
        assert c == fixed_c
    if free == "noise":
        assert delta is fixed_delta or np.all(delta == fixed_delta)
    assert np.ndim(delta) == (1 if layerwise else 0)
    d_delta, d_c = log_marginal_likelihood_gradient(terms, delta, c)
    tolerance = 1e-8 * terms.n_data
    if free in ("both", "prior"):
        assert_allclose(d_delta, 0.0, atol=tolerance)
    if free in ("both", "noise"):
        assert_allclose(d_c, 0.0, atol=tolerance)
    grid_best = grid_maximum(
        terms,
        fixed_delta=None if free in ("both", "prior") else fixed_delta,
        fixed_c=None if free in ("both", "noise") else fixed_c,
        layerwise=layerwise,
    )
    assert value >= grid_best - 1e-12 * abs(grid_best)


def test_layerwise_maximizer_is_mackays_fixed_point(data):
    """δ_l = γ_l/‖θ*_l‖² per layer and c² = R/(NK − γ) (MacKay 1992), from the spectrum alone."""
    terms = blr_terms(*data, np.array([0.3, 4.0]), 1.3)
    delta, c, _ = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None, layerwise=True
    )
    ratio = (terms.eigenvalues / c**2) / (terms.eigenvalues / c**2 + np.repeat(delta, (D, D)))
    gamma = ratio.reshape(2, D).sum(1)
    assert_allclose(delta, gamma / np.array(terms.group_norms_sq), rtol=1e-9)
    assert_allclose(c**2, terms.data_fit / (terms.n_data * 2 - gamma.sum()), rtol=1e-9)
    # Two very different outputs get very different precisions: the layerwise optimum is not
    # the scalar one, and it is at least as good.
    scalar_delta, _, scalar_value = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None
    )
    assert log_marginal_likelihood(terms, delta, c) >= scalar_value
    assert not np.allclose(delta, scalar_delta, rtol=1e-2)


def test_classification_maximizer_leaves_the_noise_alone(data):
    terms = terms_for("classification", data)
    delta, c, value = maximize_log_marginal_likelihood(
        terms, prior_precision=None, noise_scale=None
    )
    assert c == 1.0
    assert_allclose(log_marginal_likelihood_gradient(terms, delta, c)[0], 0.0, atol=1e-8)
    assert value >= grid_maximum(terms, fixed_c=1.0)

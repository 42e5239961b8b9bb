"""The KFAC ("kron") GGN against the exact GGN where KFAC is exact, and its eigenbasis algebra."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor, _jacobians
from skbnn._curvature import fit_curvature, ggn_matrix
from skbnn._kron import KronCurvature, fit_kron_curvature, kron_glm_outputs
from skbnn._likelihoods import BernoulliLikelihood, CategoricalLikelihood, GaussianLikelihood
from skbnn._loo import loo_logits
from skbnn._network import build_mlp, last_layer_parameter_names
from skbnn._posterior import GaussianPosterior

LIKELIHOODS = {
    "gaussian": (lambda: GaussianLikelihood(torch.tensor([0.5, 2.0], dtype=torch.float64)), 2),
    "bernoulli": (BernoulliLikelihood, 1),
    "categorical": (CategoricalLikelihood, 3),
}


def make_problem(name, n=17, seed=0, hidden=(5, 4), n_features=3):
    make_likelihood, k = LIKELIHOODS[name]
    gen = torch.Generator().manual_seed(seed)
    module = build_mlp(n_features, hidden, k, "tanh", dtype=torch.float64, generator=gen)
    X = torch.randn(n, n_features, generator=gen, dtype=torch.float64)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) * 3
    return module, make_likelihood(), X, weights


def all_names(module):
    return [name for name, _ in module.named_parameters()]


def layer_slices(module, names):
    """Slices of the flat parameter vector covering each layer (weight then bias)."""
    params = dict(module.named_parameters())
    slices, start = [], 0
    for weight, bias in zip(names[::2], names[1::2], strict=True):
        size = params[weight].numel() + params[bias].numel()
        slices.append(slice(start, start + size))
        start += size
    return slices


def block_diagonal_part(matrix, slices):
    out = torch.zeros_like(matrix)
    for s in slices:
        out[s, s] = matrix[s, s]
    return out


@pytest.mark.parametrize("n", [1, 6, 40])
def test_single_linear_layer_gaussian_is_exact(n):
    module, likelihood, X, weights = make_problem("gaussian", n=n, hidden=(), seed=n)
    names = all_names(module)
    kron = fit_kron_curvature(module, likelihood, X, weights, names)
    assert isinstance(kron, KronCurvature)
    assert kron.n_params == 2 * (3 + 1)
    assert_allclose(kron.dense(), ggn_matrix(module, likelihood, X, weights, names), atol=1e-10)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_one_data_point_within_layer_blocks_are_exact(name):
    module, likelihood, X, weights = make_problem(name, n=1, seed=3)
    names = all_names(module)
    kron = fit_kron_curvature(module, likelihood, X, weights, names)
    ggn = ggn_matrix(module, likelihood, X, weights, names)
    slices = layer_slices(module, names)
    assert len(slices) == 3
    dense = kron.dense()
    assert_allclose(dense, block_diagonal_part(ggn, slices), atol=1e-10)
    # The cross-layer blocks are really dropped (and really nonzero in the GGN).
    assert (ggn - block_diagonal_part(ggn, slices)).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_minibatches_and_repeated_data(name, monkeypatch):
    module, likelihood, X, weights = make_problem(name, n=13)
    names = all_names(module)
    one_block = fit_kron_curvature(module, likelihood, X, weights, names).dense()
    monkeypatch.setattr(_jacobians, "_JACOBIAN_BLOCK_ELEMENTS", 1)  # one row per block
    many_blocks = fit_kron_curvature(module, likelihood, X, weights, names).dense()
    assert_allclose(many_blocks, one_block, atol=1e-12, rtol=1e-12)
    monkeypatch.setattr(_jacobians, "_JACOBIAN_BLOCK_ELEMENTS", 5 * 40)  # uneven blocks
    assert_allclose(
        fit_kron_curvature(module, likelihood, X, weights, names).dense(), one_block, atol=1e-12
    )

    repeats = 3
    ones = torch.ones(X.shape[0], dtype=torch.float64)
    repeated = fit_kron_curvature(
        module, likelihood, X.repeat(repeats, 1), ones.repeat(repeats), names
    )
    weighted = fit_kron_curvature(module, likelihood, X, repeats * ones, names)
    assert_allclose(repeated.dense(), weighted.dense(), atol=1e-12, rtol=1e-12)


def test_eigenbasis_is_orthogonal_and_posterior_matches_dense():
    module, likelihood, X, weights = make_problem("categorical", n=11)
    names = all_names(module)
    kron = fit_curvature(module, likelihood, X, weights, names, "kron")
    assert isinstance(kron, KronCurvature)
    P = kron.n_params
    assert P == sum(p.numel() for p in module.parameters())
    eye = torch.eye(P, dtype=torch.float64)
    rotation = kron.to_eigenbasis(eye).T  # rows: eigenvectors in parameter coordinates
    assert_allclose(rotation @ rotation.T, eye, atol=1e-12)
    z = torch.randn(4, 3, P, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_allclose(kron.from_eigenbasis(kron.to_eigenbasis(z)), z, atol=1e-12)
    assert_allclose(kron.to_eigenbasis(kron.from_eigenbasis(z)), z, atol=1e-12)
    assert_allclose(kron.from_eigenbasis(eye), rotation, atol=1e-12)
    eigenvalues = kron.eigenvalues
    assert eigenvalues.shape == (P,) and bool((eigenvalues >= 0).all())
    assert_allclose(kron.dense(), rotation.T @ torch.diag(eigenvalues) @ rotation, atol=1e-12)

    delta, noise_scale = 0.3, 2.0
    posterior = GaussianPosterior(
        torch.zeros(P, dtype=torch.float64), kron, delta, noise_scale, names
    )
    precision = kron.dense() / noise_scale**2 + delta * eye
    covariance = torch.linalg.inv(precision)
    assert_allclose(posterior.covariance(), covariance, rtol=1e-8, atol=1e-12)
    assert_allclose(posterior.log_det_precision(), torch.logdet(precision), rtol=1e-10)
    J = torch.randn(6, 3, P, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert_allclose(
        posterior.functional_covariance(J),
        J @ covariance @ J.transpose(1, 2),
        rtol=1e-8,
        atol=1e-12,
    )
    cross = posterior.functional_cross_covariance(J[:2], J[2:])
    assert_allclose(
        cross, torch.einsum("akp,pq,blq->akbl", J[:2], covariance, J[2:]), rtol=1e-8, atol=1e-12
    )


def test_dense_follows_the_weight_then_bias_parameter_order():
    """A hand-built one-layer curvature: the [W | b] Kronecker block in W.flatten(), b order."""
    gen = torch.Generator().manual_seed(4)
    G = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    A = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    G, A = G @ G.T, A @ A.T
    kron = KronCurvature.from_factors([G], [A])
    order = [j * 3 + i for j in range(2) for i in range(3)] + [6, 7]  # [W|b] row-major -> params
    expected = torch.zeros(8, 8, dtype=torch.float64)
    kron_product = torch.kron(G, A)  # indices (row j, column i of [W | b]) row-major
    position = [j * 4 + i for j in range(2) for i in range(3)] + [3, 7]
    for p, pp in zip(order, position, strict=True):
        for q, qq in zip(order, position, strict=True):
            expected[p, q] = kron_product[pp, qq]
    assert_allclose(kron.dense(), expected, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_last_layer(name):
    module, likelihood, X, weights = make_problem(name, n=19)
    names = last_layer_parameter_names(module)
    kron = fit_curvature(module, likelihood, X, weights, names, "kron")
    ggn = ggn_matrix(module, likelihood, X, weights, names)
    assert kron.n_params == ggn.shape[0]
    if name == "gaussian":  # G = (Σ w) Λ is constant: KFAC is exact
        assert_allclose(kron.dense(), ggn, atol=1e-10)
    # Whatever the likelihood, it is the last block of the all-layer KFAC.
    full = fit_kron_curvature(module, likelihood, X, weights, all_names(module)).dense()
    assert_allclose(kron.dense(), full[-ggn.shape[0] :, -ggn.shape[0] :], atol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [["0.weight"], ["0.bias", "0.weight"], ["1.weight", "1.bias"], ["0.weight", "2.bias"], []],
)
def test_rejects_partial_layers(bad):
    module, likelihood, X, weights = make_problem("gaussian", n=3)
    with pytest.raises(ValueError, match="whole Linear layers"):
        fit_kron_curvature(module, likelihood, X, weights, bad)


def make_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
    return X, y


def test_estimators_end_to_end():
    X, y = make_data()
    reg = LaplaceMLPRegressor((8,), hessian_structure="kron", max_iter=50, random_state=0)
    mean, std = reg.fit(X, y).predict(X[:7], return_std=True)
    assert reg.posterior_.structure == "kron"
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)

    clf = LaplaceMLPClassifier((8,), hessian_structure="kron", max_iter=50, random_state=0)
    labels = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes
    proba = clf.fit(X, labels).predict_proba(X[:7])
    assert proba.shape == (7, 3) and np.all(np.isfinite(proba)) and np.all(proba > 0)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
    binary = LaplaceMLPClassifier((8,), hessian_structure="kron", max_iter=50, random_state=0)
    proba = binary.fit(X, labels > 0).predict_proba(X[:7])
    assert proba.shape == (7, 2) and np.all(np.isfinite(proba))
    assert_allclose(proba.sum(1), 1.0, rtol=1e-10)


def test_linear_regression_kron_equals_full():
    X, y = make_data(n=40, seed=1)
    common = dict(
        hidden_layer_sizes=(),
        prior_precision=0.7,
        sigma_noise=0.3,
        normalize_y=False,
        max_iter=50,
        random_state=0,
    )
    stds, covs = [], []
    for structure in ("full", "kron"):
        reg = LaplaceMLPRegressor(hessian_structure=structure, **common).fit(X, y)
        stds.append(reg.predict(X[:9], return_std=True)[1])
        covs.append(reg.posterior_.covariance().numpy())
    assert_allclose(stds[1], stds[0], rtol=1e-8)
    assert_allclose(covs[1], covs[0], rtol=1e-8, atol=1e-14)


def test_kron_predictive_without_jacobians_equals_the_generic_path():
    """The rank-one-per-layer GLM predictive equals J Σ Jᵀ from full Jacobians, VI offset too."""
    from skbnn._jacobians import jacobians
    from skbnn._kron import kron_glm_outputs

    rng = np.random.RandomState(0)
    X = rng.randn(120, 3)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(6, 5),
        hessian_structure="kron",
        inference="ggn-vi",
        prior_structure="layerwise",
        max_iter=30,
        random_state=0,
    ).fit(X, y)
    X_t = torch.tensor(X[:40])
    f, J = jacobians(clf.module_, X_t, clf.posterior_.param_names)
    f = f + J @ clf.posterior_.mean_offset
    fast_f, fast_cov = kron_glm_outputs(clf.module_, X_t, clf.posterior_)
    assert_allclose(fast_f, f, atol=1e-12)
    assert_allclose(fast_cov, clf.posterior_.functional_covariance(J), atol=1e-12)


# -- wide inputs: fewer rows than a layer has inputs -----------------------------------------------


def dense_factor_twin(kron, input_factors):
    """The same output factors with the given input factors, each decomposed by a dense eigh."""
    G, _ = kron.factors()
    return KronCurvature.from_factors(G, input_factors)


def spy_on_eigh(monkeypatch):
    """Record the size of every matrix that torch.linalg.eigh decomposes."""
    sizes, eigh = [], torch.linalg.eigh

    def recording(S, *args, **kwargs):
        sizes.append(S.shape[-1])
        return eigh(S, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", recording)
    return sizes


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_wide_input_factor_is_decomposed_through_its_rank(name, monkeypatch):
    """6 rows of 20 features: A_0 (21 × 21, rank 6) needs no 21 × 21 eigh, and is exact."""
    module, likelihood, X, weights = make_problem(name, n=6, n_features=20, seed=5)
    weights[2] = 0.0  # a row without weight contributes nothing to the root
    names = all_names(module)
    sizes = spy_on_eigh(monkeypatch)
    kron = fit_kron_curvature(module, likelihood, X, weights, names)
    assert sizes and max(sizes) <= 6  # G (5, 4, K) and the 6 × 6 Gram matrix of the root only
    monkeypatch.undo()

    # The input factor is the weighted mean of ã ãᵀ, with exactly 21 − 5 zero eigenvalues.
    a_tilde = torch.cat([X, torch.ones(6, 1, dtype=torch.float64)], dim=1)
    A0 = (weights[:, None] * a_tilde).T @ a_tilde / weights.sum()
    G, A = kron.factors()
    assert_allclose(A[0], A0, rtol=1e-12, atol=1e-14)
    Q_A, nu = kron.input_eigenvectors[0], kron.input_eigenvalues[0]
    assert_allclose(Q_A.T @ Q_A, torch.eye(21, dtype=torch.float64), atol=1e-13)
    assert int((nu == 0).sum()) == 21 - 5 and bool((nu[nu > 0] > 1e-8).all())

    # dense() is ⊕_l G_l ⊗ A_l in the W.flatten(), b parameter order (torch.kron reference).
    slices = layer_slices(module, names)
    expected = torch.zeros(kron.n_params, kron.n_params, dtype=torch.float64)
    for s, G_l, A_l in zip(slices, G, [A0, *A[1:]], strict=True):
        out, inp = G_l.shape[0], A_l.shape[0]
        position = [j * inp + i for j in range(out) for i in range(inp - 1)]
        position += [j * inp + inp - 1 for j in range(out)]
        expected[s, s] = torch.kron(G_l, A_l)[position][:, position]
    assert_allclose(kron.dense(), expected, rtol=1e-11, atol=1e-13)

    # Every consumer agrees with the dense-eigh twin: spectrum, log-det, covariance, GLM outputs.
    twin = dense_factor_twin(kron, [A0, *A[1:]])
    assert_allclose(
        kron.eigenvalues.sort().values, twin.eigenvalues.sort().values, rtol=1e-10, atol=1e-12
    )
    mean = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    wide, dense = (
        GaussianPosterior(
            mean,
            curvature,
            torch.tensor([0.3, 1.0, 2.0]),
            0.5,
            names,
            layer_sizes=tuple(s.stop - s.start for s in slices),
        )
        for curvature in (kron, twin)
    )
    assert_allclose(wide.log_det_precision(), dense.log_det_precision(), rtol=1e-12)
    assert_allclose(wide.covariance(), dense.covariance(), rtol=1e-9, atol=1e-12)
    z = torch.randn(
        3, kron.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    assert_allclose(kron.from_eigenbasis(kron.to_eigenbasis(z)), z, atol=1e-12)  # exact sampling
    X_new = torch.randn(5, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for got, want in zip(
        kron_glm_outputs(module, X_new, wide), kron_glm_outputs(module, X_new, dense), strict=True
    ):
        assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    if name != "gaussian":  # the leave-one-out cavities of the training rows
        y = torch.randint(
            LIKELIHOODS[name][1] + (name == "bernoulli"),
            (6,),
            generator=torch.Generator().manual_seed(2),
        )
        y = y.to(torch.float64) if name == "bernoulli" else y
        for got, want in zip(
            loo_logits(module, wide, likelihood, X, y, weights),
            loo_logits(module, dense, likelihood, X, y, weights),
            strict=True,
        ):
            assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_ordinary_inputs_keep_the_dense_factor_eigh(monkeypatch):
    """With more rows than inputs every factor goes through one dense eigh, as before."""
    module, likelihood, X, weights = make_problem("categorical", n=30, n_features=20, seed=5)
    sizes = spy_on_eigh(monkeypatch)
    kron = fit_kron_curvature(module, likelihood, X, weights, all_names(module))
    assert sorted(sizes) == sorted([5, 4, 3, 21, 6, 5])
    monkeypatch.undo()
    G, A = kron.factors()
    twin = KronCurvature.from_factors(G, A)
    assert_allclose(kron.dense(), twin.dense(), rtol=1e-12, atol=1e-14)


def test_pooling_wide_chunks_keeps_the_rank_and_ordinary_chunks_the_dense_eigh(monkeypatch):
    """accumulate (partial_fit): G₁ + G₂ and (N₁A₁ + N₂A₂)/N; exact for wide chunks."""

    module, likelihood, X, weights = make_problem("bernoulli", n=30, n_features=20, seed=6)
    names = all_names(module)

    def pooled_reference(first, second, n1, n2):
        (G1, A1), (G2, A2) = first.factors(), second.factors()
        return KronCurvature.from_factors(
            [a + b for a, b in zip(G1, G2, strict=True)],
            [(n1 * a + n2 * b) / (n1 + n2) for a, b in zip(A1, A2, strict=True)],
        )

    wide = [
        fit_kron_curvature(module, likelihood, X[r], weights[r], names)
        for r in (slice(0, 4), slice(4, 9))
    ]
    n1, n2 = float(weights[:4].sum()), float(weights[4:9].sum())
    sizes = spy_on_eigh(monkeypatch)
    pooled = wide[0].accumulate(wide[1], n1, n2)
    assert max(sizes) <= 9  # no 21 × 21 eigh: the two chunks' roots have 4 + 5 rows
    monkeypatch.undo()
    assert int((pooled.input_eigenvalues[0] == 0).sum()) == 21 - 9
    reference = pooled_reference(*wide, n1, n2)
    assert_allclose(pooled.dense(), reference.dense(), rtol=1e-10, atol=1e-12)
    assert_allclose(pooled.factors()[1][0], reference.factors()[1][0], rtol=1e-10, atol=1e-13)

    ordinary = [
        fit_kron_curvature(module, likelihood, X[r], weights[r], names)
        for r in (slice(0, 25), slice(25, 30))
    ]
    n1, n2 = float(weights[:25].sum()), float(weights[25:].sum())
    pooled = ordinary[0].accumulate(ordinary[1], n1, n2)
    assert torch.equal(pooled.dense(), pooled_reference(*ordinary, n1, n2).dense())

"""Property-based tests: invariants that hold for any shape, scale and label set.

Each example fits one small network twice (to check that a fixed ``random_state`` repeats the fit
exactly) and checks all invariants of its estimator on that fit: finite predictions, a finite
std > 0 or probabilities in [0, 1] that sum to 1, and equivariance under a row permutation of the
query. ``derandomize=True`` makes the examples the same on every run and in CI.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

LABEL_SETS = [
    np.array([0, 1, 2, 3]),
    np.array([-7, 3, 100, 5]),
    np.array([0.0, -1.0, 2.0, 9.0]),  # integral floats: fractional ones are "continuous"
    np.array(["cat", "ant", "bee", "dog"]),
    np.array([True, False]),
]


@st.composite
def problems(draw):
    """A random design X (n × d, any scale) and the training settings of a small network."""
    n = draw(st.integers(5, 40))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    x_scale = 10.0 ** draw(st.floats(-3, 3))
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d) * x_scale + rng.randn(d) * x_scale
    query = np.vstack([X[: draw(st.integers(0, 3))], rng.randn(draw(st.integers(1, 8)), d)])
    params = dict(
        hidden_layer_sizes=draw(st.sampled_from([(), (3,), (2, 2)])),
        activation=draw(st.sampled_from(["tanh", "relu", "logistic", "gelu"])),
        hessian_structure=draw(st.sampled_from(["full", "diag", "kron"])),
        subset_of_weights=draw(st.sampled_from(["all", "last_layer"])),
        evidence_tuning=draw(st.sampled_from(["online", "posthoc"])),
        dtype=draw(st.sampled_from(["float64", "float32"])),
        max_iter=draw(st.integers(3, 10)),
        random_state=draw(st.integers(0, 1000)),
    )
    return rng, X, query * x_scale, params


def _fit_twice(Estimator, params, X, y):
    first = Estimator(**params).fit(X, y)
    second = Estimator(**params).fit(X, y)
    return first, second


@EXAMPLES
@given(
    problem=problems(),
    y_scale=st.floats(-6, 6),
    y_offset=st.floats(-1e6, 1e6),
    n_targets=st.sampled_from([None, 2]),
)
def test_regressor_invariants(problem, y_scale, y_offset, n_targets):
    rng, X, query, params = problem
    shape = X.shape[0] if n_targets is None else (X.shape[0], n_targets)
    y = (np.tanh(X.sum(1) / (1 + np.abs(X).max())) if n_targets is None else 0) + rng.randn(
        *np.atleast_1d(shape)
    )
    y = y * 10.0**y_scale + y_offset
    model, again = _fit_twice(LaplaceMLPRegressor, params, X, y)

    mean, std = model.predict(query, return_std=True)
    assert mean.shape == std.shape == (query.shape[0], *y.shape[1:])
    assert np.all(np.isfinite(mean))
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    # A fixed random_state repeats the fit exactly.
    for got, expected in zip(again.predict(query, return_std=True), (mean, std), strict=True):
        assert_array_equal(got, expected)
    # Permuting the query rows permutes the predictions.
    order = rng.permutation(query.shape[0])
    permuted_mean, permuted_std = model.predict(query[order], return_std=True)
    assert_allclose(permuted_mean, mean[order], rtol=1e-9, atol=1e-12 * np.abs(mean).max())
    assert_allclose(permuted_std, std[order], rtol=1e-9)


@EXAMPLES
@given(
    problem=problems(),
    label_set=st.sampled_from(LABEL_SETS),
    n_classes=st.integers(2, 4),
)
def test_classifier_invariants(problem, label_set, n_classes):
    rng, X, query, params = problem
    labels = label_set[: min(n_classes, len(label_set))]
    # Every class appears at least once (n ≥ 5 ≥ 4 classes); the rest at random.
    index = np.concatenate([np.arange(len(labels)), rng.randint(len(labels), size=X.shape[0])])
    y = labels[index[: X.shape[0]]]
    model, again = _fit_twice(LaplaceMLPClassifier, dict(params, n_samples=64), X, y)
    assert_array_equal(model.classes_, np.unique(labels))

    order = rng.permutation(query.shape[0])
    for link_approx in ["probit", "bridge", "mc"]:  # the link acts at prediction only
        model.set_params(link_approx=link_approx)
        again.set_params(link_approx=link_approx)
        proba = model.predict_proba(query)
        assert proba.shape == (query.shape[0], len(labels))
        assert np.all(np.isfinite(proba))
        assert np.all((proba >= 0) & (proba <= 1))
        assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
        assert_array_equal(again.predict_proba(query), proba)
        assert_allclose(model.predict_proba(query[order]), proba[order], rtol=1e-9, atol=1e-12)
    assert np.all(np.isin(model.predict(query), labels))

"""Pickles carry the skbnn version and warn when loaded under another one."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import skbnn
from skbnn import InconsistentVersionWarning, LaplaceMLPClassifier, LaplaceMLPRegressor

FAST = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0)


@pytest.mark.parametrize("Estimator", [LaplaceMLPRegressor, LaplaceMLPClassifier])
def test_pickles_carry_the_version_and_load_silently_under_it(Estimator):
    rng = np.random.RandomState(0)
    X = rng.randn(30, 2)
    y = (X[:, 0] > 0).astype(int)
    model = Estimator(**FAST).fit(X, y)
    assert model.__getstate__()["_skbnn_version"] == skbnn.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        loaded = pickle.loads(pickle.dumps(model))
    assert "_skbnn_version" not in loaded.__dict__
    assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_pickle_of_another_version_warns():
    model = LaplaceMLPRegressor(**FAST)
    state = {**model.__getstate__(), "_skbnn_version": "0.0.1"}
    fresh = LaplaceMLPRegressor.__new__(LaplaceMLPRegressor)
    with pytest.warns(InconsistentVersionWarning, match="from skbnn version 0.0.1 when using"):
        fresh.__setstate__(state)
    assert fresh.get_params() == model.get_params()


def test_a_dense_ggn_is_rebuilt_from_the_rows_at_load_time():
    """The pickle holds the training rows, not the P × r eigenvectors; loading recomputes them."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(80, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.randn(80)
    model = LaplaceMLPRegressor(hidden_layer_sizes=(30,), max_iter=20, ensemble_size=2).fit(X, y)
    assert model.hessian_structure_ == "full"
    blob = pickle.dumps(model)
    eigenvectors = sum(m.posterior.curvature.eigenvectors.numel() for m in model.members_)
    assert len(blob) < 8 * eigenvectors  # smaller than the eigenvectors alone
    loaded = pickle.loads(blob)
    assert loaded.members_[0].posterior is loaded.posterior_
    assert_allclose(
        loaded.predict(X, return_std=True), model.predict(X, return_std=True), rtol=1e-10
    )
    assert_allclose(loaded.kernel(X[:5]), model.kernel(X[:5]), rtol=1e-9, atol=1e-14)
    # After partial_fit the curvature sums over chunks: it is pickled as it is.
    streamed = pickle.loads(pickle.dumps(loaded.partial_fit(X[:10], y[:10])))
    assert_allclose(streamed.predict_std(X), loaded.predict_std(X), rtol=1e-10)

"""Pickles carry the skbnn version and warn when loaded under another one."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

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

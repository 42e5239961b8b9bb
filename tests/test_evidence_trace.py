"""The evidence trace of online tuning (``scores_``) and the checkpoint it selects."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_diabetes

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor


def smooth_task(n=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    return X, np.sin(2 * X[:, 0]) * X[:, 1] + 0.1 * rng.randn(n)


def test_evidence_trace_increases_over_online_tuning():
    # A well-specified smooth task on a fixed seed: every refresh of δ, σ improves the evidence.
    X, y = smooth_task()
    # scores_ is the first network's trace; an ensemble's other networks would only add time.
    model = LaplaceMLPRegressor(max_iter=300, ensemble_size=1, random_state=0).fit(X, y)
    scores = np.asarray(model.scores_)
    assert len(scores) >= 21  # about 20 refreshes and the fitted posterior
    assert np.all(np.diff(scores) >= 0), np.diff(scores)
    assert scores[-1] == model.log_marginal_likelihood_value_


@pytest.mark.parametrize("estimator", ["regressor", "classifier"])
def test_fitted_posterior_has_the_best_evidence_of_the_trace(estimator):
    # Where training overfits, the evidence peaks before the end (diabetes: yes, and a
    # tiny-sample classifier): the weights of the peak are kept, so the final evidence is the
    # highest. It is recomputed at the restored weights, so it matches the peak to round-off.
    X, y = load_diabetes(return_X_y=True)
    if estimator == "classifier":
        y = (y > np.median(y)).astype(int)
        model = LaplaceMLPClassifier(hidden_layer_sizes=(50,), random_state=0)
    else:
        model = LaplaceMLPRegressor(hidden_layer_sizes=(50,), ensemble_size=1, random_state=0)
    model.set_params(keep_best_evidence=True).fit(X[:150], y[:150])
    scores = np.asarray(model.scores_)
    assert scores[:-1].max() > scores[-2], "the evidence should peak before the end here"
    assert scores[-1] >= scores[:-1].max() - 1e-9 * abs(scores[-1])
    # The restored weights reproduce the evidence that was recorded for them.
    assert_allclose(model.log_marginal_likelihood(), scores[-1], rtol=1e-12)
    # Without the checkpoint the same run ends at its final weights, below the peak.
    final = model.set_params(keep_best_evidence=False).fit(X[:150], y[:150])
    assert_allclose(final.scores_[:-1], scores[:-1], rtol=1e-12)
    assert final.scores_[-1] < scores[:-1].max()
    assert final.n_iter_ == model.n_iter_


def test_regressor_keeps_the_best_evidence_only_with_heteroscedastic_noise():
    # keep_best_evidence="auto": a heteroscedastic network keeps the weights of the peak, a
    # homoscedastic one its final weights (what the UCI benchmark preferred for each).
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:150], y[:150]
    for noise, keeps in [("heteroscedastic", True), ("homoscedastic", False)]:
        params = dict(noise=noise, max_iter=1000, ensemble_size=1, random_state=0)
        auto = LaplaceMLPRegressor(**params).fit(X, y)
        explicit = LaplaceMLPRegressor(keep_best_evidence=keeps, **params).fit(X, y)
        other = LaplaceMLPRegressor(keep_best_evidence=not keeps, **params).fit(X, y)
        assert auto.scores_ == explicit.scores_
        assert auto.scores_ != other.scores_, "the evidence should peak before the end here"


def test_posthoc_trace_has_one_entry_and_partial_fit_appends():
    X, y = smooth_task()
    model = LaplaceMLPRegressor(max_iter=50, evidence_tuning="posthoc", random_state=0)
    model.fit(X[:100], y[:100])
    assert model.scores_ == [model.log_marginal_likelihood_value_]
    model.partial_fit(X[100:], y[100:])
    assert len(model.scores_) == 2
    assert model.scores_[-1] == model.log_marginal_likelihood_value_

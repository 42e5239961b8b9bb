"""skbnn.metrics: the Gaussian CRPS against its defining integral, and the scorers inside
cross_validate and GridSearchCV, on bare estimators and pipelines, with metadata routing on and off.
"""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose
from scipy.integrate import quad
from scipy.stats import norm
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.fixes import parse_version

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor
from skbnn.metrics import (
    coverage_scorer,
    gaussian_crps,
    gaussian_log_likelihood,
    interval_coverage,
    log_likelihood_scorer,
    neg_crps_scorer,
    neg_interval_width_scorer,
)

# Tiny fits: the scorers are under test, not the networks.
FAST = dict(hidden_layer_sizes=(8,), max_iter=30, ensemble_size=1, random_state=0)
CV = KFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) * [1.0, 10.0, 0.1]  # unequal scales: the scaler matters
    y = np.sin(X[:, 0]) + 0.05 * X[:, 1] + 0.1 * rng.normal(size=60)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    return LaplaceMLPRegressor(**FAST).fit(*data)


def regression_scorers():
    return {
        "ll": log_likelihood_scorer,
        "crps": neg_crps_scorer,
        "cover": coverage_scorer(0.8),
        "width": neg_interval_width_scorer(0.8),
    }


def expected_scores(y, mean, std, sample_weight=None):
    """The scores from the array metrics (and the interval by hand), for comparison."""
    z = norm.ppf(0.9)
    return {
        "ll": np.average(norm.logpdf(y, mean, std), weights=sample_weight),
        "crps": -gaussian_crps(y, mean, std, sample_weight=sample_weight),
        "cover": np.average(np.abs(y - mean) <= z * std, weights=sample_weight),
        "width": -np.average(2 * z * std, weights=sample_weight),
    }


def make_model(kind):
    if kind == "pipeline":
        return make_pipeline(StandardScaler(), LaplaceMLPRegressor(**FAST))
    return LaplaceMLPRegressor(**FAST)


@pytest.mark.parametrize(
    "y, mean, std", [(0.0, 0.0, 1.0), (2.5, 0.3, 0.7), (-4.0, 1.0, 2.0), (1e-3, 0.0, 1e-2)]
)
def test_gaussian_crps_equals_its_defining_integral(y, mean, std):
    def squared_gap(x):
        return (norm.cdf(x, mean, std) - (x >= y)) ** 2

    # The integrand jumps at y: integrate each side separately.
    integral = quad(squared_gap, -np.inf, y)[0] + quad(squared_gap, y, np.inf)[0]
    assert_allclose(gaussian_crps([y], [mean], [std]), integral, rtol=1e-6)


def test_gaussian_crps_weights_rows_and_rejects_bad_std():
    rng = np.random.default_rng(1)
    y, mean, std, w = (
        rng.normal(size=10),
        rng.normal(size=10),
        rng.uniform(0.5, 2, 10),
        rng.random(10),
    )
    per_row = [gaussian_crps([a], [b], [c]) for a, b, c in zip(y, mean, std, strict=True)]
    assert_allclose(gaussian_crps(y, mean, std), np.mean(per_row))
    assert_allclose(gaussian_crps(y, mean, std, sample_weight=w), np.average(per_row, weights=w))
    with pytest.raises(ValueError, match="positive"):
        gaussian_crps(y, mean, np.zeros(10))
    with pytest.raises(ValueError, match="one shape"):
        gaussian_crps(y, mean[:5], std[:5])


def test_scorers_agree_with_the_array_metrics(fitted, data):
    X, y = data
    mean, std = fitted.predict(X, return_std=True)
    assert_allclose(log_likelihood_scorer(fitted, X, y), gaussian_log_likelihood(y, mean, std))
    assert_allclose(neg_crps_scorer(fitted, X, y), -gaussian_crps(y, mean, std))
    assert_allclose(coverage_scorer(0.95)(fitted, X, y), interval_coverage(y, mean, std, 0.05))
    w = np.random.default_rng(2).random(len(y))
    for name, scorer in regression_scorers().items():
        assert_allclose(
            scorer(fitted, X, y, sample_weight=w), expected_scores(y, mean, std, w)[name]
        )
    # Wider intervals cover more and score a lower (more negative) width.
    assert coverage_scorer(0.5)(fitted, X, y) <= coverage_scorer(0.99)(fitted, X, y)
    assert neg_interval_width_scorer(0.99)(fitted, X, y) < neg_interval_width_scorer(0.5)(
        fitted, X, y
    )


def test_scorers_average_over_outputs(data):
    X, y = data
    Y = np.column_stack([y, 2 * y + 1])
    reg = LaplaceMLPRegressor(**FAST).fit(X, Y)
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == Y.shape
    assert_allclose(log_likelihood_scorer(reg, X, Y), gaussian_log_likelihood(Y, mean, std))
    assert_allclose(neg_crps_scorer(reg, X, Y), -gaussian_crps(Y, mean, std))


@pytest.mark.parametrize("routing", [False, True])
@pytest.mark.parametrize("kind", ["bare", "pipeline"])
def test_scorers_in_cross_validate(data, kind, routing):
    X, y = data
    with sklearn.config_context(enable_metadata_routing=routing):
        result = cross_validate(
            make_model(kind),
            X,
            y,
            cv=CV,
            scoring=regression_scorers(),
            return_estimator=True,
            return_indices=True,
            error_score="raise",
        )
    # Recompute each fold's scores from the fold's model, without routing (where Pipeline.predict
    # forwards return_std unasked).
    for fold, (estimator, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"], strict=True)
    ):
        mean, std = estimator.predict(X[test], return_std=True)
        for name, value in expected_scores(y[test], mean, std).items():
            assert_allclose(result[f"test_{name}"][fold], value, err_msg=name)


def test_pipeline_predict_with_routing_needs_a_request(data):
    # Why the scorers ask the final step directly: Pipeline.predict refuses return_std unrequested.
    X, y = data
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_model("pipeline").fit(X, y)
        with pytest.raises(Exception, match="return_std"):
            pipe.predict(X, return_std=True)
        assert np.isfinite(log_likelihood_scorer(pipe, X, y))
        pipe[-1].set_predict_request(return_std=True)
        mean, std = pipe.predict(X, return_std=True)
        assert_allclose(log_likelihood_scorer(pipe, X, y), gaussian_log_likelihood(y, mean, std))


@pytest.mark.parametrize("routing", [False, True])
@pytest.mark.parametrize("kind", ["bare", "pipeline"])
def test_scorers_in_grid_search(data, kind, routing):
    X, y = data
    prefix = "laplacemlpregressor__" if kind == "pipeline" else ""
    grid = {f"{prefix}hidden_layer_sizes": [(), (8,)]}
    with sklearn.config_context(enable_metadata_routing=routing):
        search = GridSearchCV(
            make_model(kind), grid, scoring=regression_scorers(), refit="ll", cv=CV
        ).fit(X, y)
        # The same candidate on the same folds through cross_validate gives the same scores.
        model = make_model(kind).set_params(**{f"{prefix}hidden_layer_sizes": (8,)})
        reference = cross_validate(model, X, y, cv=CV, scoring=regression_scorers())
        best = log_likelihood_scorer(search, X, y)
    for name in regression_scorers():
        assert_allclose(
            search.cv_results_[f"mean_test_{name}"][1], reference[f"test_{name}"].mean()
        )
    assert search.best_index_ == np.argmax(search.cv_results_["mean_test_ll"])
    assert_allclose(best, log_likelihood_scorer(search.best_estimator_, X, y))


def test_sample_weight_reaches_the_scorer(data):
    X, y = data
    w = np.random.default_rng(3).uniform(0.1, 2.0, len(y))
    # Routing on: only a scorer that requests sample_weight receives it.
    with sklearn.config_context(enable_metadata_routing=True):
        weighted = log_likelihood_scorer.set_score_request(sample_weight=True)
        unweighted = log_likelihood_scorer.set_score_request(sample_weight=False)
        assert weighted is not log_likelihood_scorer  # the shared scorer stays unrequested
        assert log_likelihood_scorer.get_metadata_routing().score.requests["sample_weight"] is None
        model = LaplaceMLPRegressor(**FAST).set_fit_request(sample_weight=False)
        result = cross_validate(
            model,
            X,
            y,
            cv=CV,
            scoring={"weighted": weighted, "plain": unweighted},
            params={"sample_weight": w},
            return_estimator=True,
            return_indices=True,
        )
    for fold, (estimator, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"], strict=True)
    ):
        mean, std = estimator.predict(X[test], return_std=True)
        log_density = norm.logpdf(y[test], mean, std)
        assert_allclose(result["test_weighted"][fold], np.average(log_density, weights=w[test]))
        assert_allclose(result["test_plain"][fold], np.mean(log_density))
    with pytest.raises(RuntimeError, match="routing"):
        log_likelihood_scorer.set_score_request(sample_weight=True)


@pytest.mark.skipif(
    parse_version(sklearn.__version__) < parse_version("1.7"),
    reason="GridSearchCV forwards sample_weight to its scorers since scikit-learn 1.7",
)
def test_sample_weight_reaches_the_scorer_without_routing(data):
    # GridSearchCV forwards fit's sample_weight to scorers that accept it when routing is off.
    X, y = data
    w = np.random.default_rng(5).uniform(0.1, 2.0, len(y))
    search = GridSearchCV(
        LaplaceMLPRegressor(**FAST), {"max_iter": [30]}, scoring=log_likelihood_scorer, cv=CV
    ).fit(X, y, sample_weight=w)
    folds = []
    for train, test in CV.split(X):
        fold_model = LaplaceMLPRegressor(**FAST).fit(X[train], y[train], sample_weight=w[train])
        mean, std = fold_model.predict(X[test], return_std=True)
        folds.append(np.average(norm.logpdf(y[test], mean, std), weights=w[test]))
    assert_allclose(search.cv_results_["mean_test_score"][0], np.mean(folds))


def test_log_likelihood_scorer_on_a_classifier_is_neg_log_loss():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 2))
    y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = make_pipeline(
        StandardScaler(), LaplaceMLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    ).fit(X, y)
    proba = clf.predict_proba(X)
    true_class = np.searchsorted(clf.classes_, y)
    assert_allclose(
        log_likelihood_scorer(clf, X, y), np.mean(np.log(proba[np.arange(60), true_class]))
    )
    assert_allclose(log_likelihood_scorer(clf, X, y), get_scorer("neg_log_loss")(clf, X, y))
    with sklearn.config_context(enable_metadata_routing=True):
        result = cross_validate(
            clf, X, y, cv=CV, scoring={"ll": log_likelihood_scorer, "nll": "neg_log_loss"}
        )
    assert_allclose(result["test_ll"], result["test_nll"])
    with pytest.raises(ValueError, match="outside the fitted classes"):
        log_likelihood_scorer(clf, X[:2], ["ant", "dog"])
    with pytest.raises(TypeError, match="regressors"):
        neg_crps_scorer(clf, X, y)


def test_scorer_needs_a_predictive_std(data):
    from sklearn.linear_model import LinearRegression

    X, y = data
    with pytest.raises(TypeError, match="return_std"):
        log_likelihood_scorer(LinearRegression().fit(X, y), X, y)
    with pytest.raises(ValueError, match="confidence"):
        coverage_scorer(1.5)
    assert repr(coverage_scorer(0.8)) == "coverage_scorer(confidence=0.8)"

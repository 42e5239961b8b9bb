"""Behaviour inside the scikit-learn ecosystem: pipelines, search, pandas, pickling, shapes."""

import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor
from skbnn.metrics import expected_calibration_error, gaussian_log_likelihood

# Short runs: the default learning rate is paired with the ~6000 steps of max_iter="auto".
FAST = dict(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=1e-2, random_state=0)


@pytest.fixture(scope="module")
def regression_data():
    X, y = make_regression(n_samples=80, n_features=4, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def classification_data():
    X, y = make_classification(
        n_samples=120, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    return X, np.array(["ant", "bee", "cat"])[y]


@pytest.fixture(scope="module")
def fitted_regressor(regression_data):
    return LaplaceMLPRegressor(**FAST).fit(*regression_data)


@pytest.fixture(scope="module")
def fitted_classifier(classification_data):
    return LaplaceMLPClassifier(**FAST).fit(*classification_data)


def test_regressor_fits_and_reports_in_original_units(regression_data, fitted_regressor):
    X, y = regression_data
    mean, std = fitted_regressor.predict(X, return_std=True)
    assert mean.shape == std.shape == y.shape
    assert fitted_regressor.score(X, y) > 0.9
    # σ is in the units of y (noise=5 in make_regression), not of the standardised target.
    assert 1.0 < fitted_regressor.sigma_noise_ < 15.0
    assert np.all(std >= fitted_regressor.sigma_noise_)
    assert_allclose(fitted_regressor.predict_std(X), std)
    assert fitted_regressor.n_iter_ == 100 and len(fitted_regressor.loss_curve_) == 100
    assert np.isfinite(fitted_regressor.log_marginal_likelihood_value_)


def test_multi_output_regression_shapes(regression_data):
    X, y = regression_data
    Y = np.column_stack([y, 0.01 * y + 3])
    reg = LaplaceMLPRegressor(**FAST).fit(X, Y)
    mean, std = reg.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5, 2)
    _, cov = reg.predict(X[:5], return_cov=True)
    assert cov.shape == (5, 5, 2)
    assert_allclose(np.sqrt(np.diagonal(cov, axis1=0, axis2=1)).T, std, rtol=1e-10)
    assert reg.sigma_noise_.shape == (2,)
    # Each output has its own noise level, tuned by the evidence; the second output is the first
    # one scaled by 0.01, so its noise is about 0.01 times as large (their fits differ slightly).
    assert_allclose(reg.sigma_noise_[1] / reg.sigma_noise_[0], 0.01, rtol=0.05)
    assert reg.sample_y(X[:5], n_samples=3).shape == (5, 2, 3)


def test_return_std_and_cov_together_is_an_error(fitted_regressor, regression_data):
    with pytest.raises(RuntimeError, match="At most one"):
        fitted_regressor.predict(regression_data[0], return_std=True, return_cov=True)


def test_sample_y_matches_predictive_moments(fitted_regressor, regression_data):
    X = regression_data[0][:4]
    samples = fitted_regressor.sample_y(X, n_samples=20000, random_state=1)
    mean, std = fitted_regressor.predict(X, return_std=True)
    assert samples.shape == (4, 20000)
    assert_allclose(samples.mean(1), mean, atol=0.05 * std.max())
    assert_allclose(samples.std(1), std, rtol=0.03)
    assert_array_equal(samples, fitted_regressor.sample_y(X, n_samples=20000, random_state=1))


def test_classifier_probabilities_and_labels(fitted_classifier, classification_data):
    X, y = classification_data
    proba = fitted_classifier.predict_proba(X)
    assert proba.shape == (len(y), 3)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert_array_equal(fitted_classifier.classes_, ["ant", "bee", "cat"])
    assert_array_equal(fitted_classifier.predict(X), fitted_classifier.classes_[proba.argmax(1)])
    assert_allclose(np.exp(fitted_classifier.predict_log_proba(X)), proba, rtol=1e-12)
    assert fitted_classifier.score(X, y) > 0.8


def test_binary_classifier_uses_one_logit(classification_data):
    X, y = classification_data
    mask = y != "cat"
    clf = LaplaceMLPClassifier(**FAST).fit(X[mask], y[mask])
    assert clf.module_[-1].out_features == 1
    assert clf.predict_proba(X).shape == (len(X), 2)


@pytest.mark.parametrize("link_approx", ["mc", "bridge"])
def test_other_link_approximations_are_close_to_probit(classification_data, link_approx):
    # The link approximation changes predictions only: training and posterior are the same. The
    # temperature is fixed at 1: chosen by the leave-one-out score, it would depend on the link.
    laplace = dict(FAST, posterior_temperature=1.0)
    other = LaplaceMLPClassifier(link_approx=link_approx, n_samples=20000, **laplace)
    X = classification_data[0]
    proba = other.fit(*classification_data).predict_proba(X)
    probit = LaplaceMLPClassifier(**laplace).fit(*classification_data).predict_proba(X)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
    # Multiclass probit uses only diag(JΣJᵀ) (the laplace-torch heuristic), so the approximations
    # agree only roughly (the bridge least); the binary probit is checked against exact quadrature
    # in test_curvature.
    tolerance = {"mc": 0.1, "bridge": 0.15}[link_approx]
    assert np.abs(proba - probit).max() < tolerance


def test_mc_predictions_are_repeatable(classification_data):
    X, y = classification_data
    clf = LaplaceMLPClassifier(link_approx="mc", n_samples=50, **FAST).fit(X, y)
    assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    # Each row's probabilities do not depend on the other rows in the call.
    assert_allclose(clf.predict_proba(X[:7]), clf.predict_proba(X)[:7], rtol=1e-12)


def test_uncertainty_grows_away_from_the_data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(60, 1))
    y = np.sin(3 * X[:, 0]) + 0.05 * rng.randn(60)
    reg = LaplaceMLPRegressor(max_iter=300, random_state=0).fit(X, y)
    _, std = reg.predict(np.array([[0.0], [4.0]]), return_std=True)
    assert std[1] > 3 * std[0]


@pytest.mark.parametrize("noise", ["homoscedastic", "heteroscedastic"])
@pytest.mark.parametrize("n_features", [1, 8])
def test_regressor_stays_humble_five_training_ranges_from_the_data(n_features, noise):
    # Inputs in [-1, 1]^d (range 2 per feature); query points at radius 10 in random directions.
    # Measured: the std there is 13-34 times its value inside the data.
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (200, n_features))
    y = np.sin(X @ rng.randn(n_features)) + 0.1 * rng.randn(200)
    inside = rng.uniform(-1, 1, (50, n_features))
    directions = rng.randn(50, n_features)
    far = 5 * 2 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    reg = LaplaceMLPRegressor(noise=noise, max_iter=1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    far_std, inside_std = reg.predict_std(far), reg.predict_std(inside)
    assert np.all(np.isfinite(far_std))
    assert far_std.mean() > 3 * inside_std.mean()


def test_pipeline_forwards_return_std(regression_data):
    X, y = regression_data
    pipe = make_pipeline(StandardScaler(), LaplaceMLPRegressor(**FAST)).fit(X, y)
    mean, std = pipe.predict(X, return_std=True)
    assert mean.shape == std.shape == y.shape


def test_grid_search_and_cross_validation(regression_data, classification_data):
    X, y = regression_data
    search = GridSearchCV(
        LaplaceMLPRegressor(max_iter=30, random_state=0),
        {"hidden_layer_sizes": [(), (5,)]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] in [(), (5,)]
    scores = cross_val_score(
        LaplaceMLPClassifier(max_iter=30, random_state=0), *classification_data, cv=3
    )
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_pandas_input_records_feature_names(regression_data):
    pd = pytest.importorskip("pandas")
    X, y = regression_data
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(X.shape[1])])
    reg = LaplaceMLPRegressor(**FAST).fit(frame, pd.Series(y))
    assert_array_equal(reg.feature_names_in_, frame.columns)
    assert_allclose(reg.predict(frame), LaplaceMLPRegressor(**FAST).fit(X, y).predict(X))


@pytest.mark.parametrize("fixture", ["fitted_regressor", "fitted_classifier"])
def test_pickle_round_trip_gives_identical_predictions(fixture, request):
    model = request.getfixturevalue(fixture)
    X = np.random.RandomState(0).randn(10, model.n_features_in_)
    buffer = io.BytesIO()
    pickle.dump(model, buffer)
    loaded = pickle.loads(buffer.getvalue())
    method = "predict_proba" if hasattr(model, "predict_proba") else "predict_std"
    assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))


def test_classifier_sample_weights_are_frequency_weights(classification_data):
    X, y = classification_data
    X, y = X[:40], y[:40]
    weights = np.random.RandomState(0).randint(0, 3, size=len(y))
    params = dict(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    weighted = LaplaceMLPClassifier(**params).fit(X, y, sample_weight=weights)
    repeated = LaplaceMLPClassifier(**params).fit(X.repeat(weights, 0), y.repeat(weights))
    assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-7)


def test_fit_is_deterministic_for_a_seed(regression_data):
    X, y = regression_data
    a = LaplaceMLPRegressor(**FAST).fit(X, y).predict(X, return_std=True)
    b = LaplaceMLPRegressor(**FAST).fit(X, y).predict(X, return_std=True)
    assert_array_equal(a, b)


@pytest.mark.parametrize(
    "params",
    [
        dict(subset_of_weights="last_layer"),
        dict(hessian_structure="diag"),
        dict(evidence_tuning="posthoc"),
        dict(batch_size=16),
        dict(dtype="float32"),
        dict(activation="relu", hidden_layer_sizes=(8, 8)),
        dict(prior_precision=3.0),
    ],
)
def test_options_give_finite_calibrated_predictions(regression_data, params):
    X, y = regression_data
    reg = LaplaceMLPRegressor(**{**FAST, **params}).fit(X, y)
    mean, std = reg.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    assert gaussian_log_likelihood(y, mean, std) > gaussian_log_likelihood(y, mean, 100 * std)
    if "prior_precision" in params:
        assert reg.prior_precision_ == params["prior_precision"]


def test_early_stopping_keeps_the_best_validation_weights(regression_data):
    X, y = regression_data
    reg = LaplaceMLPRegressor(
        early_stopping=True,
        n_iter_no_change=5,
        max_iter=500,
        hidden_layer_sizes=(10,),
        random_state=0,
    ).fit(X, y)
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.n_iter_ < 500
    scores = np.asarray(reg.validation_scores_)
    assert reg.best_validation_score_ == scores.max()
    best_epoch = int(np.argmax(scores))
    # It stopped within n_iter_no_change epochs of the best one, whose weights it kept.
    assert reg.n_iter_ - 1 - best_epoch <= 5


def test_early_stopping_runs_on_while_the_validation_score_improves():
    # A smooth task that keeps improving for many epochs: early stopping must not stop at epoch
    # n_iter_no_change (the first epoch's score once compared as NaN and never improved).
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(300, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    X_test = rng.uniform(-2, 2, size=(300, 2))
    y_test = np.sin(2 * X_test[:, 0]) + X_test[:, 1] ** 2
    params = dict(hidden_layer_sizes=(20,), max_iter=400, ensemble_size=1, random_state=0)
    stopped = LaplaceMLPRegressor(early_stopping=True, n_iter_no_change=10, **params).fit(X, y)
    full = LaplaceMLPRegressor(**params).fit(X, y)
    assert stopped.n_iter_ > 3 * 10
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)
    # Scores are log-likelihoods (higher is better): training raised them.
    assert stopped.best_validation_score_ > stopped.validation_scores_[0] + 1.0
    assert stopped.score(X_test, y_test) > full.score(X_test, y_test) - 0.05


def test_too_few_iterations_raise_a_convergence_warning(regression_data):
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        LaplaceMLPRegressor(max_iter=3, hidden_layer_sizes=(10,), random_state=0).fit(
            *regression_data
        )


def test_verbose_prints_progress_like_scikit_learn(regression_data, capsys):
    params = {**FAST, "max_iter": 45, "ensemble_size": 2, "verbose": 1}
    reg = LaplaceMLPRegressor(**params).fit(*regression_data)
    lines = capsys.readouterr().out.splitlines()
    iterations = [line for line in lines if line.startswith("Iteration ")]
    # The networks train together: the first epoch, every max_iter // 20 = 2nd, and the last
    # one, each line with both networks' losses.
    assert len(iterations) == 1 + 22 + 1
    assert iterations[0].startswith("Iteration 1, loss = ")
    assert iterations[-1].startswith(f"Iteration 45, loss = {reg.loss_curve_[-1]:.8f}, ")
    assert len(iterations[-1].split(", ")) == 3  # "Iteration 45", both losses
    assert sum(line.startswith("Training: 45 epochs") for line in lines) == 1
    for phase in ("GGN (full) and evidence", "Refinement", "GGN-VI"):
        assert sum(line.startswith(phase) for line in lines) == 2, phase
    assert sum(line.startswith("Network 2 of 2") for line in lines) == 1


def test_keyboard_interrupt_keeps_the_weights_so_far(regression_data, monkeypatch):
    """Ctrl-C during training ends it with a warning; the posterior is fitted where it stopped."""
    calls = {"n": 0}

    def interrupting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    original_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", interrupting_step)
    with pytest.warns(UserWarning, match="interrupted"):
        reg = LaplaceMLPRegressor(**FAST).fit(*regression_data)
    assert reg.n_iter_ == 9
    assert np.all(np.isfinite(reg.predict_std(regression_data[0])))


def test_failed_fit_leaves_the_fitted_estimator_unchanged(fitted_regressor, regression_data):
    X, y = regression_data
    reg = clone(fitted_regressor).fit(X, y)
    before = reg.predict(X, return_std=True)
    bad = X[:, :2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.fit(bad, y)
    assert reg.n_features_in_ == X.shape[1]
    assert_array_equal(reg.predict(X, return_std=True), before)


def test_cuda_without_a_gpu_is_a_clear_error(regression_data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        LaplaceMLPRegressor(device="cuda", **FAST).fit(*regression_data)


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LaplaceMLPClassifier(**FAST).fit(np.ones((5, 2)), np.zeros(5))


def test_metrics():
    y = np.array([0.0, 1.0])
    assert_allclose(gaussian_log_likelihood(y, y, np.ones(2)), -0.5 * np.log(2 * np.pi))
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert_allclose(expected_calibration_error([0, 1, 1], proba, n_bins=10), (0.1 + 0.2 + 0.6) / 3)


@pytest.mark.gpu
def test_gpu_fit_matches_cpu_and_stores_cpu_state(regression_data):
    X, y = regression_data
    gpu = LaplaceMLPRegressor(device="cuda", **FAST).fit(X, y)
    cpu = LaplaceMLPRegressor(device="cpu", **FAST).fit(X, y)
    assert next(gpu.module_.parameters()).device.type == "cpu"
    assert gpu.posterior_.mean.device.type == "cpu"
    assert_allclose(gpu.predict(X, return_std=True), cpu.predict(X, return_std=True), rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isfinite(pickle.loads(pickle.dumps(gpu)).predict_std(X)))


def test_regression_uncertainty_decomposition_and_kernel(fitted_regressor, regression_data):
    X = regression_data[0][:6]
    parts = fitted_regressor.predict_uncertainty(X)
    mean, std = fitted_regressor.predict(X, return_std=True)
    assert_allclose(parts.mean, mean)
    assert_allclose(parts.total_std, std, rtol=1e-12)
    # The default is an ensemble here: its noise variance is the mean of the networks'.
    members = fitted_regressor.members_
    assert len(members) == 3
    noise_variance = np.mean([member.sigma_noise[0] ** 2 for member in members])
    assert_allclose(fitted_regressor.sigma_noise_**2, noise_variance, rtol=1e-12)
    assert_allclose(parts.aleatoric_std**2, noise_variance, rtol=1e-12)
    assert_allclose(parts.epistemic_std**2 + parts.aleatoric_std**2, std**2, rtol=1e-12)
    K = fitted_regressor.kernel(X)
    assert K.shape == (6, 6)
    assert_allclose(K, K.T, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-8 * np.abs(K).max()
    assert_allclose(np.diag(K), parts.epistemic_std**2, rtol=1e-10)
    # The predictive covariance is the kernel plus the noise.
    _, cov = fitted_regressor.predict(X, return_cov=True)
    assert_allclose(cov, K + noise_variance * np.eye(6), rtol=1e-10)
    prior = fitted_regressor.kernel(X, regression_data[0][:3], prior=True)
    assert prior.shape == (6, 3)
    # Conditioning on data can only shrink the variance.
    assert np.all(np.diag(fitted_regressor.kernel(X, prior=True)) >= np.diag(K))


def test_classification_uncertainty_decomposition_and_kernel(
    fitted_classifier, classification_data
):
    X = classification_data[0][:8]
    parts = fitted_classifier.predict_uncertainty(X)
    assert_allclose(parts.proba.sum(1), 1.0)
    assert np.all(parts.mutual_information >= 0)
    assert_allclose(
        parts.predictive_entropy, parts.expected_entropy + parts.mutual_information, atol=1e-12
    )
    assert np.all(parts.predictive_entropy <= np.log(3) + 1e-12)
    K = fitted_classifier.kernel(X)
    assert K.shape == (8, 8, 3, 3)
    _, cov = fitted_classifier._glm_outputs(X)
    assert_allclose(np.einsum("iikl->ikl", K), cov.numpy(), rtol=1e-10)

"""Heteroscedastic noise and per-output noise levels, recovered from data."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm

from skbnn import LaplaceMLPRegressor


def growing_noise(n, rng):
    """A 1-D task whose noise std grows tenfold across the input range."""
    x = rng.uniform(0, 1, size=(n, 1))
    noise_std = 0.05 + 0.45 * x[:, 0]
    return x, np.sin(6 * x[:, 0]) + noise_std * rng.randn(n), noise_std


@pytest.fixture(scope="module")
def heteroscedastic_task():
    rng = np.random.RandomState(0)
    return growing_noise(500, rng), growing_noise(2000, rng)


@pytest.fixture(scope="module")
def fitted_models(heteroscedastic_task):
    (X, y, _), _ = heteroscedastic_task
    return {
        # One network: what its noise model learns, not an ensemble's average of it.
        noise: LaplaceMLPRegressor(noise=noise, ensemble_size=1, random_state=0).fit(X, y)
        for noise in ("homoscedastic", "heteroscedastic")
    }


def test_heteroscedastic_std_tracks_the_true_noise(heteroscedastic_task, fitted_models):
    _, (X_test, _, noise_std) = heteroscedastic_task
    parts = fitted_models["heteroscedastic"].predict_uncertainty(X_test)
    assert np.corrcoef(parts.aleatoric_std, noise_std)[0, 1] > 0.9
    # And its level: typically within 15% (the low-noise edge is the hardest).
    assert np.median(np.abs(parts.aleatoric_std / noise_std - 1)) < 0.15
    assert "sigma_noise_" not in vars(fitted_models["heteroscedastic"])


def test_heteroscedastic_beats_homoscedastic_test_ll(heteroscedastic_task, fitted_models):
    _, (X_test, y_test, _) = heteroscedastic_task

    def test_ll(model):
        mean, std = model.predict(X_test, return_std=True)
        return norm.logpdf(y_test, mean, std).mean()

    assert test_ll(fitted_models["heteroscedastic"]) > test_ll(fitted_models["homoscedastic"]) + 0.2


def test_heteroscedastic_predictive_api_is_consistent(heteroscedastic_task, fitted_models):
    _, (X_test, _, _) = heteroscedastic_task
    model, X = fitted_models["heteroscedastic"], X_test[:5]
    mean, std = model.predict(X, return_std=True)
    _, cov = model.predict(X, return_cov=True)
    assert_allclose(np.sqrt(np.diag(cov)), std, rtol=1e-10)
    parts = model.predict_uncertainty(X)
    assert_allclose(np.hypot(parts.epistemic_std, parts.aleatoric_std), std, rtol=1e-12)
    samples = model.sample_y(X, n_samples=20000, random_state=0)
    assert_allclose(samples.mean(1), mean, atol=0.05 * std.max())
    # Samples draw log σ² from its posterior too; their spread matches E[σ²] + Var[μ].
    assert_allclose(samples.std(1), std, rtol=0.05)
    assert_allclose(np.diag(model.kernel(X)), parts.epistemic_std**2, rtol=1e-10)


def test_heteroscedastic_needs_evidence_noise_and_laplace():
    X, y = np.random.RandomState(0).randn(20, 1), np.arange(20.0)
    for params in (dict(sigma_noise=0.5), dict(inference="ggn-vi")):
        with pytest.raises(ValueError, match="heteroscedastic"):
            LaplaceMLPRegressor(noise="heteroscedastic", max_iter=5, **params).fit(X, y)
    # inference="auto" resolves to the Laplace posterior here.
    model = LaplaceMLPRegressor(noise="heteroscedastic", max_iter=5).fit(X, y)
    assert model.inference_ == "laplace"


@pytest.mark.parametrize("structure", ["full", "kron"])
def test_per_output_noise_levels_are_recovered(structure):
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(400, 2))
    signal = np.sin(2 * X[:, 0]) + X[:, 1]
    Y = np.column_stack([signal + 0.1 * rng.randn(400), signal + 1.0 * rng.randn(400)])
    reg = LaplaceMLPRegressor(hessian_structure=structure, ensemble_size=1, random_state=0)
    reg.fit(X, Y)
    assert_allclose(reg.sigma_noise_, [0.1, 1.0], rtol=0.2)
    _, std = reg.predict(X[:5], return_std=True)
    assert np.all(std[:, 1] > std[:, 0])


def test_heteroscedastic_mean_is_fitted_on_a_low_noise_target():
    # Trained jointly from the start, the variance explains the residuals of this steep target
    # and the mean stalls near a constant (R² ≈ 0.1); the mean-first warm-up avoids that.
    rng = np.random.RandomState(0)
    X, X_test = rng.uniform(-1, 1, size=(250, 3)), rng.uniform(-1, 1, size=(500, 3))
    target = lambda X: np.exp(3 * X[:, 0]) + X[:, 1] ** 2  # noqa: E731
    y = target(X) + 0.02 * rng.randn(len(X))
    model = LaplaceMLPRegressor(
        noise="heteroscedastic",
        max_iter=500,
        learning_rate_init=1e-2,
        ensemble_size=1,
        random_state=0,
    ).fit(X, y)
    assert model.score(X_test, target(X_test)) > 0.9


def test_heteroscedastic_early_stopping_scores_every_epoch():
    # That the validation score stays the likelihood during the warm-up: tests/test_fitting.py.
    X, y, _ = growing_noise(100, np.random.RandomState(0))
    model = LaplaceMLPRegressor(
        noise="heteroscedastic", early_stopping=True, max_iter=20, random_state=0
    ).fit(X, y)
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)


def test_auto_noise_keeps_the_model_of_higher_evidence(heteroscedastic_task, fitted_models):
    (X, y, _), (X_test, _, _) = heteroscedastic_task
    model = LaplaceMLPRegressor(noise="auto", ensemble_size=1, random_state=0).fit(X, y)
    # Each candidate is the fit that noise=<it> gives with the same seed.
    for noise, fitted in fitted_models.items():
        assert model.noise_log_evidence_[noise] == fitted.log_marginal_likelihood_value_
    assert model.noise_ == "heteroscedastic" == fitted_models["heteroscedastic"].noise_
    assert_allclose(
        model.predict(X_test, return_std=True),
        fitted_models["heteroscedastic"].predict(X_test, return_std=True),
        rtol=0,
        atol=0,
    )
    assert "sigma_noise_" not in vars(model)


def test_auto_noise_keeps_homoscedastic_noise_where_the_noise_is_constant():
    rng = np.random.RandomState(1)
    X = rng.uniform(0, 1, size=(500, 1))
    y = np.sin(6 * X[:, 0]) + 0.2 * rng.randn(500)
    model = LaplaceMLPRegressor(noise="auto", ensemble_size=2, random_state=0).fit(X, y)
    evidence = model.noise_log_evidence_
    assert model.noise_ == "homoscedastic"
    assert evidence["homoscedastic"] > evidence["heteroscedastic"]
    assert len(model.members_) == 2 and 0.15 < model.sigma_noise_ < 0.25
    # The chosen model's evidence is the mean of its networks'.
    members = [member.log_marginal_likelihood for member in model.members_]
    assert_allclose(evidence["homoscedastic"], np.mean(members), rtol=1e-12)


def test_auto_noise_streams_and_refits_with_the_chosen_model(heteroscedastic_task):
    (X, y, _), _ = heteroscedastic_task
    model = LaplaceMLPRegressor(noise="auto", ensemble_size=1, max_iter=200, random_state=0)
    model.partial_fit(X[:300], y[:300])
    chosen = model.noise_
    # Later chunks update the model the first one chose.
    model.partial_fit(X[300:], y[300:])
    assert model.noise_ == chosen and set(model.noise_log_evidence_) == {
        "homoscedastic",
        "heteroscedastic",
    }
    assert np.isfinite(model.predict(X[:5], return_std=True)).all()
    # A fit with a named noise model drops the comparison.
    model.set_params(noise="homoscedastic").fit(X, y)
    assert model.noise_ == "homoscedastic" and not hasattr(model, "noise_log_evidence_")


def test_auto_noise_needs_evidence_noise_and_laplace_and_keeps_a_fitted_state():
    X, y = np.random.RandomState(0).randn(30, 1), np.arange(30.0)
    model = LaplaceMLPRegressor(noise="auto", ensemble_size=1, max_iter=20).fit(X, y)
    before = model.predict(X, return_std=True)
    for params in (dict(sigma_noise=0.5), dict(inference="ggn-vi")):
        with pytest.raises(ValueError, match="noise='auto'"):
            model.set_params(**params).fit(X, y)
        model.set_params(sigma_noise="evidence", inference="auto")
        assert_allclose(model.predict(X, return_std=True), before, rtol=0, atol=0)
        assert set(model.noise_log_evidence_) == {"homoscedastic", "heteroscedastic"}

"""Extreme but valid inputs give sound results; numerical faults end in clear errors, never NaN.

"Sound" means finite predictions, a finite predictive std > 0 (regression) and probabilities in
[0, 1] that sum to 1 (classification), with no RuntimeWarning from the computation. Training that
diverges must raise :class:`TrainingDivergedError` (a ValueError) instead of returning NaN.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.datasets import make_classification

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor, TrainingDivergedError
from skbnn._evidence import (
    NOISE_SCALE_BOUNDS,
    PRIOR_PRECISION_BOUNDS,
    EvidenceTerms,
    log_marginal_likelihood,
    log_marginal_likelihood_gradient,
    log_marginal_likelihood_hessian,
    maximize_log_marginal_likelihood,
)
from skbnn._links import bridge_proba, mc_proba, probit_proba

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# Short runs: the default learning rate is paired with the ~6000 steps of max_iter="auto".
FAST = dict(hidden_layer_sizes=(5,), max_iter=30, learning_rate_init=1e-2, random_state=0)


def _data(n=20, d=3):
    rng = np.random.RandomState(0)
    X = rng.randn(n, d)
    return X, np.sin(X[:, 0]) + 0.1 * rng.randn(n), (X[:, 0] + X[:, 1] > 0).astype(int)


def assert_sound_regression(model, X):
    mean, std = model.predict(X, return_std=True)
    assert np.all(np.isfinite(mean))
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    assert np.isfinite(model.log_marginal_likelihood_value_)
    return mean, std


def assert_sound_classification(model, X):
    proba = model.predict_proba(X)
    assert np.all(np.isfinite(proba))
    assert np.all((proba >= 0) & (proba <= 1))
    assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
    assert np.isfinite(model.log_marginal_likelihood_value_)
    return proba


# -- extreme targets -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("value", [0.0, 3.0, -1e12, 1e-12])
def test_constant_target(dtype, value):
    X, _, _ = _data()
    reg = LaplaceMLPRegressor(dtype=dtype, **FAST).fit(X, np.full(len(X), value))
    mean, _ = assert_sound_regression(reg, X)
    assert_allclose(mean, value, atol=0.2, rtol=1e-6)


@pytest.mark.parametrize("factor", [1e12, 1e-12, 1e150, 1e-150])
def test_scaled_targets_scale_the_predictions(factor):
    """normalize_y makes the fit equivariant: y·a gives mean·a and std·a."""
    X, y, _ = _data()
    reference = LaplaceMLPRegressor(**FAST).fit(X, y)
    scaled = LaplaceMLPRegressor(**FAST).fit(X, y * factor)
    mean, std = assert_sound_regression(scaled, X)
    ref_mean, ref_std = reference.predict(X, return_std=True)
    assert_allclose(mean / factor, ref_mean, rtol=1e-6, atol=1e-9)
    assert_allclose(std / factor, ref_std, rtol=1e-6)
    assert_allclose(scaled.sigma_noise_ / factor, reference.sigma_noise_, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_offset_targets(dtype):
    X, y, _ = _data()
    reg = LaplaceMLPRegressor(dtype=dtype, **FAST).fit(X, y + 1e12)
    mean, std = assert_sound_regression(reg, X)
    assert np.all(std < 10) and np.all(np.abs(mean - 1e12) < 10)


@pytest.mark.parametrize("factor", [1e12, 1e-12])
def test_unnormalised_extreme_targets_are_finite(factor):
    X, y, _ = _data()
    reg = LaplaceMLPRegressor(normalize_y=False, **FAST).fit(X, y * factor)
    assert_sound_regression(reg, X)


# -- extreme inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("factor", [1e8, 1e-8])
def test_badly_scaled_X_gives_finite_output(dtype, activation, factor):
    """Unscaled X may fit poorly (standardise it!) but gives finite, honest output."""
    X, y, labels = _data()
    params = dict(FAST, dtype=dtype, activation=activation)
    assert_sound_regression(LaplaceMLPRegressor(**params).fit(X * factor, y), X * factor)
    assert_sound_classification(LaplaceMLPClassifier(**params).fit(X * factor, labels), X * factor)


def test_X_beyond_float32_is_a_clear_error_but_fine_in_float64():
    X, y, _ = _data()
    with pytest.raises(ValueError, match="beyond the range of dtype='float32'"):
        LaplaceMLPRegressor(dtype="float32", **FAST).fit(X * 1e200, y)
    assert_sound_regression(LaplaceMLPRegressor(**FAST).fit(X * 1e200, y), X * 1e200)


@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_duplicated_and_constant_features(structure):
    X, y, labels = _data()
    X_dup = np.hstack([X, X, np.ones((len(X), 2))])
    params = dict(FAST, hessian_structure=structure)
    assert_sound_regression(LaplaceMLPRegressor(**params).fit(X_dup, y), X_dup)
    assert_sound_classification(LaplaceMLPClassifier(**params).fit(X_dup, labels), X_dup)


@pytest.mark.parametrize("n_rows", [1, 2, 3])
def test_tiny_regression_dataset(n_rows):
    X, y, _ = _data()
    reg = LaplaceMLPRegressor(**FAST).fit(X[:n_rows], y[:n_rows])
    assert_sound_regression(reg, X)


@pytest.mark.parametrize("labels", [[0, 1], [0, 1, 1], [2, 0, 1]])
def test_tiny_classification_dataset(labels):
    X, _, _ = _data()
    clf = LaplaceMLPClassifier(**FAST).fit(X[: len(labels)], labels)
    assert_sound_classification(clf, X)


def test_extreme_sample_weights():
    X, y, labels = _data()
    for weights in [np.full(len(X), 1e-30), np.full(len(X), 1e30), np.eye(len(X))[0] + 1e-300]:
        assert_sound_regression(LaplaceMLPRegressor(**FAST).fit(X, y, sample_weight=weights), X)
    weights = np.full(len(X), 1e30)
    clf = LaplaceMLPClassifier(**FAST).fit(X, labels, sample_weight=weights)
    assert_sound_classification(clf, X)


@pytest.mark.parametrize("value", [1e-12, 1e12])
def test_fixed_hyperparameters_at_the_ends_of_their_range(value):
    X, y, labels = _data()
    for dtype in ["float64", "float32"]:
        reg = LaplaceMLPRegressor(prior_precision=value, dtype=dtype, **FAST).fit(X, y)
        assert_sound_regression(reg, X)
        clf = LaplaceMLPClassifier(prior_precision=value, dtype=dtype, **FAST).fit(X, labels)
        assert_sound_classification(clf, X)
    # sigma_noise is bounded relative to the std of y: 1e12 of it, and 1e-11 (inside the range).
    sigma = value * (10.0 if value < 1 else 1.0) * np.std(y)
    assert_sound_regression(LaplaceMLPRegressor(sigma_noise=sigma, **FAST).fit(X, y), X)


# -- training that goes wrong ----------------------------------------------------------------------


@pytest.mark.parametrize("learning_rate", [1.0, 10.0])
def test_dead_relus_give_sound_predictions(learning_rate):
    """Huge first steps kill most ReLUs; their weights get no curvature and the prior rules."""
    X, y, labels = _data()
    params = dict(FAST, activation="relu", hidden_layer_sizes=(8, 8))
    params["learning_rate_init"] = learning_rate
    assert_sound_regression(LaplaceMLPRegressor(**params).fit(X, y), X)
    assert_sound_classification(LaplaceMLPClassifier(**params).fit(X, labels), X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("learning_rate", [10.0, 1e6, 1e12])
def test_huge_learning_rates_end_sound_or_in_a_clear_error(dtype, activation, learning_rate):
    X, y, _ = _data()
    params = dict(FAST, dtype=dtype, activation=activation, learning_rate_init=learning_rate)
    try:
        assert_sound_regression(LaplaceMLPRegressor(**params).fit(X, y), X)
        clf = LaplaceMLPClassifier(n_samples=50, **params).fit(X, np.arange(len(X)) % 3)
        # The link approximation acts at prediction only: one fit checks all three.
        for link_approx in ["probit", "bridge", "mc"]:
            assert_sound_classification(clf.set_params(link_approx=link_approx), X)
    except TrainingDivergedError as error:
        assert "Lower learning_rate_init" in str(error)


def test_diverging_training_raises_and_keeps_the_previous_fit():
    X, y, _ = _data()
    reg = LaplaceMLPRegressor(activation="relu", **FAST).fit(X, y)
    before = reg.predict(X, return_std=True)
    with pytest.raises(TrainingDivergedError, match=r"training loss became (inf|nan) at epoch 1"):
        reg.fit(X * 1e200, y)
    assert_allclose(reg.predict(X, return_std=True), before, rtol=0)
    assert issubclass(TrainingDivergedError, ValueError)


def test_nan_weights_from_the_optimiser_are_a_clear_error(monkeypatch):
    """Whatever makes an Adam step produce NaN weights, fit raises instead of returning NaN."""
    original_step = torch.optim.Adam.step

    def poisoned_step(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned_step)
    X, y, labels = _data()
    with pytest.raises(TrainingDivergedError, match="became nan at epoch 1"):
        LaplaceMLPRegressor(**FAST).fit(X, y)
    with pytest.raises(TrainingDivergedError, match="became nan at epoch 1"):
        LaplaceMLPClassifier(**FAST).fit(X, labels)


# -- the evidence maximiser on degenerate terms ----------------------------------------------------


def _terms(eigenvalues, map_norm_sq, data_fit, gaussian=True, n_data=10.0):
    return EvidenceTerms(
        eigenvalues=np.asarray(eigenvalues, dtype=np.float64),
        map_norm_sq=map_norm_sq,
        n_data=n_data,
        n_outputs=1,
        data_fit=data_fit,
        gaussian=gaussian,
    )


DEGENERATE_TERMS = {
    "zero-data-fit": _terms([1.0, 2.0, 0.0], 3.0, 0.0),
    "zero-norm": _terms([1.0, 2.0, 0.0], 0.0, 5.0),
    "zero-eigenvalues": _terms([0.0, 0.0, 0.0], 3.0, 5.0),
    "zero-eigenvalues-and-fit": _terms([0.0, 0.0, 0.0], 3.0, 0.0),
    "zero-eigenvalues-and-norm": _terms([0.0, 0.0, 0.0], 0.0, 5.0),
    "all-zero": _terms([0.0, 0.0, 0.0], 0.0, 0.0),
    "huge": _terms([1e300, 1e200, 0.0], 1e300, 1e300, n_data=1e300),
    "tiny": _terms([1e-300, 0.0], 1e-300, 1e-300, n_data=1e-300),
    "classification-zero-norm": _terms([3.0, 0.0], 0.0, 1.0, gaussian=False),
    "classification-zero-eigenvalues": _terms([0.0, 0.0], 2.0, 1.0, gaussian=False),
    "classification-all-zero": _terms([0.0, 0.0], 0.0, 0.0, gaussian=False),
}


@pytest.mark.parametrize("terms", DEGENERATE_TERMS.values(), ids=DEGENERATE_TERMS.keys())
@pytest.mark.parametrize("fixed", [{}, {"prior_precision": 1.0}, {"noise_scale": 1.0}])
def test_evidence_maximiser_survives_degenerate_terms(terms, fixed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        delta, c, value = maximize_log_marginal_likelihood(
            terms,
            prior_precision=fixed.get("prior_precision"),
            noise_scale=fixed.get("noise_scale"),
        )
        assert np.isfinite([delta, c, value]).all()
        assert _within(delta, PRIOR_PRECISION_BOUNDS) and _within(c, NOISE_SCALE_BOUNDS)
        # It is a maximum of the box: no feasible coordinate step improves it.
        tolerance = 1e-9 * max(1.0, abs(value))
        for log_step in [-1e-3, 1e-3]:
            if "prior_precision" not in fixed:
                other = np.clip(delta * np.exp(log_step), *PRIOR_PRECISION_BOUNDS)
                assert log_marginal_likelihood(terms, other, c) <= value + tolerance
            if "noise_scale" not in fixed and terms.gaussian:
                other = np.clip(c * np.exp(log_step), *NOISE_SCALE_BOUNDS)
                assert log_marginal_likelihood(terms, delta, other) <= value + tolerance


def _within(value, bounds):
    """In the box, up to the round-off of exp(log(bound))."""
    return bounds[0] * (1 - 1e-12) <= value <= bounds[1] * (1 + 1e-12)


@pytest.mark.parametrize(
    "terms, expected",
    [
        # ‖θ*‖² = 0: the prior can be as tight as allowed.
        (DEGENERATE_TERMS["zero-norm"], (PRIOR_PRECISION_BOUNDS[1], None)),
        # no curvature: the data determine nothing, so δ → its lower bound (γ = 0 < δ‖θ*‖²).
        (DEGENERATE_TERMS["zero-eigenvalues"], (PRIOR_PRECISION_BOUNDS[0], None)),
        # a perfect fit: the noise goes to its lower bound.
        (DEGENERATE_TERMS["zero-data-fit"], (None, NOISE_SCALE_BOUNDS[0])),
        # log Z = −NK log c + const is linear in log c (singular Hessian): c at its lower bound.
        (DEGENERATE_TERMS["all-zero"], (None, NOISE_SCALE_BOUNDS[0])),
    ],
)
def test_evidence_maximiser_goes_to_the_right_bound(terms, expected):
    delta, c, _ = maximize_log_marginal_likelihood(terms, prior_precision=None, noise_scale=None)
    if expected[0] is not None:
        assert_allclose(delta, expected[0], rtol=1e-6)
    if expected[1] is not None:
        assert_allclose(c, expected[1], rtol=1e-6)


@pytest.mark.parametrize("delta", [1e-300, 1e-8, 1.0, 1e8, 1e300])
@pytest.mark.parametrize("terms", DEGENERATE_TERMS.values(), ids=DEGENERATE_TERMS.keys())
def test_evidence_derivatives_have_no_nan_at_extreme_prior_precisions(terms, delta):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradient = log_marginal_likelihood_gradient(terms, delta, 1.0)
        hessian = log_marginal_likelihood_hessian(terms, delta, 1.0)
    assert not np.isnan(gradient).any() and not np.isnan(hessian).any()
    assert np.all(np.diag(hessian) <= 0)
    # Only a true value beyond float64 (δ‖θ*‖² = 1e600 for the "huge" terms) may be infinite.
    if delta * terms.map_norm_sq < 1e300:
        assert np.isfinite(gradient).all() and np.isfinite(hessian).all()


# -- predictive link approximations at extreme logits ----------------------------------------------


@pytest.mark.parametrize("n_classes", [1, 2, 3])
@pytest.mark.parametrize("scale", [1.0, 1e6, 1e300])
@pytest.mark.parametrize("approximation", ["probit", "bridge", "mc"])
def test_link_approximations_stay_finite_for_extreme_logits(n_classes, scale, approximation):
    rng = torch.Generator().manual_seed(0)
    mean = scale * torch.randn(4, n_classes, generator=rng, dtype=torch.float64)
    A = torch.randn(4, n_classes, n_classes, generator=rng, dtype=torch.float64)
    cov = A @ A.transpose(1, 2) + 1e-3 * torch.eye(n_classes, dtype=torch.float64)
    if approximation == "mc":
        proba = mc_proba(mean, cov, 100, torch.Generator().manual_seed(0))
    else:
        proba = {"probit": probit_proba, "bridge": bridge_proba}[approximation](mean, cov)
    assert torch.isfinite(proba).all()
    assert torch.all((proba >= 0) & (proba <= 1))
    assert_allclose(proba.sum(-1).numpy(), 1.0, rtol=1e-12)


def test_binary_bridge_is_the_two_class_bridge():
    # For K = 2 the bridge's Dirichlet mean is the softmax of the logits whatever their variance
    # (α_k ∝ e^{m_k} when both classes share one variance): one logit f must give σ(f).
    f = torch.tensor([[-3.0], [-0.5], [0.0], [2.0]], dtype=torch.float64)
    for variance in [1e-6, 1.0, 100.0]:
        cov = torch.full((4, 1, 1), variance, dtype=torch.float64)
        proba = bridge_proba(f, cov)
        assert_allclose(proba[:, 1].numpy(), torch.sigmoid(f[:, 0]).numpy(), rtol=1e-12)


@pytest.mark.parametrize("link_approx", ["probit", "mc", "bridge"])
def test_predict_log_proba_stays_finite_far_from_the_data(link_approx):
    # Far from the data the smallest class probability underflows to 0; its log does not.
    X, y = make_classification(
        n_samples=90, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    clf = LaplaceMLPClassifier(
        hidden_layer_sizes=(8,), max_iter=40, link_approx=link_approx, random_state=0
    ).fit(X, y)
    far = 1e6 * X[:10]
    log_proba = clf.predict_log_proba(far)
    assert np.isfinite(log_proba).all()
    assert_allclose(np.exp(log_proba), clf.predict_proba(far), rtol=1e-9, atol=1e-300)
    assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)), rtol=1e-10)


@pytest.mark.parametrize("sigma_noise", [1e-300, 1e-160, 1e160, 1e300])
def test_log_marginal_likelihood_refuses_unrepresentable_noise_levels(sigma_noise):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    reg = LaplaceMLPRegressor(
        hidden_layer_sizes=(5,), max_iter=20, ensemble_size=1, random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match="sigma_noise"):
        reg.log_marginal_likelihood(sigma_noise=sigma_noise)
    # Extreme but representable arguments give a finite value.
    assert np.isfinite(reg.log_marginal_likelihood(sigma_noise=1e-100, prior_precision=1e-300))
    assert np.isfinite(reg.log_marginal_likelihood(sigma_noise=1e100, prior_precision=1e300))


# -- far from the data: every public predictive is finite or a clear error -------------------------


def _regressor_methods(model, X):
    return {
        "predict": lambda: model.predict(X, return_std=True),
        "predict_cov": lambda: model.predict(X[:3], return_cov=True),
        "predict_interval": lambda: model.predict_interval(X),
        "predict_uncertainty": lambda: model.predict_uncertainty(X),
        "sample_y": lambda: model.sample_y(X, 4),
        "kernel": lambda: model.kernel(X[:3]),
    }


def _classifier_methods(model, X):
    return {
        "predict_proba": lambda: model.predict_proba(X),
        "predict_log_proba": lambda: model.predict_log_proba(X),
        "predict": lambda: model.predict(X),
        "predict_uncertainty": lambda: model.predict_uncertainty(X),
        "kernel": lambda: model.kernel(X[:3]),
    }


def _arrays(result):
    if isinstance(result, dict):
        return [array for value in result.values() for array in _arrays(value)]
    if isinstance(result, tuple):
        return [array for value in result for array in _arrays(value)]
    return [np.asarray(result)]


def _assert_finite_or_overflow_error(method):
    try:
        result = method()
    except ValueError as error:
        assert "overflows float64" in str(error)
        return
    for values in _arrays(result):
        assert values.dtype.kind not in "fc" or np.isfinite(values).all()


@pytest.mark.parametrize(
    "params",
    [
        dict(activation="tanh"),
        dict(activation="relu"),
        dict(noise="heteroscedastic"),
        dict(activation="relu", noise="heteroscedastic"),
        dict(hessian_structure="kron", ensemble_size=2),
    ],
)
@pytest.mark.parametrize("distance", [1e2, 3e2, 1e6, 1e100, 1e200, 1e300])
def test_regressor_far_from_the_data_is_finite_or_a_clear_error(params, distance):
    X, y, _ = _data(n=40)
    model = LaplaceMLPRegressor(**{**FAST, "max_iter": 100, **params}).fit(X, y)
    far = distance * np.sign(X[:8] + 1e-3)
    for method in _regressor_methods(model, far).values():
        _assert_finite_or_overflow_error(method)


@pytest.mark.parametrize("link_approx", ["probit", "mc", "bridge"])
@pytest.mark.parametrize("distance", [1e3, 1e100, 1e200, 1e300])
def test_classifier_far_from_the_data_is_finite_or_a_clear_error(link_approx, distance):
    X, _, labels = _data(n=40)
    model = LaplaceMLPClassifier(**FAST, link_approx=link_approx).fit(X, labels)
    far = distance * np.sign(X[:8] + 1e-3)
    for method in _classifier_methods(model, far).values():
        _assert_finite_or_overflow_error(method)


def test_heteroscedastic_noise_stays_bounded_in_extrapolation():
    # The log-variance head's linearised variance grows without bound far out; the noise it
    # implies is capped (a factor of 100 in variance over exp(m_s)), so the std stays moderate.
    rng = np.random.RandomState(0)
    X = rng.randn(200, 2)
    y = np.sin(X[:, 0]) + (0.1 + 0.3 * np.abs(X[:, 1])) * rng.randn(200)
    model = LaplaceMLPRegressor(noise="heteroscedastic", max_iter=300, random_state=0).fit(X, y)
    inside = model.predict_uncertainty(X)["aleatoric_std"].max()
    for scale in [3, 30, 100, 300]:
        aleatoric = model.predict_uncertainty(scale * X[:20])["aleatoric_std"]
        assert np.isfinite(aleatoric).all() and aleatoric.max() < 1e3 * inside
        assert np.isfinite(model.sample_y(scale * X[:20], 5)).all()

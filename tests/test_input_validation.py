"""Every bad input gets a clear error of the right type, and a failed call loses nothing.

Each case is declared as data: which estimators it applies to, the bad parameters or data, the
error type and a fragment of its message. Many errors come from scikit-learn's ``validate_data``
and parameter constraints (``InvalidParameterError`` is a ``ValueError``); the tests document them.
Every failing ``fit`` runs on an already fitted estimator, which must predict exactly as before.
"""

import copy
import re

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor, TrainingDivergedError

FAST = dict(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
N, D = 20, 3


def _data():
    rng = np.random.RandomState(0)
    X = rng.randn(N, D)
    return X, X[:, 0] + 0.1 * rng.randn(N), np.where(X[:, 1] > 0, "yes", "no")


def _with(array, index, value):
    out = np.array(array, dtype=object if value is None or isinstance(value, str) else None)
    out[index] = value
    return out


# (applies to, id, estimator params, make(X, y, ones) -> (X, y, sample_weight), error, message)
BOTH, REG, CLF = ("regressor", "classifier"), ("regressor",), ("classifier",)
FIT_CASES = [
    # -- X -----------------------------------------------------------------------------------------
    (BOTH, "nan-X", {}, lambda X, y, w: (_with(X, (0, 0), np.nan), y, None),
     ValueError, "Input X contains NaN"),
    (BOTH, "inf-X", {}, lambda X, y, w: (_with(X, (1, 2), -np.inf), y, None),
     ValueError, "Input X contains infinity"),
    (BOTH, "string-X", {}, lambda X, y, w: (np.full((N, D), "a"), y, None),
     ValueError, "could not convert string to float"),
    (BOTH, "object-X-with-string", {}, lambda X, y, w: (_with(X, (0, 0), "b"), y, None),
     ValueError, "could not convert string to float"),
    (BOTH, "object-X-with-None", {}, lambda X, y, w: (_with(X.astype(object), (0, 0), None), y,
     None), ValueError, "Input X contains NaN"),
    (BOTH, "complex-X", {}, lambda X, y, w: (X + 1j, y, None),
     ValueError, "Complex data not supported"),
    (BOTH, "sparse-X", {}, lambda X, y, w: (scipy.sparse.csr_matrix(X), y, None),
     TypeError, "dense data is required"),
    (BOTH, "empty-X", {}, lambda X, y, w: (X[:0], y[:0], None),
     ValueError, "0 sample"),
    (BOTH, "no-features", {}, lambda X, y, w: (X[:, :0], y, None),
     ValueError, "0 feature"),
    (BOTH, "3d-X", {}, lambda X, y, w: (X[:, :, None], y, None),
     ValueError, "dim 3"),
    (BOTH, "1d-X", {}, lambda X, y, w: (X[:, 0], y, None),
     ValueError, "Expected 2D array"),
    (BOTH, "length-mismatch", {}, lambda X, y, w: (X, y[:-1], None),
     ValueError, "inconsistent numbers of samples"),
    (BOTH, "float32-overflow-X", {"dtype": "float32"}, lambda X, y, w: (X * 1e200, y, None),
     ValueError, "beyond the range of dtype='float32'"),
    # -- y -----------------------------------------------------------------------------------------
    (REG, "nan-y", {}, lambda X, y, w: (X, _with(y, 3, np.nan), None),
     ValueError, "Input y contains NaN"),
    (REG, "inf-y", {}, lambda X, y, w: (X, _with(y, 3, np.inf), None),
     ValueError, "Input y contains infinity"),
    (CLF, "nan-label", {}, lambda X, y, w: (X, _with((X[:, 0] > 0) * 1.0, 3, np.nan), None),
     ValueError, "Input y contains NaN"),
    (REG, "string-y", {}, lambda X, y, w: (X, np.full(N, "high"), None),
     ValueError, "could not convert string to float"),
    (REG, "3d-y", {}, lambda X, y, w: (X, np.ones((N, 2, 2)), None),
     ValueError, "dim 3"),
    (CLF, "one-class", {}, lambda X, y, w: (X, np.full(N, "yes"), None),
     ValueError, "at least 2 classes"),
    (CLF, "continuous-target", {}, lambda X, y, w: (X, X[:, 0], None),
     ValueError, "Unknown label type: continuous"),
    (CLF, "multi-output-labels", {}, lambda X, y, w: (X, np.c_[y, y], None),
     ValueError, "y should be a 1d array"),
    (CLF, "mixed-label-types", {}, lambda X, y, w: (X, _with(y, 0, None), None),
     TypeError, "all strings or all numbers"),
    # -- sample_weight -----------------------------------------------------------------------------
    (BOTH, "nan-weight", {}, lambda X, y, w: (X, y, _with(w, 0, np.nan)),
     ValueError, "Input sample_weight contains NaN"),
    (BOTH, "inf-weight", {}, lambda X, y, w: (X, y, _with(w, 0, np.inf)),
     ValueError, "Input sample_weight contains infinity"),
    (BOTH, "negative-weight", {}, lambda X, y, w: (X, y, _with(w, 0, -1.0)),
     ValueError, "Negative values in data passed to `sample_weight`"),
    (BOTH, "all-zero-weights", {}, lambda X, y, w: (X, y, 0 * w),
     ValueError, "at least one non-zero"),
    (BOTH, "short-weights", {}, lambda X, y, w: (X, y, w[:-1]),
     ValueError, "sample_weight.shape == (19,), expected (20,)"),
    (BOTH, "2d-weights", {}, lambda X, y, w: (X, y, w[:, None]),
     ValueError, "1D array or scalar"),
    (BOTH, "weights-sum-to-inf", {}, lambda X, y, w: (X, y, 1e308 * w),
     ValueError, "sums to infinity"),
    (BOTH, "float32-underflow-weight", {"dtype": "float32"},
     lambda X, y, w: (X, y, _with(w, 0, 1e-300)), ValueError, "underflow in dtype='float32'"),
    (CLF, "weights-leave-one-class", {},
     lambda X, y, w: (X, y, (y == "yes").astype(float)), ValueError, "only one class"),
    # -- unknown option strings --------------------------------------------------------------------
    (BOTH, "activation", {"activation": "softsign"}, None,
     InvalidParameterError, "'activation' parameter"),
    (BOTH, "hessian_structure", {"hessian_structure": "kfac"}, None,
     InvalidParameterError, "'hessian_structure' parameter"),
    (BOTH, "subset_of_weights", {"subset_of_weights": "first_layer"}, None,
     InvalidParameterError, "'subset_of_weights' parameter"),
    (BOTH, "evidence_tuning", {"evidence_tuning": "never"}, None,
     InvalidParameterError, "'evidence_tuning' parameter"),
    (CLF, "link_approx", {"link_approx": "logit"}, None,
     InvalidParameterError, "'link_approx' parameter"),
    (BOTH, "device", {"device": "tpu"}, None,
     InvalidParameterError, "'device' parameter"),
    (BOTH, "dtype-float16", {"dtype": "float16"}, None,
     InvalidParameterError, "'dtype' parameter"),
    (BOTH, "dtype-unknown", {"dtype": "double"}, None,
     InvalidParameterError, "'dtype' parameter"),
    (BOTH, "prior-string", {"prior_precision": "auto"}, None,
     InvalidParameterError, "'prior_precision' parameter"),
    (REG, "sigma-string", {"sigma_noise": "auto"}, None,
     InvalidParameterError, "'sigma_noise' parameter"),
    # -- non-positive or out-of-range numbers ------------------------------------------------------
    (BOTH, "hidden-zero-width", {"hidden_layer_sizes": (5, 0)}, None,
     ValueError, "hidden_layer_sizes must be positive integers"),
    (BOTH, "hidden-negative", {"hidden_layer_sizes": (-3,)}, None,
     ValueError, "hidden_layer_sizes must be positive integers"),
    (BOTH, "hidden-float", {"hidden_layer_sizes": (2.5,)}, None,
     ValueError, "hidden_layer_sizes must be positive integers"),
    (BOTH, "hidden-int-zero", {"hidden_layer_sizes": 0}, None,
     InvalidParameterError, "'hidden_layer_sizes' parameter"),
    (BOTH, "max_iter-zero", {"max_iter": 0}, None,
     InvalidParameterError, "'max_iter' parameter"),
    (BOTH, "max_iter-negative", {"max_iter": -5}, None,
     InvalidParameterError, "'max_iter' parameter"),
    (BOTH, "batch_size-zero", {"batch_size": 0}, None,
     InvalidParameterError, "'batch_size' parameter"),
    (BOTH, "learning_rate-zero", {"learning_rate_init": 0.0}, None,
     InvalidParameterError, "'learning_rate_init' parameter"),
    (BOTH, "learning_rate-negative", {"learning_rate_init": -0.1}, None,
     InvalidParameterError, "'learning_rate_init' parameter"),
    (BOTH, "learning_rate-nan", {"learning_rate_init": np.nan}, None,
     InvalidParameterError, "'learning_rate_init' parameter"),
    (BOTH, "prior-zero", {"prior_precision": 0.0}, None,
     InvalidParameterError, "'prior_precision' parameter"),
    (BOTH, "prior-negative", {"prior_precision": -1.0}, None,
     InvalidParameterError, "'prior_precision' parameter"),
    (BOTH, "prior-inf", {"prior_precision": np.inf}, None,
     InvalidParameterError, "'prior_precision' parameter"),
    (BOTH, "prior-too-small", {"prior_precision": 1e-300}, None,
     ValueError, "prior_precision=1e-300 is outside"),
    (BOTH, "prior-too-large", {"prior_precision": 1e300}, None,
     ValueError, "prior_precision=1e+300 is outside"),
    (REG, "sigma-zero", {"sigma_noise": 0.0}, None,
     InvalidParameterError, "'sigma_noise' parameter"),
    (REG, "sigma-negative", {"sigma_noise": -0.5}, None,
     InvalidParameterError, "'sigma_noise' parameter"),
    (REG, "sigma-too-small", {"sigma_noise": 1e-300}, None,
     ValueError, "sigma_noise=1e-300 must lie within"),
    (REG, "sigma-too-large", {"sigma_noise": 1e300}, None,
     ValueError, "sigma_noise=1e+300 must lie within"),
    (CLF, "n_samples-zero", {"n_samples": 0}, None,
     InvalidParameterError, "'n_samples' parameter"),
    (CLF, "n_samples-negative", {"n_samples": -10}, None,
     InvalidParameterError, "'n_samples' parameter"),
    (BOTH, "validation_fraction", {"validation_fraction": 1.5}, None,
     InvalidParameterError, "'validation_fraction' parameter"),
    (BOTH, "n_iter_no_change", {"n_iter_no_change": 0}, None,
     InvalidParameterError, "'n_iter_no_change' parameter"),
    (BOTH, "random_state", {"random_state": "seed"}, None,
     InvalidParameterError, "'random_state' parameter"),
    (REG, "early-stopping-too-few-rows", {"early_stopping": True},
     lambda X, y, w: (X[:2], y[:2], None), ValueError, "at least 2 training rows"),
    # -- training that blows up: relu outputs of ~1e200 square to inf ------------------------------
    (REG, "diverging-training", {"activation": "relu"}, lambda X, y, w: (X * 1e200, y, None),
     TrainingDivergedError, "The training loss became"),
]  # fmt: skip


def _fit_cases():
    return [
        pytest.param(kind, params, make, error, match, id=f"{kind}-{case_id}")
        for kinds, case_id, params, make, error, match in FIT_CASES
        for kind in kinds
    ]


@pytest.fixture(scope="module")
def fitted():
    """One fitted estimator of each kind, and its predictions on a query set."""
    X, y, labels = _data()
    query = np.random.RandomState(1).randn(7, D)
    models = {
        "regressor": LaplaceMLPRegressor(**FAST).fit(X, y),
        "classifier": LaplaceMLPClassifier(**FAST).fit(X, labels),
    }
    return {kind: (model, _predictions(model, query)) for kind, model in models.items()}, query


def _predictions(model, query):
    if isinstance(model, LaplaceMLPClassifier):
        return model.predict_proba(query), model.predict(query)
    return model.predict(query, return_std=True)


def test_there_are_at_least_thirty_cases():
    assert len(_fit_cases()) >= 30


@pytest.mark.parametrize("kind, params, make, error, match", _fit_cases())
def test_bad_fit_input_is_a_clear_error_and_keeps_the_fitted_state(
    fitted, kind, params, make, error, match
):
    models, query = fitted
    model, before = models[kind]
    X, y, labels = _data()
    targets = y if kind == "regressor" else labels
    X_bad, y_bad, weights = (make or (lambda X, y, w: (X, y, None)))(X, targets, np.ones(N))
    estimator = copy.deepcopy(model).set_params(**params)
    with pytest.raises(error, match=re.escape(match)):
        estimator.fit(X_bad, y_bad, sample_weight=weights)
    # The failed call left the previous fit in place: same features, same predictions.
    estimator.set_params(**model.get_params())
    assert estimator.n_features_in_ == D
    for got, expected in zip(_predictions(estimator, query), before, strict=True):
        assert_array_equal(got, expected)


def test_cuda_without_a_gpu_is_a_clear_error_for_both_estimators():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, y, labels = _data()
    with pytest.raises(ValueError, match="CUDA is not available"):
        LaplaceMLPRegressor(device="cuda", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="CUDA is not available"):
        LaplaceMLPClassifier(device="cuda", **FAST).fit(X, labels)


# -- prediction-time input -------------------------------------------------------------------------

PREDICT_CASES = [
    ("wrong-n-features", lambda X: X[:, :2], ValueError, "X has 2 features, but"),
    ("nan-X", lambda X: _with(X, (0, 0), np.nan), ValueError, "Input X contains NaN"),
    ("inf-X", lambda X: _with(X, (0, 0), np.inf), ValueError, "Input X contains infinity"),
    ("string-X", lambda X: np.full(X.shape, "a"), ValueError, "could not convert string"),
    ("1d-X", lambda X: X[0], ValueError, "Expected 2D array"),
    ("3d-X", lambda X: X[:, :, None], ValueError, "dim 3"),
    ("empty-X", lambda X: X[:0], ValueError, "0 sample"),
    ("sparse-X", scipy.sparse.csr_matrix, TypeError, "dense data is required"),
]


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize(
    "make, error, match", [pytest.param(*case[1:], id=case[0]) for case in PREDICT_CASES]
)
def test_bad_predict_input_is_a_clear_error(fitted, kind, make, error, match):
    models, query = fitted
    model, before = models[kind]
    methods = ["predict"] + (["predict_proba", "predict_log_proba"] if kind == "classifier" else [])
    for method in methods:
        with pytest.raises(error, match=re.escape(match)):
            getattr(model, method)(make(query))
    for got, expected in zip(_predictions(model, query), before, strict=True):
        assert_array_equal(got, expected)


@pytest.mark.parametrize("Estimator", [LaplaceMLPRegressor, LaplaceMLPClassifier])
def test_predict_before_fit_is_not_fitted_error(Estimator):
    with pytest.raises(NotFittedError):
        Estimator().predict(np.ones((2, D)))
    with pytest.raises(NotFittedError):
        Estimator().log_marginal_likelihood()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples == 0, must be >= 1"),
        (dict(n_samples=-1), "n_samples == -1, must be >= 1"),
    ],
)
def test_sample_y_rejects_non_positive_n_samples(fitted, kwargs, match):
    models, query = fitted
    with pytest.raises(ValueError, match=match):
        models["regressor"][0].sample_y(query, **kwargs)


def test_sample_y_rejects_a_non_integer_n_samples(fitted):
    models, query = fitted
    with pytest.raises(TypeError, match="n_samples must be an instance of int"):
        models["regressor"][0].sample_y(query, n_samples=2.5)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("value", [0.0, -1.0, np.inf, np.nan, "big"])
def test_log_marginal_likelihood_rejects_bad_prior_precision(fitted, kind, value):
    model = fitted[0][kind][0]
    with pytest.raises(ValueError, match="prior_precision must be a positive finite number"):
        model.log_marginal_likelihood(prior_precision=value)


@pytest.mark.parametrize("value", [0.0, -2.0, np.inf, np.nan])
def test_log_marginal_likelihood_rejects_bad_sigma_noise(fitted, value):
    model = fitted[0]["regressor"][0]
    with pytest.raises(ValueError, match="sigma_noise must be a positive finite number"):
        model.log_marginal_likelihood(sigma_noise=value)


def test_return_std_with_return_cov_is_an_error(fitted):
    models, query = fitted
    with pytest.raises(RuntimeError, match="At most one of return_std or return_cov"):
        models["regressor"][0].predict(query, return_std=True, return_cov=True)


def _layouts(X, tmp_path):
    """The same rows in numpy layouts that torch cannot take without a copy."""
    memmap = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", shape=X.shape)
    memmap[:] = X
    memmap.flush()
    read_only = np.load(tmp_path / "X.npy", mmap_mode="r")
    wide = np.zeros((X.shape[0], 2 * X.shape[1]))
    wide[:, ::2] = X
    return {
        "negative-strides": X[::-1][::-1][::-1],
        "fortran": np.asfortranarray(X[::-1]),
        "column-slice": wide[:, ::2][::-1],
        "read-only-memmap": read_only[::-1],
    }


@pytest.mark.parametrize("Estimator", [LaplaceMLPRegressor, LaplaceMLPClassifier])
def test_any_numpy_layout_fits_and_predicts_as_a_contiguous_copy(Estimator, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = (X[:, 0] > 0).astype(int) if Estimator is LaplaceMLPClassifier else X[:, 0]
    params = FAST if Estimator is LaplaceMLPClassifier else {**FAST, "ensemble_size": 1}
    reference = Estimator(**params).fit(np.ascontiguousarray(X[::-1]), y[::-1].copy())
    methods = ["predict", "predict_uncertainty", "kernel"]
    methods += ["predict_proba", "predict_log_proba"] if Estimator is LaplaceMLPClassifier else []
    for name, X_layout in _layouts(X, tmp_path).items():
        model = Estimator(**params).fit(X_layout, y[::-1])
        for method in methods:
            expected = getattr(reference, method)(np.ascontiguousarray(X[::-1]))
            got = getattr(model, method)(X_layout)
            if isinstance(expected, dict):
                expected, got = (
                    expected["mean" if "mean" in expected else "proba"],
                    got["mean" if "mean" in got else "proba"],
                )
            assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=f"{name} {method}")


def test_reversed_dataframe_rows_fit_and_predict():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(N, D)), columns=["a", "b", "c"])
    target = frame["a"] * 2.0
    model = LaplaceMLPRegressor(**FAST, ensemble_size=1).fit(frame.iloc[::-1], target.iloc[::-1])
    mean, std = model.predict(frame.iloc[::-1], return_std=True)
    assert np.isfinite(mean).all() and np.isfinite(std).all()


@st.composite
def _strided_views(draw):
    """A float array of the fitted model's shape, reached through an arbitrary chain of views."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    row_step = draw(st.sampled_from([1, 2, 3]))
    column_step = draw(st.sampled_from([1, 2]))
    base = rng.normal(size=(9 * row_step, D * column_step))
    view = base[:: -row_step if draw(st.booleans()) else row_step, ::column_step]
    if draw(st.booleans()):
        view = np.asfortranarray(view)
    if draw(st.booleans()):
        view = view.T.copy().T  # Fortran order through a transpose
    if draw(st.booleans()):
        view.flags.writeable = False
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return view if dtype is np.float64 else view.astype(dtype)


@pytest.fixture(scope="module")
def fitted_pair():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    regressor = LaplaceMLPRegressor(**FAST, ensemble_size=1).fit(X, X[:, 0])
    classifier = LaplaceMLPClassifier(**FAST).fit(X, (X[:, 0] > 0).astype(int))
    return regressor, classifier


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(X=_strided_views())
def test_predictions_do_not_depend_on_the_array_layout(fitted_pair, X):
    regressor, classifier = fitted_pair
    contiguous = np.ascontiguousarray(X)
    for got, expected in [
        (regressor.predict(X, return_std=True), regressor.predict(contiguous, return_std=True)),
        (classifier.predict_proba(X), classifier.predict_proba(contiguous)),
        (classifier.predict_log_proba(X), classifier.predict_log_proba(contiguous)),
    ]:
        assert_array_equal(np.asarray(got), np.asarray(expected))

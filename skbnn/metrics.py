"""Metrics and scorers for probabilistic predictions.

Metrics take arrays: the Gaussian log-likelihood, CRPS and interval coverage of regression error
bars, and the expected calibration error of class probabilities. Scorers take a fitted estimator,
``scorer(estimator, X, y, sample_weight=None)``, for ``cross_validate`` and ``GridSearchCV``; they
call ``predict(X, return_std=True)`` themselves, also through a ``Pipeline`` with metadata
routing enabled.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.stats import norm
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest, _routing_enabled
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = [
    "PredictiveScorer",
    "coverage_scorer",
    "expected_calibration_error",
    "gaussian_crps",
    "gaussian_log_likelihood",
    "interval_coverage",
    "log_likelihood_scorer",
    "neg_crps_scorer",
    "neg_interval_width_scorer",
]


def _as_gaussian(y_true, y_mean, y_std):
    """The three arrays as float64 of one shape, with y_std > 0."""
    y_true, y_mean, y_std = (np.asarray(a, dtype=np.float64) for a in (y_true, y_mean, y_std))
    if not (y_true.shape == y_mean.shape == y_std.shape):
        raise ValueError(
            f"y_true, y_mean and y_std must have one shape; got {y_true.shape}, "
            f"{y_mean.shape}, {y_std.shape}."
        )
    if np.any(~(y_std > 0)):
        raise ValueError("y_std must be positive everywhere.")
    return y_true, y_mean, y_std


def _weighted_mean(values, sample_weight=None):
    """Mean over rows (weighted) and outputs, like scikit-learn's ``'uniform_average'``."""
    if sample_weight is None:
        return float(np.mean(values))
    sample_weight = column_or_1d(sample_weight).astype(np.float64)
    check_consistent_length(values, sample_weight)
    return float(np.mean(np.average(values, axis=0, weights=sample_weight)))


def gaussian_log_likelihood(y_true, y_mean, y_std):
    """Mean log density of ``y_true`` under N(y_mean, y_std²), per point and output.

    Parameters
    ----------
    y_true, y_mean, y_std : array-like of the same shape
        Targets, predictive means and predictive standard deviations (> 0).

    Returns
    -------
    float
        The mean of log N(y_true; y_mean, y_std²); higher is better.
    """
    y_true, y_mean, y_std = _as_gaussian(y_true, y_mean, y_std)
    return float(np.mean(norm.logpdf(y_true, loc=y_mean, scale=y_std)))


def _pointwise_crps(y_true, y_mean, y_std):
    z = (y_true - y_mean) / y_std
    return y_std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))


def gaussian_crps(y_true, y_mean, y_std, *, sample_weight=None):
    """Mean continuous ranked probability score of N(y_mean, y_std²) at ``y_true``.

    Parameters
    ----------
    y_true, y_mean, y_std : array-like of the same shape
        Targets, predictive means and predictive standard deviations (> 0).
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the rows.

    Returns
    -------
    float
        The mean CRPS, in the units of y; lower is better, 0 only for a point mass at y_true.

    Notes
    -----
    CRPS(F, y) = ∫ (F(x) − 1[x ≥ y])² dx. For a Gaussian F = N(μ, σ²) it has the closed form
    (Gneiting & Raftery 2007)

        CRPS = σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π],   z = (y − μ)/σ.

    Unlike the log-likelihood it grows only linearly in the error, so a few far-off targets
    weigh less.

    References
    ----------
    Gneiting, T. and Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
    estimation. *Journal of the American Statistical Association* 102(477).

    Examples
    --------
    >>> from skbnn.metrics import gaussian_crps
    >>> round(gaussian_crps([0.0], [0.0], [1.0]), 4)  # (√2 − 1)/√π
    0.2337
    """
    y_true, y_mean, y_std = _as_gaussian(y_true, y_mean, y_std)
    return _weighted_mean(_pointwise_crps(y_true, y_mean, y_std), sample_weight)


def interval_coverage(y_true, y_mean, y_std, alpha=0.05):
    """Fraction of ``y_true`` inside the central (1 − alpha) Gaussian predictive interval."""
    y_true, y_mean, y_std = (np.asarray(a, dtype=np.float64) for a in (y_true, y_mean, y_std))
    half_width = norm.ppf(1 - alpha / 2) * y_std
    return float(np.mean(np.abs(y_true - y_mean) <= half_width))


def expected_calibration_error(y_true, proba, n_bins=10):
    """Expected calibration error of the top-class probability with equal-width bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer class indices in ``range(n_classes)`` (positions in the columns of ``proba``).
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities.
    n_bins : int, default=10
        Number of bins over [0, 1].

    Returns
    -------
    float
        Σ_b (n_b / n) |accuracy_b − confidence_b|.
    """
    y_true = column_or_1d(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    check_consistent_length(y_true, proba)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


# ---------------------------------------------------------------------------------------------
# Scorers


def _predict_mean_std(estimator, X):
    """``estimator.predict(X, return_std=True)``, also through a Pipeline with routing enabled.

    With ``enable_metadata_routing=True`` a Pipeline forwards ``return_std`` only to a final step
    that requested it (``set_predict_request(return_std=True)``); transforming X with the
    pipeline's own steps and asking the final step directly needs no request. A fitted search
    (``GridSearchCV``) is unwrapped to its ``best_estimator_`` for the same reason.
    """
    if isinstance(estimator, Pipeline):
        Xt = X
        for _, step in estimator.steps[:-1]:
            if step is not None and not (isinstance(step, str) and step == "passthrough"):
                Xt = step.transform(Xt)
        return _predict_mean_std(estimator.steps[-1][1], Xt)
    best = getattr(estimator, "best_estimator_", None)
    if best is not None:
        return _predict_mean_std(best, X)
    try:
        return estimator.predict(X, return_std=True)
    except TypeError as error:
        raise TypeError(
            f"{type(estimator).__name__}.predict does not take return_std=True; this scorer "
            "needs a regressor with a Gaussian predictive, such as LaplaceMLPRegressor."
        ) from error


def _targets_like(y_true, y_mean):
    """y_true as float64 in the shape of the predictions (a column y for one output is raveled)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_mean.ndim == 1 and y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    return y_true


def _class_log_likelihood(estimator, X, y_true):
    """Log predictive probability of each row's true class."""
    if hasattr(estimator, "predict_log_proba"):
        log_proba = estimator.predict_log_proba(X)
    else:
        with np.errstate(divide="ignore"):
            log_proba = np.log(estimator.predict_proba(X))
    classes = np.asarray(estimator.classes_)
    y_true = column_or_1d(y_true)
    column = np.searchsorted(classes, y_true)
    column = np.minimum(column, len(classes) - 1)
    if np.any(classes[column] != y_true):
        raise ValueError(f"y contains labels outside the fitted classes {classes.tolist()}.")
    return log_proba[np.arange(len(y_true)), column]


class PredictiveScorer:
    """Score a fitted estimator's Gaussian predictive: ``scorer(estimator, X, y, sample_weight)``.

    The scorer calls ``predict(X, return_std=True)`` itself, so it works on a bare regressor, a
    Pipeline and a fitted search, with metadata routing enabled or not, and the user need not
    request ``return_std``: for a Pipeline it transforms X with the pipeline's steps and asks the
    final step directly. Use the module's instances and factories
    (``log_likelihood_scorer``, ``neg_crps_scorer``, ``coverage_scorer``,
    ``neg_interval_width_scorer``) rather than this class.

    Parameters
    ----------
    pointwise : callable
        ``pointwise(y_true, y_mean, y_std)`` returns one score per entry of y; the scorer returns
        their mean over rows (weighted by ``sample_weight``) and outputs.
    name : str
        How the scorer prints, e.g. ``"coverage_scorer(confidence=0.9)"``.
    classifier_pointwise : callable, default=None
        ``classifier_pointwise(estimator, X, y)`` returns one score per row for a classifier;
        None makes the scorer refuse classifiers.

    Notes
    -----
    Like scikit-learn's scorers, it receives ``sample_weight`` when routing is disabled (from
    ``GridSearchCV.fit(..., sample_weight=w)``, scikit-learn ≥ 1.7) and, with routing enabled,
    only after ``set_score_request(sample_weight=True)``.
    """

    def __init__(self, pointwise, name, classifier_pointwise=None):
        self._pointwise = pointwise
        self._name = name
        self._classifier_pointwise = classifier_pointwise
        self._sample_weight_request = None

    def __call__(self, estimator, X, y_true, sample_weight=None):
        """The mean score of ``estimator`` on ``X, y_true``; higher is better.

        Parameters
        ----------
        estimator : fitted estimator
            A regressor whose ``predict`` takes ``return_std=True`` (or a Pipeline or search
            ending in one); for the log-likelihood also a classifier.
        X : array-like of shape (n_samples, n_features)
            Inputs.
        y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        float
        """
        if is_classifier(estimator):
            if self._classifier_pointwise is None:
                raise TypeError(f"{self._name} scores regressors; got a classifier.")
            values = self._classifier_pointwise(estimator, X, y_true)
        else:
            y_mean, y_std = _predict_mean_std(estimator, X)
            y_true, y_mean, y_std = _as_gaussian(_targets_like(y_true, y_mean), y_mean, y_std)
            values = self._pointwise(y_true, y_mean, y_std)
        return _weighted_mean(values, sample_weight)

    def __repr__(self):
        return self._name

    def set_score_request(self, *, sample_weight=None):
        """A copy of this scorer that requests ``sample_weight`` under metadata routing.

        Unlike scikit-learn's ``set_score_request`` this leaves the scorer unchanged (the
        module-level scorers are shared) and returns the new one.

        Parameters
        ----------
        sample_weight : bool, str or None, default=None
            True: route ``sample_weight`` here; False: do not; a string: route the metadata of
            that name as ``sample_weight``.

        Returns
        -------
        PredictiveScorer
        """
        if not _routing_enabled():
            raise RuntimeError(
                "set_score_request is only available when metadata routing is enabled: "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        scorer = type(self)(self._pointwise, self._name, self._classifier_pointwise)
        scorer._sample_weight_request = sample_weight
        return scorer

    def get_metadata_routing(self):
        """The metadata this scorer requests: ``sample_weight`` for ``score`` if asked to.

        Returns
        -------
        MetadataRequest
        """
        request = MetadataRequest(owner=self._name)
        request.score.add_request(param="sample_weight", alias=self._sample_weight_request)
        return request

    def _accept_sample_weight(self):
        # Read by scikit-learn's searches when routing is disabled.
        return True


def _log_density(y_true, y_mean, y_std):
    return norm.logpdf(y_true, loc=y_mean, scale=y_std)


def _covered(y_true, y_mean, y_std, *, confidence):
    return np.abs(y_true - y_mean) <= norm.ppf(0.5 + confidence / 2) * y_std


def _neg_width(y_true, y_mean, y_std, *, confidence):
    return -2 * norm.ppf(0.5 + confidence / 2) * y_std


def _neg_crps(y_true, y_mean, y_std):
    return -_pointwise_crps(y_true, y_mean, y_std)


def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")


log_likelihood_scorer = PredictiveScorer(
    _log_density, "log_likelihood_scorer", classifier_pointwise=_class_log_likelihood
)
"""Mean predictive log-likelihood (higher is better).

For a regressor, the mean log density of y under N(mean, std²) from ``predict(X,
return_std=True)`` (``gaussian_log_likelihood``). For a classifier, the mean log predictive
probability of the true class, −log loss: the same as scikit-learn's ``"neg_log_loss"``.
"""

neg_crps_scorer = PredictiveScorer(_neg_crps, "neg_crps_scorer")
"""Negated mean Gaussian CRPS (``gaussian_crps``) of ``predict(X, return_std=True)``."""


def coverage_scorer(confidence=0.9):
    """A scorer: the fraction of y inside the central Gaussian interval mean ± z·std.

    Parameters
    ----------
    confidence : float, default=0.9
        The interval's nominal probability; z = Φ⁻¹((1 + confidence)/2).

    Returns
    -------
    PredictiveScorer
        ``scorer(estimator, X, y, sample_weight=None)``.

    Notes
    -----
    The best value is ``confidence``, not 1: report it beside ``neg_interval_width_scorer``
    (wide intervals cover everything) and do not choose a model by maximising it.
    """
    _check_confidence(confidence)
    return PredictiveScorer(
        partial(_covered, confidence=confidence), f"coverage_scorer(confidence={confidence!r})"
    )


def neg_interval_width_scorer(confidence=0.9):
    """A scorer: minus the mean width 2·z·std of the central Gaussian interval.

    Parameters
    ----------
    confidence : float, default=0.9
        The interval's nominal probability; z = Φ⁻¹((1 + confidence)/2).

    Returns
    -------
    PredictiveScorer
        ``scorer(estimator, X, y, sample_weight=None)``; negated so that higher (narrower) is
        better, as scikit-learn's ``neg_*`` scorers.
    """
    _check_confidence(confidence)
    return PredictiveScorer(
        partial(_neg_width, confidence=confidence),
        f"neg_interval_width_scorer(confidence={confidence!r})",
    )

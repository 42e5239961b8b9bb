"""Metrics for probabilistic predictions: Gaussian NLL, interval coverage, calibration error."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.utils.validation import check_consistent_length, column_or_1d


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
    y_true, y_mean, y_std = (np.asarray(a, dtype=np.float64) for a in (y_true, y_mean, y_std))
    if not (y_true.shape == y_mean.shape == y_std.shape):
        raise ValueError(
            f"y_true, y_mean and y_std must have one shape; got {y_true.shape}, "
            f"{y_mean.shape}, {y_std.shape}."
        )
    if np.any(~(y_std > 0)):
        raise ValueError("y_std must be positive everywhere.")
    return float(np.mean(norm.logpdf(y_true, loc=y_mean, scale=y_std)))


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

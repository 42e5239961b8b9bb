"""The regressor's targets in standardised units: their scaling, the reference noise, and the
noise level at which the evidence may be evaluated.

The networks fit (y − mean) / scale; a fixed ``sigma_noise`` becomes the reference noise
σ / scale of the likelihood, whose noise scale c the evidence tunes (or keeps at 1).
"""

from __future__ import annotations

import numpy as np

from skbnn._validation import FIXED_HYPERPARAMETER_RANGE, check_positive_finite

# log_marginal_likelihood(sigma_noise=...): the noise relative to the fitted one, within which its
# square and inverse square stay normal float64 numbers.
EVIDENCE_NOISE_SCALE_RANGE = (1e-150, 1e150)


def noise_ratio(sigma_noise, fitted_sigma):
    """σ / σ_fitted, refused where 1/σ² of the evidence would under- or overflow float64."""
    sigma_noise = check_positive_finite(sigma_noise, "sigma_noise")
    ratio = sigma_noise / fitted_sigma
    low, high = EVIDENCE_NOISE_SCALE_RANGE
    if not low < ratio < high:
        raise ValueError(
            f"sigma_noise={sigma_noise!r} is {ratio:.3g} times the fitted noise level; the "
            f"evidence is representable in float64 only within [{low:g}, {high:g}] times it."
        )
    return ratio


def target_standardization(y, weights, normalize_y):
    """Mean and scale of each column of y (weighted); a constant column keeps unit scale."""
    if not normalize_y:
        return np.zeros(y.shape[1]), np.ones(y.shape[1])
    mean, scale = _weighted_mean_and_std(y, weights)
    # A constant target (up to round-off, at any scale) keeps unit scale.
    constant = ~(scale > 1e-12 * np.abs(mean)) | (scale < np.finfo(np.float64).tiny)
    scale[constant] = 1.0
    return mean, scale


def reference_noise(sigma_noise, scale, normalize_y):
    """The noise std per output in standardised units: 1 when tuned, else the fixed one."""
    if sigma_noise == "evidence":
        return np.ones(scale.shape[0])
    noise_ref = sigma_noise / scale
    low, high = FIXED_HYPERPARAMETER_RANGE
    if not np.all((noise_ref >= low) & (noise_ref <= high)):
        unit = "the std of y" if normalize_y else "1 (normalize_y=False)"
        raise ValueError(
            f"sigma_noise={sigma_noise!r} must lie within [{low:g}, {high:g}] times {unit}; "
            "further out training or the posterior overflow. Use sigma_noise='evidence' or a "
            "value in that range."
        )
    return noise_ref


def _weighted_mean_and_std(y, weights):
    """Weighted mean and std of each column, computed on y / max|y| so that no square overflows."""
    ref = np.abs(y).max(axis=0)
    ref[ref == 0] = 1.0
    z = y / ref
    mean = np.average(z, axis=0, weights=weights)
    std = np.sqrt(np.average((z - mean) ** 2, axis=0, weights=weights))
    return mean * ref, std * ref

"""Conformal prediction intervals: held-out rows, or the leave-one-out predictive.

Split conformal prediction with normalised residuals (Lei et al. 2018, §5.2) scores rows that
the model did not see by

    s_i = |y_i − μ(x_i)| / σ(x_i),

and widens the predictive interval to μ(x) ± q σ(x), with q the ⌈(n + 1)(1 − α)⌉-th smallest of
the n scores; for rows exchangeable with them the interval then holds y with probability
≥ 1 − α (``conformalize``, ``method="conformal"``). Without held-out rows, the unseen predictive
of each training row can be its leave-one-out cavity (:mod:`skbnn._loo`, ``method="loo"``):

    μ₋ᵢ, σ₋ᵢ² = V₋ᵢ + σ²(x_i)     (the mixture's mean and variance for an ensemble),

so every row calibrates and nothing is refitted. For a Gaussian likelihood the cavity is the
exact leave-one-out posterior of the network linearised at its trained weights; but the weights
themselves are not retrained without the row, so where the network overfits the scores are too
small and so are the intervals: no guarantee (RESULTS.md, "Conformal intervals", measures it).

With frequency weights w_i the quantile is weighted: the smallest s with
Σ_{s_i ≤ s} w_i ≥ (1 − α)(W + 1), W = Σ w_i (each unit of weight one exchangeable row).

Lei, J., G'Sell, M., Rinaldo, A., Tibshirani, R. J. and Wasserman, L. (2018). Distribution-free
predictive inference for regression. JASA 113(523).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from skbnn._ensemble import member_cavity_moments
from skbnn._predictive import mixture_mean_and_variance

# Calibrate on at most this many training rows (a seeded random subset beyond): the scores are
# stored with the model, and the quantile of 10,000 of them is within ~0.3% of its level.
CONFORMAL_MAX_ROWS = 10_000


def select_calibration(method, held_out, loo):
    """The (scores, weights) that calibrate ``predict_interval``'s ``method``: None for "bayes"
    (no rescaling), the held-out rows' for "conformal", the leave-one-out ones for "loo"."""
    if method not in ("bayes", "conformal", "loo"):
        raise ValueError(f"method must be 'bayes', 'conformal' or 'loo'; got {method!r}.")
    if method == "conformal" and held_out is None:
        raise ValueError(
            "method='conformal' needs held-out rows: call conformalize(X_calibration, "
            "y_calibration) after fitting, or use method='loo'."
        )
    return {"bayes": None, "conformal": held_out, "loo": loo}[method]


def normalized_residuals(y, mean, std) -> np.ndarray:
    """s_i = |y_i − μ(x_i)| / σ(x_i), elementwise."""
    return np.abs(np.asarray(y) - np.asarray(mean)) / np.asarray(std)


def conformal_interval(mean, std, scores, weights, confidence):
    """μ ± q σ, with q (one per output) the conformal quantile of the calibration scores."""
    q = torch.as_tensor(conformal_quantile(scores, weights, confidence), dtype=std.dtype)
    return mean - q * std, mean + q * std


def loo_calibration(members, rows, y_scale, generator) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out scores (n, k) and weights of (a random subset of) the training ``rows``
    (X, standardised y, weights as the fit's tensors)."""
    X, y, weights = (t.cpu().to(torch.float64) if t.is_floating_point() else t for t in rows)
    keep = calibration_rows(X.shape[0], generator)
    scores = loo_conformity_scores(members, X[keep], y[keep], weights[keep], y_scale)
    return scores, weights[keep].numpy()


def calibration_rows(n_rows: int, generator: torch.Generator) -> torch.Tensor:
    """The indices of the rows that calibrate: all, or ``CONFORMAL_MAX_ROWS`` drawn at random."""
    if n_rows <= CONFORMAL_MAX_ROWS:
        return torch.arange(n_rows)
    return torch.randperm(n_rows, generator=generator)[:CONFORMAL_MAX_ROWS].sort().values


def loo_conformity_scores(members, X, y, weights, y_scale) -> np.ndarray:
    """s_i = |y_i − μ₋ᵢ| / σ₋ᵢ (n, k) of the members' mixture, in standardised units."""
    moments = [member_cavity_moments(member, X, y, weights, y_scale) for member in members]
    means, variances = (torch.stack(values) for values in zip(*moments, strict=True))
    mean, variance = mixture_mean_and_variance(means, variances)
    k = y_scale.shape[0]
    return ((y[:, :k] - mean).abs() / variance.sqrt()).numpy()


def conformal_quantile(scores: np.ndarray, weights: np.ndarray, confidence: float) -> np.ndarray:
    """Per output, the smallest score s with Σ_{s_i ≤ s} w_i ≥ confidence · (W + 1).

    Raises ValueError where that level exceeds W: too few rows for the confidence asked.
    """
    total = float(weights.sum())
    level = confidence * (total + 1.0)
    if level > total * (1.0 + 1e-12):
        most = total / (total + 1.0)
        raise ValueError(
            f"confidence={confidence} needs more calibration rows than the {total:g} (in "
            f"weight) the model was fitted on: with them, conformal intervals reach at most "
            f"confidence {math.floor(most * 1e4) / 1e4}."
        )
    quantiles = []
    for column in scores.T:
        order = np.argsort(column, kind="stable")
        cumulative = np.cumsum(weights[order])
        index = min(int(np.searchsorted(cumulative, level * (1.0 - 1e-12))), len(order) - 1)
        quantiles.append(column[order[index]])
    return np.asarray(quantiles)

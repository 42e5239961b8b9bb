"""Checks of the estimators' options and data that scikit-learn's validation does not make.

Each raises a ``ValueError`` that names the option or array at fault and what to do instead.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import torch

# A fixed prior precision (and a fixed noise std over the std of y) must lie in this range: beyond
# it the weight decay or 1/σ² of the training loss overflow float32, or the posterior float64.
FIXED_HYPERPARAMETER_RANGE = (1e-12, 1e12)


def check_positive_finite(value, name: str) -> float:
    """A hyperparameter passed to a method (not the constructor): a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def check_fixed_prior_precision(prior_precision) -> None:
    """A fixed δ must lie in ``FIXED_HYPERPARAMETER_RANGE``."""
    if prior_precision == "evidence":
        return
    low, high = FIXED_HYPERPARAMETER_RANGE
    if not low <= prior_precision <= high:
        raise ValueError(
            f"prior_precision={prior_precision!r} is outside [{low:g}, {high:g}], the range in "
            "which training and the posterior stay finite in float32 and float64; use "
            "prior_precision='evidence' or a value in that range."
        )


def check_hidden_layer_sizes(hidden_layer_sizes) -> list[int]:
    """The hidden layer widths as a list of positive ints (one int is one layer)."""
    sizes = hidden_layer_sizes
    sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
    if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
        raise ValueError(
            f"hidden_layer_sizes must be positive integers, got {hidden_layer_sizes!r}."
        )
    return [int(s) for s in sizes]


def check_total_weight(sample_weight: np.ndarray) -> None:
    """Σ w must be positive and finite: it is N in the objective and the evidence."""
    largest = float(sample_weight.max())
    if largest == 0:  # older scikit-learn versions let all-zero weights through
        raise ValueError("sample_weight must contain at least one non-zero number.")
    if not math.isfinite(largest * float(np.sum(sample_weight / largest))):
        raise ValueError(
            "sample_weight sums to infinity in float64; rescale the weights (their sum is the "
            "number of observations N of the evidence)."
        )


def check_representable(X, y, weights, sample_weight, dtype_name: str) -> None:
    """X, y and the positive weights must survive the cast to the training dtype."""
    suggestion = "use dtype='float64' or rescale" if dtype_name == "float32" else "rescale"
    for name, values in [("X", X), ("y", y)]:
        if values.is_floating_point() and not torch.isfinite(values).all():
            raise ValueError(
                f"{name} has values beyond the range of dtype={dtype_name!r}; {suggestion} {name}."
            )
    lost = (weights == 0) & torch.as_tensor(sample_weight > 0, device=weights.device)
    if not torch.isfinite(weights).all() or lost.any():
        raise ValueError(
            f"sample_weight has values that over- or underflow in dtype={dtype_name!r}; "
            f"{suggestion} sample_weight."
        )


def resolve_device(device: str) -> torch.device:
    """``device="auto"`` is CUDA when available; an unavailable CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; use device='auto' or 'cpu'."
        )
    return torch.device(device)


def finite_predictions(method):
    """A public predictive method whose non-finite output (for finite X) is a ``ValueError``.

    Far enough from the training data the linearised predictive of an unbounded network (ReLU,
    a linear output) outgrows float64; the error says so instead of returning inf or NaN.
    """

    @functools.wraps(method)
    def checked(self, X, *args, **kwargs):
        result = method(self, X, *args, **kwargs)
        if not _all_finite(result):
            raise ValueError(
                f"{method.__name__} overflows float64 at these inputs (largest |x| = "
                f"{_largest_magnitude(X):.3g}): they lie too far outside the training data for "
                "the linearised predictive to be represented. Check the scale of X."
            )
        return result

    return checked


def _all_finite(result) -> bool:
    if isinstance(result, dict):
        return all(_all_finite(value) for value in result.values())
    if isinstance(result, tuple | list):
        return all(_all_finite(value) for value in result)
    values = np.asarray(result)
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())


def _largest_magnitude(X) -> float:
    try:
        return float(np.max(np.abs(np.asarray(X, dtype=np.float64))))
    except (TypeError, ValueError):
        return math.nan

"""What each ``"auto"`` option resolves to: pure functions of the data's shape and the options.

Every rule sits beside its constants and names the section of ``benchmarks/RESULTS.md`` that
chose them. The estimators store each resolved value as a fitted attribute (``batch_size_``,
``max_iter_``, ``hessian_structure_``, ``inference_``, ...), so a fitted model says what it did.
"""

from __future__ import annotations

import math

import numpy as np

# batch_size="auto": full-batch (deterministic, best for the evidence) up to this many rows,
# minibatches of this size beyond (RESULTS.md, "Choosing the defaults").
FULL_BATCH_MAX_ROWS = 1024
AUTO_MINIBATCH_SIZE = 256

# max_iter="auto": about this many optimiser steps, within these many epochs; the cap binds for
# full-batch fits, one step per epoch (RESULTS.md, "Choosing the defaults").
AUTO_TARGET_STEPS = 6000
AUTO_EPOCH_RANGE = (20, 3000)

# hessian_structure="auto": a dense GGN up to this many posterior parameters (two P×P float64
# matrices of at most 100 MB, one eigh of a few seconds), KFAC beyond (RESULTS.md, "Scaling").
AUTO_FULL_MAX_PARAMS = 2500

# map_refinement_steps="auto" (regression): at most this many Levenberg–Marquardt steps, and one
# per this many training epochs, so that the steps stay a small share of the training's cost
# (RESULTS.md, "Choosing the defaults").
AUTO_MAP_REFINEMENT_STEPS = 20
AUTO_EPOCHS_PER_REFINEMENT_STEP = 10

# ensemble_size="auto" (regression): this many networks for fits of at most this many rows
# (RESULTS.md, "Choosing the defaults": three networks raised the test log-likelihood of all
# five small UCI sets; the fit time they triple grows with n).
AUTO_ENSEMBLE_SIZE = 3
AUTO_ENSEMBLE_MAX_ROWS = 2000

# noise="heteroscedastic": this fraction of the epochs fits the mean alone first (Skafte et al.
# 2019; RESULTS.md, "Heteroscedastic noise").
HETEROSCEDASTIC_WARM_UP = 0.3


def batch_size(option, n_samples: int) -> int:
    """``batch_size``: full-batch up to ``FULL_BATCH_MAX_ROWS`` rows, else minibatches."""
    if option == "auto":
        return n_samples if n_samples <= FULL_BATCH_MAX_ROWS else AUTO_MINIBATCH_SIZE
    return min(option, n_samples)


def max_iter(option, n_samples: int, batch: int) -> int:
    """``max_iter``: epochs for about ``AUTO_TARGET_STEPS`` steps, within ``AUTO_EPOCH_RANGE``."""
    if option != "auto":
        return option
    steps_per_epoch = math.ceil(n_samples / batch)
    return int(np.clip(math.ceil(AUTO_TARGET_STEPS / steps_per_epoch), *AUTO_EPOCH_RANGE))


def hessian_structure(option: str, n_params: int, layerwise: bool) -> str:
    """``hessian_structure``: "full" up to ``AUTO_FULL_MAX_PARAMS`` weights, else "kron".

    A layerwise prior needs a GGN that does not mix layers, so "auto" then gives "kron".
    """
    if option != "auto":
        return option
    return "full" if n_params <= AUTO_FULL_MAX_PARAMS and not layerwise else "kron"


def map_refinement_steps(option, n_epochs: int) -> int:
    """``map_refinement_steps``: ``AUTO_MAP_REFINEMENT_STEPS``, at most one per 10 epochs."""
    if option != "auto":
        return option
    return min(AUTO_MAP_REFINEMENT_STEPS, math.ceil(n_epochs / AUTO_EPOCHS_PER_REFINEMENT_STEP))


def ensemble_size(option, n_samples: int, n_hidden_layers: int, streaming: bool) -> int:
    """``ensemble_size``: ``AUTO_ENSEMBLE_SIZE`` networks for small data, else one.

    A linear model has a single mode, and ``partial_fit`` is meant for data too large for
    :meth:`fit`, so both get one network.
    """
    if option != "auto":
        return option
    small = n_samples <= AUTO_ENSEMBLE_MAX_ROWS and n_hidden_layers > 0
    return AUTO_ENSEMBLE_SIZE if small and not streaming else 1


def regression_inference(option: str, noise: str) -> str:
    """``inference`` of the regressor: "ggn-vi" (closed form) for homoscedastic noise, else
    "laplace" (the heteroscedastic likelihood has no closed-form optimum)."""
    if option != "auto":
        return option
    return "laplace" if noise == "heteroscedastic" else "ggn-vi"


def keep_best_evidence(option, noise: str) -> bool:
    """``keep_best_evidence`` of the regressor: only with heteroscedastic noise, whose noise
    network overfits late in training (RESULTS.md, "Choosing the defaults")."""
    if option != "auto":
        return option
    return noise == "heteroscedastic"


def warm_up_epochs(has_warm_up: bool, n_epochs: int) -> int:
    """Epochs that fit a heteroscedastic network's mean alone: ``HETEROSCEDASTIC_WARM_UP``."""
    return math.ceil(HETEROSCEDASTIC_WARM_UP * n_epochs) if has_warm_up else 0

"""Golden configurations: small fits at fixed seeds whose outputs a refactor must reproduce.

``python tests/golden/configurations.py`` records the outputs of the code as it is into
``tests/golden/outputs.npz``; ``tests/test_golden.py`` checks that the code reproduces them
(rtol 1e-10, CPU float64). Re-record only in a commit that means to change numbers, and say so.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from sklearn.datasets import make_classification

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

OUTPUTS = pathlib.Path(__file__).with_name("outputs.npz")
SMALL = dict(hidden_layer_sizes=(8,), max_iter=40, learning_rate_init=1e-2, random_state=0)


def regression_data(n_outputs=1):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(60, 3))
    f = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]
    y = np.stack([f + 0.1 * (k + 1) * rng.normal(size=60) for k in range(n_outputs)], axis=1)
    return X, (y[:, 0] if n_outputs == 1 else 3.0 * y)


def classification_data(n_classes=2):
    X, y = make_classification(
        n_samples=90,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        random_state=0,
    )
    return X, y


def _regressor_outputs(model, X):
    mean, std = model.predict(X, return_std=True)
    first = model.members_[0]
    return {
        "mean": mean,
        "std": std,
        "prior_precision": np.atleast_1d(model.prior_precision_),
        # The first network's noise (sigma_noise_ is the mixture's for an ensemble); the
        # heteroscedastic model has no single noise level.
        "sigma_noise": np.atleast_1d(np.nan if first.sigma_noise is None else first.sigma_noise),
        "log_evidence": np.atleast_1d(model.log_marginal_likelihood_value_),
        "kernel": model.kernel(X[:5]),
    }


def _classifier_outputs(model, X):
    return {
        "proba": model.predict_proba(X),
        "prior_precision": np.atleast_1d(model.prior_precision_),
        "log_evidence": np.atleast_1d(model.log_marginal_likelihood_value_),
        "temperature": np.atleast_1d(model.posterior_temperature_),
        "kernel": model.kernel(X[:4]),
    }


def _regressor(data, **params):
    X, y = data
    return _regressor_outputs(LaplaceMLPRegressor(**{**SMALL, **params}).fit(X, y), X)


def _streamed_regressor(data, **params):
    X, y = data
    model = LaplaceMLPRegressor(**{**SMALL, **params})
    for rows in np.array_split(np.arange(len(y)), 3):
        model.partial_fit(X[rows], y[rows])
    return _regressor_outputs(model, X)


def _classifier(data, **params):
    X, y = data
    return _classifier_outputs(LaplaceMLPClassifier(**{**SMALL, **params}).fit(X, y), X)


def _streamed_classifier(data, **params):
    X, y = data
    model = LaplaceMLPClassifier(**{**SMALL, **params})
    for rows in np.array_split(np.arange(len(y)), 2):
        model.partial_fit(X[rows], y[rows], classes=np.unique(y))
    return _classifier_outputs(model, X)


CONFIGURATIONS = {
    # The regressor's defaults: GGN-VI, full GGN, an ensemble of three, refinement steps.
    "regressor_default": lambda: _regressor(regression_data()),
    "regressor_laplace_full": lambda: _regressor(
        regression_data(), inference="laplace", ensemble_size=1
    ),
    "regressor_laplace_kron_layerwise": lambda: _regressor(
        regression_data(),
        inference="laplace",
        hessian_structure="kron",
        prior_structure="layerwise",
        ensemble_size=1,
    ),
    "regressor_vi_diag": lambda: _regressor(
        regression_data(), inference="ggn-vi", hessian_structure="diag", ensemble_size=1
    ),
    "regressor_last_layer": lambda: _regressor(
        regression_data(), subset_of_weights="last_layer", ensemble_size=1
    ),
    "regressor_heteroscedastic": lambda: _regressor(
        regression_data(), noise="heteroscedastic", ensemble_size=1
    ),
    "regressor_multi_output": lambda: _regressor(regression_data(2), ensemble_size=1),
    "regressor_posthoc_fixed_prior": lambda: _regressor(
        regression_data(), evidence_tuning="posthoc", prior_precision=2.0, ensemble_size=2
    ),
    "regressor_partial_fit_laplace": lambda: _streamed_regressor(
        regression_data(), inference="laplace"
    ),
    "regressor_partial_fit_default": lambda: _streamed_regressor(regression_data()),
    "classifier_default": lambda: _classifier(classification_data()),
    "classifier_kron_3_classes": lambda: _classifier(
        classification_data(3), hessian_structure="kron"
    ),
    "classifier_vi": lambda: _classifier(classification_data(3), inference="ggn-vi"),
    "classifier_diag_mc": lambda: _classifier(
        classification_data(3), hessian_structure="diag", link_approx="mc"
    ),
    "classifier_bridge_last_layer": lambda: _classifier(
        classification_data(3), link_approx="bridge", subset_of_weights="last_layer"
    ),
    "classifier_partial_fit": lambda: _streamed_classifier(classification_data()),
}


def compute(name):
    """The outputs of one configuration, as a dict of float64 arrays."""
    torch.set_num_threads(1)
    return {
        key: np.asarray(value, dtype=np.float64) for key, value in CONFIGURATIONS[name]().items()
    }


if __name__ == "__main__":
    arrays = {
        f"{name}/{key}": value for name in CONFIGURATIONS for key, value in compute(name).items()
    }
    np.savez(OUTPUTS, **arrays)
    print(f"recorded {len(CONFIGURATIONS)} configurations, {len(arrays)} arrays, in {OUTPUTS}")

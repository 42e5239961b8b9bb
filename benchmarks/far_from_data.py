"""Confidence far from the data, and held-out classes: does the classifier stay humble?

For each classification set (StandardScaler, 70/30 stratified split, seed 0), side by side:
the default ``LaplaceMLPClassifier``, the same without its far-field prior
(``far_field_variance=0``) and with ``posterior_temperature=1.0`` (the Laplace posterior
itself), and scikit-learn's ``MLPClassifier`` defaults. Columns:

- test NLL and the mean max predictive probability on the test rows ("in data");
- the mean max probability on the test rows scaled by 10 ("10 × rows") and on 1,000 uniform
  draws from [−10, 10]^d ("uniform"), both in the standardised space; "far" is their mean;
- for digits, trained on the classes 0–4 only: the AUROC of 1 − max probability separating the
  test rows of 5–9 (unseen classes) from those of 0–4.

    python benchmarks/far_from_data.py     # all sets; --no-write prints only
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLASSIFICATION_SETS, load_uci_classification, write_section

from skbnn import LaplaceMLPClassifier

SEED = 0
MODELS = {
    "skbnn default": lambda: LaplaceMLPClassifier(random_state=SEED),
    "skbnn, no far field": lambda: LaplaceMLPClassifier(far_field_variance=0.0, random_state=SEED),
    "skbnn T = 1": lambda: LaplaceMLPClassifier(posterior_temperature=1.0, random_state=SEED),
    "MLPClassifier": lambda: MLPClassifier(random_state=SEED),
}


def standardised_split(X, y):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=SEED
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def confidence(model, X):
    return float(model.predict_proba(X).max(axis=1).mean())


def far_from_data_row(name):
    X, y = load_uci_classification(name)
    X_train, X_test, y_train, y_test = standardised_split(X, y)
    uniform = np.random.RandomState(SEED).uniform(-10, 10, (1000, X.shape[1]))
    rows = {}
    for label, make in MODELS.items():
        model = make().fit(X_train, y_train)
        scaled, noise = confidence(model, 10 * X_test), confidence(model, uniform)
        rows[label] = {
            "nll": log_loss(y_test, model.predict_proba(X_test), labels=model.classes_),
            "in data": confidence(model, X_test),
            "10 × rows": scaled,
            "uniform": noise,
            "far": (scaled + noise) / 2,
        }
        if hasattr(model, "posterior_temperature_"):
            rows[label]["T"] = float(model.posterior_temperature_)
    return rows


def held_out_class_auroc():
    """Digits 0–4 in training; AUROC of 1 − max probability for test rows of 5–9 vs 0–4."""
    X, y = load_uci_classification("digits")
    X_train, X_test, y_train, y_test = standardised_split(X, y)
    seen = y_train < 5
    unseen_test = y_test >= 5
    scores = {}
    for label, make in MODELS.items():
        model = make().fit(X_train[seen], y_train[seen])
        uncertainty = 1 - model.predict_proba(X_test).max(axis=1)
        scores[label] = float(roc_auc_score(unseen_test, uncertainty))
    return scores


def table(results, aurocs):
    columns = ["nll", "in data", "10 × rows", "uniform", "far"]
    lines = [
        "| data | model | T | test NLL | in data | 10 × rows | uniform | far (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for label, row in rows.items():
            temperature = f"{row['T']:.3g}" if "T" in row else "–"
            cells = " | ".join(f"{row[c]:.3f}" for c in columns)
            lines.append(f"| {name} | {label} | {temperature} | {cells} |")
    lines += ["", "Held-out classes (digits, trained on 0–4): AUROC of 1 − max probability", ""]
    lines += ["| model | AUROC |", "|---|---|"]
    lines += [f"| {label} | {auroc:.3f} |" for label, auroc in aurocs.items()]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=CLASSIFICATION_SETS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.set_num_threads(1)
    with threadpool_limits(1):
        results = {name: far_from_data_row(name) for name in args.datasets}
        aurocs = held_out_class_auroc()
    command = shlex.join(["python", "benchmarks/far_from_data.py", *sys.argv[1:]])
    body = (
        f"`{command}` ({platform.machine()}, torch {torch.__version__}, 1 thread). "
        "Mean max predictive probability; T is the fitted posterior temperature. Methods: see "
        "the docstring of benchmarks/far_from_data.py.\n\n" + table(results, aurocs)
    )
    print(body)
    if not args.no_write:
        write_section("Far from the data: confidence out of distribution", body)


if __name__ == "__main__":
    main()

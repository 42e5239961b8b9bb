"""Reliability diagrams and expected calibration error (ECE) on data that ships with scikit-learn.

A classifier is calibrated when, among the test points it predicts with confidence 0.8, about 80%
are right. We compare LaplaceMLPClassifier (default settings: evidence-tuned prior, probit
predictive) with scikit-learn's MLPClassifier (the same kind of network, MAP softmax, default
weight decay) and GaussianProcessClassifier (RBF kernel with its scale and length-scale fitted by
the marginal likelihood) on two datasets: breast cancer (binary) and digits (10 classes), each with
300 training rows.

The top row plots accuracy against confidence per bin (the diagonal is perfect calibration; below it
is over-confident, above it under-confident); the bottom row shows how many test points fall in
each bin. The printed table adds accuracy, log loss and ECE (``skbnn.metrics``).

Environment: ``SKBNN_EXAMPLE_SMOKE=1`` trains shorter; ``SKBNN_EXAMPLE_OUTPUT`` is the folder for
the PNG (default: this folder).
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF, ConstantKernel
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbnn import LaplaceMLPClassifier
from skbnn.metrics import expected_calibration_error

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)
N_BINS = 10
N_TRAIN = 300


def models(n_features):
    max_iter = 300 if SMOKE else "auto"
    return {
        "LaplaceMLPClassifier": LaplaceMLPClassifier(max_iter=max_iter, random_state=0),
        "MLPClassifier (MAP)": MLPClassifier(max_iter=2000, random_state=0),
        "GaussianProcessClassifier": GaussianProcessClassifier(
            ConstantKernel() * RBF(np.sqrt(n_features)), random_state=0
        ),
    }


def reliability(y_true, proba):
    """Per equal-width confidence bin: mean confidence, accuracy and count (NaN when empty)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    bins = np.minimum((confidence * N_BINS).astype(int), N_BINS - 1)
    counts = np.bincount(bins, minlength=N_BINS)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(bins, confidence, N_BINS) / counts
        accuracy = np.bincount(bins, correct, N_BINS) / counts
    return mean_conf, accuracy, counts


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # small networks: one thread beats several fighting over the cores
    datasets = {"breast cancer": load_breast_cancer, "digits": load_digits}
    fig, axes = plt.subplots(
        2, 2, figsize=(11, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    centers = (np.arange(N_BINS) + 0.5) / N_BINS
    width = 1 / N_BINS / 4
    print(f"{'dataset':<14} {'model':<26} {'time s':>6} {'accuracy':>8} {'log loss':>8} {'ECE':>6}")
    for column, (data_name, loader) in enumerate(datasets.items()):
        X, y = loader(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, train_size=N_TRAIN, stratify=y, random_state=0
        )
        top, bottom = axes[0, column], axes[1, column]
        top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        for i, (name, model) in enumerate(models(X.shape[1]).items()):
            pipe = make_pipeline(StandardScaler(), model)
            start = time.perf_counter()
            proba = pipe.fit(X_train, y_train).predict_proba(X_test)
            seconds = time.perf_counter() - start
            # Labels are 0..K-1 here, so they index the columns of predict_proba directly.
            ece = expected_calibration_error(y_test, proba, n_bins=N_BINS)
            print(
                f"{data_name:<14} {name:<26} {seconds:6.1f} "
                f"{accuracy_score(y_test, proba.argmax(1)):8.3f} {log_loss(y_test, proba):8.3f} "
                f"{ece:6.3f}"
            )
            mean_conf, accuracy, counts = reliability(y_test, proba)
            shown = counts > 0
            top.plot(
                mean_conf[shown],
                accuracy[shown],
                "o-",
                color=f"C{i}",
                label=f"{name}, ECE {ece:.3f}",
            )
            bottom.bar(centers + (i - 1) * width, counts, width=width, color=f"C{i}")
        top.set_title(f"{data_name}: {N_TRAIN} training rows, {len(y_test)} test rows")
        top.set_ylabel("accuracy in bin")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.legend(loc="upper left", fontsize=8)
        bottom.set_yscale("log")
        bottom.set_ylabel("test points")
        bottom.set_xlabel("confidence (top-class probability)")
    fig.suptitle("Reliability diagrams")
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "calibration.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

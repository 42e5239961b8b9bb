"""Knowing what it does not know: uncertainty away from the training data (two moons).

A network trained by MAP keeps predicting with high confidence far from anything it has seen: its
softmax entropy is low everywhere except on the decision boundary. LaplaceMLPClassifier's
``predict_uncertainty`` splits the predictive entropy H[p̄] of the Bayesian predictive into the
expected entropy E H[p] (aleatoric: classes that overlap) and the mutual information between the
label and the weights (epistemic: the model's ignorance), which grows away from the data.

We train both on the two moons and map, over a wide square around the data: the entropy of
scikit-learn's MLPClassifier (MAP, the same ReLU network), the Laplace predictive entropy, and the
Laplace mutual information. The printed table compares the averages on the training inputs with
those on a ring far from the data.

The classifier is given ``posterior_temperature=1.0``, the Laplace posterior itself. By default it
predicts with a colder posterior, chosen by the leave-one-out log-likelihood of the training rows,
which calibrates the probabilities near the data but shrinks the spread far from it (here the
default picks T = 0.1).

Environment: ``SKBNN_EXAMPLE_SMOKE=1`` trains shorter on a coarser grid; ``SKBNN_EXAMPLE_OUTPUT``
is the folder for the PNG (default: this folder).
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_moons
from sklearn.neural_network import MLPClassifier

from skbnn import LaplaceMLPClassifier

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)


def entropy(proba):
    """Entropy in nats of each row of probabilities."""
    return -np.sum(proba * np.log(np.clip(proba, 1e-300, None)), axis=1)


def laplace_uncertainty(clf, X, chunk=2000):
    """predict_uncertainty in chunks (it draws n_samples logits per point)."""
    parts = [clf.predict_uncertainty(X[i : i + chunk]) for i in range(0, len(X), chunk)]
    return {
        key: np.concatenate([p[key] for p in parts])
        for key in ("predictive_entropy", "mutual_information")
    }


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # small networks: one thread beats several fighting over the cores
    X, y = make_moons(n_samples=200, noise=0.15, random_state=0)
    start = time.perf_counter()
    clf = LaplaceMLPClassifier(
        max_iter=500 if SMOKE else "auto", posterior_temperature=1.0, random_state=0
    ).fit(X, y)
    print(
        f"LaplaceMLPClassifier: fit in {time.perf_counter() - start:.1f} s, "
        f"δ = {clf.prior_precision_:.3f}, training accuracy {clf.score(X, y):.3f}"
    )
    # The same network and Adam learning rate as LaplaceMLPClassifier's defaults.
    mlp = MLPClassifier(
        (50,), activation="relu", learning_rate_init=3e-3, max_iter=2000, random_state=0
    ).fit(X, y)
    print(f"MLPClassifier (MAP):  training accuracy {mlp.score(X, y):.3f}")

    n_grid = 80 if SMOKE else 150
    x1, x2 = np.meshgrid(np.linspace(-6, 7, n_grid), np.linspace(-6, 6.5, n_grid))
    grid = np.column_stack([x1.ravel(), x2.ravel()])
    laplace = laplace_uncertainty(clf, grid)
    maps = {
        "MAP MLPClassifier: softmax entropy": entropy(mlp.predict_proba(grid)),
        "Laplace: predictive entropy H[p̄]": laplace["predictive_entropy"],
        "Laplace: mutual information (epistemic)": laplace["mutual_information"],
    }

    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    ring = np.column_stack([0.5 + 5 * np.cos(angles), 0.25 + 5 * np.sin(angles)])
    on_train, on_ring = laplace_uncertainty(clf, X), laplace_uncertainty(clf, ring)
    print(f"{'mean over (nats)':<26} {'training inputs':>15} {'ring of radius 5':>16}")
    rows = [
        ("MAP softmax entropy", entropy(mlp.predict_proba(X)), entropy(mlp.predict_proba(ring))),
        ("Laplace pred. entropy", on_train["predictive_entropy"], on_ring["predictive_entropy"]),
        ("Laplace mutual info.", on_train["mutual_information"], on_ring["mutual_information"]),
    ]
    for name, inside, outside in rows:
        print(f"{name:<26} {inside.mean():15.3f} {outside.mean():16.3f}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True, sharey=True)
    for ax, (title, values) in zip(axes, maps.items(), strict=True):
        # One colour scale for all three: from 0 to log 2, the entropy of a coin flip.
        levels = np.linspace(0, np.log(2), 22)
        image = ax.contourf(x1, x2, values.reshape(x1.shape), levels=levels, cmap="magma")
        fig.colorbar(image, ax=ax, shrink=0.85, label="nats", format="%.2f")
        ax.scatter(*X[y == 0].T, s=6, c="C0", edgecolors="none")
        ax.scatter(*X[y == 1].T, s=6, c="C2", edgecolors="none")
        ax.plot(*ring.T, "w:", lw=1)
        ax.set_title(title)
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.set_aspect("equal")
    fig.suptitle("Uncertainty away from the training data (dotted: the ring of the table)")
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "out_of_distribution.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

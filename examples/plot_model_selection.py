"""Choosing the architecture by the evidence instead of cross-validation.

The Laplace log marginal likelihood (``log_marginal_likelihood_value_``) scores how well a model
explains the training data, penalised for its complexity, so one fit per candidate is enough to
compare candidates: no held-out data and no refits. Here we choose ``hidden_layer_sizes`` for
LaplaceMLPRegressor on Friedman's #1 problem (10 inputs, 5 of them relevant, nonlinear) both ways:

* by the evidence, fitting each candidate once on all training rows;
* by 5-fold GridSearchCV with ``skbnn.metrics.log_likelihood_scorer``: the Gaussian
  log-likelihood of the held-out fold under the predictive ``predict(X, return_std=True)`` (the
  same quantity we test on), plus the refit.

We print the time of each search, the candidate each one chose, and that candidate's test
log-likelihood on 2000 fresh points; the figure shows all three scores per candidate.

Environment: ``SKBNN_EXAMPLE_SMOKE=1`` trains shorter; ``SKBNN_EXAMPLE_OUTPUT`` is the folder for
the PNG (default: this folder).
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbnn import LaplaceMLPRegressor
from skbnn.metrics import gaussian_log_likelihood, log_likelihood_scorer

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)
CANDIDATES = [(), (5,), (50,)] if SMOKE else [(), (5,), (20,), (50,), (20, 20)]


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # small networks: one thread beats several fighting over the cores
    n_train = 400
    X, y = make_friedman1(n_samples=n_train, noise=1.0, random_state=0)
    X_test, y_test = make_friedman1(n_samples=2000, noise=1.0, random_state=1)
    max_iter = 400 if SMOKE else "auto"

    # One network per candidate: the evidence is a network's, so that is what it selects (and
    # cross-validation then scores the same models).
    def model(hidden_layer_sizes):
        return make_pipeline(
            StandardScaler(),
            LaplaceMLPRegressor(
                hidden_layer_sizes, max_iter=max_iter, ensemble_size=1, random_state=0
            ),
        )

    def test_log_likelihood(pipe):
        mean, std = pipe.predict(X_test, return_std=True)
        return gaussian_log_likelihood(y_test, mean, std)

    # Evidence: one fit per candidate on all training rows.
    start = time.perf_counter()
    fitted = {sizes: model(sizes).fit(X, y) for sizes in CANDIDATES}
    evidence_seconds = time.perf_counter() - start
    evidence = {s: p[-1].log_marginal_likelihood_value_ / n_train for s, p in fitted.items()}
    evidence_choice = max(evidence, key=evidence.get)

    # Cross-validation: 5 fits per candidate, then a refit of the winner on all rows.
    start = time.perf_counter()
    search = GridSearchCV(
        model(()),
        {"laplacemlpregressor__hidden_layer_sizes": CANDIDATES},
        scoring=log_likelihood_scorer,
        cv=KFold(5, shuffle=True, random_state=0),
    ).fit(X, y)
    cv_seconds = time.perf_counter() - start
    cv_score = dict(zip(CANDIDATES, search.cv_results_["mean_test_score"], strict=True))
    cv_choice = search.best_params_["laplacemlpregressor__hidden_layer_sizes"]

    test_ll = {sizes: test_log_likelihood(pipe) for sizes, pipe in fitted.items()}
    print(f"Friedman #1, {n_train} training rows, 2000 test rows")
    print(f"{'hidden layers':<14} {'evidence/N':>10} {'5-fold CV LL':>12} {'test LL':>8}")
    for sizes in CANDIDATES:
        print(
            f"{sizes!s:<14} {evidence[sizes]:10.3f} {cv_score[sizes]:12.3f} {test_ll[sizes]:8.3f}"
        )
    print(
        f"evidence chose {evidence_choice} in {evidence_seconds:5.1f} s "
        f"({len(CANDIDATES)} fits): test LL {test_ll[evidence_choice]:.3f}"
    )
    print(
        f"GridSearchCV chose {cv_choice} in {cv_seconds:5.1f} s ({5 * len(CANDIDATES) + 1} fits): "
        f"test LL {test_log_likelihood(search.best_estimator_):.3f}"
    )

    labels = [str(s) for s in CANDIDATES]
    panels = [
        (f"log evidence / N ({evidence_seconds:.0f} s)", evidence, evidence_choice, "C0"),
        (f"5-fold CV log-likelihood ({cv_seconds:.0f} s)", cv_score, cv_choice, "C1"),
        ("test log-likelihood (2000 new points)", test_ll, max(test_ll, key=test_ll.get), "C2"),
    ]
    ylabels = [
        "log evidence per row (nats)",
        "mean held-out log-likelihood (nats)",
        "mean test log-likelihood (nats)",
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (title, scores, choice, color), ylabel in zip(axes, panels, ylabels, strict=True):
        values = [scores[s] for s in CANDIDATES]
        ax.plot(labels, values, "o-", color=color, ms=8)
        ax.plot(str(choice), scores[choice], "o", ms=18, mfc="none", mec="k", mew=2)
        ax.set_title(title)
        ax.set_xlabel("hidden_layer_sizes")
        ax.set_ylabel(ylabel)
    fig.suptitle("Model selection on Friedman #1 (ringed: each criterion's choice; test: the best)")
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "model_selection.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

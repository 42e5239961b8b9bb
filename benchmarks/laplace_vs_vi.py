"""Laplace vs GGN-VI on all of ../shared/data: test LL / NLL / ECE and fit time, side by side.

Regression: the UCI splits (StandardScaler + estimator, test RMSE and mean test log-likelihood in
the units of y). Classification: the Immer et al. (2021) protocol (70/15/15 stratified splits,
StandardScaler), test NLL, ECE (10 bins) and accuracy. Each split fits both inference methods
with the same seed in the same process, so the fit-time ratio is measured side by side. Writes
sections of benchmarks/RESULTS.md.

    python benchmarks/laplace_vs_vi.py --splits 5 --n-jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.stats import norm
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLASSIFICATION_SEEDS,
    CLASSIFICATION_SETS,
    REGRESSION_SETS,
    classification_split,
    load_uci_classification,
    load_uci_regression,
    mean_se,
    write_section,
)

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor
from skbnn.metrics import expected_calibration_error

METHODS = ("laplace", "ggn-vi")


def regression_split(dataset, split, threads):
    torch.set_num_threads(threads)
    X_train, y_train, X_test, y_test = load_uci_regression(dataset, split)
    out = {}
    for inference in METHODS:
        model = make_pipeline(
            StandardScaler(), LaplaceMLPRegressor(inference=inference, random_state=split)
        )
        start = time.perf_counter()
        model.fit(X_train, y_train)
        elapsed = time.perf_counter() - start
        mean, std = model.predict(X_test, return_std=True)
        out[inference] = {
            "ll": float(norm.logpdf(y_test, mean, std).mean()),
            "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
            "time": elapsed,
        }
    return out


def classification_split_run(dataset, seed, threads):
    torch.set_num_threads(threads)
    X, y = load_uci_classification(dataset)
    X_train, y_train, X_test, y_test, _, _ = classification_split(X, y, seed)
    out = {}
    for inference in METHODS:
        model = make_pipeline(
            StandardScaler(), LaplaceMLPClassifier(inference=inference, random_state=seed)
        )
        start = time.perf_counter()
        model.fit(X_train, y_train)
        elapsed = time.perf_counter() - start
        proba = model.predict_proba(X_test)
        labels = np.searchsorted(model[-1].classes_, y_test)
        out[inference] = {
            "nll": float(log_loss(y_test, proba, labels=model[-1].classes_)),
            "ece": expected_calibration_error(labels, proba),
            "acc": float(np.mean(model.predict(X_test) == y_test)),
            "time": elapsed,
        }
    return out


def summarise(results, metric):
    return {m: mean_se([r[m][metric] for r in results]) for m in METHODS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--regression", nargs="*", default=REGRESSION_SETS)
    parser.add_argument("--classification", nargs="*", default=CLASSIFICATION_SETS)
    args = parser.parse_args(argv)
    threads = 1 if args.n_jobs > 1 else torch.get_num_threads()
    command = " ".join(["python benchmarks/laplace_vs_vi.py", *(argv or sys.argv[1:])])

    rows, wins = [], 0
    for dataset in args.regression:
        results = Parallel(n_jobs=args.n_jobs)(
            delayed(regression_split)(dataset, s, threads) for s in range(args.splits)
        )
        ll, rmse, t = (summarise(results, k) for k in ("ll", "rmse", "time"))
        ratio = np.mean([r["ggn-vi"]["time"] / r["laplace"]["time"] for r in results])
        ok = ll["ggn-vi"][0] >= ll["laplace"][0] - ll["laplace"][1]
        wins += ok
        rows.append(
            f"| {dataset} | {ll['laplace'][0]:.3f} ± {ll['laplace'][1]:.3f} "
            f"| {ll['ggn-vi'][0]:.3f} ± {ll['ggn-vi'][1]:.3f} | {rmse['laplace'][0]:.3f} "
            f"| {rmse['ggn-vi'][0]:.3f} | {t['laplace'][0]:.1f} | {t['ggn-vi'][0]:.1f} "
            f"| {ratio:.2f} | {'yes' if ok else 'no'} |"
        )
        print(rows[-1], flush=True)
    if rows:
        write_section(
            "Laplace vs GGN-VI: UCI regression",
            f"`{command}` — default estimators in a StandardScaler pipeline, {args.splits} "
            f"splits, mean ± SE; fit times in seconds ({args.n_jobs} job(s) × {threads} "
            f"thread(s)); VI/Laplace is the mean per-split ratio of fit times.\n\n"
            "| dataset | LL Laplace | LL GGN-VI | RMSE Laplace | RMSE GGN-VI | fit Laplace "
            "| fit GGN-VI | VI/Laplace time | VI within 1 SE or better |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nGGN-VI within one SE of Laplace or better on {wins} of {len(rows)} sets.",
        )

    rows = []
    seeds = CLASSIFICATION_SEEDS[: args.splits]
    for dataset in args.classification:
        results = Parallel(n_jobs=args.n_jobs)(
            delayed(classification_split_run)(dataset, s, threads) for s in seeds
        )
        nll, ece, acc, t = (summarise(results, k) for k in ("nll", "ece", "acc", "time"))
        rows.append(
            f"| {dataset} | {nll['laplace'][0]:.3f} ± {nll['laplace'][1]:.3f} "
            f"| {nll['ggn-vi'][0]:.3f} ± {nll['ggn-vi'][1]:.3f} | {ece['laplace'][0]:.3f} "
            f"| {ece['ggn-vi'][0]:.3f} | {acc['laplace'][0]:.3f} | {acc['ggn-vi'][0]:.3f} "
            f"| {t['laplace'][0]:.1f} | {t['ggn-vi'][0]:.1f} |"
        )
        print(rows[-1], flush=True)
    if rows:
        write_section(
            "Laplace vs GGN-VI: UCI classification",
            f"`{command}` — default estimators in a StandardScaler pipeline, seeds "
            f"{seeds} of the Immer et al. protocol (70/15/15 stratified), mean ± SE.\n\n"
            "| dataset | NLL Laplace | NLL GGN-VI | ECE Laplace | ECE GGN-VI | acc Laplace "
            "| acc GGN-VI | fit Laplace (s) | fit GGN-VI (s) |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows),
        )


if __name__ == "__main__":
    main()

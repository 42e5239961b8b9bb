"""UCI regression benchmark: test RMSE and log-likelihood of skbnn on the standard splits.

Protocol (../shared/data/uci_regression/README.md): StandardScaler + estimator in a Pipeline fitted
on each training split; test RMSE and mean per-point test log-likelihood in the original units of
y; mean ± standard error over splits. Writes a section of benchmarks/RESULTS.md.

    python benchmarks/uci_regression.py                      # default estimator, 5 splits
    python benchmarks/uci_regression.py --splits 20 --n-jobs 2
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.stats import norm
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import REGRESSION_SETS, load_uci_regression, mean_se, n_splits, write_section

from skbnn import LaplaceMLPRegressor

ESTIMATORS = {
    "skbnn-default": lambda seed: LaplaceMLPRegressor(random_state=seed),
    "skbnn-posthoc": lambda seed: LaplaceMLPRegressor(evidence_tuning="posthoc", random_state=seed),
    "skbnn-last-layer": lambda seed: LaplaceMLPRegressor(
        subset_of_weights="last_layer", random_state=seed
    ),
    "skbnn-diag": lambda seed: LaplaceMLPRegressor(hessian_structure="diag", random_state=seed),
    "skbnn-heteroscedastic": lambda seed: LaplaceMLPRegressor(
        noise="heteroscedastic", random_state=seed
    ),
}


def run_split(estimator_name: str, dataset: str, split: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    X_train, y_train, X_test, y_test = load_uci_regression(dataset, split)
    model = make_pipeline(StandardScaler(), ESTIMATORS[estimator_name](split))
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    mean, std = model.predict(X_test, return_std=True)
    total_time = time.perf_counter() - start
    reg = model[-1]
    return {
        "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
        "ll": float(np.mean(norm.logpdf(y_test, mean, std))),
        "fit_time": fit_time,
        "total_time": total_time,
        "prior_precision": reg.prior_precision_,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", default="skbnn-default", choices=sorted(ESTIMATORS))
    parser.add_argument("--datasets", nargs="*", default=REGRESSION_SETS)
    parser.add_argument("--splits", type=int, default=5, help="first N splits of each set")
    parser.add_argument("--n-jobs", type=int, default=1, help="splits fitted in parallel")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    threads = 1 if args.n_jobs > 1 else torch.get_num_threads()
    rows = []
    for dataset in args.datasets:
        splits = range(min(args.splits, n_splits(dataset)))
        results = Parallel(n_jobs=args.n_jobs)(
            delayed(run_split)(args.estimator, dataset, s, threads) for s in splits
        )
        rmse, rmse_se = mean_se([r["rmse"] for r in results])
        ll, ll_se = mean_se([r["ll"] for r in results])
        fit = np.mean([r["fit_time"] for r in results])
        total = np.mean([r["total_time"] for r in results])
        row = (
            f"| {dataset} | {len(results)} | {rmse:.3f} ± {rmse_se:.3f} | {ll:.3f} ± {ll_se:.3f} "
            f"| {fit:.1f} | {total:.1f} |"
        )
        print(row, flush=True)
        rows.append(row)
    header = (
        "| dataset | splits | test RMSE | test LL | fit time (s) | fit + predict (s) |\n"
        "|---|---|---|---|---|---|"
    )
    command = " ".join(["python benchmarks/uci_regression.py", *(argv or sys.argv[1:])])
    body = (
        f"`{command}` — `{args.estimator}` in a StandardScaler pipeline; mean ± SE over splits; "
        f"LL is the mean per-point test log-likelihood in the original units. "
        f"Machine: {platform.machine()}, torch {torch.__version__}, {args.n_jobs} job(s), "
        f"{threads} torch thread(s) each.\n\n{header}\n" + "\n".join(rows)
    )
    if not args.no_write:
        write_section(f"UCI regression: {args.estimator}", body)


if __name__ == "__main__":
    main()

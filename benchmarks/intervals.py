"""Prediction intervals at 90%: coverage and mean width on the UCI regression splits.

For each split, side by side on the same rows (StandardScaler first everywhere):

- ``skbnn bayes``: the default ``LaplaceMLPRegressor``'s ``predict_interval(X, 0.9)``, the
  predictive's own central interval;
- ``skbnn loo``: the same fitted model's ``predict_interval(X, 0.9, method="loo")``, rescaled by
  the leave-one-out residuals of the training rows (no refit, no rows held out);
- ``skbnn conformal``: split conformal, the default fitted on 80% of the training rows,
  ``conformalize``-d on the other 20% (the same split as MAPIE's), then
  ``predict_interval(X, 0.9, method="conformal")``;
- ``MAPIE split``: MAPIE's ``SplitConformalRegressor`` (absolute residuals) around scikit-learn's
  ``MLPRegressor`` (standardised y, ``max_iter=2000`` as benchmarks/uci_regression.py), fitted
  on 80% of the training rows and conformalised on the other 20%;
- ``MAPIE CV+``: MAPIE's ``CrossConformalRegressor`` (CV+, 5 folds) around the same MLP.

Coverage is the share of test rows inside the interval, width the mean of upper − lower in the
units of y; both averaged over the splits (± their standard error).

    python benchmarks/intervals.py --splits 20 --n-jobs 2   # needs the "bench" extra (MAPIE)

``--runners`` fits some of them only (skbnn-full: bayes and loo; skbnn-split; mapie), merging
their records into ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REGRESSION_SETS, load_uci_regression, mean_se, n_splits, write_section

from skbnn import LaplaceMLPRegressor

CONFIDENCE = 0.9
METHODS = ["skbnn bayes", "skbnn loo", "skbnn conformal", "MAPIE split", "MAPIE CV+"]


def _mlp(split):
    mlp = make_pipeline(StandardScaler(), MLPRegressor(max_iter=2000, random_state=split))
    return TransformedTargetRegressor(mlp, transformer=StandardScaler())


def _calibration_split(X, y, split):
    return train_test_split(X, y, test_size=0.2, random_state=split)


def _skbnn(split):
    return make_pipeline(StandardScaler(), LaplaceMLPRegressor(random_state=split))


def _skbnn_full(X, y, X_test, split):
    model = _skbnn(split).fit(X, y)
    X_test = model[0].transform(X_test)
    return {
        "skbnn bayes": model[-1].predict_interval(X_test, CONFIDENCE),
        "skbnn loo": model[-1].predict_interval(X_test, CONFIDENCE, method="loo"),
    }


def _skbnn_split(X, y, X_test, split):
    X_fit, X_cal, y_fit, y_cal = _calibration_split(X, y, split)
    model = _skbnn(split).fit(X_fit, y_fit)
    model[-1].conformalize(model[0].transform(X_cal), y_cal)
    interval = model[-1].predict_interval(model[0].transform(X_test), CONFIDENCE, "conformal")
    return {"skbnn conformal": interval}


def _mapie(X, y, X_test, split):
    from mapie.regression import CrossConformalRegressor, SplitConformalRegressor

    X_fit, X_cal, y_fit, y_cal = _calibration_split(X, y, split)
    splitter = SplitConformalRegressor(_mlp(split), confidence_level=CONFIDENCE, prefit=False)
    splitter.fit(X_fit, y_fit).conformalize(X_cal, y_cal)
    cross = CrossConformalRegressor(
        _mlp(split), confidence_level=CONFIDENCE, cv=5, random_state=split
    )
    cross.fit_conformalize(X, y)
    return {
        "MAPIE split": splitter.predict_interval(X_test)[1][:, :, 0].T,
        "MAPIE CV+": cross.predict_interval(X_test)[1][:, :, 0].T,
    }


# The fits of one split, and the methods each gives.
RUNNERS = {"skbnn-full": _skbnn_full, "skbnn-split": _skbnn_split, "mapie": _mapie}


def run_split(name, split, runners):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y, X_test, y_test = load_uci_regression(name, split)
    intervals = {}
    with threadpool_limits(1):
        for runner in runners:
            intervals.update(RUNNERS[runner](X, y, X_test, split))
    record = {"dataset": name, "split": split}
    for method, (lower, upper) in intervals.items():
        record[method] = {
            "coverage": float(np.mean((lower <= y_test) & (y_test <= upper))),
            "width": float(np.mean(upper - lower)),
        }
    print(name, split, {m: round(record[m]["coverage"], 3) for m in intervals}, flush=True)
    return record


def _merged(path, fitted):
    """The records in ``path`` with the methods just fitted added (or replaced) per split."""
    records = {}
    if path.exists():
        records = {(r["dataset"], r["split"]): r for r in json.loads(path.read_text())}
    for record in fitted:
        records.setdefault((record["dataset"], record["split"]), {}).update(record)
    return list(records.values())


def table(records):
    header = " | ".join(f"coverage {m} | width {m}" for m in METHODS)
    rows = [f"| dataset | splits | {header} |", "|---" * (2 + 2 * len(METHODS)) + "|"]
    for name in dict.fromkeys(r["dataset"] for r in records):
        mine = [r for r in records if r["dataset"] == name]
        cells = []
        for method in METHODS:
            for key in ("coverage", "width"):
                values = [r[method][key] for r in mine if method in r]
                mean, se = mean_se(values) if values else (np.nan, np.nan)
                cells.append(f"{mean:.3f} ± {se:.3f}")
        rows.append(f"| {name} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=REGRESSION_SETS)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("intervals.json"))
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    jobs = [(n, s) for n in args.datasets for s in range(min(args.splits, n_splits(n)))]
    fitted = Parallel(n_jobs=args.n_jobs)(delayed(run_split)(n, s, args.runners) for n, s in jobs)
    records = _merged(args.json, fitted)
    args.json.write_text(json.dumps(records, indent=1))
    command = shlex.join(["python", "benchmarks/intervals.py", *sys.argv[1:]])
    body = (
        f"`{command}` ({platform.machine()}, torch {torch.__version__}, {args.n_jobs} job(s) × "
        f"1 thread). Target confidence {CONFIDENCE}; mean ± SE over splits; width in the units "
        "of y. Methods: see the docstring of benchmarks/intervals.py.\n\n" + table(records)
    )
    print(body)
    if not args.no_write:
        write_section("Conformal intervals: coverage and width at 90%", body)


if __name__ == "__main__":
    main()

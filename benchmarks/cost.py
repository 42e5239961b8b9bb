"""The cost of a default fit, side by side with scikit-learn's defaults, and where its time goes.

For each data set, in one process and one thread: the default ``LaplaceMLPRegressor`` (or
``LaplaceMLPClassifier``) in a ``StandardScaler`` pipeline, scikit-learn's ``MLPRegressor``
(on standardised y) or ``MLPClassifier`` defaults, and for regression a
``GaussianProcessRegressor`` (constant × RBF + white noise, as benchmarks/uci_regression.py) —
fit times on the same training rows, repeated and the median kept. Then one profiled default
fit per data set (cProfile), its time split into the phases of the fit recipe
(:mod:`skbnn._fitting`): training epochs, online evidence refreshes, the post-hoc Laplace step,
refinement, GGN-VI, the classifier's leave-one-out temperature, and the rest (over all networks
of an ensemble).

    python benchmarks/cost.py                 # all sets, writes a section of RESULTS.md
    python benchmarks/cost.py --sets yacht    # a subset; --no-write prints only
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLASSIFICATION_SEEDS,
    classification_split,
    load_uci_classification,
    load_uci_regression,
    write_section,
)

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

REGRESSION = ["bostonHousing", "concrete", "yacht"]
CLASSIFICATION = ["breast_cancer", "digits"]
# Phases of a fit: (file, function, calling function or None for any caller) whose cumulative
# time they are; what is left of the fit's time is "other".
PHASES = {
    "training epochs": ("_training.py", "_steps", None),
    "online evidence refreshes": ("_fitting.py", "refresh_evidence", None),
    "post-hoc GGN + evidence": ("_fitting.py", "laplace_and_evidence", "fit_trained_network"),
    "refinement": ("_fitting.py", "refine_towards_map", None),
    "GGN-VI": ("_variational.py", "fit_glm_vi", None),
    "LOO temperature": ("classifier.py", "_fit_predictive", None),
}


def data(name):
    if name in REGRESSION:
        X, y, _, _ = load_uci_regression(name, 0)
        return X, y
    X, y = load_uci_classification(name)
    return classification_split(X, y, CLASSIFICATION_SEEDS[0])[:2]


def estimators(name):
    """(label, factory) of each estimator compared on data set ``name``."""
    if name in CLASSIFICATION:
        return [
            ("skbnn default", lambda: make_pipeline(StandardScaler(), LaplaceMLPClassifier())),
            ("MLPClassifier", lambda: make_pipeline(StandardScaler(), MLPClassifier())),
        ]
    kernel = ConstantKernel() * RBF() + WhiteKernel()
    return [
        ("skbnn default", lambda: make_pipeline(StandardScaler(), LaplaceMLPRegressor())),
        (
            "MLPRegressor",
            lambda: TransformedTargetRegressor(
                make_pipeline(StandardScaler(), MLPRegressor()), transformer=StandardScaler()
            ),
        ),
        (
            "GPR",
            lambda: make_pipeline(
                StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True)
            ),
        ),
    ]


def fit_time(factory, X, y, repeats):
    times = []
    for seed in range(repeats):
        model = factory()
        model.set_params(**{k: seed for k in model.get_params() if k.endswith("random_state")})
        start = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def profile_phases(name, X, y):
    """Seconds of each phase of one default skbnn fit, from cProfile's cumulative times."""
    model = dict(estimators(name))["skbnn default"]()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(model.fit, X, y)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    phases = {}
    for phase, (file_suffix, function_name, caller_name) in PHASES.items():
        seconds = 0.0
        for (filename, _, function), (_, _, _, cum, callers) in stats.items():
            if not (filename.endswith(file_suffix) and function == function_name):
                continue
            if caller_name is None:
                seconds += cum
            else:
                seconds += sum(c[3] for (_, _, name), c in callers.items() if name == caller_name)
        phases[phase] = seconds
    phases["other"] = max(0.0, total - sum(phases.values()))
    return total, phases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=REGRESSION + CLASSIFICATION)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    rows, profiles = [], []
    with threadpool_limits(1):
        for name in args.sets:
            X, y = data(name)
            times = {label: fit_time(f, X, y, args.repeats) for label, f in estimators(name)}
            baseline = "MLPClassifier" if name in CLASSIFICATION else "MLPRegressor"
            ratio = times["skbnn default"] / times[baseline]
            # One cell for all fit times: the regression rows have a GPR column more.
            cells = ", ".join(f"{label} {seconds:.2f} s" for label, seconds in times.items())
            rows.append(f"| {name} ({len(y)}) | {cells} | {ratio:.0f}× |")
            total, phases = profile_phases(name, X, y)
            shares = ", ".join(f"{p} {s:.2f} s ({s / total:.0%})" for p, s in phases.items())
            profiles.append(f"- {name}: {total:.2f} s profiled; {shares}")
            print(rows[-1], profiles[-1], sep="\n", flush=True)
    command = shlex.join(["python", "benchmarks/cost.py", *sys.argv[1:]])
    body = "\n".join(
        [
            f"`{command}` ({platform.machine()}, torch {torch.__version__}, one thread; the "
            f"median of {args.repeats} fits per estimator, side by side in one run).",
            "",
            "| data (training rows) | fit times | skbnn / sklearn MLP |",
            "|---|---|---|",
            *rows,
            "",
            "Where a default skbnn fit spends its time (one cProfile run per set; profiling "
            "slows Python-heavy code, so shares matter more than seconds):",
            "",
            *profiles,
        ]
    )
    if args.no_write:
        print(body)
    else:
        write_section("Cost: a default fit against scikit-learn's defaults", body)


if __name__ == "__main__":
    main()

"""UCI classification benchmark: skbnn and its peers side by side on the Immer et al. protocol.

Protocol (../shared/data/uci_classification/README.md): for each seed, the 70 / 15 / 15 stratified
train / test / validation split of ``classification_split`` (the validation part is unused);
StandardScaler + estimator in a Pipeline fitted on the training part; test NLL (mean per point,
``log_loss`` over all classes), ECE (10 equal-width bins of the top-class probability), accuracy
and fit time; mean ± standard error over seeds. Every estimator of a run sees the same splits;
each (estimator, dataset, seed) is one joblib job. Writes a section of benchmarks/RESULTS.md and
merges the per-seed results into benchmarks/uci_classification.json (key estimator/dataset/seed),
from which ``--from-json`` rebuilds the table of any combination of earlier runs without refitting.

Estimators (``--estimators``): ``skbnn-default`` (LaplaceMLPClassifier), any other skbnn
configuration as ``'skbnn:{"link_approx": "bridge"}'`` (constructor keywords as JSON; the string is
its label), and the peers ``mlp`` (MLPClassifier), ``gpc`` (GaussianProcessClassifier, RBF,
one-vs-rest for more than two classes), ``logreg`` (LogisticRegression) and ``hgb``
(HistGradientBoostingClassifier).

    python benchmarks/uci_classification.py --estimators skbnn-default mlp gpc logreg hgb \\
        --n-jobs 2
    python benchmarks/uci_classification.py --estimators skbnn-default \\
        'skbnn:{"link_approx": "bridge"}' 'skbnn:{"link_approx": "mc"}' --n-jobs 2
    python benchmarks/uci_classification.py --from-json --estimators skbnn-default mlp gpc
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLASSIFICATION_SEEDS,
    CLASSIFICATION_SETS,
    add_run_arguments,
    classification_split,
    gather_results,
    load_uci_classification,
    mean_se,
    skbnn_kwargs,
    write_section,
)

from skbnn import LaplaceMLPClassifier
from skbnn.metrics import expected_calibration_error

RAW_RESULTS = Path(__file__).resolve().parent / "uci_classification.json"


def _mlp(seed):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(50,), max_iter=2000, random_state=seed)


def _gpc(seed):
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.gaussian_process.kernels import RBF

    return GaussianProcessClassifier(1.0 * RBF(1.0), random_state=seed)


def _logreg(seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=5000)


def _hgb(seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


# name -> builder(seed) of the last step of the pipeline.
ESTIMATORS = {
    "skbnn-default": lambda seed: LaplaceMLPClassifier(random_state=seed),
    "mlp": _mlp,
    "gpc": _gpc,
    "logreg": _logreg,
    "hgb": _hgb,
}
PEER_DESCRIPTIONS = {
    "mlp": "MLPClassifier(hidden_layer_sizes=(50,), max_iter=2000)",
    "gpc": "GaussianProcessClassifier(1.0 · RBF(1.0)) (one-vs-rest for more than two classes)",
    "logreg": "LogisticRegression(max_iter=5000) (C = 1)",
    "hgb": "HistGradientBoostingClassifier() (defaults)",
}
# What the summary lines call the peers.
PEER_LABELS = {
    "mlp": "MLPClassifier",
    "gpc": "GPC",
    "logreg": "LogisticRegression",
    "hgb": "HistGradientBoosting",
}


def build(name: str, seed: int):
    """The pipeline StandardScaler → estimator ``name`` seeded by ``seed``."""
    kwargs = skbnn_kwargs(name)
    if kwargs is not None:
        return make_pipeline(StandardScaler(), LaplaceMLPClassifier(**kwargs, random_state=seed))
    return make_pipeline(StandardScaler(), ESTIMATORS[name](seed))


def check_estimators(names: list[str]) -> None:
    """Raise ValueError (TypeError) on an unknown name (skbnn keyword) or an invalid value."""
    for name in names:
        if skbnn_kwargs(name) is not None:
            # Unknown keywords raise TypeError, invalid values InvalidParameterError (ValueError).
            LaplaceMLPClassifier(**skbnn_kwargs(name))._validate_params()
        elif name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")


def run_seed(name: str, dataset: str, seed: int, threads: int) -> dict:
    """Fit estimator ``name`` on the split of ``seed``; its test NLL, ECE, accuracy and times."""
    torch.set_num_threads(threads)
    X, y = load_uci_classification(dataset)
    classes = np.unique(y)
    X_train, y_train, X_test, y_test, _, _ = classification_split(X, y, seed)
    model = build(name, seed)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_time = time.perf_counter() - start
        proba = model.predict_proba(X_test)
        total_time = time.perf_counter() - start
    # The stratified split puts every class in the training part, so classes_ == classes.
    if not np.array_equal(model.classes_, classes):
        raise RuntimeError(f"{name} on {dataset}: classes_ {model.classes_} != {classes}")
    return {
        "estimator": name,
        "dataset": dataset,
        "seed": seed,
        "nll": float(log_loss(y_test, proba, labels=classes)),
        "ece": expected_calibration_error(np.searchsorted(classes, y_test), proba, n_bins=10),
        "acc": float(np.mean(classes[proba.argmax(axis=1)] == y_test)),
        "fit_time": fit_time,
        "total_time": total_time,
        "n_train": len(y_train),
    }


# -- the table ----------------------------------------------------------------------------------


def summarise(results: dict, names: list[str], datasets: list[str]):
    """Table rows and the summary lines of the skbnn estimators against the peers."""
    rows, mean = [], {}
    for dataset in datasets:
        cells, fits = [], []
        for name in names:
            records = results[name, dataset]
            nll, nll_se = mean_se([r["nll"] for r in records])
            mean[name, dataset, "nll"] = nll
            mean[name, dataset, "ece"] = np.mean([r["ece"] for r in records])
            acc = np.mean([r["acc"] for r in records])
            cells.append(f"{nll:.3f} ± {nll_se:.3f} | {mean[name, dataset, 'ece']:.3f} | {acc:.3f}")
            fits.append(f"{np.mean([r['fit_time'] for r in records]):.1f}")
        n = len(results[names[0], dataset])
        rows.append(f"| {dataset} | {n} | " + " | ".join(cells + fits) + " |")
    comparisons = [("mlp", "nll"), ("mlp", "ece"), ("gpc", "nll"), ("logreg", "nll")]
    comparisons += [("hgb", "nll")]
    lines = []
    for name in (name for name in names if name.startswith("skbnn")):
        parts = []
        for peer, metric in comparisons:
            if peer in names:
                wins = sum(mean[name, d, metric] <= mean[peer, d, metric] for d in datasets)
                parts.append(f"{metric.upper()} ≤ {PEER_LABELS[peer]} on {wins} of {len(datasets)}")
        if parts:
            lines.append(f"`{name}`: " + ", ".join(parts) + ".")
    return rows, lines


def write_table(results, names, datasets, path=None):
    rows, lines = summarise(results, names, datasets)
    header = (
        "| dataset | seeds | "
        + " | ".join(f"NLL {name} | ECE {name} | acc {name}" for name in names)
        + " | "
        + " | ".join(f"fit {name} (s)" for name in names)
        + " |\n|"
        + "---|" * (2 + 4 * len(names))
    )
    runs = sorted({r["run"] for name in names for d in datasets for r in results[name, d]})
    seeds = sorted({r["seed"] for name in names for d in datasets for r in results[name, d]})
    peers = [f"`{name}` = {PEER_DESCRIPTIONS[name]}" for name in names if name in PEER_DESCRIPTIONS]
    body = (
        "Runs: "
        + "; ".join(f"`{run}`" for run in runs)
        + f". Seeds {[s for s in CLASSIFICATION_SEEDS if s in seeds]} of the Immer et al. "
        "protocol (70/15/15 stratified train/test/validation; validation unused); each "
        "estimator in a StandardScaler pipeline on the same splits; mean ± SE over seeds of the "
        "test NLL (mean per point, lower is better); ECE (10 bins) and accuracy are means over "
        "seeds."
        + (" Peers: " + "; ".join(peers) + "." if peers else "")
        + "\n\n"
        + header
        + "\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(lines)
    )
    print(header, *rows, "", *lines, sep="\n", flush=True)
    title = names[0] if len(names) == 1 else f"{names[0]} vs {', '.join(names[1:])}"
    if path is not None:
        write_section(f"UCI classification: {title}", body, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["skbnn-default"],
        help=f"any of {sorted(ESTIMATORS)} or 'skbnn:{{JSON keywords}}'",
    )
    parser.add_argument("--datasets", nargs="*", default=CLASSIFICATION_SETS)
    parser.add_argument("--seeds", type=int, default=10, help="first N seeds of the protocol")
    add_run_arguments(parser, RAW_RESULTS, "seed")
    args = parser.parse_args(argv)
    names = args.estimators
    try:
        check_estimators(names)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    seeds = CLASSIFICATION_SEEDS[: args.seeds]

    results = gather_results(
        parser,
        args,
        names,
        {d: seeds for d in args.datasets},
        run_seed,
        "seed",
        ["python", "benchmarks/uci_classification.py", *(argv or sys.argv[1:])],
        lambda r: (
            f"NLL {r['nll']:.3f}, ECE {r['ece']:.3f}, acc {r['acc']:.3f}, fit {r['fit_time']:.1f} s"
        ),
    )
    write_table(results, names, args.datasets, None if args.no_write else args.results)


if __name__ == "__main__":
    main()

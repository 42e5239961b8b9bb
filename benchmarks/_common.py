"""Helpers shared by the benchmark scripts: data loading, the side-by-side runner of the UCI
scripts (fit in parallel or read back from their raw-results JSON), writing RESULTS.md sections."""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REGRESSION_SETS = ["bostonHousing", "concrete", "energy", "kin8nm", "wine-quality-red", "yacht"]


def load_uci_regression(name: str, split: int, data_dir: Path = DATA_DIR):
    """Train/test arrays of one Hernández-Lobato & Adams split (see the data README)."""
    folder = data_dir / "uci_regression" / name / "data"
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt").astype(int)
    target = int(np.loadtxt(folder / "index_target.txt"))
    train = np.loadtxt(folder / f"index_train_{split}.txt").astype(int)
    test = np.loadtxt(folder / f"index_test_{split}.txt").astype(int)
    X, y = data[:, features], data[:, target]
    return X[train], y[train], X[test], y[test]


def n_splits(name: str, data_dir: Path = DATA_DIR) -> int:
    return int(np.loadtxt(data_dir / "uci_regression" / name / "data" / "n_splits.txt"))


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``## title`` of RESULTS.md with ``body``."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(
        values
    ) > 1 else 0.0


CLASSIFICATION_SETS = ["australian", "breast_cancer", "ionosphere", "glass", "digits"]
# The seeds of Immer, Korzepa & Bauer's UCI classification protocol (data README).
CLASSIFICATION_SEEDS = [711, 1, 75, 359, 17, 420, 129, 666, 69, 36]


def load_uci_classification(name: str, data_dir: Path = DATA_DIR):
    """All rows (X, y) of a classification set; ``digits`` comes with scikit-learn."""
    if name == "digits":
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    folder = data_dir / "uci_classification" / name
    if name in ("australian", "breast_cancer"):
        stem = f"{name}_scale"
        parts = [
            (np.loadtxt(folder / f"{stem}_X_{s}.csv"), np.loadtxt(folder / f"{stem}_y_{s}.csv"))
            for s in ("tr", "te")
        ]
        X = np.vstack([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
    elif name == "glass":
        X, y = np.loadtxt(folder / "X.txt"), np.loadtxt(folder / "Y.txt")
    elif name == "ionosphere":
        data = np.loadtxt(folder / "ionosphere.data", delimiter=",")
        X, y = data[:, :-1], data[:, -1]
    else:
        raise ValueError(f"unknown classification set {name!r}")
    return X, y.astype(int)


def classification_split(X, y, seed: int):
    """The 70 / 15 / 15 stratified train / test / validation split of the protocol."""
    from sklearn.model_selection import train_test_split

    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, train_size=0.7, random_state=seed, shuffle=True, stratify=y
    )
    X_test, X_val, y_test, y_val = train_test_split(
        X_rest, y_rest, train_size=0.5, random_state=seed, shuffle=True, stratify=y_rest
    )
    return X_train, y_train, X_test, y_test, X_val, y_val


def result_key(name: str, dataset: str, split: int) -> str:
    """Key of one (estimator, dataset, split or seed) result in the raw-results JSON files."""
    return f"{name}/{dataset}/{split}"


def load_raw(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_raw(path: Path, records: list[dict], split_field: str) -> None:
    """Merge ``records`` into the JSON file at ``path`` (a record replaces one of the same key)."""
    raw = load_raw(path)
    raw.update({result_key(r["estimator"], r["dataset"], r[split_field]): r for r in records})
    path.write_text(json.dumps(dict(sorted(raw.items())), indent=1) + "\n")


def skbnn_kwargs(name: str) -> dict | None:
    """Constructor keywords of a ``skbnn:{...}`` estimator label, None for any other name."""
    if not name.startswith("skbnn:"):
        return None
    kwargs = json.loads(name[len("skbnn:") :])
    if not isinstance(kwargs, dict) or "random_state" in kwargs:
        raise ValueError("skbnn:{...} takes a JSON dict of keywords other than random_state")
    return kwargs


def add_run_arguments(parser: argparse.ArgumentParser, raw_results: Path, unit: str) -> None:
    """The options every side-by-side script shares: parallelism, raw results, output."""
    parser.add_argument("--n-jobs", type=int, default=1, help="jobs fitted in parallel")
    parser.add_argument("--json", type=Path, default=raw_results, help=f"per-{unit} raw results")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the markdown to write")
    parser.add_argument(
        "--from-json", action="store_true", help="rebuild the table from --json, no fitting"
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the table, do not write it to --results (fitted results still go to --json)",
    )


def gather_results(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    names: list[str],
    indices: dict[str, list[int]],
    job: Callable[[str, str, int, int], dict],
    unit: str,
    command: list[str],
    summary: Callable[[dict], str],
) -> dict:
    """Per-(estimator, dataset) lists of result records, one per split (or seed) in ``indices``.

    With ``--from-json`` they are read back (an error lists what is missing); otherwise each
    ``job(name, dataset, index, threads)`` runs in a joblib pool, its record is printed with
    ``summary`` and tagged with the command, and the records are merged into ``--json``.
    """
    import torch
    from joblib import Parallel, delayed

    results = {}
    if args.from_json:
        raw = load_raw(args.json)
        keys = [result_key(n, d, i) for n in names for d in args.datasets for i in indices[d]]
        missing = [key for key in keys if key not in raw]
        if missing:
            parser.error(f"{len(missing)} results not in {args.json}: {', '.join(missing[:10])}")
        for name in names:
            for d in args.datasets:
                results[name, d] = [raw[result_key(name, d, i)] for i in indices[d]]
        return results
    threads = 1 if args.n_jobs > 1 else torch.get_num_threads()
    run = shlex.join(command) + (
        f" ({platform.machine()}, torch {torch.__version__}, {args.n_jobs} job(s) × "
        f"{threads} thread(s))"
    )
    for dataset in args.datasets:
        jobs = [(name, i) for name in names for i in indices[dataset]]
        records = Parallel(n_jobs=args.n_jobs)(
            delayed(job)(name, dataset, i, threads) for name, i in jobs
        )
        for record in records:
            record["run"] = run
            print(
                f"{record['estimator']} {dataset} {unit} {record[unit]}: {summary(record)}",
                flush=True,
            )
        for name in names:
            results[name, dataset] = [r for r in records if r["estimator"] == name]
        # Always kept: a long run must not be lost to a flag meant for the markdown.
        save_raw(args.json, records, unit)
    return results

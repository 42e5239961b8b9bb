"""Helpers shared by the benchmark scripts: data loading and writing sections of RESULTS.md."""

from __future__ import annotations

import re
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

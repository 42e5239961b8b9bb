"""Wide tables: the default regressor's fit time on n rows × d features with n ≪ d.

The KFAC input factor of the first layer is (d + 1) × (d + 1) of rank ≤ n; it is decomposed
through its rank (skbnn/_kron.py). One process, side by side with scikit-learn's MLPRegressor
default on the same rows, with one torch thread and with two (the bar: < 20 s on 2 cores).

    python benchmarks/wide.py [--rows 50] [--features 2000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from _common import write_section
from sklearn.neural_network import MLPRegressor

from skbnn import LaplaceMLPRegressor


def timed_fit(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--features", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.features))
    y = X[:, :5].sum(1) + 0.1 * rng.standard_normal(args.rows)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        skbnn_time = timed_fit(LaplaceMLPRegressor(random_state=0), X, y)
        mlp_time = timed_fit(MLPRegressor(random_state=0, max_iter=200), X, y)
        rows.append(
            f"| {args.rows} × {args.features} | {threads} | {skbnn_time:.1f} s | {mlp_time:.2f} s |"
        )
    command = "python benchmarks/wide.py " + " ".join(sys.argv[1:])
    body = (
        f"Command: `{command.strip()}` ({platform.processor() or platform.machine()}).\n\n"
        "| rows × features | torch threads | skbnn default fit | MLPRegressor default fit |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Before the input factor was decomposed through its rank (session 8, measured once by "
        "hand on the same data, one thread): 91.8 s, 70.2 s of it in 96 eigendecompositions of "
        "the 2001 × 2001 factor. Session 10 made Adam's step fused (about 10% of a fit)."
    )
    write_section("Wide tables: 50 × 2000 with the defaults", body)
    print(body)


if __name__ == "__main__":
    main()

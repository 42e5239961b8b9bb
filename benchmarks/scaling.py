"""Scaling of LaplaceMLPRegressor with the number of rows: fit time, predict time and peak RSS.

Synthetic regression data with 20 float32 features, hidden layers (100, 100) (P = 12,301),
``dtype="float32"``, ``max_iter=10`` epochs of minibatches of 256, predictions with ``return_std``
on 100,000 rows. Two posteriors: ``hessian_structure="kron"`` over all weights, and
``subset_of_weights="last_layer"`` (its default structure, a dense GGN of the 101 last-layer
weights); each with ``evidence_tuning="online"`` (the default) and ``"posthoc"``. The issue's
target: n = 1,000,000, kron, 10 epochs, float32 — fit + predict on 100k rows in under 10 minutes on
2 CPU cores, peak RSS under 4 GiB, finite positive std.

Each configuration runs in a fresh subprocess, whose peak RSS (``ru_maxrss``, the same as VmHWM)
includes the data. Results are merged into benchmarks/scaling.json (so sizes can be run
separately), plotted to benchmarks/scaling.png and tabulated in a section of
benchmarks/RESULTS.md. Needs matplotlib (the ``bench`` extra).

    python benchmarks/scaling.py                                  # n = 1e3, 1e4, 1e5
    python benchmarks/scaling.py --sizes 1000000 --tuning posthoc # add the 1e6 point
    python benchmarks/scaling.py --plot-only                      # redraw from scaling.json
"""

from __future__ import annotations

import os

# Set before torch starts OpenMP. On a shared machine libgomp's default busy-waiting makes small
# multi-threaded ops 10-20x slower whenever another process holds a core; passive waiting keeps
# the measurements meaningful (it costs nothing on an idle machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "scaling.json"
PLOT = HERE / "scaling.png"
N_FEATURES = 20
HIDDEN = (100, 100)
CONFIGS = {
    "kron": {"hessian_structure": "kron"},
    "last_layer": {"subset_of_weights": "last_layer"},
}
TIME_LIMIT_S = 600
RSS_LIMIT_GIB = 4.0


def make_data(n: int, seed: int):
    """float32 rows with a smooth target of a few directions and noise std 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    w = np.random.default_rng(1234).standard_normal((N_FEATURES, 2)).astype(np.float32)
    y = np.sin(X @ w[:, 0] / 3) + 0.5 * np.tanh(X @ w[:, 1] / 3) + 0.3 * X[:, 0] * X[:, 1]
    return X, (y + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def worker(n: int, config: str, tuning: str, max_iter: int, n_predict: int, threads: int):
    """Fit and predict once; print one JSON line with times and this process's peak RSS."""
    import torch

    from skbnn import LaplaceMLPRegressor

    torch.set_num_threads(threads)
    X, y = make_data(n, seed=0)
    X_test, y_test = make_data(n_predict, seed=1)
    reg = LaplaceMLPRegressor(
        HIDDEN,
        inference="laplace",  # the posterior the recorded runs measured (before session 4)
        dtype="float32",
        max_iter=max_iter,
        evidence_tuning=tuning,
        random_state=0,
        **CONFIGS[config],
    )
    start = time.perf_counter()
    reg.fit(X, y)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    mean, std = reg.predict(X_test, return_std=True)
    predict = time.perf_counter() - start
    print(
        json.dumps(
            {
                "n": n,
                "config": config,
                "tuning": tuning,
                "fit_s": fit,
                "predict_s": predict,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "n_params": reg.posterior_.n_params,
                "structure": reg.hessian_structure_,
                "std_finite_positive": bool(np.all(np.isfinite(std)) and np.all(std > 0)),
                "std_min": float(np.min(std)),
                "test_rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
                "max_iter": max_iter,
                "n_predict": n_predict,
                "threads": threads,
            }
        ),
        flush=True,
    )


def run_config(n, config, tuning, args):
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(n),
        config,
        tuning,
        "--max-iter",
        str(args.max_iter),
        "--n-predict",
        str(args.n_predict),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{config}/{tuning} at n={n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_results() -> list[dict]:
    return json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else []


def save_results(results: list[dict]) -> None:
    key = lambda r: (r["config"], r["tuning"], r["n"])  # noqa: E731
    results = sorted({key(r): r for r in results}.values(), key=key)
    RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(10, 4))
    for config in CONFIGS:
        for tuning, style in (("online", "-o"), ("posthoc", "--s")):
            rows = sorted(
                (r for r in results if r["config"] == config and r["tuning"] == tuning),
                key=lambda r: r["n"],
            )
            if not rows:
                continue
            n = [r["n"] for r in rows]
            label = f"{config}, {tuning}"
            ax_time.plot(n, [r["fit_s"] + r["predict_s"] for r in rows], style, label=label)
            ax_rss.plot(n, [r["peak_rss_gib"] for r in rows], style, label=label)
    ax_time.axhline(TIME_LIMIT_S, color="grey", lw=0.8, ls=":")
    ax_rss.axhline(RSS_LIMIT_GIB, color="grey", lw=0.8, ls=":")
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="training rows n",
        ylabel="fit + predict (100k rows) time (s)",
        title="time (limit: 10 min)",
    )
    ax_rss.set(
        xscale="log",
        xlabel="training rows n",
        ylabel="peak RSS (GiB)",
        title="peak memory (limit: 4 GiB)",
    )
    ax_time.legend(fontsize=8)
    fig.suptitle(
        "LaplaceMLPRegressor, 20 features, hidden (100, 100), float32, 10 epochs, 2 CPU threads",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def table(results: list[dict]) -> str:
    lines = [
        "| n | posterior | P | tuning | fit (s) | predict 100k (s) | fit + predict (s) "
        "| peak RSS (GiB) | std finite > 0 | test RMSE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["config"], r["tuning"], r["n"])):
        total = r["fit_s"] + r["predict_s"]
        lines.append(
            f"| {r['n']:,} | {r['config']} ({r['structure']}) | {r['n_params']:,} "
            f"| {r['tuning']} | {r['fit_s']:.1f} | {r['predict_s']:.1f} | {total:.1f} "
            f"| {r['peak_rss_gib']:.2f} | {'yes' if r['std_finite_positive'] else 'NO'} "
            f"| {r['test_rmse']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("N", "CONFIG", "TUNING"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tuning", nargs="*", default=["online", "posthoc"])
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--n-predict", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.worker:
        n, config, tuning = args.worker
        worker(int(n), config, tuning, args.max_iter, args.n_predict, args.threads)
        return

    results = load_results()
    if not args.plot_only:
        for n in args.sizes:
            for config in args.configs:
                for tuning in args.tuning:
                    r = run_config(n, config, tuning, args)
                    print(
                        f"n={n:>8} {config:>10} {tuning:>7}  fit {r['fit_s']:7.1f}s  "
                        f"predict {r['predict_s']:6.1f}s  peak RSS {r['peak_rss_gib']:.2f} GiB",
                        flush=True,
                    )
                    results.append(r)
                    if not args.no_write:
                        save_results(results)
    if args.no_write:
        print(table(results))
        return
    results = load_results()
    plot(results)
    cli = argv if argv is not None else sys.argv[1:]
    import torch

    body = (
        "`python benchmarks/scaling.py` (runs merged from scaling.json; this one: "
        f"`{' '.join(['python benchmarks/scaling.py', *cli])}`) — LaplaceMLPRegressor on "
        f'synthetic data with {N_FEATURES} float32 features, hidden {HIDDEN}, `dtype="float32"`, '
        "10 epochs of batch 256, then `predict(return_std=True)` on 100,000 rows; each "
        "configuration in a fresh process (peak RSS includes the data); "
        f"{platform.machine()}, 2 torch threads on a shared 2-core machine, torch "
        f"{torch.__version__}. Plot: `benchmarks/scaling.png`.\n\n" + table(results)
    )
    write_section("Scaling: rows vs time and memory (kron, last layer)", body)


if __name__ == "__main__":
    main()

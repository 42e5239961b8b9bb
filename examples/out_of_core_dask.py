"""Out of core: LaplaceMLPRegressor on 10 million rows that never sit in memory at once.

The data are a synthetic dask array of 10,000,000 × 64 float64 values (4.8 GiB in memory), generated
chunk by chunk on a dask LocalCluster, with y a fixed nonlinear function of X plus Gaussian noise
(σ = 0.1), also computed lazily. ``dask_ml.wrappers.Incremental`` feeds the chunks in order to
``partial_fit`` (sequential Laplace: the posterior after a chunk is the prior for the next one).
The fitted model then predicts on a held-out chunk. Prints the wall time, the test RMSE and
log-likelihood, and the peak resident memory of the client process (which also runs the
scheduler and the nannies) and of the workers.

The partial_fit calls form a chain, so one worker trains at a time, and the default cluster has a
single worker: it generates a chunk, fits it, then generates the next, holding about three chunks
at a time. With more workers the idle ones run ahead and generate chunks faster than the chain
consumes them; dask keeps those in memory (nothing holds them back), so the memory grows with the
data. Use several workers only when the chunks come cheaply from storage, or cap their memory.

Needs the ``dask`` extra: ``pip install ".[dask]"``. About 6 minutes on 2 CPU cores:

    python examples/out_of_core_dask.py                     # 10M rows
    python examples/out_of_core_dask.py --write-results     # ... and update benchmarks/RESULTS.md
    SKBNN_EXAMPLE_SMOKE=1 python examples/out_of_core_dask.py   # 100k rows, ~20 s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster
from dask_ml.wrappers import Incremental

from skbnn import LaplaceMLPRegressor
from skbnn.metrics import gaussian_log_likelihood

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE") == "1"
N_FEATURES = 64
NOISE = 0.1


def target(X):
    """A fixed nonlinear function of the first 16 features (numpy or dask arrays)."""
    return (
        np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] / 2 + np.cos(X[:, 3]) + X[:, 4:16].sum(axis=1) / 4
    )


def make_data(n_rows, chunk_rows, seed):
    """Lazy X ~ N(0, I₆₄) and y = target(X) + N(0, NOISE²), in chunks of chunk_rows rows."""
    rs = da.random.RandomState(seed)
    X = rs.standard_normal(size=(n_rows, N_FEATURES), chunks=(chunk_rows, N_FEATURES))
    noise = rs.normal(scale=NOISE, size=n_rows, chunks=chunk_rows)
    return X, target(X) + noise


def peak_rss_mib():
    """Peak resident set size of the calling process, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB else


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000 if SMOKE else 10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=25_000 if SMOKE else 125_000)
    parser.add_argument("--test-rows", type=int, default=2_000 if SMOKE else 20_000)
    parser.add_argument("--n-workers", type=int, default=1)
    parser.add_argument(
        "--scheduler-address", help="use this running dask cluster instead of a LocalCluster"
    )
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)

    X, y = make_data(args.rows, args.chunk_rows, seed=0)
    X_test, y_test = make_data(args.test_rows, args.test_rows, seed=1)
    X_test, y_test = dask.compute(X_test, y_test)  # one held-out chunk, in memory
    estimator = LaplaceMLPRegressor(
        hidden_layer_sizes=(32,),
        hessian_structure="kron",
        inference="laplace",  # as recorded in benchmarks/RESULTS.md
        dtype="float32",
        max_iter=1,  # epochs per chunk: partial_fit trains max_iter epochs on each chunk
        batch_size=256,
        learning_rate_init=0.03,
        random_state=0,
    )
    in_memory_gib = X.nbytes / 2**30
    print(
        f"X: {X.shape[0]:,} × {X.shape[1]} float64 = {in_memory_gib:.2f} GiB in memory, "
        f"{X.numblocks[0]} chunks of {args.chunk_rows:,} rows"
    )

    with contextlib.ExitStack() as stack:
        if args.scheduler_address:
            client = stack.enter_context(Client(args.scheduler_address))
            cluster_name = f"the cluster at {args.scheduler_address}"
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=args.n_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(Client(cluster))
            cluster_name = f"LocalCluster(n_workers={args.n_workers}, threads_per_worker=1)"
        start = time.perf_counter()
        model = Incremental(estimator, shuffle_blocks=False).fit(X, y)
        fit_seconds = time.perf_counter() - start
        worker_peaks = client.run(peak_rss_mib)
    client_peak_fit = peak_rss_mib()
    fitted = model.estimator_

    start = time.perf_counter()
    mean, std = fitted.predict(X_test, return_std=True)
    predict_seconds = time.perf_counter() - start
    rmse = float(np.sqrt(np.mean((mean - y_test) ** 2)))
    log_likelihood = gaussian_log_likelihood(y_test, mean, std)
    client_peak = peak_rss_mib()
    best_ll = float(-np.log(NOISE * np.sqrt(2 * np.pi)) - 0.5)
    total_peak = client_peak + sum(worker_peaks.values())

    lines = [
        f"- data: {X.shape[0]:,} × {X.shape[1]} float64 ({in_memory_gib:.2f} GiB in memory), "
        f"{X.numblocks[0]} chunks of {args.chunk_rows:,} rows, generated lazily on the workers; "
        f"held-out chunk of {args.test_rows:,} rows",
        f"- model: LaplaceMLPRegressor(hidden_layer_sizes=(32,), hessian_structure='kron', "
        f"inference='laplace', dtype='float32', max_iter=1, batch_size=256, "
        f"learning_rate_init=0.03) via "
        f"Incremental(shuffle_blocks=False).fit on {cluster_name}",
        f"- wall time: fit {fit_seconds:.0f} s (data generation included), "
        f"predict with std on the held-out chunk {predict_seconds:.1f} s",
        f"- test RMSE {rmse:.4f} (noise σ = {NOISE}), test log-likelihood {log_likelihood:.3f} "
        f"per point (the true model: {best_ll:.3f}); fitted σ = {fitted.sigma_noise_:.4f}, "
        f"δ = {fitted.prior_precision_:.3g}",
        f"- peak RSS (MiB): client {client_peak_fit:.0f} during the fit, {client_peak:.0f} "
        "after the prediction (the scheduler and the nannies run in it), "
        "workers "
        + ", ".join(f"{v:.0f}" for v in worker_peaks.values())
        + f"; largest single process {max(client_peak, *worker_peaks.values()):.0f}, "
        f"sum over all processes {total_peak:.0f} ({total_peak / 1024:.2f} GiB, an upper bound "
        "of the peak of the total)",
    ]
    print("\n".join(lines))

    if args.write_results:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from _common import write_section

        command = "python examples/out_of_core_dask.py --write-results"
        body = (
            f"`{command}` ({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPU cores, torch threads per worker: 1)\n\n" + "\n".join(lines)
        )
        write_section("Out-of-core: 10M rows on a dask LocalCluster", body)


if __name__ == "__main__":
    main()

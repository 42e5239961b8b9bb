"""UCI regression benchmark: skbnn and its peers side by side on the standard splits.

Protocol (../shared/data/uci_regression/README.md): StandardScaler + estimator in a Pipeline fitted
on each training split; test RMSE and mean per-point test log-likelihood (LL) in the original units
of y; mean ± standard error over splits. Every estimator of a run sees the same splits; each
(estimator, dataset, split) is one joblib job. The table puts next to them the published LLs of
MC dropout and deep ensembles. Writes a section of benchmarks/RESULTS.md and merges the per-split
results into benchmarks/uci_regression.json (key estimator/dataset/split), from which
``--from-json`` rebuilds the table of any combination of earlier runs without refitting.

Estimators (``--estimators``): the skbnn variants of ``ESTIMATORS``, any other skbnn
configuration as ``'skbnn:{"hessian_structure": "diag"}'`` (constructor keywords as JSON; the
string is its label), and the peers ``gpr`` (exact GP, ARD RBF + white noise; on a random subset
of ``--gpr-max-rows`` training rows, default 3000, where a split is larger: kin8nm), ``mlp``
(MLPRegressor + homoscedastic Gaussian), ``ngboost`` (skipped if not installed) and
``laplace-torch`` (the library's README recipe; skipped if not installed). ``--json`` and
``--results`` redirect the raw results and the markdown (e.g. to scratch files).

    python benchmarks/uci_regression.py                      # skbnn-default, 5 splits
    python benchmarks/uci_regression.py --splits 20 --n-jobs 2
    python benchmarks/uci_regression.py --estimators skbnn-default gpr mlp laplace-torch \\
        --splits 20 --n-jobs 2
    python benchmarks/uci_regression.py --from-json --estimators skbnn-default gpr --splits 20
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REGRESSION_SETS,
    add_run_arguments,
    gather_results,
    load_uci_regression,
    mean_se,
    n_splits,
    skbnn_kwargs,
    write_section,
)

from skbnn import LaplaceMLPRegressor

RAW_RESULTS = Path(__file__).resolve().parent / "uci_regression.json"

# Published test LLs (higher is better). MC dropout: the "10x epochs, grid search" results in the
# README of github.com/yaringal/DropoutUncertaintyExps (the values the issue tracker quotes).
MC_DROPOUT_LL = {
    "bostonHousing": -2.40,
    "concrete": -2.94,
    "energy": -1.21,
    "kin8nm": 1.14,
    "wine-quality-red": -0.93,
    "yacht": -1.25,
}
# Deep ensembles: Lakshminarayanan, Pritzel & Blundell (2017), Table 1, (mean, standard error).
DEEP_ENSEMBLES_LL = {
    "bostonHousing": (-2.41, 0.25),
    "concrete": (-3.06, 0.18),
    "energy": (-1.38, 0.22),
    "kin8nm": (1.20, 0.02),
    "wine-quality-red": (-0.94, 0.12),
    "yacht": (-1.18, 0.21),
}


# -- peers: sklearn-style regressors whose predict(X, return_std=True) gives a Gaussian ---------


class SubsetGPRegressor(RegressorMixin, BaseEstimator):
    """Exact GP, ConstantKernel · ARD RBF + WhiteKernel, fitted on at most ``max_rows`` rows.

    Parameters
    ----------
    max_rows : int or None, default=None
        Fit on a random subset of this many training rows (seeded by ``random_state``) when the
        training set is larger; None or 0 uses every row.
    random_state : int or None, default=None
        Seed of the subset and of the GP's optimiser.
    """

    def __init__(self, max_rows=None, random_state=None):
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        X, y = np.asarray(X), np.asarray(y)
        rows = np.arange(len(X))
        if self.max_rows and len(X) > self.max_rows:
            rows = np.random.default_rng(self.random_state).choice(
                len(X), self.max_rows, replace=False
            )
        kernel = ConstantKernel() * RBF(length_scale=np.ones(X.shape[1])) + WhiteKernel()
        self.gp_ = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=0, random_state=self.random_state
        ).fit(X[rows], y[rows])
        self.n_fit_rows_ = len(rows)
        return self

    def predict(self, X, return_std=False):
        # return_std includes the WhiteKernel's noise: the predictive of a new observation.
        return self.gp_.predict(X, return_std=return_std)


class GaussianMLPRegressor(RegressorMixin, BaseEstimator):
    """MLPRegressor (50 relu units, on standardized y) + a homoscedastic Gaussian predictive.

    MLPRegressor has no predictive variance: the std of every prediction is the RMSE of its
    training residuals (in the units of y).

    Parameters
    ----------
    random_state : int or None, default=None
        Seed of MLPRegressor.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.neural_network import MLPRegressor

        y = np.asarray(y, dtype=float)
        mlp = MLPRegressor(
            hidden_layer_sizes=(50,),
            max_iter=2000,
            early_stopping=False,
            random_state=self.random_state,
        )
        self.mlp_ = TransformedTargetRegressor(mlp, transformer=StandardScaler()).fit(X, y)
        self.sigma_ = float(np.sqrt(np.mean((self.mlp_.predict(X).ravel() - y) ** 2)))
        return self

    def predict(self, X, return_std=False):
        mean = self.mlp_.predict(X).ravel()
        return (mean, np.full_like(mean, self.sigma_)) if return_std else mean


class NGBoostRegressor(RegressorMixin, BaseEstimator):
    """NGBRegressor (Normal distribution, its defaults); the std is its predicted scale."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        from ngboost import NGBRegressor

        self.ngb_ = NGBRegressor(random_state=self.random_state, verbose=False).fit(X, y)
        return self

    def predict(self, X, return_std=False):
        params = self.ngb_.pred_dist(X).params
        return (params["loc"], params["scale"]) if return_std else params["loc"]


class LaplaceTorchRegressor(RegressorMixin, BaseEstimator):
    """laplace-torch's post-hoc Laplace on a 50-tanh MLP trained by Adam on standardized y.

    The recipe of the laplace-torch README and documentation (github.com/aleximmer/Laplace,
    regression example): a MAP network, ``Laplace(model, "regression",
    subset_of_weights="all", hessian_structure="kron")``, ``la.fit(train_loader)``,
    ``la.optimize_prior_precision(method="marglik")``, then the joint loop over
    (log δ, log σ) with Adam (lr 0.1, 100 steps) on ``-la.log_marginal_likelihood(...)``,
    and ``la(x, pred_type="glm")``; predictive std √(f_var + σ²), mapped back to y's units.

    Training: one hidden layer of 50 tanh units (skbnn's default architecture), Adam lr 0.01,
    no weight decay, MSE; 1000 full-batch epochs up to 1024 rows, else minibatches of 256 for
    about 6000 steps in total. float64 throughout.

    Parameters
    ----------
    random_state : int or None, default=None
        Seed of the initialisation and the minibatch order.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        from laplace import Laplace
        from torch.utils.data import DataLoader, TensorDataset

        y = np.asarray(y, dtype=float)
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std())
        X_t = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        y_t = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=torch.float64)[:, None]
        n = len(X_t)
        generator = torch.Generator().manual_seed(self.random_state or 0)
        torch.manual_seed(self.random_state or 0)
        model = torch.nn.Sequential(
            torch.nn.Linear(X_t.shape[1], 50), torch.nn.Tanh(), torch.nn.Linear(50, 1)
        ).double()
        if n <= 1024:
            batch, epochs = n, 1000
        else:
            batch = 256
            epochs = math.ceil(6000 / math.ceil(n / batch))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.0)
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=generator).split(batch):
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(X_t[idx]), y_t[idx]).backward()
                optimizer.step()
        model.eval()

        # The laplace-torch README / docs recipe. A scalar prior (skbnn's, and the one the joint
        # loop tunes); laplace-torch 0.3's default prior_structure for marglik is per-parameter.
        la = Laplace(model, "regression", subset_of_weights="all", hessian_structure="kron")
        la.fit(DataLoader(TensorDataset(X_t, y_t), batch_size=batch))
        la.optimize_prior_precision(pred_type="glm", method="marglik", prior_structure="scalar")
        # Joint (δ, σ) loop of the docs, started from the δ above and σ = 1 (standardized y).
        log_prior = la.prior_precision.detach().log().reshape(1).clone().requires_grad_(True)
        log_sigma = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        hyper_optimizer = torch.optim.Adam([log_prior, log_sigma], lr=1e-1)
        for _ in range(100):
            hyper_optimizer.zero_grad()
            neg_marglik = -la.log_marginal_likelihood(log_prior.exp(), log_sigma.exp())
            neg_marglik.backward()
            hyper_optimizer.step()
        la.prior_precision = log_prior.detach().exp()
        la.sigma_noise = log_sigma.detach().exp()
        self.la_ = la
        self.prior_precision_ = float(log_prior.detach().exp())
        self.sigma_ = float(log_sigma.detach().exp()) * self.y_scale_
        return self

    def predict(self, X, return_std=False):
        X_t = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        f_mu, f_var = self.la_(X_t, pred_type="glm")
        mean = f_mu.detach().reshape(-1).numpy() * self.y_scale_ + self.y_mean_
        if not return_std:
            return mean
        var = f_var.detach().reshape(-1).numpy() + float(self.la_.sigma_noise) ** 2
        return mean, np.sqrt(var) * self.y_scale_


# -- the registry: name -> builder(seed, **options) of the last step of the pipeline ------------

ESTIMATORS = {
    "skbnn-default": lambda seed, **_: LaplaceMLPRegressor(random_state=seed),
    "skbnn-posthoc": lambda seed, **_: LaplaceMLPRegressor(
        evidence_tuning="posthoc", random_state=seed
    ),
    "skbnn-last-layer": lambda seed, **_: LaplaceMLPRegressor(
        subset_of_weights="last_layer", random_state=seed
    ),
    "skbnn-diag": lambda seed, **_: LaplaceMLPRegressor(
        hessian_structure="diag", random_state=seed
    ),
    "skbnn-heteroscedastic": lambda seed, **_: LaplaceMLPRegressor(
        noise="heteroscedastic", random_state=seed
    ),
    "gpr": lambda seed, gpr_max_rows=None, **_: SubsetGPRegressor(gpr_max_rows, seed),
    "mlp": lambda seed, **_: GaussianMLPRegressor(seed),
    "ngboost": lambda seed, **_: NGBoostRegressor(seed),
    "laplace-torch": lambda seed, **_: LaplaceTorchRegressor(seed),
}
# Peers that need an optional package: name -> the module to import.
OPTIONAL = {"ngboost": "ngboost", "laplace-torch": "laplace"}


def build(name: str, seed: int, **options):
    """The pipeline StandardScaler → estimator ``name`` seeded by ``seed``."""
    kwargs = skbnn_kwargs(name)
    if kwargs is not None:
        return make_pipeline(StandardScaler(), LaplaceMLPRegressor(**kwargs, random_state=seed))
    return make_pipeline(StandardScaler(), ESTIMATORS[name](seed, **options))


def check_estimators(names: list[str]) -> list[str]:
    """The names that can run here; prints why the others are skipped, raises on invalid ones."""
    runnable = []
    for name in names:
        if skbnn_kwargs(name) is not None:
            # Unknown keywords raise TypeError, invalid values InvalidParameterError (ValueError).
            LaplaceMLPRegressor(**skbnn_kwargs(name))._validate_params()
        elif name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
        if name in OPTIONAL:
            try:
                __import__(OPTIONAL[name])
            except ImportError:
                print(f"skipping {name}: `import {OPTIONAL[name]}` failed", flush=True)
                continue
        runnable.append(name)
    return runnable


def run_split(name: str, dataset: str, split: int, threads: int, options: dict) -> dict:
    """Fit estimator ``name`` on one split; its test RMSE, LL and times."""
    torch.set_num_threads(threads)
    X_train, y_train, X_test, y_test = load_uci_regression(dataset, split)
    model = build(name, split, **options)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # laplace-torch 0.3 converts a tensor that requires grad to a float inside its Kron.
        warnings.filterwarnings("ignore", "Converting a tensor with requires_grad")
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_time = time.perf_counter() - start
        mean, std = model.predict(X_test, return_std=True)
        total_time = time.perf_counter() - start
    mean, std = np.asarray(mean, dtype=float).ravel(), np.asarray(std, dtype=float).ravel()
    reg = model[-1]
    prior = getattr(reg, "prior_precision_", None)
    return {
        "estimator": name,
        "dataset": dataset,
        "split": split,
        "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
        "ll": float(np.mean(norm.logpdf(y_test, mean, std))),
        "fit_time": fit_time,
        "total_time": total_time,
        "n_train": len(y_train),
        "n_fit_rows": getattr(reg, "n_fit_rows_", len(y_train)),
        "prior_precision": None if prior is None else np.asarray(prior).tolist(),
        # noise="auto": the noise model chosen and the log evidence of each.
        "noise": getattr(reg, "noise_", None),
        "noise_log_evidence": getattr(reg, "noise_log_evidence_", None),
    }


# -- the table ----------------------------------------------------------------------------------


def summarise(results: dict, names: list[str], datasets: list[str]):
    """Table rows, per-(estimator, dataset) mean LL, and the summary lines."""
    rows, ll_mean = [], {}
    for dataset in datasets:
        cells, fits = [], []
        for name in names:
            records = results[name, dataset]
            ll, ll_se = mean_se([r["ll"] for r in records])
            ll_mean[name, dataset] = ll
            rmse = np.mean([r["rmse"] for r in records])
            cells.append(f"{ll:.3f} ± {ll_se:.3f} | {rmse:.3f}")
            fits.append(f"{np.mean([r['fit_time'] for r in records]):.1f}")
        mc = MC_DROPOUT_LL.get(dataset)
        de = DEEP_ENSEMBLES_LL.get(dataset)
        refs = [
            "–" if mc is None else f"{mc:.2f}",
            "–" if de is None else f"{de[0]:.2f} ± {de[1]:.2f}",
        ]
        n = len(results[names[0], dataset])
        rows.append(f"| {dataset} | {n} | " + " | ".join(cells + refs + fits) + " |")
    lines = []
    peers = [name for name in names if not name.startswith("skbnn")]
    for name in (name for name in names if name.startswith("skbnn")):
        parts = []
        for label, ref in (("MC dropout", MC_DROPOUT_LL), ("deep ensembles", DEEP_ENSEMBLES_LL)):
            sets = [d for d in datasets if d in ref]
            if sets:
                value = {d: ref[d] if label == "MC dropout" else ref[d][0] for d in sets}
                wins = sum(ll_mean[name, d] >= value[d] for d in sets)
                parts.append(f"≥ {label} on {wins} of {len(sets)}")
        for peer in peers:
            wins = sum(ll_mean[name, d] >= ll_mean[peer, d] for d in datasets)
            parts.append(f"≥ `{peer}` (this table) on {wins} of {len(datasets)}")
        if parts:
            lines.append(f"`{name}`: LL " + "; ".join(parts) + ".")
    return rows, lines


def describe(results: dict, names: list[str], datasets: list[str]) -> str:
    """The notes above the table: what each peer is, and where the GP saw a subset."""
    notes = []
    if "gpr" in names:
        subset = [
            d for d in datasets if any(r["n_fit_rows"] < r["n_train"] for r in results["gpr", d])
        ]
        sizes = sorted({r["n_fit_rows"] for d in subset for r in results["gpr", d]})
        notes.append(
            "`gpr`: exact GaussianProcessRegressor, ConstantKernel · RBF with one length scale "
            "per feature (ARD) + WhiteKernel, normalize_y, no optimiser restarts; the std "
            "includes the white noise"
            + (
                f"; **fitted on a random subset of {', '.join(map(str, sizes))} training rows "
                f"(seeded by the split) on {', '.join(subset)}** (`--gpr-max-rows`; every test "
                "row is predicted)"
                if subset
                else ""
            )
            + "."
        )
    if "mlp" in names:
        notes.append(
            "`mlp`: MLPRegressor(hidden_layer_sizes=(50,), max_iter=2000) on standardized y "
            "(TransformedTargetRegressor); it has no predictive variance, so its LL uses a "
            "homoscedastic Gaussian with σ = RMSE of its training residuals."
        )
    if "ngboost" in names:
        notes.append("`ngboost`: NGBRegressor with its defaults (Normal); std = its scale.")
    if "laplace-torch" in names:
        notes.append(
            "`laplace-torch`: the recipe of the laplace-torch README and docs "
            "(github.com/aleximmer/Laplace): an MLP of 50 tanh units trained by Adam (lr 0.01, "
            "no weight decay, MSE on standardized y; 1000 full-batch epochs, or minibatches of "
            '256 for ~6000 steps above 1024 rows), then `Laplace(model, "regression", '
            'subset_of_weights="all", hessian_structure="kron")`, `fit`, '
            '`optimize_prior_precision(method="marglik")` (scalar prior), the docs\' joint '
            "Adam loop over log δ and log σ (lr 0.1, 100 steps), GLM predictive with std "
            "√(f_var + σ²)."
        )
    return "\n".join(f"- {note}" for note in notes)


def write_table(results, names, datasets, path=None):
    rows, lines = summarise(results, names, datasets)
    notes = describe(results, names, datasets)
    header = (
        "| dataset | splits | "
        + " | ".join(f"LL {name} | RMSE {name}" for name in names)
        + " | LL MC dropout | LL deep ensembles | "
        + " | ".join(f"fit {name} (s)" for name in names)
        + " |\n|"
        + "---|" * (2 + 2 * len(names) + 2 + len(names))
    )
    runs = sorted({r["run"] for name in names for d in datasets for r in results[name, d]})
    body = (
        "Runs: "
        + "; ".join(f"`{run}`" for run in runs)
        + ". Each estimator in a StandardScaler pipeline on the same splits; mean ± SE over "
        "splits; LL is the mean per-point test log-likelihood in the original units of y "
        "(higher is better), RMSE the mean over splits. Reference columns (published, all 20 "
        "splits, their own protocols): MC dropout with 10× epochs and grid search, from the "
        "README of github.com/yaringal/DropoutUncertaintyExps; deep ensembles, "
        "Lakshminarayanan, Pritzel & Blundell (2017), Table 1.\n\n"
        + (f"{notes}\n\n" if notes else "")
        + header
        + "\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(lines)
    )
    print(header, *rows, "", *lines, sep="\n", flush=True)
    title = names[0] if len(names) == 1 else f"{names[0]} vs {', '.join(names[1:])}"
    if path is not None:
        write_section(f"UCI regression: {title}", body, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--estimators",
        "--estimator",
        nargs="+",
        default=["skbnn-default"],
        help=f"any of {sorted(ESTIMATORS)} or 'skbnn:{{JSON keywords}}'",
    )
    parser.add_argument("--datasets", nargs="*", default=REGRESSION_SETS)
    parser.add_argument("--splits", type=int, default=5, help="first N splits of each set")
    parser.add_argument(
        "--gpr-max-rows",
        type=int,
        default=3000,
        help="fit gpr on a random subset of this many training rows (0: all)",
    )
    add_run_arguments(parser, RAW_RESULTS, "split")
    args = parser.parse_args(argv)
    options = {"gpr_max_rows": args.gpr_max_rows}
    try:
        names = args.estimators if args.from_json else check_estimators(args.estimators)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    if not names:
        parser.error("none of the estimators can run here")
    splits = {d: list(range(min(args.splits, n_splits(d)))) for d in args.datasets}

    results = gather_results(
        parser,
        args,
        names,
        splits,
        functools.partial(run_split, options=options),
        "split",
        ["python", "benchmarks/uci_regression.py", *(argv or sys.argv[1:])],
        lambda r: f"LL {r['ll']:.3f}, RMSE {r['rmse']:.3f}, fit {r['fit_time']:.1f} s",
    )
    write_table(results, names, args.datasets, None if args.no_write else args.results)


if __name__ == "__main__":
    main()

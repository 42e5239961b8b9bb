"""Speed of skbnn against laplace-torch 0.3, sklearn's MLPRegressor and GaussianProcessRegressor.

Everything runs in one process, side by side, so the ratios hold even on a busy machine:

1. **laplace-torch on one trained network.** An 8 → 50 → 50 → 1 tanh MLP (P = 3,051) is trained
   once on n = 2,000 seeded synthetic rows. On those same float64 weights, for each posterior
   (full, kron, diag, last-layer full, last-layer kron) laplace-torch is driven as its README and
   docs show — ``Laplace(model, "regression", subset_of_weights=..., hessian_structure=...,
   sigma_noise=..., prior_precision=...)``, ``la.fit(train_loader)``,
   ``la.optimize_prior_precision(method="marglik")`` (δ only, its default 100 Adam steps), the
   docs' regression example for δ and σ jointly (Adam, lr 0.1, on
   ``-la.log_marginal_likelihood(log_prior.exp(), log_sigma.exp())``, 1000 steps, timed for
   ``--joint-time-budget`` seconds and extrapolated past it) and
   ``la(x, pred_type="glm")`` — and skbnn does the same post-hoc steps with its internals
   (``fit_curvature`` + ``EvidenceTerms``, ``maximize_log_marginal_likelihood`` over δ and σ,
   ``GaussianPosterior`` + ``glm_outputs``, what ``predict`` runs). Both log marginal likelihoods
   are evaluated at the same (δ, σ).
2. **The issue's bar.** A whole skbnn fit (5 training epochs, curvature, evidence tuning of δ and
   σ) with the defaults, and as one network with ``evidence_tuning="posthoc"``, against
   laplace-torch's fit + ``optimize_prior_precision`` on the trained network of part 1, for the
   full and the kron GGN.
3. **sklearn's MLPRegressor**, same architecture, optimiser, batch size and number of epochs.
4. **GaussianProcessRegressor** (RBF + White) at n = 1k, 2k, 5k: fit + predict time, test LL.

Writes a section of benchmarks/RESULTS.md.

Install laplace-torch without letting pip replace the CPU torch: ``pip install ".[bench]"``
resolves laplace-torch's and BackPACK's ``torchvision`` requirement, which pulls another torch
(with CUDA) along; neither needs torchvision for an MLP, so install them without dependencies and
name the ones they do use::

    pip install --no-deps "laplace-torch==0.3" "asdfghjkl==0.1a4" "backpack-for-pytorch==1.7.1" \
        "curvlinops-for-pytorch==3.0.1" einconv einops unfoldNd linear_operator opt-einsum \
        tqdm torchmetrics lightning-utilities
    pip install "matplotlib>=3.5"

Run::

    python benchmarks/speed.py                      # everything (about 25 minutes on 2 busy cores)
    python benchmarks/speed.py --parts laplace bar  # only parts 1 and 2
"""

from __future__ import annotations

import os

# Set before torch starts OpenMP. On a shared machine libgomp's default busy-waiting makes small
# multi-threaded ops 10-20x slower whenever another process holds a core; passive waiting keeps
# the measurements meaningful (it costs nothing on an idle machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import dataclasses
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section

from skbnn import LaplaceMLPRegressor
from skbnn._curvature import fit_curvature
from skbnn._evidence import (
    EvidenceTerms,
    log_marginal_likelihood,
    maximize_log_marginal_likelihood,
)
from skbnn._likelihoods import GaussianLikelihood
from skbnn._network import flat_parameters, last_layer_parameter_names
from skbnn._posterior import GaussianPosterior
from skbnn._predictive import glm_outputs

N_FEATURES = 8
HIDDEN = (50, 50)
N_TEST = 1000
# (hessian_structure, subset_of_weights) of part 1.
POSTERIORS = [
    ("full", "all"),
    ("kron", "all"),
    ("diag", "all"),
    ("full", "last_layer"),
    ("kron", "last_layer"),
]
LML_NOTES = {
    ("full", "all"): "same model: must agree",
    ("kron", "all"): "differ by design: skbnn folds each bias into A (keeps W–b blocks); "
    "laplace-torch gives the bias its own G-only block",
    ("diag", "all"): "same model: must agree",
    ("full", "last_layer"): "same model: must agree",
    ("kron", "last_layer"): "skbnn's folded-bias KFAC is exact for a Gaussian last layer "
    "(= last-layer full); laplace-torch's separate bias block drops the W–b terms",
}


def make_data(n: int, n_features: int = N_FEATURES, seed: int = 0):
    """Seeded synthetic regression: a smooth function of a few directions, noise std 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    w = np.random.default_rng(1234).standard_normal((n_features, 2))
    signal = np.sin(X @ w[:, 0] / 2) + 0.5 * np.tanh(X @ w[:, 1] / 2) + 0.3 * X[:, 0] * X[:, 1]
    return X, signal + 0.1 * rng.standard_normal(n)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def median_time(make, X, y, repeats):
    """Median wall time of ``make().fit(X, y)`` over ``repeats`` fresh estimators; the last one."""
    times = []
    for _ in range(repeats):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, elapsed = timed(model.fit, X, y)
        times.append(elapsed)
    return float(np.median(times)), model


# -- skbnn's post-hoc steps on given weights (what LaplaceMLPRegressor._laplace does) ------------


def skbnn_curvature(module, X, y, structure, subset):
    """GGN in its eigenbasis and the evidence's data terms at the module's weights (float64)."""
    module = copy.deepcopy(module).to(torch.float64)
    names = (
        last_layer_parameter_names(module)
        if subset == "last_layer"
        else [name for name, _ in module.named_parameters()]
    )
    likelihood = GaussianLikelihood(torch.ones(1, dtype=torch.float64))
    weights = torch.ones(X.shape[0], dtype=torch.float64)
    curvature = fit_curvature(module, likelihood, X, weights, names, structure)
    with torch.no_grad():
        data_fit = float(likelihood.data_fit(module(X), y).sum())
    terms = EvidenceTerms(
        eigenvalues=curvature.spectrum().cpu().numpy(),
        map_norm_sq=float(flat_parameters(module, names).square().sum()),
        n_data=float(X.shape[0]),
        n_outputs=1,
        data_fit=data_fit,
        gaussian=True,
        log_noise_ref=0.0,
    )
    return module, names, curvature, terms


def separate_bias_lml(curvature, terms, delta, sigma):
    """skbnn's KFAC evidence with laplace-torch's bias convention, from skbnn's own factors.

    skbnn's block of layer l is G ⊗ A over [W | b] with A = mean ã ãᵀ, ã = [a, 1]. laplace-torch
    keeps G ⊗ A_W for W (A_W = A without its last row and column) and G ⊗ 1 = G for b, dropping
    the W–b blocks. If the two evidences agree with this, bias handling is the only difference.
    """
    eigenvalues = []
    for lam, Q_A, nu in zip(
        curvature.output_eigenvalues,
        curvature.input_eigenvectors,
        curvature.input_eigenvalues,
        strict=True,
    ):
        A = (Q_A * nu) @ Q_A.T
        nu_weight = torch.linalg.eigvalsh(A[:-1, :-1]).clamp_min(0.0)
        eigenvalues += [torch.outer(lam, nu_weight).flatten(), lam * A[-1, -1]]
    separate = dataclasses.replace(terms, eigenvalues=torch.cat(eigenvalues).numpy())
    return log_marginal_likelihood(separate, delta, sigma)


def skbnn_predict(module, names, curvature, delta, sigma, X):
    """GLM predictive mean and variance J Σ Jᵀ of the function, as the estimator's predict does."""
    posterior = GaussianPosterior(
        mean=flat_parameters(module, names),
        curvature=curvature,
        prior_precision=delta,
        noise_scale=sigma,
        param_names=names,
    )
    f, cov = glm_outputs(module, posterior, X)
    return f, cov[:, 0, 0]


# -- laplace-torch, as its README and docs drive it ----------------------------------------------


def laplace_joint_tuning(la, n_steps, time_budget):
    """The docs' regression example: Adam on (log δ, log σ); extrapolated past ``time_budget``."""
    log_prior = torch.ones(1, requires_grad=True, dtype=torch.float64)
    log_sigma = torch.ones(1, requires_grad=True, dtype=torch.float64)
    hyper_optimizer = torch.optim.Adam([log_prior, log_sigma], lr=1e-1)
    start = time.perf_counter()
    done = 0
    for done in range(1, n_steps + 1):
        hyper_optimizer.zero_grad()
        neg_marglik = -la.log_marginal_likelihood(log_prior.exp(), log_sigma.exp())
        neg_marglik.backward()
        hyper_optimizer.step()
        if time.perf_counter() - start > time_budget and done >= 3:
            break
    elapsed = time.perf_counter() - start
    return elapsed * n_steps / done, done, float(log_prior.exp()), float(log_sigma.exp())


def run_laplace_comparison(args):
    from laplace import Laplace
    from laplace.curvature import BackPackGGN
    from torch.utils.data import DataLoader, TensorDataset

    X, y = make_data(args.n)
    X_test, _ = make_data(N_TEST, seed=1)
    print(f"training the reference network on n={args.n} ({args.epochs} epochs)...", flush=True)
    reference = LaplaceMLPRegressor(
        HIDDEN,
        max_iter=args.epochs,
        hessian_structure="diag",
        evidence_tuning="posthoc",
        normalize_y=False,
        ensemble_size=1,  # the peers fit one network
        random_state=0,
    ).fit(X, y)
    model = copy.deepcopy(reference.module_).double().eval()
    n_params = sum(p.numel() for p in model.parameters())
    X_t, y_t = torch.tensor(X), torch.tensor(y)[:, None]
    X_test_t = torch.tensor(X_test)
    loader = DataLoader(TensorDataset(X_t, y_t), batch_size=args.laplace_batch_size)
    delta0, sigma0 = 1.0, 1.0

    # Warm-up (imports, torch.func tracing) so that no library's first call pays for it.
    for structure, subset in POSTERIORS:
        warm = skbnn_curvature(model, X_t[:20], y_t[:20], structure, subset)
        skbnn_predict(*warm[:3], 1.0, 1.0, X_test_t[:20])
    Laplace(model, "regression", subset_of_weights="all", hessian_structure="diag").fit(
        DataLoader(TensorDataset(X_t[:20], y_t[:20]), batch_size=20)
    )

    rows, lml_rows, bar = [], [], {}
    for structure, subset in POSTERIORS:
        print(f"{structure} / {subset}", flush=True)
        # skbnn: curvature + data terms, evidence over (δ, σ), GLM predictive.
        (module64, names, curvature, terms), sk_fit = timed(
            skbnn_curvature, model, X_t, y_t, structure, subset
        )
        (delta, sigma, sk_lml), sk_opt = timed(
            maximize_log_marginal_likelihood, terms, prior_precision=None, noise_scale=None
        )
        (_, sk_var), sk_pred = timed(
            skbnn_predict, module64, names, curvature, delta, sigma, X_test_t
        )

        # laplace-torch: fit, optimize_prior_precision (δ), the docs' joint (δ, σ) loop, predict.
        la = Laplace(
            model,
            "regression",
            subset_of_weights=subset,
            hessian_structure=structure,
            sigma_noise=sigma0,
            prior_precision=delta0,
        )
        _, la_fit = timed(la.fit, loader)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, la_opt = timed(la.optimize_prior_precision, method="marglik", pred_type="glm")
        la_delta = float(la.prior_precision)
        with torch.no_grad():
            la_lml = float(
                la.log_marginal_likelihood(
                    torch.tensor(delta, dtype=torch.float64),
                    torch.tensor(sigma, dtype=torch.float64),
                )
            )
        la_joint, joint_steps, joint_delta, joint_sigma = laplace_joint_tuning(
            la, args.joint_steps, args.joint_time_budget
        )
        with torch.no_grad():
            la_joint_lml = float(
                la.log_marginal_likelihood(
                    torch.tensor(joint_delta, dtype=torch.float64),
                    torch.tensor(joint_sigma, dtype=torch.float64),
                )
            )
        la.prior_precision, la.sigma_noise = delta, sigma
        (_, la_var), la_pred = timed(la, X_test_t, pred_type="glm")
        var_diff = float((la_var.reshape(-1) - sk_var).abs().max() / sk_var.abs().max())

        P = terms.n_params
        joint = f"{la_joint:.2f}" + ("" if joint_steps == args.joint_steps else "*")
        rows.append(
            f"| {structure} | {subset} | {P} | {la_fit:.2f} | {la_opt:.2f} | {joint} "
            f"| {la_pred:.3f} | {sk_fit:.3f} | {sk_opt * 1e3:.1f} ms | {sk_pred:.3f} "
            f"| **{(la_fit + la_opt) / (sk_fit + sk_opt):.0f}×** "
            f"| {(la_fit + la_joint) / (sk_fit + sk_opt):.0f}× | {la_pred / sk_pred:.1f}× |"
        )
        rel = abs(la_lml - sk_lml) / abs(sk_lml)
        note = LML_NOTES[(structure, subset)]
        partial = "" if joint_steps == args.joint_steps else f", after {joint_steps} steps"
        if structure == "full":
            # laplace-torch's default (curvlinops) dense GGN is `operator @ torch.eye(P)`, a
            # float32 identity, so it carries ~1e-8 relative round-off; BackPACK's is float64.
            exact = Laplace(
                model,
                "regression",
                subset_of_weights=subset,
                hessian_structure=structure,
                backend=BackPackGGN,
            )
            exact.fit(loader)
            with torch.no_grad():
                exact_lml = float(
                    exact.log_marginal_likelihood(
                        torch.tensor(delta, dtype=torch.float64),
                        torch.tensor(sigma, dtype=torch.float64),
                    )
                )
            note += (
                f"; with `backend=BackPackGGN` (float64 GGN) laplace-torch gives "
                f"{exact_lml:.6f} (rel. diff. {abs(exact_lml - sk_lml) / abs(sk_lml):.1e})"
            )
        if structure == "kron":
            check = separate_bias_lml(curvature, terms, delta, sigma)
            note += (
                f"; skbnn's factors with laplace-torch's bias blocks give {check:.6f} "
                f"(rel. diff. {abs(la_lml - check) / abs(check):.1e})"
            )
        lml_rows.append(
            f"| {structure} | {subset} | {delta:.4g} | {sigma:.4g} | {la_lml:.6f} | {sk_lml:.6f} "
            f"| {rel:.1e} | {var_diff:.1e} | {la_delta:.4g} | {joint_delta:.4g}, "
            f"{joint_sigma:.4g} ({la_joint_lml:.3f}){partial} | {note} |"
        )
        print(rows[-1], lml_rows[-1], sep="\n", flush=True)
        if subset == "all":
            bar[structure] = la_fit + la_opt

    header = (
        "| GGN | weights | P | laplace-torch fit | `optimize_prior_precision` (δ) "
        "| joint δ, σ (docs, 1000 Adam steps) | predict | skbnn curvature + terms "
        "| skbnn evidence (δ, σ) | skbnn predict | speed-up fit + δ "
        "| speed-up fit + δ, σ | speed-up predict |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lml_header = (
        "| GGN | weights | δ | σ | LML laplace-torch | LML skbnn | rel. diff. "
        "| max rel. diff. of J Σ Jᵀ | laplace-torch δ (δ only) "
        "| laplace-torch δ, σ (LML) after the docs' loop | note |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    body = (
        f"Network 8 → 50 → 50 → 1 tanh (P = {n_params}) trained once by skbnn ({args.epochs} "
        f"epochs) on n = {args.n} synthetic rows; everything below is post-hoc on those float64 "
        f"weights. laplace-torch 0.3 with its default backend (curvlinops), a DataLoader of "
        f"batch {args.laplace_batch_size}, δ₀ = σ₀ = 1; predictions on {N_TEST} rows. Times in "
        "seconds. Speed-ups are laplace-torch over skbnn: fit + `optimize_prior_precision` "
        "against skbnn's curvature + evidence over δ *and* σ; "
        '"fit + δ, σ" uses the docs\' joint loop instead'
        + (" (* extrapolated from the first steps)" if any("*" in r for r in rows) else "")
        + ".\n\n"
        + header
        + "\n"
        + "\n".join(rows)
        + "\n\nLog marginal likelihoods of both libraries at skbnn's evidence optimum (δ, σ), "
        "and the GLM predictive variances at it; then what laplace-torch's own tuning reaches "
        "(skbnn's Newton method reaches the exact optimum in a few O(P) steps).\n\n"
        + lml_header
        + "\n"
        + "\n".join(lml_rows)
    )
    return body, bar, (X, y)


def run_bar(args, bar, data):
    """The issue's bar: skbnn whole fit (5 epochs) vs laplace-torch fit + optimize on a net.

    skbnn runs with its defaults (three networks on these 2,000 rows, online evidence, the
    refinement and GGN-VI) and, for comparison with the first round, as one network with
    post-hoc evidence tuning, the work laplace-torch does.
    """
    X, y = data
    rows = []
    targets = {"full": 20, "kron": 2}
    configurations = {
        "defaults": {},
        "one network, post-hoc evidence": dict(
            evidence_tuning="posthoc", normalize_y=False, ensemble_size=1
        ),
    }
    for label, options in configurations.items():
        for structure in ("full", "kron"):
            whole, _ = median_time(
                lambda structure=structure, options=options: LaplaceMLPRegressor(
                    HIDDEN, hessian_structure=structure, max_iter=5, random_state=0, **options
                ),
                X,
                y,
                args.repeats,
            )
            ratio = bar[structure] / whole
            verdict = "met" if ratio >= targets[structure] else "NOT met"
            rows.append(
                f"| {label} | {structure} | {whole:.2f} | {bar[structure]:.2f} "
                f"| **{ratio:.1f}×** | ≥ {targets[structure]}× ({verdict}) |"
            )
            print(rows[-1], flush=True)
    return (
        "skbnn's whole `fit` (5 training epochs, GGN, evidence tuning of δ and σ; median of "
        f"{args.repeats}) with its defaults — three networks on these rows, online evidence, "
        "refinement, GGN-VI — and as one network with post-hoc evidence tuning, against "
        "laplace-torch's `fit` + "
        '`optimize_prior_precision(method="marglik")` on the trained network above, same run.\n\n'
        "| skbnn | GGN | skbnn whole fit (s) | laplace-torch fit + optimize (s) | speed-up "
        "| bar |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def run_sklearn_mlp(args):
    from sklearn.neural_network import MLPRegressor

    X, y = make_data(args.n)
    epochs, batch = args.mlp_epochs, 256
    makers = {
        "sklearn MLPRegressor": lambda: MLPRegressor(
            hidden_layer_sizes=HIDDEN,
            activation="tanh",
            solver="adam",
            batch_size=batch,
            learning_rate_init=1e-2,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=0,
        ),
        "skbnn, posthoc evidence": lambda: LaplaceMLPRegressor(
            HIDDEN,
            max_iter=epochs,
            batch_size=batch,
            evidence_tuning="posthoc",
            ensemble_size=1,
            random_state=0,
        ),
        "skbnn, online evidence (default)": lambda: LaplaceMLPRegressor(
            HIDDEN, max_iter=epochs, batch_size=batch, ensemble_size=1, random_state=0
        ),
    }
    # MLPRegressor trains one network, so each skbnn fit does too (ensemble_size=1 above).
    # Small matrices: one thread can beat two, and OpenBLAS (numpy, so MLPRegressor) busy-waits
    # badly on a shared machine; each estimator is timed with 1 and with --threads threads.
    thread_counts = sorted({1, args.threads})
    times, models = {}, {}
    for name, make in makers.items():
        for threads in thread_counts:
            torch.set_num_threads(threads)
            with threadpool_limits(threads):
                times[name, threads], models[name] = median_time(make, X, y, args.repeats)
            print(name, threads, times[name, threads], flush=True)
    torch.set_num_threads(args.threads)
    best = {name: min(times[name, k] for k in thread_counts) for name in makers}
    base = best["sklearn MLPRegressor"]
    rows = [
        f"| {name} | {getattr(model, 'hessian_structure_', '–')} | "
        + " | ".join(f"{times[name, k]:.2f}" for k in thread_counts)
        + f" | {best[name] / base:.2f} |"
        for name, model in models.items()
    ]
    return (
        f"Same data (n = {args.n}), 8 → 50 → 50 → 1 tanh, Adam, lr 0.01, batch {batch}, "
        f"{epochs} epochs, float64; median of {args.repeats} fits. skbnn adds the posterior "
        '(its `hessian_structure="auto"` '
        "picks kron for P = 3,051) and the evidence tuning.\n\n"
        "Best-of-threads times are compared: numpy's OpenBLAS busy-waits when the machine is "
        "shared, so MLPRegressor with 2 BLAS threads can be an order of magnitude slower than "
        "with 1.\n\n| estimator | GGN | "
        + " | ".join(f"fit, {k} thread{'s' if k > 1 else ''} (s)" for k in thread_counts)
        + " | best time / best MLPRegressor |\n|---|---|"
        + "---|" * len(thread_counts)
        + "---|\n"
        + "\n".join(rows)
    )


def run_gp(args):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    X_test, y_test = make_data(N_TEST, seed=1)
    rows = []
    LaplaceMLPRegressor(HIDDEN, max_iter=2, random_state=0).fit(*make_data(50))  # warm-up
    for n in args.gp_sizes:
        X, y = make_data(n)
        models = {
            "GP (RBF + White)": GaussianProcessRegressor(
                ConstantKernel() * RBF(1.0) + WhiteKernel(0.1), normalize_y=True, random_state=0
            ),
            "skbnn (defaults, hidden (50, 50))": LaplaceMLPRegressor(HIDDEN, random_state=0),
        }
        results = {}
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(X, y)
            mean, std = model.predict(X_test, return_std=True)
            elapsed = time.perf_counter() - start
            ll = float(np.mean(norm.logpdf(y_test, mean, std)))
            rmse = float(np.sqrt(np.mean((mean - y_test) ** 2)))
            results[name] = (elapsed, rmse, ll)
            print(name, n, results[name], flush=True)
        skbnn_time = results["skbnn (defaults, hidden (50, 50))"][0]
        rows += [
            f"| {n} | {name} | {elapsed:.1f} | {elapsed / skbnn_time:.2f} | {rmse:.3f} | {ll:.3f} |"
            for name, (elapsed, rmse, ll) in results.items()
        ]
    return (
        f"Fit + predict ({N_TEST} test rows) on the same synthetic data; test LL is the mean "
        "per-point Gaussian log-likelihood (true noise std 0.1, so the best possible is about "
        f"{norm.logpdf(0, 0, 0.1) - 0.5:.2f}). The GP optimises its kernel hyperparameters by the "
        "marginal likelihood (no restarts); skbnn uses its defaults (auto epochs, online "
        "evidence).\n\n| n | model | fit + predict (s) | time / skbnn | test RMSE "
        "| test LL |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="*",
        default=["laplace", "bar", "mlp", "gp"],
        choices=["laplace", "bar", "mlp", "gp"],
    )
    parser.add_argument("--n", type=int, default=2000, help="training rows of parts 1–3")
    parser.add_argument("--epochs", type=int, default=100, help="training of the reference net")
    parser.add_argument("--laplace-batch-size", type=int, default=2000)
    parser.add_argument("--joint-steps", type=int, default=1000)
    parser.add_argument(
        "--joint-time-budget",
        type=float,
        default=60.0,
        help="seconds for laplace-torch's joint loop; the rest of the steps is extrapolated",
    )
    parser.add_argument("--mlp-epochs", type=int, default=100)
    parser.add_argument("--gp-sizes", type=int, nargs="*", default=[1000, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=3, help="fits per timing (parts 2, 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if "bar" in args.parts and "laplace" not in args.parts:
        parser.error("--parts bar needs laplace (the same trained network)")

    torch.set_num_threads(args.threads)
    sections = {}
    with threadpool_limits(args.threads):
        if "laplace" in args.parts:
            body, bar, data = run_laplace_comparison(args)
            sections["laplace-torch"] = body
            if "bar" in args.parts:
                sections["bar"] = run_bar(args, bar, data)
        if "mlp" in args.parts:
            sections["mlp"] = run_sklearn_mlp(args)
        if "gp" in args.parts:
            sections["gp"] = run_gp(args)

    from importlib.metadata import version

    cli = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/speed.py", *cli])
    titles = {
        "laplace-torch": "skbnn vs laplace-torch, post-hoc on one trained network",
        "bar": "skbnn whole fit vs laplace-torch fit + optimize (the issue's bar)",
        "mlp": "skbnn vs sklearn MLPRegressor (fit time)",
        "gp": "skbnn vs GaussianProcessRegressor",
    }
    parts = [f"### {titles[key]}\n\n{text}" for key, text in sections.items()]
    body = (
        f"`{command}` — one process, side by side; {platform.machine()}, {args.threads} CPU "
        f"threads (a shared 2-core machine: absolute times are noisy, the ratios are what "
        f"counts), torch {torch.__version__}, laplace-torch {version('laplace-torch')}, "
        f"scikit-learn {version('scikit-learn')}.\n\n" + "\n\n".join(parts)
    )
    print(body)
    if not args.no_write:
        write_section("Speed: skbnn vs laplace-torch, MLPRegressor and GP", body)


if __name__ == "__main__":
    main()

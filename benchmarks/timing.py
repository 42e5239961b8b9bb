"""Fit and predict time of the default LaplaceMLPRegressor on kin8nm, with its parts.

The whole fit (training with online evidence, GGN, post-hoc evidence, the Levenberg–Marquardt
refinement, the GGN-VI mean step) and predict are timed as a user sees them, and the same fit
without the refinement (``map_refinement_steps=0``) side by side; then, on the fitted model, the
post-training stages are re-run and timed on their own: the GGN with its eigendecomposition, the
evidence maximisation over (δ, σ) on the cached eigenvalues, and the closed-form GGN-VI mean step
(one backward pass over the rows and one solve). Writes a section of benchmarks/RESULTS.md.

    python benchmarks/timing.py
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_uci_regression, write_section

from skbnn import LaplaceMLPRegressor
from skbnn._curvature import fit_curvature
from skbnn._evidence import maximize_log_marginal_likelihood
from skbnn._likelihoods import GaussianLikelihood
from skbnn._variational import gaussian_glm_posterior_mean


def main():
    X_train, y_train, X_test, _ = load_uci_regression("kin8nm", 0)
    rows = []
    for repeat in range(3):
        model = make_pipeline(StandardScaler(), LaplaceMLPRegressor(random_state=repeat))
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit = time.perf_counter() - start
        model.predict(X_test, return_std=True)
        total = time.perf_counter() - start
        start = time.perf_counter()
        make_pipeline(
            StandardScaler(), LaplaceMLPRegressor(map_refinement_steps=0, random_state=repeat)
        ).fit(X_train, y_train)
        unrefined = time.perf_counter() - start

        reg = model[-1]
        X = torch.tensor(model[0].transform(X_train))
        weights = torch.ones(len(X), dtype=torch.float64)
        likelihood = GaussianLikelihood(torch.ones(1, dtype=torch.float64))
        start = time.perf_counter()
        fit_curvature(
            reg.module_, likelihood, X, weights, reg.posterior_.param_names, reg.hessian_structure_
        )
        curvature = time.perf_counter() - start
        start = time.perf_counter()
        maximize_log_marginal_likelihood(
            reg._evidence_terms, prior_precision=None, noise_scale=None
        )
        evidence = time.perf_counter() - start
        y = torch.tensor((y_train[:, None] - reg._y_mean) / reg._y_scale)
        posterior = reg.posterior_
        theta = posterior.linearization_point
        start = time.perf_counter()
        gaussian_glm_posterior_mean(
            reg.module_,
            likelihood,
            X,
            y,
            weights,
            replace(posterior, mean=theta),
            prior_gradient=posterior.prior_precision_vector * theta,
        )
        mean_step = time.perf_counter() - start
        rows.append((fit, total, unrefined, curvature, evidence, mean_step))
        print(
            f"fit {fit:.1f}s  fit+predict {total:.1f}s  fit without refinement {unrefined:.1f}s  "
            f"GGN+eigh {curvature:.2f}s  "
            f"evidence {evidence * 1e3:.1f}ms  GGN-VI mean step {mean_step * 1e3:.1f}ms",
            flush=True,
        )
    fit, total, unrefined, curvature, evidence, mean_step = np.median(rows, axis=0)
    body = (
        "`python benchmarks/timing.py` — default `LaplaceMLPRegressor` in a StandardScaler "
        f"pipeline on kin8nm split 0 ({len(X_train)} training rows, {X_train.shape[1]} "
        f"features, {reg.posterior_.n_params} weights, structure `{reg.hessian_structure_}`), "
        f"median of 3 fits; {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}.\n\n"
        "| fit | fit + predict (819 rows) | of which: final GGN + eigh "
        "| evidence tuning of δ, σ | GGN-VI mean step | fit with `map_refinement_steps=0` |\n"
        "|---|---|---|---|---|---|\n"
        f"| {fit:.1f} s | {total:.1f} s | {curvature:.2f} s | {evidence * 1e3:.1f} ms "
        f"| {mean_step * 1e3:.1f} ms | {unrefined:.1f} s |\n\n"
        "The evidence tuning is the Newton maximisation of the Laplace evidence on the cached "
        "GGN eigenvalues (done once after training and at each of the 20 online refreshes); the "
        "GGN + eigendecomposition is the curvature pass it needs, repeated after each "
        "Levenberg–Marquardt step of the refinement; the GGN-VI mean step "
        '(`inference="auto"`) is one backward pass over the rows and a solve in the GGN\'s '
        "eigenbasis."
    )
    write_section("Timing: kin8nm with defaults", body)


if __name__ == "__main__":
    main()

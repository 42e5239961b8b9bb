"""Bayesian optimisation of the Branin function with LaplaceMLPRegressor as the surrogate.

Bayesian optimisation spends a small budget of expensive evaluations well: fit a probabilistic
surrogate to the points evaluated so far, then evaluate next where the expected improvement (EI)
over the best value is largest. EI needs a predictive mean and standard deviation, which
``predict(X, return_std=True)`` gives, with the prior and noise tuned by the evidence at every
refit (no hyperparameters to hand-tune inside the loop).

We minimise the 2-D Branin function (three global minima, value 0.397887) on [-5, 10] × [0, 15],
starting from 5 random points, and compare with random search at the same budget. The left panel
shows the best value found so far minus the optimum (the regret) against the number of
evaluations, for a few seeds; the right panel the final surrogate of the first seed.

Environment: ``SKBNN_EXAMPLE_SMOKE=1`` runs one short seed; ``SKBNN_EXAMPLE_OUTPUT`` is the folder
for the PNG (default: this folder).
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from scipy.stats import norm

from skbnn import LaplaceMLPRegressor

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)

LOWER, UPPER = np.array([-5.0, 0.0]), np.array([10.0, 15.0])
BRANIN_MIN = 0.397887
BRANIN_ARGMIN = np.array([[-np.pi, 12.275], [np.pi, 2.275], [9.42478, 2.475]])
N_INIT = 5


def branin(x):
    """Branin–Hoo on the original domain; x has shape (n, 2)."""
    x1, x2 = x[:, 0], x[:, 1]
    b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def to_domain(u):
    """Map the unit square, where we sample, to the Branin domain."""
    return LOWER + u * (UPPER - LOWER)


def standardize(u):
    """Uniform on the unit square to mean 0, variance 1: the scale the isotropic prior assumes."""
    return (u - 0.5) * np.sqrt(12)


def expected_improvement(mean, std, best):
    """E[max(best − f, 0)] for f ~ N(mean, std²): the expected gain when minimising."""
    z = (best - mean) / std
    return (best - mean) * norm.cdf(z) + std * norm.pdf(z)


def surrogate(seed, max_iter):
    return LaplaceMLPRegressor(max_iter=max_iter, random_state=seed)


def bayesian_optimization(seed, budget, n_candidates, max_iter):
    rng = np.random.RandomState(seed)
    U = rng.uniform(size=(N_INIT, 2))
    values = branin(to_domain(U))
    while len(values) < budget:
        reg = surrogate(seed, max_iter).fit(standardize(U), values)
        candidates = rng.uniform(size=(n_candidates, 2))
        mean, std = reg.predict(standardize(candidates), return_std=True)
        u_next = candidates[np.argmax(expected_improvement(mean, std, values.min()))]
        U = np.vstack([U, u_next])
        values = np.append(values, branin(to_domain(u_next[None]))[0])
    return U, values


def random_search(seed, budget):
    rng = np.random.RandomState(seed)
    return branin(to_domain(rng.uniform(size=(budget, 2))))


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # small networks: one thread beats several fighting over the cores
    seeds = [0] if SMOKE else [0, 1, 2, 3, 4]
    budget = 20 if SMOKE else 35
    n_candidates = 1000 if SMOKE else 5000
    max_iter = 300 if SMOKE else "auto"

    regret = {"Bayesian optimisation (EI)": [], "random search": []}
    start = time.perf_counter()
    for seed in seeds:
        U, values = bayesian_optimization(seed, budget, n_candidates, max_iter)
        regret["Bayesian optimisation (EI)"].append(np.minimum.accumulate(values) - BRANIN_MIN)
        regret["random search"].append(
            np.minimum.accumulate(random_search(seed, budget)) - BRANIN_MIN
        )
        if seed == seeds[0]:
            first_U, first_values = U, values
    seconds = time.perf_counter() - start

    print(f"Branin, {len(seeds)} seed(s), {budget} evaluations each ({N_INIT} random to start)")
    print(f"{'method':<28} {'median final regret':>20} {'regret after 10 evals':>22}")
    for name, runs in regret.items():
        runs = np.array(runs)
        print(f"{name:<28} {np.median(runs[:, -1]):20.4f} {np.median(runs[:, 9]):22.4f}")
    print(f"{seconds:.1f} s in total ({budget - N_INIT} surrogate fits per seed)")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    evaluations = np.arange(1, budget + 1)
    for color, (name, runs) in zip(["C0", "C1"], regret.items(), strict=True):
        runs = np.array(runs)
        for run in runs:
            left.plot(evaluations, run, color=color, alpha=0.25, lw=1)
        left.plot(evaluations, np.median(runs, axis=0), color=color, lw=2.5, label=name)
    left.axvline(N_INIT + 0.5, color="0.6", ls=":", label="end of the random start")
    left.set_yscale("log")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("evaluations of Branin")
    left.set_ylabel("best value so far − optimum")
    left.set_title(f"Regret ({len(seeds)} seed(s): thin lines; median: thick)")
    left.legend()

    reg = surrogate(seeds[0], max_iter).fit(standardize(first_U), first_values)
    u1, u2 = np.meshgrid(np.linspace(0, 1, 100), np.linspace(0, 1, 100))
    grid_u = np.column_stack([u1.ravel(), u2.ravel()])
    mean = reg.predict(standardize(grid_u)).reshape(u1.shape)
    grid = to_domain(grid_u)
    image = right.contourf(
        grid[:, 0].reshape(u1.shape), grid[:, 1].reshape(u1.shape), mean, levels=30, cmap="viridis"
    )
    fig.colorbar(image, ax=right, label="surrogate mean")
    points = to_domain(first_U)
    right.scatter(*points[:N_INIT].T, c="w", edgecolors="k", label="random start")
    right.scatter(*points[N_INIT:].T, c="r", edgecolors="k", label="chosen by EI")
    right.scatter(*BRANIN_ARGMIN.T, marker="*", s=200, c="gold", edgecolors="k", label="minima")
    right.set_xlabel("x₁")
    right.set_ylabel("x₂")
    right.set_title("Final surrogate of the first seed")
    right.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "bayesian_optimization.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

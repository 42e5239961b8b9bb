"""The Gaussian-process view of a Laplace network: its kernels and its two kinds of uncertainty.

Linearised at its MAP weights θ*, the network is a Gaussian process (Khan et al. 2019). Its prior
kernel is κ(x, x') = J(x) J(x')ᵀ / δ, an empirical neural tangent kernel scaled by the prior
variance; its posterior kernel is k(x, x') = J(x) Σ J(x')ᵀ with Σ the Laplace posterior covariance.
``kernel(X)`` and ``kernel(X, prior=True)`` return them. The two are linked by GP regression on the
training inputs with noise σ²:

    k(x, x') = κ(x, x') − κ(x, X) (κ(X, X) + σ²I)⁻¹ κ(X, x'),

which this script checks numerically (to about 1e-6: the GGN keeps only its eigenvalues above
float64 round-off). The diagonal of k is the epistemic variance, which
``predict_uncertainty`` reports next to the aleatoric noise σ: one grows away from the data, the
other does not.

Environment: ``SKBNN_EXAMPLE_SMOKE=1`` trains shorter; ``SKBNN_EXAMPLE_OUTPUT`` is the folder for
the PNG (default: this folder).
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from skbnn import LaplaceMLPRegressor

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)
NOISE = 0.1


def target(x):
    return np.sin(2 * x) + 0.3 * x


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # tiny networks: one thread beats several fighting over the cores
    rng = np.random.RandomState(0)
    x = np.concatenate([rng.uniform(-4, -1.5, 60), rng.uniform(1, 3.5, 60)])
    X, y = x[:, None], target(x) + NOISE * rng.randn(120)
    start = time.perf_counter()
    reg = LaplaceMLPRegressor(max_iter=500 if SMOKE else "auto", random_state=0).fit(X, y)
    print(
        f"fit in {time.perf_counter() - start:.1f} s: σ = {reg.sigma_noise_:.3f} "
        f"(true {NOISE}), δ = {reg.prior_precision_:.3f}, structure {reg.hessian_structure_}"
    )

    # Kernels on a coarse grid: the heatmaps.
    points = np.linspace(-6, 6, 25)[:, None]
    prior_kernel = reg.kernel(points, prior=True)
    posterior_kernel = reg.kernel(points)

    # GP regression with the prior kernel and noise σ² on the training inputs gives the posterior.
    kappa_XX = reg.kernel(X, prior=True)
    kappa_pX = reg.kernel(points, X, prior=True)
    gram = kappa_XX + reg.sigma_noise_**2 * np.eye(len(X))
    gp_posterior = prior_kernel - kappa_pX @ np.linalg.solve(gram, kappa_pX.T)
    gap = np.abs(gp_posterior - posterior_kernel).max() / np.abs(posterior_kernel).max()
    print(f"GP regression with the prior kernel vs kernel(X): max relative difference {gap:.1e}")

    grid = np.linspace(-6, 6, 300)[:, None]
    parts = reg.predict_uncertainty(grid)
    gap = np.abs(np.diag(reg.kernel(grid)) - parts.epistemic_std**2).max()
    print(f"diag kernel(X) vs epistemic_std²: max difference {gap:.1e}")
    in_gap = (grid[:, 0] > -1.5) & (grid[:, 0] < 1)
    outside = np.abs(grid[:, 0]) > 5
    print(f"{'region':<22} {'epistemic std':>13} {'aleatoric std':>13}")
    for name, mask in [("gap (-1.5, 1)", in_gap), ("far out |x| > 5", outside)]:
        print(
            f"{name:<22} {parts.epistemic_std[mask].mean():13.3f} "
            f"{parts.aleatoric_std[mask].mean():13.3f}"
        )
    train_std = reg.predict_uncertainty(X)
    print(
        f"{'training inputs':<22} {train_std.epistemic_std.mean():13.3f} "
        f"{train_std.aleatoric_std.mean():13.3f}"
    )

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    extent = [points[0, 0], points[-1, 0], points[-1, 0], points[0, 0]]
    for ax, K, title in [
        (axes[0], prior_kernel, "prior kernel J Jᵀ/δ"),
        (axes[1], posterior_kernel, "posterior kernel J Σ Jᵀ"),
    ]:
        limit = np.abs(K).max()
        image = ax.imshow(K, cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent)
        fig.colorbar(image, ax=ax, shrink=0.85)
        ax.set_title(title)
        ax.set_xlabel("x'")
        ax.set_ylabel("x")
        for edge in (-1.5, 1):
            ax.axvline(edge, color="k", lw=0.5, ls=":")
            ax.axhline(edge, color="k", lw=0.5, ls=":")
    ax = axes[2]
    ax.plot(grid[:, 0], parts.epistemic_std, label="epistemic std √(J Σ Jᵀ)")
    ax.plot(grid[:, 0], parts.aleatoric_std, label="aleatoric std σ")
    ax.plot(grid[:, 0], parts.total_std, "k--", lw=1, label="total std")
    ax.plot(X[:, 0], np.full(len(X), 0.01), "|", color="C3", ms=12, label="training inputs")
    ax.axvspan(-1.5, 1, color="0.9", zorder=0)
    ax.set_yscale("log")
    ax.set_ylim(0.005, 30 * parts.total_std.max())
    ax.set_xlabel("x")
    ax.set_ylabel("standard deviation (units of y)")
    ax.set_title("predictive std, split")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.suptitle("The network as a Gaussian process (dotted lines and grey band: the gap)")
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "gp_view.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

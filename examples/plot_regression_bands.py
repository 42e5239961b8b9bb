"""Error bars on a 1-D toy problem with a gap in the inputs, for each posterior structure.

The training inputs cover two intervals with nothing in between. A useful posterior is confident
where the data are and uncertain in the gap and beyond the ends. We fit LaplaceMLPRegressor with a
dense GGN (``hessian_structure="full"``), Kronecker factors (``"kron"``), a diagonal (``"diag"``)
and a dense posterior over the last layer only (``subset_of_weights="last_layer"``), all Laplace
(``inference="laplace"``), and Gaussian variational inference on the linearised network
(``inference="ggn-vi"``, the regressor's default), and draw the predictive mean with ±2 standard
deviations (total, and the epistemic part alone).

Each panel's title reports the evidence-tuned noise σ and prior precision δ. The printed table adds
the log evidence, the test log-likelihood, and the mean predictive std on the data and in the gap.

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
from skbnn.metrics import gaussian_log_likelihood

SMOKE = os.environ.get("SKBNN_EXAMPLE_SMOKE", "") not in ("", "0")
OUTPUT = Path(os.environ.get("SKBNN_EXAMPLE_OUTPUT") or Path(__file__).parent)

CONFIGS = {
    "full": dict(hessian_structure="full", inference="laplace"),
    "kron": dict(hessian_structure="kron", inference="laplace"),
    "diag": dict(hessian_structure="diag", inference="laplace"),
    "last layer (full)": dict(
        hessian_structure="full", subset_of_weights="last_layer", inference="laplace"
    ),
    "GGN-VI (full)": dict(hessian_structure="full", inference="ggn-vi"),
}
NOISE = 0.1


def target(x):
    return np.sin(2 * x) + 0.3 * x


def make_data(n, rng):
    """Inputs on [-4, -1.5] ∪ [1, 3.5]; nothing in the gap between."""
    x = np.concatenate([rng.uniform(-4, -1.5, n // 2), rng.uniform(1, 3.5, n - n // 2)])
    return x[:, None], target(x) + NOISE * rng.randn(n)


def main():
    plt.switch_backend("agg")  # files only, no window
    torch.set_num_threads(1)  # tiny networks: one thread beats several fighting over the cores
    rng = np.random.RandomState(0)
    X, y = make_data(120, rng)
    X_test = rng.uniform(-6, 6, size=(2000, 1))
    y_test = target(X_test[:, 0]) + NOISE * rng.randn(2000)
    grid = np.linspace(-6, 6, 300)[:, None]
    in_gap = (grid[:, 0] > -1.5) & (grid[:, 0] < 1)
    on_data = ((grid[:, 0] > -4) & (grid[:, 0] < -1.5)) | ((grid[:, 0] > 1) & (grid[:, 0] < 3.5))
    max_iter = 500 if SMOKE else "auto"

    fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True, sharey=True)
    print(f"{len(y)} training points, true noise σ = {NOISE}")
    print(
        f"{'posterior':<18} {'time s':>6} {'σ':>6} {'δ':>7} {'log evid.':>9} "
        f"{'test LL':>8} {'std data':>8} {'std gap':>8}"
    )
    for ax, (name, params) in zip(axes.ravel()[: len(CONFIGS)], CONFIGS.items(), strict=True):
        start = time.perf_counter()
        reg = LaplaceMLPRegressor(max_iter=max_iter, random_state=0, **params).fit(X, y)
        seconds = time.perf_counter() - start
        parts = reg.predict_uncertainty(grid)
        mean, std = parts.mean, parts.total_std
        test_mean, test_std = reg.predict(X_test, return_std=True)
        print(
            f"{name:<18} {seconds:6.1f} {reg.sigma_noise_:6.3f} {reg.prior_precision_:7.3f} "
            f"{reg.log_marginal_likelihood_value_:9.1f} "
            f"{gaussian_log_likelihood(y_test, test_mean, test_std):8.3f} "
            f"{std[on_data].mean():8.3f} {std[in_gap].mean():8.3f}"
        )
        x = grid[:, 0]
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.2, label="±2 std")
        epistemic = parts.epistemic_std
        ax.fill_between(
            x,
            mean - 2 * epistemic,
            mean + 2 * epistemic,
            color="C0",
            alpha=0.35,
            label="±2 epistemic std",
        )
        ax.plot(x, target(x), "k--", lw=1, label="true function")
        ax.plot(x, mean, color="C0", lw=2, label="predictive mean")
        ax.scatter(X[:, 0], y, s=10, color="C3", zorder=3, label="training data")
        ax.axvspan(-1.5, 1, color="0.9", zorder=0)
        ax.set_title(f"{name}: σ = {reg.sigma_noise_:.2f}, δ = {reg.prior_precision_:.2g}")
        ax.set_ylim(-5, 5)
        ax.set_ylabel("y")
    # The sixth panel holds the legend.
    axes[1, 2].axis("off")
    axes[1, 2].legend(*axes[0, 0].get_legend_handles_labels(), loc="center", fontsize=11)
    for ax in axes[1]:
        ax.set_xlabel("x (grey: the gap without data)")
    axes[0, 2].set_xlabel("x (grey: the gap without data)")
    axes[0, 2].xaxis.set_tick_params(labelbottom=True)
    fig.suptitle("LaplaceMLPRegressor: the GLM predictive for each kind of posterior")
    fig.tight_layout()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "regression_bands.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

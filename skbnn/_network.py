"""The MLP module factory and the MAP training loop.

The network is a plain :class:`torch.nn.Sequential` of ``Linear`` layers and activations, so that
curvature code can address its parameters by name (``"0.weight"``, ``"0.bias"``, ...) and the last
``Linear`` layer is always the final module.

Training minimises the negative log joint divided by the (weighted) number of samples,

    L(θ) = (1/N) Σ_n w_n ℓ_n(θ) + δ ‖θ‖² / (2N),

so the Gaussian prior N(0, δ⁻¹I) acts as weight decay of the right strength for any data size.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "logistic": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def build_mlp(
    n_features: int,
    hidden_layer_sizes: Sequence[int],
    n_outputs: int,
    activation: str,
    *,
    dtype: torch.dtype,
    generator: torch.Generator,
) -> nn.Sequential:
    """Build an MLP with LeCun-uniform initialisation drawn from ``generator`` only.

    ``hidden_layer_sizes=()`` gives a linear model. Parameters are created with
    :func:`torch.nn.utils.skip_init` so that torch's global random state is never touched.
    """
    sizes = [n_features, *hidden_layer_sizes, n_outputs]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=dtype)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def layer_sizes(module: nn.Sequential, names: Sequence[str]) -> tuple[int, ...]:
    """Number of parameters of each Linear layer among ``names`` (weight and bias together)."""
    params = dict(module.named_parameters())
    sizes: dict[str, int] = {}
    for name in names:
        layer = name.rsplit(".", 1)[0]
        sizes[layer] = sizes.get(layer, 0) + params[name].numel()
    return tuple(sizes.values())


def last_layer_parameter_names(module: nn.Sequential) -> list[str]:
    """Names of the weight and bias of the final ``Linear`` layer."""
    index = len(module) - 1
    return [f"{index}.weight", f"{index}.bias"]


# Sums over the data run over blocks of this many rows (bounded activation memory).
DATA_BLOCK_ROWS = 65536


def row_blocks(n_rows: int, block: int = DATA_BLOCK_ROWS):
    """Slices covering ``range(n_rows)`` in blocks of ``block`` rows."""
    return (slice(begin, begin + block) for begin in range(0, n_rows, block))


def flat_parameters(module: nn.Module, names: Sequence[str] | None = None) -> torch.Tensor:
    """Concatenate (a subset of) the module's parameters into one detached vector."""
    params = dict(module.named_parameters())
    names = list(params) if names is None else names
    return torch.cat([params[name].detach().reshape(-1) for name in names])


def unflatten_parameters(
    module: nn.Module, names: Sequence[str], values: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Views of a flat vector (as from :func:`flat_parameters`) shaped like the named parameters."""
    params = dict(module.named_parameters())
    chunks = values.split([params[name].numel() for name in names])
    return {name: chunk.view_as(params[name]) for name, chunk in zip(names, chunks, strict=True)}


def set_flat_parameters(module: nn.Module, names: Sequence[str], values: torch.Tensor) -> None:
    """Copy a flat vector (as from :func:`flat_parameters`) into the named parameters, in place."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in unflatten_parameters(module, names, values).items():
            params[name].copy_(value)


@dataclass
class TrainingConfig:
    """Optimisation settings of :func:`train_map`, as validated by the estimator."""

    max_iter: int
    batch_size: int
    learning_rate_init: float
    early_stopping: bool = False
    n_iter_no_change: int = 10
    tol: float = 1e-4
    verbose: int = 0
    # Warn (ConvergenceWarning) when max_iter ends training while the loss still improves.
    warn_convergence: bool = False


@dataclass
class TrainingResult:
    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    n_iter: int = 0
    interrupted: bool = False
    # With validation: the highest mean validation log-likelihood, whose weights are restored.
    best_validation_score: float | None = None


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite (a ValueError: settings or data are at fault)."""


def train_map(
    module: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    config: TrainingConfig,
    prior_precision: Callable[[], float | Sequence[float]],
    generator: torch.Generator,
    validation: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    prior_penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    validation_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> TrainingResult:
    """Find the MAP weights with Adam on minibatches and a cosine learning-rate decay.

    Parameters
    ----------
    loss_fn : callable
        Per-sample negative log-likelihood ``loss_fn(outputs, targets) -> (batch,)``.
    weights : tensor of shape (n_samples,)
        Frequency weights; the objective is the weighted mean loss plus the prior term.
    prior_precision : callable
        Returns the current prior precision δ, one float or one per Linear layer (in order); it
        may change between epochs (online evidence).
    validation : tuple (X_val, y_val, w_val), optional
        With ``config.early_stopping``: after each epoch the validation score, the weighted mean
        log-likelihood per row (higher is better), is recorded; training stops after
        ``n_iter_no_change`` epochs without an improvement by more than ``tol`` (relative), and
        the weights of the best score are restored.
    on_epoch_end : callable, optional
        Called with the 1-based epoch number after each epoch (used for online evidence steps).
    prior_penalty : callable, optional
        ``prior_penalty(module)`` → −log p(θ) up to a constant, for a prior other than
        N(0, δ⁻¹I) (``partial_fit``: the previous posterior); it is added to the objective
        divided by N, and ``prior_precision`` should then return 0.
    validation_loss_fn : callable, optional
        Per-sample loss of the validation set, when it differs from ``loss_fn`` (a warm-up loss
        must not compete with the likelihood for the best weights); default ``loss_fn``.

    The cosine decay lets the last epochs settle at a mode, which the Laplace approximation assumes.
    A ``KeyboardInterrupt`` stops training after the current step with a warning; the weights
    reached so far are kept.
    """
    n_samples = X.shape[0]
    total_weight = float(weights.sum())
    mean_weight = total_weight / n_samples
    # The prior's gradient δθ/N is Adam's (coupled, L2) weight decay; δ may change between epochs
    # and may differ between layers, so each Linear layer is one parameter group.
    layers = [list(m.parameters()) for m in module.modules() if isinstance(m, nn.Linear)]
    optimizer = torch.optim.Adam(
        [{"params": params} for params in layers], lr=config.learning_rate_init
    )
    steps_per_epoch = math.ceil(n_samples / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.max_iter * steps_per_epoch
    )
    result = TrainingResult()
    best_state, best_score, epochs_without_improvement = None, -math.inf, 0
    full_batch = config.batch_size >= n_samples
    start = time.perf_counter()
    try:
        for epoch in range(1, config.max_iter + 1):
            order = None if full_batch else torch.randperm(n_samples, generator=generator)
            deltas = np.broadcast_to(np.asarray(prior_precision(), dtype=float), (len(layers),))
            for group, delta in zip(optimizer.param_groups, deltas, strict=True):
                group["weight_decay"] = float(delta) / total_weight
            epoch_loss = 0.0
            for begin in range(0, n_samples, config.batch_size):
                if order is None:
                    xb, yb, wb = X, y, weights
                else:
                    index = order[begin : begin + config.batch_size].to(X.device)
                    xb, yb, wb = X[index], y[index], weights[index]
                optimizer.zero_grad(set_to_none=True)
                # Unbiased minibatch estimate of the weighted mean loss (exact for a full batch).
                loss = (wb * loss_fn(module(xb), yb)).sum() / (mean_weight * xb.shape[0])
                if prior_penalty is not None:
                    loss = loss + prior_penalty(module) / total_weight
                loss.backward()
                optimizer.step()
                scheduler.step()
                epoch_loss += loss.detach() * xb.shape[0]
            with torch.no_grad():
                penalty = 0.5 * sum(
                    float(delta) * sum(p.square().sum() for p in params)
                    for delta, params in zip(deltas, layers, strict=True)
                )
                if prior_penalty is not None:
                    penalty = penalty + prior_penalty(module)
                epoch_loss = float(epoch_loss / n_samples + penalty / total_weight)
            if not math.isfinite(epoch_loss):
                raise TrainingDivergedError(
                    f"The training loss became {epoch_loss} at epoch {epoch}. Lower "
                    "learning_rate_init or check the scale of X and y."
                )
            result.loss_curve.append(epoch_loss)
            result.n_iter = epoch
            if validation is not None:
                score = -_validation_loss(module, validation_loss_fn or loss_fn, *validation)
                result.validation_scores.append(score)
                # As scikit-learn's MLP: patience counts epochs without a gain of ``tol``, and
                # the best weights are those of the highest score.
                improved = _improves(score, best_score, config.tol)
                epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
                if score > best_score:
                    best_score = score
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if config.verbose and (epoch == 1 or epoch % max(1, config.max_iter // 20) == 0):
                elapsed = time.perf_counter() - start
                print(
                    f"epoch {epoch:>5}/{config.max_iter}  loss {result.loss_curve[-1]:.6f}"
                    f"  {_progress_bar(epoch / config.max_iter)}  {elapsed:.1f}s",
                    flush=True,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if config.early_stopping and epochs_without_improvement >= config.n_iter_no_change:
                break
    except KeyboardInterrupt:
        warnings.warn(
            f"Training interrupted at epoch {result.n_iter}; the posterior is fitted at the "
            "weights reached so far.",
            UserWarning,
            stacklevel=3,
        )
        result.interrupted = True
    if best_state is not None:
        module.load_state_dict(best_state)
        result.best_validation_score = best_score
    stopped_early = result.n_iter < config.max_iter or result.interrupted
    if config.warn_convergence and not stopped_early and _still_improving(result, config):
        warnings.warn(
            f"Training stopped at max_iter={config.max_iter} epochs while the loss was still "
            "improving; increase max_iter for weights closer to the MAP.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


def _improves(score: float, best: float, tol: float) -> bool:
    """Whether ``score`` beats ``best`` by more than ``tol`` relative (anything beats −∞)."""
    return best == -math.inf or score > best + tol * abs(best)


def _still_improving(result: TrainingResult, config: TrainingConfig) -> bool:
    """The last loss improves on every loss before the last ``n_iter_no_change`` epochs."""
    curve = result.loss_curve
    window = min(config.n_iter_no_change, len(curve) - 1)
    if window < 1:
        return False
    earlier = min(curve[:-window])
    return curve[-1] < earlier - config.tol * abs(earlier)


def _validation_loss(module, loss_fn, X_val, y_val, w_val) -> float:
    with torch.no_grad():
        return float((w_val * loss_fn(module(X_val), y_val)).sum() / w_val.sum())


def _progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"

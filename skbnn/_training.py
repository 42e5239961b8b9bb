"""MAP training of the network: Adam on minibatches with a cosine learning-rate decay.

Training minimises the negative log joint divided by the (weighted) number of samples,

    L(θ) = (1/N) Σ_n w_n ℓ_n(θ) + δ ‖θ‖² / (2N),

so the Gaussian prior N(0, δ⁻¹I) acts as weight decay of the right strength for any data size.
The cosine decay lets the last epochs settle at a mode, which the Laplace approximation assumes.

:class:`MapTrainer` runs one epoch per call, so that the fit recipe (:mod:`skbnn._fitting`) can
change the loss and δ between epochs in its own loop (online evidence, a warm-up loss) instead of
through callbacks; :func:`train_map` runs all epochs with fixed ones. It trains the networks of an
ensemble together, as one batched model (:mod:`skbnn._stacked`), each with its own loss, δ and
minibatch order.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skbnn._stacked import StackedMLP

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainingConfig:
    """Optimisation settings of :class:`MapTrainer`, as validated by the estimator."""

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


def _adam(groups, learning_rate) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the parameters' device (CPU since torch
    2.4, CUDA): one kernel per step instead of a dozen per parameter, the same numbers."""
    try:
        return torch.optim.Adam(groups, lr=learning_rate, fused=True)
    except RuntimeError:
        return torch.optim.Adam(groups, lr=learning_rate)


class MapTrainer:
    """Adam steps on (X, y, weights) for one or more networks, one epoch per :meth:`run_epoch`.

    The networks (``nn.Sequential`` MLPs of one architecture, e.g. an ensemble's members) are
    trained together as one :class:`~skbnn._stacked.StackedMLP`: each step sums the networks'
    own objectives, so every network gets the gradients and Adam steps it would get alone, from
    its own minibatch order. Their modules hold the weights at the end of each epoch.

    Parameters
    ----------
    modules : sequence of torch.nn.Sequential
        The networks, trained in place.
    X, y, weights : tensors
        Training rows, targets and frequency weights (n_samples,), shared by the networks; each
        network's objective is the weighted mean loss plus its prior term.
    config : TrainingConfig
    generators : sequence of torch.Generator
        Each network's source of its minibatch order.
    validation : tuple (X_val, y_val, w_val), optional
        One network only. With ``config.early_stopping``: after each epoch the validation
        score, the weighted mean log-likelihood per row (higher is better), is recorded;
        :attr:`should_stop` turns true after ``n_iter_no_change`` epochs without an improvement
        by more than ``tol`` (relative, as scikit-learn's MLP), and :meth:`finish` restores the
        best weights.
    """

    def __init__(self, modules, X, y, weights, config, generators, validation=None):
        if validation is not None and len(modules) != 1:
            raise ValueError("Validation scores one network: train it alone.")
        self.modules, self.X, self.y, self.weights = list(modules), X, y, weights
        self.config, self.generators, self.validation = config, list(generators), validation
        self.total_weight = float(weights.sum())
        self.stacked = StackedMLP(self.modules)
        # Each Linear layer's δ_l θ/N is its (coupled, L2) weight decay, one value per network.
        self.layers = self.stacked.layer_parameters()
        self.optimizer = _adam(
            [p for layer in self.layers for p in layer], config.learning_rate_init
        )
        self.total_steps = config.max_iter * math.ceil(X.shape[0] / config.batch_size)
        self.n_steps = 0
        self._decay_key, self._decay = None, None  # the weight decay of the last δ (see below)
        self.results = [TrainingResult() for _ in self.modules]
        self._best_state, self._best_score, self._epochs_without_improvement = None, -math.inf, 0
        self._start = time.perf_counter()

    @property
    def result(self) -> TrainingResult:
        """The first network's record (the only one when training one network)."""
        return self.results[0]

    def epochs(self) -> range:
        """The 1-based epoch numbers up to ``max_iter``."""
        return range(1, self.config.max_iter + 1)

    @property
    def should_stop(self) -> bool:
        """Early stopping's patience is used up."""
        patience = self.config.n_iter_no_change
        return self.config.early_stopping and self._epochs_without_improvement >= patience

    def run_epoch(
        self,
        loss_fn: LossFunction,
        prior_precisions: Sequence[float | Sequence[float]],
        prior_penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
        validation_loss_fn: LossFunction | None = None,
    ) -> list[float]:
        """One pass over the data; returns each network's objective at its epoch's end weights.

        ``loss_fn(outputs, targets)`` is the per-row negative log-likelihood of every network at
        once: outputs (M, b, K), targets (M, b, ...), losses (M, b) (the likelihoods of
        :mod:`skbnn._likelihoods` broadcast so). ``prior_precisions[m]`` is network m's δ, one
        float or one per Linear layer. ``prior_penalty``, when given, is a −log p(θ) other than
        N(0, δ⁻¹I) of a network's named parameters (``partial_fit``: the previous posterior; δ
        should then be 0). ``validation_loss_fn``
        scores the validation rows when it differs from the loss (a warm-up loss must not
        compete with the likelihood for the best weights).
        """
        deltas = self._deltas(prior_precisions)
        losses = self._steps(loss_fn, self._weight_decay(deltas), prior_penalty)
        self.stacked.copy_to_modules()
        epoch_losses = losses.to(torch.float64).cpu().numpy()
        epoch_losses = epoch_losses + self._penalties(deltas, prior_penalty) / self.total_weight
        epoch = self.result.n_iter + 1
        if not np.isfinite(epoch_losses).all():
            raise TrainingDivergedError(
                f"The training loss became {epoch_losses[~np.isfinite(epoch_losses)][0]} at "
                f"epoch {epoch}. Lower learning_rate_init or check the scale of X and y."
            )
        for result, epoch_loss in zip(self.results, epoch_losses.tolist(), strict=True):
            result.loss_curve.append(epoch_loss)
            result.n_iter = epoch
        if self.validation is not None:
            self._score_validation(validation_loss_fn or loss_fn)
        self._report(epoch)
        return epoch_losses.tolist()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Turn a ``KeyboardInterrupt`` in the block into a warning: the weights so far stay."""
        try:
            yield
        except KeyboardInterrupt:
            self.stacked.copy_to_modules()
            warnings.warn(
                f"Training interrupted at epoch {self.result.n_iter}; the posterior is fitted at "
                "the weights reached so far.",
                UserWarning,
                stacklevel=3,
            )
            for result in self.results:
                result.interrupted = True

    def finish(self) -> list[TrainingResult]:
        """Restore the best validation weights; warn if ``max_iter`` cut training short."""
        config = self.config
        self._report(self.result.n_iter, final=True)
        if self._best_state is not None:
            self.modules[0].load_state_dict(self._best_state)
            self.result.best_validation_score = self._best_score
        for result in self.results:
            stopped_early = result.n_iter < config.max_iter or result.interrupted
            if config.warn_convergence and not stopped_early and _still_improving(result, config):
                warnings.warn(
                    f"Training stopped at max_iter={config.max_iter} epochs while the loss was "
                    "still improving; increase max_iter for weights closer to the MAP.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
        return self.results

    def _deltas(self, prior_precisions) -> np.ndarray:
        """δ of each network (rows) and Linear layer (columns)."""
        n_layers = len(self.layers)
        return np.stack(
            [np.broadcast_to(np.asarray(d, dtype=float), (n_layers,)) for d in prior_precisions]
        )

    def _weight_decay(self, deltas):
        """δ_l/N of each layer, one per network, shaped (n_layers, M, 1, 1); None if all 0.

        δ changes only at evidence refreshes, so the tensor of the last call is reused.
        """
        if not deltas.any():
            return None
        key = deltas.tobytes()
        if self._decay_key != key:
            decay = torch.tensor(deltas.T / self.total_weight, dtype=self.X.dtype)
            self._decay_key, self._decay = key, decay.to(self.X.device)[:, :, None, None]
        return self._decay

    def _steps(self, loss_fn, decay, prior_penalty) -> torch.Tensor:
        """The epoch's optimiser steps; returns each network's mean of its minibatch losses."""
        X, y, weights = self.X, self.y, self.weights
        n_samples, batch = X.shape[0], self.config.batch_size
        n_networks = self.stacked.n_networks
        mean_weight = self.total_weight / n_samples
        orders = None
        if batch < n_samples:
            orders = torch.stack(
                [torch.randperm(n_samples, generator=g) for g in self.generators]
            ).to(X.device)
        epoch_loss = 0.0
        for begin in range(0, n_samples, batch):
            if orders is None:
                xb, yb, wb = X, y.expand(n_networks, *y.shape), weights
            else:
                index = orders[:, begin : begin + batch]
                xb, yb, wb = X[index], y[index], weights[index]
            self.optimizer.zero_grad(set_to_none=True)
            # Unbiased minibatch estimates of the weighted mean losses (exact for a full batch).
            losses = (wb * loss_fn(self.stacked(xb), yb)).sum(-1) / (mean_weight * xb.shape[-2])
            objective = losses.sum()
            if prior_penalty is not None:
                objective = (
                    objective
                    + sum(
                        prior_penalty(self.stacked.network_parameters(m))
                        for m in range(self.stacked.n_networks)
                    )
                    / self.total_weight
                )
            objective.backward()
            if decay is not None:
                with torch.no_grad():
                    for (weight, bias), layer_decay in zip(self.layers, decay, strict=True):
                        weight.grad.addcmul_(weight, layer_decay)
                        bias.grad.addcmul_(bias, layer_decay)
            self.optimizer.step()
            self._decay_learning_rate()
            epoch_loss = epoch_loss + losses.detach() * xb.shape[-2]
        return epoch_loss / n_samples

    def _decay_learning_rate(self) -> None:
        """Cosine decay from ``learning_rate_init`` to 0 over all steps of ``max_iter`` epochs."""
        self.n_steps += 1
        progress = min(self.n_steps / self.total_steps, 1.0)
        rate = 0.5 * self.config.learning_rate_init * (1.0 + math.cos(math.pi * progress))
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _penalties(self, deltas, prior_penalty) -> np.ndarray:
        """Each network's ½ Σ_l δ_l ‖θ_l‖² (plus ``prior_penalty``) at its current weights."""
        with torch.no_grad():
            norms = torch.stack(
                [
                    weight.square().sum((1, 2)) + bias.square().sum((1, 2))
                    for weight, bias in self.layers
                ]
            )  # (n_layers, M)
            penalties = 0.5 * (deltas * norms.T.to(torch.float64).cpu().numpy()).sum(1)
            if prior_penalty is not None:
                penalties += [
                    float(prior_penalty(self.stacked.network_parameters(m)))
                    for m in range(self.stacked.n_networks)
                ]
        return penalties

    def _score_validation(self, loss_fn) -> None:
        X_val, y_val, w_val = self.validation
        module, result = self.modules[0], self.result
        with torch.no_grad():
            loss = float((w_val * loss_fn(module(X_val), y_val)).sum() / w_val.sum())
        score = -loss
        result.validation_scores.append(score)
        improved = _improves(score, self._best_score, self.config.tol)
        self._epochs_without_improvement = 0 if improved else self._epochs_without_improvement + 1
        if score > self._best_score:
            self._best_score = score
            self._best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def _report(self, epoch: int, final: bool = False) -> None:
        """scikit-learn's MLP line, ``Iteration N, loss = …`` (each network's, comma-separated):
        at the first epoch, about 20 times in all, and at the last (``final``, from
        :meth:`finish`, once not printed yet)."""
        config = self.config
        every = max(1, config.max_iter // 20)
        due = epoch == 1 or epoch % every == 0
        if not config.verbose or epoch == 0 or (final and due) or not (due or final):
            return
        elapsed = time.perf_counter() - self._start
        losses = ", ".join(f"{result.loss_curve[-1]:.8f}" for result in self.results)
        print(f"Iteration {epoch}, loss = {losses} ({elapsed:.1f} s)", flush=True)


def train_map(
    module: nn.Module,
    loss_fn: LossFunction,
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    config: TrainingConfig,
    prior_precision: float | Sequence[float],
    generator: torch.Generator,
    validation: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    prior_penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> TrainingResult:
    """Train for ``config.max_iter`` epochs (or until early stopping) with a fixed loss and δ.

    A ``KeyboardInterrupt`` stops training after the current step with a warning; the weights
    reached so far are kept. See :class:`MapTrainer` for the arguments.
    """
    trainer = MapTrainer([module], X, y, weights, config, [generator], validation)
    with trainer.interruptible():
        for _ in trainer.epochs():
            trainer.run_epoch(loss_fn, [prior_precision], prior_penalty)
            if trainer.should_stop:
                break
    return trainer.finish()[0]


def split_validation(X, y, weights, fraction, generator):
    """Indices of the training rows and, with a ``fraction`` (early stopping), the held-out
    validation set (X, y, weights) of that share of the rows, drawn from ``generator``."""
    n_samples = X.shape[0]
    if fraction is None:
        return torch.arange(n_samples, device=X.device), None
    n_validation = max(1, round(fraction * n_samples))
    if n_samples - n_validation < 2:
        raise ValueError(
            f"early_stopping needs at least 2 training rows after holding out "
            f"validation_fraction={fraction}; got n_samples={n_samples}."
        )
    order = torch.randperm(n_samples, generator=generator).to(X.device)
    val, train = order[:n_validation], order[n_validation:]
    return train, (X[val], y[val], weights[val])


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

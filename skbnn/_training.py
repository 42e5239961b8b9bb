"""MAP training of the network: Adam on minibatches with a cosine learning-rate decay.

Training minimises the negative log joint divided by the (weighted) number of samples,

    L(θ) = (1/N) Σ_n w_n ℓ_n(θ) + δ ‖θ‖² / (2N),

so the Gaussian prior N(0, δ⁻¹I) acts as weight decay of the right strength for any data size.
The cosine decay lets the last epochs settle at a mode, which the Laplace approximation assumes.

:class:`MapTrainer` runs one epoch per call, so that the fit recipe (:mod:`skbnn._fitting`) can
change the loss and δ between epochs in its own loop (online evidence, a warm-up loss) instead of
through callbacks; :func:`train_map` runs all epochs with fixed ones.
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
    """Adam steps on (X, y, weights), one epoch per :meth:`run_epoch`.

    Parameters
    ----------
    module : torch.nn.Module
        The network, trained in place.
    X, y, weights : tensors
        Training rows, targets and frequency weights (n_samples,); the objective is the weighted
        mean loss plus the prior term.
    config : TrainingConfig
    generator : torch.Generator
        Source of the minibatch order.
    validation : tuple (X_val, y_val, w_val), optional
        With ``config.early_stopping``: after each epoch the validation score, the weighted mean
        log-likelihood per row (higher is better), is recorded; :attr:`should_stop` turns true
        after ``n_iter_no_change`` epochs without an improvement by more than ``tol``
        (relative, as scikit-learn's MLP), and :meth:`finish` restores the best weights.
    """

    def __init__(self, module, X, y, weights, config, generator, validation=None):
        self.module, self.X, self.y, self.weights = module, X, y, weights
        self.config, self.generator, self.validation = config, generator, validation
        self.total_weight = float(weights.sum())
        # δθ/N is Adam's (coupled, L2) weight decay; δ may change between epochs and may differ
        # between layers, so each Linear layer is one parameter group.
        self.layers = [list(m.parameters()) for m in module.modules() if isinstance(m, nn.Linear)]
        self.optimizer = _adam(
            [{"params": params} for params in self.layers], config.learning_rate_init
        )
        steps_per_epoch = math.ceil(X.shape[0] / config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.max_iter * steps_per_epoch
        )
        self.result = TrainingResult()
        self._best_state, self._best_score, self._epochs_without_improvement = None, -math.inf, 0
        self._start = time.perf_counter()

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
        prior_precision: float | Sequence[float],
        prior_penalty: Callable[[nn.Module], torch.Tensor] | None = None,
        validation_loss_fn: LossFunction | None = None,
    ) -> float:
        """One pass over the data; returns the objective at the epoch's end weights.

        ``loss_fn(outputs, targets)`` is the per-row negative log-likelihood; ``prior_precision``
        δ, one float or one per Linear layer. ``prior_penalty(module)``, when given, is a
        −log p(θ) other than N(0, δ⁻¹I) (``partial_fit``: the previous posterior; δ should then
        be 0). ``validation_loss_fn`` scores the validation rows when it differs from
        ``loss_fn`` (a warm-up loss must not compete with the likelihood for the best weights).
        """
        deltas = np.broadcast_to(np.asarray(prior_precision, dtype=float), (len(self.layers),))
        for group, delta in zip(self.optimizer.param_groups, deltas, strict=True):
            group["weight_decay"] = float(delta) / self.total_weight
        epoch_loss = self._steps(loss_fn, prior_penalty)
        epoch_loss = float(epoch_loss + self._penalty(deltas, prior_penalty) / self.total_weight)
        epoch = self.result.n_iter + 1
        if not math.isfinite(epoch_loss):
            raise TrainingDivergedError(
                f"The training loss became {epoch_loss} at epoch {epoch}. Lower "
                "learning_rate_init or check the scale of X and y."
            )
        self.result.loss_curve.append(epoch_loss)
        self.result.n_iter = epoch
        if self.validation is not None:
            self._score_validation(validation_loss_fn or loss_fn)
        self._report(epoch)
        return epoch_loss

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Turn a ``KeyboardInterrupt`` in the block into a warning: the weights so far stay."""
        try:
            yield
        except KeyboardInterrupt:
            warnings.warn(
                f"Training interrupted at epoch {self.result.n_iter}; the posterior is fitted at "
                "the weights reached so far.",
                UserWarning,
                stacklevel=3,
            )
            self.result.interrupted = True

    def finish(self) -> TrainingResult:
        """Restore the best validation weights; warn if ``max_iter`` cut training short."""
        result, config = self.result, self.config
        self._report(result.n_iter, final=True)
        if self._best_state is not None:
            self.module.load_state_dict(self._best_state)
            result.best_validation_score = self._best_score
        stopped_early = result.n_iter < config.max_iter or result.interrupted
        if config.warn_convergence and not stopped_early and _still_improving(result, config):
            warnings.warn(
                f"Training stopped at max_iter={config.max_iter} epochs while the loss was still "
                "improving; increase max_iter for weights closer to the MAP.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    def _steps(self, loss_fn, prior_penalty) -> torch.Tensor:
        """The epoch's optimiser steps; returns the mean of their minibatch losses."""
        X, y, weights = self.X, self.y, self.weights
        n_samples, batch = X.shape[0], self.config.batch_size
        mean_weight = self.total_weight / n_samples
        full_batch = batch >= n_samples
        order = None if full_batch else torch.randperm(n_samples, generator=self.generator)
        epoch_loss = 0.0
        for begin in range(0, n_samples, batch):
            if order is None:
                xb, yb, wb = X, y, weights
            else:
                index = order[begin : begin + batch].to(X.device)
                xb, yb, wb = X[index], y[index], weights[index]
            self.optimizer.zero_grad(set_to_none=True)
            # Unbiased minibatch estimate of the weighted mean loss (exact for a full batch).
            loss = (wb * loss_fn(self.module(xb), yb)).sum() / (mean_weight * xb.shape[0])
            if prior_penalty is not None:
                loss = loss + prior_penalty(self.module) / self.total_weight
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            epoch_loss += loss.detach() * xb.shape[0]
        return epoch_loss / n_samples

    def _penalty(self, deltas, prior_penalty):
        """½ Σ_l δ_l ‖θ_l‖² (plus ``prior_penalty``) at the current weights."""
        with torch.no_grad():
            penalty = 0.5 * sum(
                float(delta) * sum(p.square().sum() for p in params)
                for delta, params in zip(deltas, self.layers, strict=True)
            )
            if prior_penalty is not None:
                penalty = penalty + prior_penalty(self.module)
        return penalty

    def _score_validation(self, loss_fn) -> None:
        X_val, y_val, w_val = self.validation
        with torch.no_grad():
            loss = float((w_val * loss_fn(self.module(X_val), y_val)).sum() / w_val.sum())
        score = -loss
        self.result.validation_scores.append(score)
        improved = _improves(score, self._best_score, self.config.tol)
        self._epochs_without_improvement = 0 if improved else self._epochs_without_improvement + 1
        if score > self._best_score:
            self._best_score = score
            self._best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def _report(self, epoch: int, final: bool = False) -> None:
        """scikit-learn's MLP line, ``Iteration N, loss = …``: at the first epoch, about 20 times
        in all, and at the last (``final``, from :meth:`finish`, once not printed yet)."""
        config = self.config
        every = max(1, config.max_iter // 20)
        due = epoch == 1 or epoch % every == 0
        if not config.verbose or epoch == 0 or (final and due) or not (due or final):
            return
        elapsed = time.perf_counter() - self._start
        loss = self.result.loss_curve[-1]
        print(f"Iteration {epoch}, loss = {loss:.8f} ({elapsed:.1f} s)", flush=True)


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
    prior_penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> TrainingResult:
    """Train for ``config.max_iter`` epochs (or until early stopping) with a fixed loss and δ.

    A ``KeyboardInterrupt`` stops training after the current step with a warning; the weights
    reached so far are kept. See :class:`MapTrainer` for the arguments.
    """
    trainer = MapTrainer(module, X, y, weights, config, generator, validation)
    with trainer.interruptible():
        for _ in trainer.epochs():
            trainer.run_epoch(loss_fn, prior_precision, prior_penalty)
            if trainer.should_stop:
                break
    return trainer.finish()


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

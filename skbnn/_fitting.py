"""The fit of a network, as a recipe: train, curvature, evidence, refinement, posterior.

:func:`fit_networks` reads as the algorithm (Immer et al. 2021, Alg. 1, with MacKay's evidence),
for one network or an ensemble's, which train together as one batched model and then take the
other steps one by one:

1. train the MAP network; with online tuning, every few epochs compute the GGN at the current
   weights and set δ (and σ) to the maximiser of the Laplace evidence (:class:`EvidenceSchedule`),
   remembering the weights of the highest evidence (:class:`EvidenceCheckpoint`);
2. the GGN at the trained weights, δ and σ by the evidence; the checkpoint's weights instead if
   their evidence was higher;
3. Levenberg–Marquardt steps towards the MAP (:func:`refine_towards_map`);
4. per-output noise of multi-output regression by MacKay's fixed point
   (:func:`update_noise_per_output`), alternated with refits of the GGN;
5. the Laplace posterior N(θ*, (G/c² + δI)⁻¹), or the GGN-VI posterior started from it.

Every step takes the :class:`Problem` (network, likelihood and data, built once per fit) and
returns what it computed; the hyperparameters are values passed along, never changed in place.

Immer, A. et al. (2021). Scalable marginal likelihood estimation for model selection in deep
learning. ICML.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from skbnn._curvature import fit_curvature
from skbnn._evidence import (
    NOISE_SCALE_BOUNDS,
    EvidenceTerms,
    log_marginal_likelihood,
    maximize_log_marginal_likelihood,
)
from skbnn._laplace import Laplace, evidence_terms_at, gauss_newton_at, laplace_at
from skbnn._likelihoods import stacked_negative_log_likelihood
from skbnn._network import set_flat_parameters
from skbnn._posterior import GaussianPosterior
from skbnn._predictive import glm_outputs
from skbnn._refinement import LocalModel, regularized_loss
from skbnn._training import MapTrainer, TrainingConfig, TrainingResult
from skbnn._variational import ElboParts, fit_glm_vi

# evidence_tuning="online": refresh δ, σ this many times, after this fraction of the epochs.
ONLINE_EVIDENCE_UPDATES = 20
ONLINE_EVIDENCE_BURN_IN = 0.1
# The prior precision δ of the first epochs, until the evidence first sets it.
INITIAL_PRIOR_PRECISION = 1.0
# Per-output noise of multi-output regression: fixed-point rounds after training.
PER_OUTPUT_NOISE_ROUNDS = 3
# Levenberg–Marquardt refinement: each step tries at most this many dampings λ (λ grows tenfold
# after a rejected trial and shrinks threefold after an accepted one); the steps end once the
# predicted decrease of the regularised loss is below this many nats.
MAP_REFINEMENT_TRIES = 6
MAP_REFINEMENT_DAMPING_INCREASE = 10.0
MAP_REFINEMENT_DAMPING_DECREASE = 3.0
MAP_REFINEMENT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Problem:
    """One network and its training data, built once per fit and passed to every step.

    ``module`` is trained in place (training dtype, on ``X``'s device); the likelihood's
    reference noise may be moved by :func:`update_noise_per_output`.
    """

    module: nn.Sequential
    likelihood: object
    param_names: list[str]
    structure: str
    X: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor

    @functools.cached_property
    def float64(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """X, y and weights in float64 (integer class labels stay as they are)."""
        y = self.y.to(torch.float64) if self.y.is_floating_point() else self.y
        return self.X.to(torch.float64), y, self.weights.to(torch.float64)


@dataclass(frozen=True)
class Hyperparameters:
    """The prior precision δ (one, or one per layer) and the noise scale c."""

    prior_precision: float | np.ndarray
    noise_scale: float


@dataclass(frozen=True)
class EvidenceSettings:
    """How δ and c are tuned: which are fixed, per layer or not, online or post hoc."""

    fixed_prior_precision: float | None
    fixed_noise_scale: float | None
    layerwise: bool
    online: bool
    keep_best: bool
    # Subtracted from a per-row log-likelihood of the internal targets for y's units.
    log_likelihood_shift: float = 0.0

    def initial(self) -> Hyperparameters:
        fixed = self.fixed_prior_precision
        return Hyperparameters(
            INITIAL_PRIOR_PRECISION if fixed is None else fixed, self.fixed_noise_scale or 1.0
        )

    def maximize(self, terms: EvidenceTerms, hyper: Hyperparameters) -> Hyperparameters:
        """The δ, c (those not fixed) that maximise log Z, started from ``hyper``."""
        if self.fixed_prior_precision is not None and self.fixed_noise_scale is not None:
            return hyper
        delta, c, _ = maximize_log_marginal_likelihood(
            terms,
            prior_precision=self.fixed_prior_precision,
            noise_scale=self.fixed_noise_scale,
            init=(hyper.prior_precision, hyper.noise_scale),
            layerwise=self.layerwise,
        )
        return Hyperparameters(delta, c)

    def log_evidence(self, terms: EvidenceTerms, hyper: Hyperparameters) -> float:
        """log Z at δ, c, in y's units."""
        value = log_marginal_likelihood(terms, hyper.prior_precision, hyper.noise_scale)
        return value - terms.n_data * self.log_likelihood_shift

    def tunes_noise_per_output(self, likelihood) -> bool:
        return (
            likelihood.name == "gaussian"
            and likelihood.noise_std.shape[0] > 1
            and self.fixed_noise_scale is None
        )


@dataclass(frozen=True)
class FitSettings:
    """The resolved options of one network's fit."""

    training: TrainingConfig
    evidence: EvidenceSettings
    refinement_steps: int
    inference: str
    warm_up_epochs: int


@dataclass
class FittedNetwork:
    """What a fit produces for one network (on the CPU)."""

    module: nn.Sequential
    posterior: GaussianPosterior
    terms: EvidenceTerms
    likelihood: object
    hyperparameters: Hyperparameters
    training: TrainingResult
    scores: list[float]
    elbo: ElboParts | None = None
    elbo_curve: list[float] | None = field(default=None)
    # The training rows (X, weights) whose GGN at ``module``'s weights is the posterior's
    # curvature, when it is (not for classification GGN-VI, which averages the curvature over q).
    ggn_rows: tuple[torch.Tensor, torch.Tensor] | None = None


def fit_networks(problems, settings, generators, validations) -> list[FittedNetwork]:
    """Fit each network of ``problems`` and its posterior; see the module docstring for the steps.

    The problems are networks of one architecture on the same rows (an ensemble's members, or
    one network), with a generator and an optional validation set each. They train together,
    as one batched model, except with early stopping: each network then stops on its own
    validation rows at its own epoch, and trains alone.
    """
    if settings.training.early_stopping:
        trained = [
            network
            for problem, generator, validation in zip(
                problems, generators, validations, strict=True
            )
            for network in train_with_online_evidence([problem], settings, [generator], validation)
        ]
    else:
        trained = train_with_online_evidence(problems, settings, generators, None)
    fitted = []
    for index, (network, generator) in enumerate(zip(trained, generators, strict=True), start=1):
        if settings.training.verbose and len(problems) > 1:
            print(f"Network {index} of {len(problems)}", flush=True)
        fitted.append(fit_trained_network(network, settings, generator))
    return fitted


def fit_trained_network(network, settings, generator) -> FittedNetwork:
    """Steps 2–5 for one network after training (a :class:`TrainedNetwork`)."""
    problem, hyper, scores = network.problem, network.hyper, network.scores
    evidence, progress = settings.evidence, Progress(settings.training.verbose)
    # A refinement step needs the GGN undecomposed: decompose only the point it keeps.
    at = gauss_newton_at if settings.refinement_steps else laplace_at
    point, hyper = _with_evidence(at(problem), evidence, hyper)
    if network.best.score > evidence.log_evidence(point.terms, hyper):
        # The evidence peaked during training: keep those weights (Immer et al. 2021).
        hyper = network.best.restore(problem)
        point, hyper = _with_evidence(at(problem), evidence, hyper)
    progress.phase(f"GGN ({problem.structure}) and evidence at the trained weights")
    if settings.refinement_steps:
        point, hyper = refine_towards_map(
            problem, evidence, point, hyper, settings.refinement_steps
        )
        progress.phase(f"Refinement: at most {settings.refinement_steps} Levenberg–Marquardt steps")
    laplace = point.decomposed()
    if evidence.tunes_noise_per_output(problem.likelihood):
        for _ in range(PER_OUTPUT_NOISE_ROUNDS):
            # Each round moves the per-output noise ratios; the GGN depends on them: refit it.
            hyper = update_noise_per_output(problem, laplace, hyper)
            laplace, hyper = laplace_and_evidence(problem, evidence, hyper)
        progress.phase(f"Per-output noise: {PER_OUTPUT_NOISE_ROUNDS} fixed-point rounds")
    scores.append(evidence.log_evidence(laplace.terms, hyper))
    progress.phase(f"Log evidence {scores[-1]:.6g} at {_describe(hyper)}", timed=False)
    posterior, hyper, elbo, elbo_curve = _fit_posterior(
        problem, settings, laplace, hyper, generator
    )
    if elbo is not None:
        progress.phase(f"GGN-VI: {len(elbo_curve)} ELBO evaluations")
    return FittedNetwork(
        module=laplace.module.cpu(),
        posterior=posterior_to_cpu(posterior),
        terms=laplace.terms,
        likelihood=problem.likelihood,
        hyperparameters=hyper,
        training=network.training,
        scores=scores,
        elbo=elbo,
        elbo_curve=elbo_curve,
        ggn_rows=_ggn_rows(problem, settings),
    )


def _ggn_rows(problem, settings):
    """The rows that rebuild the posterior's curvature exactly (see FittedNetwork)."""
    if settings.inference == "ggn-vi" and problem.likelihood.name != "gaussian":
        return None
    X, _, weights = problem.float64
    return X.cpu(), weights.cpu()


def rebuild_curvature(module, posterior, likelihood, rows, structure):
    """The posterior with its ``structure`` curvature recomputed from the rows it was fitted on."""
    X, weights = rows
    curvature = fit_curvature(module, likelihood, X, weights, posterior.param_names, structure)
    return replace(posterior, curvature=curvature)


def _fit_posterior(problem, settings, laplace, hyper, generator):
    """Step 5: the Laplace posterior, or the GGN-VI one started from it (with its ELBO)."""
    posterior = laplace.posterior(hyper, problem.param_names)
    if settings.inference != "ggn-vi":
        return posterior, hyper, None, None
    posterior, elbo, elbo_curve = fit_glm_vi(
        laplace.module,
        problem.likelihood,
        *problem.float64,
        posterior,
        problem.structure,
        tune_prior=settings.evidence.fixed_prior_precision is None,
        generator=generator,
    )
    return (
        posterior,
        Hyperparameters(posterior.prior_precision, posterior.noise_scale),
        elbo,
        elbo_curve,
    )


class Progress:
    """With ``verbose``, one line per phase of the fit with the seconds since the last one."""

    def __init__(self, verbose):
        self.verbose, self.start = verbose, time.perf_counter()

    def phase(self, message: str, timed: bool = True) -> None:
        if self.verbose:
            seconds = time.perf_counter() - self.start
            print(f"{message} ({seconds:.2f} s)" if timed else message, flush=True)
        self.start = time.perf_counter()


def _describe(hyper: Hyperparameters) -> str:
    delta = np.round(np.asarray(hyper.prior_precision, dtype=float), 6)
    return f"prior precision {delta.tolist()}, noise scale {hyper.noise_scale:.6g}"


@dataclass
class TrainedNetwork:
    """One network through training: its δ and c, the log evidence of each online refresh, and
    the checkpoint of the highest."""

    problem: Problem
    hyper: Hyperparameters
    scores: list[float] = field(default_factory=list)
    best: EvidenceCheckpoint = field(default_factory=lambda: EvidenceCheckpoint())
    training: TrainingResult | None = None

    def refresh(self, evidence, keep_best: bool) -> None:
        """Set δ and c to the evidence's maximiser at the current weights."""
        laplace, self.hyper, score = refresh_evidence(self.problem, evidence, self.hyper)
        self.scores.append(score)
        if keep_best:
            self.best.offer(score, self.problem, self.hyper)
        if laplace is not None:  # per-output noise, from the posterior
            self.hyper = update_noise_per_output(self.problem, laplace, self.hyper)


def train_with_online_evidence(problems, settings, generators, validation):
    """Step 1: MAP training of the networks together, with each network's δ and c refreshed by
    its evidence on the schedule; returns a :class:`TrainedNetwork` per problem.

    The problems share their rows (``problems[0]``'s X, y and weights); ``validation`` needs a
    single problem.
    """
    evidence = settings.evidence
    networks = [TrainedNetwork(problem, evidence.initial()) for problem in problems]
    keep_best = evidence.keep_best and not settings.training.early_stopping
    schedule = EvidenceSchedule(
        settings.training.max_iter, settings.warm_up_epochs, evidence.online
    )
    rows = problems[0]
    trainer = MapTrainer(
        [problem.module for problem in problems], rows.X, rows.y, rows.weights,
        settings.training, generators, validation,
    )  # fmt: skip
    progress = Progress(settings.training.verbose)
    with trainer.interruptible():
        for epoch in trainer.epochs():
            likelihood_loss = stacked_negative_log_likelihood(
                [network.problem.likelihood for network in networks],
                [network.hyper.noise_scale for network in networks],
            )
            warm_up_loss = getattr(rows.likelihood, "warm_up_loss", None)
            trainer.run_epoch(
                warm_up_loss if schedule.warming_up(epoch) else likelihood_loss,
                [network.hyper.prior_precision for network in networks],
                validation_loss_fn=likelihood_loss,
            )
            if schedule.refreshes_after(epoch):
                for network in networks:
                    network.refresh(evidence, keep_best)
                if settings.training.verbose > 1:
                    hypers = "; ".join(_describe(network.hyper) for network in networks)
                    print(f"Evidence refresh after epoch {epoch}: {hypers}", flush=True)
            if trainer.should_stop:
                break
    for network, training in zip(networks, trainer.finish(), strict=True):
        network.training = training
    first = networks[0]
    progress.phase(
        f"Training: {first.training.n_iter} epochs, {len(first.scores)} evidence refreshes"
    )
    return networks


def refresh_evidence(problem, evidence, hyper):
    """δ and c that maximise the evidence at the current weights, and its log value there.

    Returns ``(laplace, hyper, log_evidence)``; ``laplace`` is None unless the noise is tuned
    per output, which needs the posterior: δ and c alone need only the GGN's spectrum.
    """
    if evidence.tunes_noise_per_output(problem.likelihood):
        laplace, hyper = laplace_and_evidence(problem, evidence, hyper)
        return laplace, hyper, evidence.log_evidence(laplace.terms, hyper)
    terms = evidence_terms_at(problem)
    hyper = evidence.maximize(terms, hyper)
    return None, hyper, evidence.log_evidence(terms, hyper)


@dataclass(frozen=True)
class EvidenceSchedule:
    """When online tuning refreshes δ and c: ~``ONLINE_EVIDENCE_UPDATES`` times after a burn-in
    of ``ONLINE_EVIDENCE_BURN_IN`` of the epochs (and after any warm-up), never after the last
    epoch, which the post-hoc step covers."""

    n_epochs: int
    warm_up_epochs: int
    online: bool

    def warming_up(self, epoch: int) -> bool:
        """Epoch ``epoch`` (1-based) trains with the warm-up loss."""
        return epoch <= self.warm_up_epochs

    def refreshes_after(self, epoch: int) -> bool:
        if not self.online or epoch < self.warm_up_epochs:
            return False
        burn_in = math.ceil(ONLINE_EVIDENCE_BURN_IN * self.n_epochs)
        every = max(1, (self.n_epochs - burn_in) // ONLINE_EVIDENCE_UPDATES)
        return burn_in <= epoch < self.n_epochs and (epoch - burn_in) % every == 0


class EvidenceCheckpoint:
    """The weights and hyperparameters with the highest log evidence offered so far."""

    def __init__(self):
        self.score = -math.inf

    def offer(self, score: float, problem: Problem, hyper: Hyperparameters, point=None) -> None:
        """Keep the problem's weights (and ``point``, what was computed there) if ``score`` is
        the highest so far."""
        if score > self.score:
            self.score = score
            self.state = copy.deepcopy(problem.module.state_dict())
            self.hyper = hyper
            self.noise_std = copy.deepcopy(getattr(problem.likelihood, "noise_std", None))
            self.point = point

    def restore(self, problem: Problem) -> Hyperparameters:
        """Put the checkpoint's weights (and reference noise) back; returns its δ, c."""
        problem.module.load_state_dict(self.state)
        if self.noise_std is not None:
            problem.likelihood.noise_std = self.noise_std
        return self.hyper


def laplace_and_evidence(problem, evidence, hyper) -> tuple[Laplace, Hyperparameters]:
    """The GGN at the current weights, then δ and c that maximise the evidence there."""
    return _with_evidence(laplace_at(problem), evidence, hyper)


def _with_evidence(point, evidence, hyper):
    """``point`` (a :class:`Laplace` or :class:`~skbnn._laplace.GaussNewtonModel`) and the
    δ, c that maximise its evidence."""
    return point, evidence.maximize(point.terms, hyper)


def refine_towards_map(problem, evidence, start, hyper, n_steps):
    """Step 3: Levenberg–Marquardt steps from the trained weights, keeping the highest evidence.

    ``start`` is the :class:`~skbnn._laplace.GaussNewtonModel` at the trained weights, with
    ``hyper`` its best δ and c. After each accepted step δ and c are refitted to the evidence of
    the GGN there, so the evidence of every point on the path is at its own best hyperparameters
    and the points can be compared (MacKay 1992). The trained weights are the first candidate:
    the evidence never drops. Returns the kept point, not yet decomposed, and its δ and c.
    """
    best = EvidenceCheckpoint()
    best.offer(evidence.log_evidence(start.terms, hyper), problem, hyper, start)
    names = problem.param_names
    local = LocalModel(start.module, names, start.ggn, hyper.prior_precision, hyper.noise_scale)
    data = problem.float64
    damping = None
    for _ in range(n_steps):
        theta = local.mean
        loss, gradient = regularized_loss(
            local.module, problem.likelihood, *data, local, theta, gradient=True
        )
        if damping is None:
            damping = float(local.prior_precision_vector.mean())
        step, damping = _damped_step(local, problem, loss, gradient, damping)
        if step is None:
            break  # no decrease even for a short step: at a (local) minimum
        set_flat_parameters(problem.module, names, theta - step)
        point = gauss_newton_at(problem)
        hyper = evidence.maximize(point.terms, hyper)
        best.offer(evidence.log_evidence(point.terms, hyper), problem, hyper, point)
        local = LocalModel(point.module, names, point.ggn, hyper.prior_precision, hyper.noise_scale)
        if float(gradient @ step) < MAP_REFINEMENT_TOLERANCE:
            break  # the predicted decrease of the regularised loss is negligible
    hyper = best.restore(problem)
    return best.point, hyper


def _damped_step(point, problem, loss, gradient, damping):
    """The first damped Gauss–Newton step that lowers the regularised loss, and the new λ."""
    for _ in range(MAP_REFINEMENT_TRIES):
        step = point.damped_newton_step(gradient, damping)
        trial = regularized_loss(
            point.module, problem.likelihood, *problem.float64, point, point.mean - step
        )
        if trial[0] < loss:
            return step, damping / MAP_REFINEMENT_DAMPING_DECREASE
        damping *= MAP_REFINEMENT_DAMPING_INCREASE
    return None, damping


def update_noise_per_output(problem, laplace, hyper) -> Hyperparameters:
    """MacKay's fixed point per output: σ_k² = R_k / (N − γ_k), with γ_k = Σ_n w_n V_nkk/σ_k².

    It is where ∂ log Z/∂ log σ_k = R_k/σ_k² − N + γ_k vanishes, R_k the weighted residual sum
    of squares of output k and V_n = J_n Σ J_nᵀ at the training points. The new noise levels
    become the likelihood's reference noise (its GGN changes with them) and c returns to 1.
    """
    likelihood = problem.likelihood
    X, y, weights = problem.float64
    w = weights[:, None]
    f, cov = glm_outputs(laplace.module, laplace.posterior(hyper, problem.param_names), X)
    residual_sq = (w * (y - f).square()).sum(0)
    variance = (w * torch.diagonal(cov, dim1=1, dim2=2)).sum(0)
    noise_var = (hyper.noise_scale * likelihood.noise_std.to(variance)) ** 2
    gamma = variance / noise_var
    n_data = float(w.sum())
    new_var = residual_sq / (n_data - gamma).clamp_min(1e-12 * n_data)
    low, high = NOISE_SCALE_BOUNDS
    likelihood.noise_std = new_var.sqrt().clamp(low, high).to(likelihood.noise_std)
    return replace(hyper, noise_scale=1.0)


def posterior_to_cpu(posterior: GaussianPosterior) -> GaussianPosterior:
    lin = posterior.linearization_point
    return replace(
        posterior,
        mean=posterior.mean.cpu(),
        curvature=posterior.curvature.cpu(),
        linearization_point=None if lin is None else lin.cpu(),
    )

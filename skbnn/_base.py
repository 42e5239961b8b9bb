"""Machinery shared by the estimators: parameters, validation, devices, seeding and the fit recipe.

``fit`` in both estimators is :meth:`BaseLaplaceMLP._fit`, which reads as the algorithm:

1. validate X, y and sample weights; encode the targets (subclass);
2. derive one :class:`torch.Generator` from ``random_state``;
3. train the MAP network, with the prior δ (and noise σ) refreshed by the evidence every few
   epochs when ``evidence_tuning="online"``;
4. compute the GGN at the MAP and maximise the Laplace evidence over δ (and σ);
5. store the posterior and the fitted attributes, on the CPU.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from abc import abstractmethod
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from skbnn._curvature import accumulate_curvature, fit_curvature, spectrum
from skbnn._evidence import (
    NOISE_SCALE_BOUNDS,
    EvidenceTerms,
    log_marginal_likelihood,
    maximize_log_marginal_likelihood,
)
from skbnn._jacobians import jacobian_batch_size, jacobians
from skbnn._kron import kron_glm_outputs
from skbnn._network import (
    ACTIVATIONS,
    TrainingConfig,
    TrainingDivergedError,
    build_mlp,
    flat_parameters,
    last_layer_parameter_names,
    layer_sizes,
    row_blocks,
    set_flat_parameters,
    train_map,
)
from skbnn._posterior import LaplacePosterior
from skbnn._refinement import damped_newton_step, regularized_loss
from skbnn._variational import fit_glm_vi, gaussian_glm_posterior_mean

# batch_size="auto": full-batch (deterministic, best for the evidence) up to this many rows.
FULL_BATCH_MAX_ROWS = 1024
AUTO_MINIBATCH_SIZE = 256
# max_iter="auto": about this many optimiser steps, within these many epochs (the cap binds for
# full-batch fits, one step per epoch; chosen on the UCI benchmark, see benchmarks/RESULTS.md).
AUTO_TARGET_STEPS = 6000
AUTO_EPOCH_RANGE = (20, 3000)
# hessian_structure="auto": a dense GGN up to this many posterior parameters (two P×P float64
# matrices of at most 100 MB, one eigh of a few seconds), KFAC beyond.
AUTO_FULL_MAX_PARAMS = 2500
# Per-output noise of multi-output regression: fixed-point rounds after training.
PER_OUTPUT_NOISE_ROUNDS = 3
# A dense GGN is refused before training when its matrices would exceed this share of the RAM.
FULL_GGN_MAX_MEMORY_FRACTION = 0.5
# evidence_tuning="online": refresh δ, σ this many times, after this fraction of the epochs.
ONLINE_EVIDENCE_UPDATES = 20
ONLINE_EVIDENCE_BURN_IN = 0.1
# map_refinement_steps="auto": at most this many Levenberg–Marquardt steps (regression), and one
# per this many training epochs: a step costs a few passes over the data, which should stay a
# small share of the training's. Each step tries at most this many dampings λ (λ grows tenfold
# after a rejected trial and shrinks threefold after an accepted one); the steps end once the
# predicted decrease of the regularised loss is below this many nats.
AUTO_MAP_REFINEMENT_STEPS = 20
AUTO_EPOCHS_PER_REFINEMENT_STEP = 10
MAP_REFINEMENT_TRIES = 6
MAP_REFINEMENT_DAMPING_INCREASE = 10.0
MAP_REFINEMENT_DAMPING_DECREASE = 3.0
MAP_REFINEMENT_TOLERANCE = 1e-9
# The prior precision δ of the first epochs, until the evidence first sets it.
INITIAL_PRIOR_PRECISION = 1.0
# noise="heteroscedastic": this fraction of the epochs fits the mean alone first.
HETEROSCEDASTIC_WARM_UP = 0.3

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# A fixed prior precision (and a fixed noise std over the std of y) must lie in this range: beyond
# it the weight decay or 1/σ² of the training loss overflow float32, or the posterior float64.
FIXED_HYPERPARAMETER_RANGE = (1e-12, 1e12)


@dataclass
class _Hyperparameters:
    """The current prior precision δ and noise scale c (mutable during online tuning)."""

    prior_precision: float
    noise_scale: float


class BaseLaplaceMLP(BaseEstimator):
    """Base class of :class:`LaplaceMLPRegressor` and :class:`LaplaceMLPClassifier`."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "hessian_structure": [StrOptions({"auto", "full", "kron", "diag"})],
        "subset_of_weights": [StrOptions({"all", "last_layer"})],
        "prior_precision": [
            StrOptions({"evidence"}),
            Interval(numbers.Real, 0, None, closed="neither"),
        ],
        "prior_structure": [StrOptions({"scalar", "layerwise"})],
        "evidence_tuning": [StrOptions({"online", "posthoc"})],
        "keep_best_evidence": ["boolean"],
        "map_refinement_steps": [Interval(numbers.Integral, 0, None, closed="left")],
        "inference": [StrOptions({"laplace", "ggn-vi"})],
        "max_iter": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "dtype": [StrOptions(set(_DTYPES))],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    @abstractmethod
    def __init__(
        self,
        hidden_layer_sizes=(50,),
        activation="tanh",
        *,
        inference="laplace",
        hessian_structure="auto",
        subset_of_weights="all",
        prior_precision="evidence",
        prior_structure="scalar",
        evidence_tuning="online",
        keep_best_evidence=True,
        map_refinement_steps=0,
        max_iter="auto",
        batch_size="auto",
        learning_rate_init=3e-3,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=50,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.inference = inference
        self.hessian_structure = hessian_structure
        self.subset_of_weights = subset_of_weights
        self.prior_precision = prior_precision
        self.prior_structure = prior_structure
        self.evidence_tuning = evidence_tuning
        self.keep_best_evidence = keep_best_evidence
        self.map_refinement_steps = map_refinement_steps
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # -- subclass hooks ----------------------------------------------------------------------------

    @abstractmethod
    def _encode_targets(self, y, sample_weight):
        """Return (targets tensor, n_outputs, reference likelihood) and set target attributes."""

    @abstractmethod
    def _fixed_noise_scale(self):
        """The fixed noise scale c, or None when it is tuned (always 1.0 for classification)."""

    @abstractmethod
    def _store_fitted_hyperparameters(self, hyper, terms):
        """Turn the internal δ, c into public fitted attributes."""

    def _fit_predictive(self, X, y, weights):
        """Fit what the predictive needs besides the posterior, from the training rows (float64).

        Called once the fitted posterior is stored, after ``fit`` and each ``partial_fit`` (with
        the chunk's rows); nothing by default.
        """

    def _log_likelihood_unit_shift(self):
        """What to subtract from a per-row log-likelihood of the internal targets for y's units."""
        return 0.0

    def _log_evidence_unit_shift(self, terms):
        """What to subtract from a log evidence of the internal targets to get it in y's units."""
        return terms.n_data * self._log_likelihood_unit_shift()

    def _log_evidence(self, terms, hyper):
        """The Laplace log evidence at the current δ, c, in y's units."""
        return log_marginal_likelihood(
            terms, hyper.prior_precision, hyper.noise_scale
        ) - self._log_evidence_unit_shift(terms)

    # -- the fit recipe ----------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, classes=None):
        """Fit; on any error the estimator keeps the fitted state it had before the call."""
        return self._keeping_state_on_error(self._fit_unguarded, X, y, sample_weight, classes)

    def _partial_fit(self, X, y, sample_weight=None, classes=None):
        """Sequential Laplace: the current posterior is the prior for the chunk (X, y)."""
        if not hasattr(self, "posterior_"):
            return self._fit(X, y, sample_weight, classes)
        return self._keeping_state_on_error(self._update_unguarded, X, y, sample_weight, classes)

    def _keeping_state_on_error(self, method, *args):
        saved_state = dict(self.__dict__)
        try:
            return method(*args)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved_state)
            raise

    def _validate_training_data(self, X, y, sample_weight, reset):
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float64, np.float32],
            multi_output=self._multi_output,
            y_numeric=self._y_numeric,
        )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        _check_total_weight(sample_weight)
        # torch takes no negative strides: any numpy layout becomes one C-contiguous copy here.
        return np.ascontiguousarray(X), np.ascontiguousarray(y), np.ascontiguousarray(sample_weight)

    def _training_tensors(self, X, targets, sample_weight):
        """X, targets and weights as tensors of the training dtype on the training device."""
        device, dtype = _resolve_device(self.device), _DTYPES[self.dtype]
        X_t = torch.tensor(X, dtype=dtype, device=device)
        y_t = targets.to(device=device, dtype=dtype if targets.is_floating_point() else None)
        w_t = torch.tensor(sample_weight, dtype=dtype, device=device)
        return X_t, y_t, w_t

    def _generator(self):
        """The fit's one source of randomness, derived from ``random_state``."""
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return torch.Generator().manual_seed(int(seed))

    def _fit_unguarded(self, X, y, sample_weight, classes=None):
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=True)
        self._check_fixed_prior_precision()
        hidden = self._check_hidden_layer_sizes()
        device, dtype = _resolve_device(self.device), _DTYPES[self.dtype]
        targets, n_outputs, likelihood = self._encode_targets(y, sample_weight, classes)
        generator = self._generator()
        X_t, y_t, w_t = self._training_tensors(X, targets, sample_weight)
        _check_representable(X_t, y_t, w_t, sample_weight, self.dtype)
        train_index, validation = self._split_validation(X_t, y_t, w_t, generator)

        module = build_mlp(
            X.shape[1], hidden, n_outputs, self.activation, dtype=dtype, generator=generator
        )
        module.to(device)
        hyper = _Hyperparameters(
            prior_precision=INITIAL_PRIOR_PRECISION
            if self.prior_precision == "evidence"
            else self.prior_precision,
            noise_scale=self._fixed_noise_scale() or 1.0,
        )
        param_names = self._posterior_parameter_names(module)
        structure = self._resolve_structure(module, param_names)
        X_fit, y_fit, w_fit = X_t[train_index], y_t[train_index], w_t[train_index]
        batch_size = self._resolve_batch_size(X_fit.shape[0])
        max_iter = self._resolve_max_iter(X_fit.shape[0], batch_size)

        scores = []
        best = _EvidenceCheckpoint()

        def laplace_and_evidence():
            module64, curvature, terms = self._laplace(
                module, likelihood, X_fit, y_fit, w_fit, param_names, structure
            )
            self._maximize_evidence(terms, hyper)
            return module64, curvature, terms

        warm_up_epochs = _warm_up_epochs(likelihood, max_iter)
        warming_up = warm_up_epochs > 0

        def training_loss(f, t):
            if warming_up:
                return likelihood.warm_up_loss(f, t)
            return likelihood.negative_log_likelihood(f, t, hyper.noise_scale)

        def on_epoch_end(epoch):
            nonlocal warming_up
            warming_up = epoch < warm_up_epochs
            if warming_up or not self._tunes_online():
                return
            if _is_online_update_epoch(epoch, max_iter):
                module64, curvature, terms = laplace_and_evidence()
                scores.append(self._log_evidence(terms, hyper))
                if self._keeps_best_evidence() and not self.early_stopping:
                    best.offer(scores[-1], module, hyper, likelihood)
                if self._tunes_noise_per_output(likelihood):
                    self._update_noise_per_output(
                        module64, curvature, likelihood, X_fit, y_fit, w_fit, param_names, hyper
                    )

        training = train_map(
            module,
            training_loss,
            X_fit,
            y_fit,
            w_fit,
            config=TrainingConfig(
                max_iter=max_iter,
                batch_size=batch_size,
                learning_rate_init=self.learning_rate_init,
                early_stopping=self.early_stopping,
                n_iter_no_change=self.n_iter_no_change,
                verbose=self.verbose,
                warn_convergence=True,
            ),
            prior_precision=lambda: hyper.prior_precision,
            generator=generator,
            validation=validation,
            on_epoch_end=on_epoch_end,
            validation_loss_fn=lambda f, t: likelihood.negative_log_likelihood(
                f, t, hyper.noise_scale
            ),
        )

        module64, curvature, terms = laplace_and_evidence()
        if best.score > self._log_evidence(terms, hyper):
            # The evidence peaked during training: keep those weights (Immer et al. 2021).
            best.restore(module, hyper, likelihood)
            module64, curvature, terms = laplace_and_evidence()
        # Not with early stopping, whose weights are chosen by validation loss, not as a MAP.
        refinement_steps = 0 if self.early_stopping else self._map_refinement_steps(max_iter)
        if refinement_steps:
            module64, curvature, terms = self._refine_towards_map(
                module,
                likelihood,
                _as_float64(X_fit, y_fit, w_fit),
                param_names,
                hyper,
                (module64, curvature, terms),
                laplace_and_evidence,
                refinement_steps,
            )
        for _ in range(PER_OUTPUT_NOISE_ROUNDS if self._tunes_noise_per_output(likelihood) else 0):
            # Each round moves the per-output noise ratios; the GGN depends on them, so refit it.
            self._update_noise_per_output(
                module64, curvature, likelihood, X_fit, y_fit, w_fit, param_names, hyper
            )
            module64, curvature, terms = laplace_and_evidence()
        scores.append(self._log_evidence(terms, hyper))
        posterior = _posterior_at(module64, curvature, hyper, param_names)
        inference = self._resolve_inference()
        if inference == "ggn-vi":
            posterior, elbo, self.elbo_curve_ = fit_glm_vi(
                module64,
                likelihood,
                *_as_float64(X_fit, y_fit, w_fit),
                posterior,
                structure,
                tune_prior=self.prior_precision == "evidence",
                generator=generator,
            )
            hyper.prior_precision, hyper.noise_scale = (
                posterior.prior_precision,
                posterior.noise_scale,
            )
            shift = self._log_evidence_unit_shift(terms)
            self.elbo_ = elbo.elbo - shift
            self.expected_log_likelihood_ = elbo.expected_log_likelihood - shift
            self.kl_divergence_ = elbo.kl_divergence

        self.module_ = module64.cpu()
        self.posterior_ = _posterior_to_cpu(posterior)
        self.hessian_structure_ = structure
        self.inference_ = inference
        self._evidence_terms = terms
        self._likelihood = likelihood
        self._store_fitted_hyperparameters(hyper, terms)
        self.scores_ = scores
        self.n_iter_ = training.n_iter
        self.loss_curve_ = training.loss_curve
        if self.early_stopping:
            # Mean validation log-likelihood per row, in y's units (higher is better).
            shift = self._log_likelihood_unit_shift()
            self.validation_scores_ = [score - shift for score in training.validation_scores]
            self.best_validation_score_ = training.best_validation_score - shift
        self._mc_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        self._fit_predictive(*(t.cpu() for t in _as_float64(X_fit, y_fit, w_fit)))
        return self

    def _update_unguarded(self, X, y, sample_weight, classes):
        """One partial_fit step on a fitted estimator (Ritter, Botev & Barber 2018).

        θ_t minimises the chunk's negative log-likelihood plus ½(θ − μ)ᵀ Λ (θ − μ), the previous
        posterior N(μ, Λ⁻¹) (weights outside the posterior: an isotropic δ around their previous
        values); the GGN of the chunk at θ_t is added to the accumulated one, and δ, σ set to
        'evidence' are re-estimated on all data seen so far.
        """
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=False)
        targets = self._encode_more_targets(y, classes)
        device, dtype = _resolve_device(self.device), _DTYPES[self.dtype]
        generator = self._generator()
        X_t, y_t, w_t = self._training_tensors(X, targets, sample_weight)
        _check_representable(X_t, y_t, w_t, sample_weight, self.dtype)

        previous = self.posterior_
        names = previous.param_names
        precision = replace(
            previous, mean=previous.mean.to(device), curvature=previous.curvature.to(device)
        )
        module = copy.deepcopy(self.module_).to(device=device, dtype=dtype)
        others = {
            name: p.detach().clone()
            for name, p in module.named_parameters()
            if name not in set(names)
        }
        delta, c = previous.prior_precision, previous.noise_scale
        other_delta = float(np.mean(delta))  # weights outside the posterior (last_layer)

        def prior_penalty(module):
            params = dict(module.named_parameters())
            shift = torch.cat([params[n].reshape(-1) for n in names]).to(torch.float64)
            shift = shift - precision.mean
            penalty = 0.5 * (shift * precision.precision_vector_product(shift)).sum()
            for name, centre in others.items():
                penalty = penalty + 0.5 * other_delta * (params[name] - centre).square().sum()
            return penalty.to(dtype)

        batch_size = self._resolve_batch_size(X_t.shape[0])
        training = train_map(
            module,
            lambda f, t: self._likelihood.negative_log_likelihood(f, t, c),
            X_t,
            y_t,
            w_t,
            config=TrainingConfig(
                max_iter=self._resolve_max_iter(X_t.shape[0], batch_size),
                batch_size=batch_size,
                learning_rate_init=self.learning_rate_init,
                verbose=self.verbose,
            ),
            prior_precision=lambda: 0.0,
            generator=generator,
            prior_penalty=prior_penalty,
        )
        module64, chunk_curvature, chunk_terms = self._laplace(
            module, self._likelihood, X_t, y_t, w_t, names, self.hessian_structure_
        )
        old = self._evidence_terms
        curvature = accumulate_curvature(
            previous.curvature, chunk_curvature.cpu(), old.n_data, chunk_terms.n_data
        )
        terms = replace(
            old,
            eigenvalues=spectrum(curvature).numpy(),
            map_norm_sq=chunk_terms.map_norm_sq,
            n_data=old.n_data + chunk_terms.n_data,
            data_fit=old.data_fit + chunk_terms.data_fit,
        )
        hyper = _Hyperparameters(prior_precision=delta, noise_scale=c)
        self._maximize_evidence(terms, hyper)
        posterior = replace(
            previous,
            mean=flat_parameters(module64, names),
            curvature=curvature.to(device),
            prior_precision=hyper.prior_precision,
            noise_scale=hyper.noise_scale,
        )
        if self.inference_ == "ggn-vi":
            # Only offered for a Gaussian likelihood: the chunk's linearised model under the
            # previous posterior as prior has a closed-form posterior mean.
            theta = posterior.mean
            posterior, _, _ = gaussian_glm_posterior_mean(
                module64,
                self._likelihood,
                X_t.to(torch.float64),
                y_t.to(torch.float64),
                w_t.to(torch.float64),
                replace(posterior, linearization_point=theta),
                prior_gradient=precision.precision_vector_product(theta - precision.mean),
            )
            for name in ("elbo_", "expected_log_likelihood_", "kl_divergence_", "elbo_curve_"):
                # They describe an ELBO over all rows, which a chunk cannot update.
                self.__dict__.pop(name, None)

        self.module_ = module64.cpu()
        self.posterior_ = _posterior_to_cpu(posterior)
        self._evidence_terms = terms
        self._store_fitted_hyperparameters(hyper, terms)
        self.scores_ = [*self.scores_, self._log_evidence(terms, hyper)]
        self.n_iter_ += training.n_iter
        self.loss_curve_ = self.loss_curve_ + training.loss_curve
        self._fit_predictive(*(t.cpu() for t in _as_float64(X_t, y_t, w_t)))
        return self

    def _laplace(self, module, likelihood, X, y, weights, param_names, structure):
        """The GGN at the current weights (float64) and the evidence's data terms."""
        module64 = copy.deepcopy(module).to(torch.float64)
        X64 = X.to(torch.float64)
        y64 = y.to(torch.float64) if y.is_floating_point() else y
        w64 = weights.to(torch.float64)
        with torch.no_grad():  # in blocks: one float64 forward pass of all rows is large
            data_fit = sum(
                float((w64[rows] * likelihood.data_fit(module64(X64[rows]), y64[rows])).sum())
                for rows in row_blocks(X64.shape[0])
            )
        map_norm_sq = float(flat_parameters(module64, param_names).square().sum())
        # The training loss was finite, yet float64 outputs or curvature may still overflow.
        _check_finite_at_map([data_fit, map_norm_sq])
        try:
            curvature = fit_curvature(module64, likelihood, X64, w64, param_names, structure)
        except torch.linalg.LinAlgError as error:
            raise TrainingDivergedError(
                f"The GGN at the trained weights could not be decomposed ({error}). Lower "
                "learning_rate_init or standardise X and y."
            ) from error
        terms = EvidenceTerms(
            eigenvalues=spectrum(curvature).cpu().numpy(),
            map_norm_sq=map_norm_sq,
            n_data=float(w64.sum()),
            n_outputs=module64[-1].out_features,
            data_fit=data_fit,
            gaussian=likelihood.name == "gaussian",
            log_noise_ref=likelihood.log_noise_ref,
            group_sizes=layer_sizes(module64, param_names),
            group_norms_sq=_layer_norms_sq(module64, param_names),
        )
        _check_finite_at_map(terms.eigenvalues)
        return module64, curvature, terms

    def _refine_towards_map(
        self, module, likelihood, data, param_names, hyper, fitted, laplace_and_evidence, n_steps
    ):
        """Levenberg–Marquardt steps from the trained weights; keep the point of highest evidence.

        After each accepted step the GGN and δ, c are refitted, so the evidence of every point on
        the path is at its own best hyperparameters and the points can be compared (MacKay 1992).
        The trained weights are the first candidate: the evidence never drops.
        """
        module64, curvature, terms = fitted
        best = _EvidenceCheckpoint()
        best.offer(self._log_evidence(terms, hyper), module, hyper, likelihood)
        damping = None
        for _ in range(n_steps):
            posterior = _posterior_at(module64, curvature, hyper, param_names)
            theta = posterior.mean
            loss, gradient = regularized_loss(
                module64, likelihood, *data, posterior, theta, gradient=True
            )
            if damping is None:
                damping = float(posterior.prior_precision_vector.mean())
            for _ in range(MAP_REFINEMENT_TRIES):
                step = damped_newton_step(posterior, gradient, damping)
                candidate = theta - step
                if regularized_loss(module64, likelihood, *data, posterior, candidate)[0] < loss:
                    damping /= MAP_REFINEMENT_DAMPING_DECREASE
                    break
                damping *= MAP_REFINEMENT_DAMPING_INCREASE
            else:
                break  # no decrease even for a short step: at a (local) minimum
            set_flat_parameters(module, param_names, candidate)
            module64, curvature, terms = laplace_and_evidence()
            best.offer(self._log_evidence(terms, hyper), module, hyper, likelihood)
            if float(gradient @ step) < MAP_REFINEMENT_TOLERANCE:
                break  # the predicted decrease of the regularised loss is negligible
        if best.score > self._log_evidence(terms, hyper):
            best.restore(module, hyper, likelihood)
            module64, curvature, terms = laplace_and_evidence()
        return module64, curvature, terms

    def _tunes_noise_per_output(self, likelihood):
        return (
            likelihood.name == "gaussian"
            and likelihood.noise_std.shape[0] > 1
            and self._fixed_noise_scale() is None
        )

    def _update_noise_per_output(
        self, module64, curvature, likelihood, X, y, weights, param_names, hyper
    ):
        """MacKay's fixed point per output: σ_k² = R_k / (N − γ_k), with γ_k = Σ_n w_n V_nkk/σ_k².

        It is where ∂ log Z/∂ log σ_k = R_k/σ_k² − N + γ_k vanishes, R_k the weighted residual sum
        of squares of output k and V_n = J_n Σ J_nᵀ at the training points. The new noise levels
        become the likelihood's reference noise (its GGN changes with them) and c returns to 1.
        """
        posterior = _posterior_at(module64, curvature, hyper, param_names)
        y64, w64 = y.to(torch.float64), weights.to(torch.float64)[:, None]
        f, cov = glm_outputs(module64, posterior, X.to(torch.float64))
        residual_sq = (w64 * (y64 - f).square()).sum(0)
        variance = (w64 * torch.diagonal(cov, dim1=1, dim2=2)).sum(0)
        noise_var = (hyper.noise_scale * likelihood.noise_std.to(variance)) ** 2
        gamma = variance / noise_var
        n_data = float(w64.sum())
        new_var = residual_sq / (n_data - gamma).clamp_min(1e-12 * n_data)
        low, high = NOISE_SCALE_BOUNDS
        new_std = new_var.sqrt().clamp(low, high).to(likelihood.noise_std)
        likelihood.noise_std = new_std
        hyper.noise_scale = 1.0

    def _maximize_evidence(self, terms, hyper):
        fixed_prior = None if self.prior_precision == "evidence" else self.prior_precision
        if fixed_prior is not None and self._fixed_noise_scale() is not None:
            return
        delta, c, _ = maximize_log_marginal_likelihood(
            terms,
            prior_precision=fixed_prior,
            noise_scale=self._fixed_noise_scale(),
            init=(hyper.prior_precision, hyper.noise_scale),
            layerwise=self.prior_structure == "layerwise",
        )
        hyper.prior_precision, hyper.noise_scale = delta, c

    # -- prediction helpers ------------------------------------------------------------------------

    def _validate_for_predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.ascontiguousarray(X)  # any numpy layout, as in fit

    def _glm_outputs(self, X):
        """Linearised outputs at X: means f (n, K) and covariances J Σ Jᵀ (n, K, K), float64."""
        return glm_outputs(self.module_, self.posterior_, torch.tensor(X, dtype=torch.float64))

    def _glm_jacobians(self, X):
        """Outputs f (n, K) and Jacobians J (n, K, P) at X for the posterior's parameters."""
        X_t = torch.tensor(X, dtype=torch.float64)
        return jacobians(self.module_, X_t, self.posterior_.param_names)

    def _output_kernel(self, X, Y=None, prior=False):
        """J(X) Σ J(Y)ᵀ (or J P₀⁻¹ Jᵀ) in output space, shape (n_X, K, n_Y, K), float64."""
        X = self._validate_for_predict(X)
        _, J_x = self._glm_jacobians(X)
        J_y = J_x if Y is None else self._glm_jacobians(self._validate_for_predict(Y))[1]
        if prior:
            prior_variance = 1.0 / self.posterior_.prior_precision_vector.to(J_x)
            return torch.einsum("akp,p,blp->akbl", J_x, prior_variance, J_y)
        return self.posterior_.functional_cross_covariance(J_x, J_y)

    # -- small helpers -----------------------------------------------------------------------------

    def _resolve_inference(self):
        return self.inference

    def _map_refinement_steps(self, n_epochs):
        """The Levenberg–Marquardt steps after training ``n_epochs`` epochs."""
        return self.map_refinement_steps

    def _keeps_best_evidence(self):
        return self.keep_best_evidence

    def _tunes_online(self):
        tuned = self.prior_precision == "evidence" or self._fixed_noise_scale() is None
        return tuned and self.evidence_tuning == "online"

    def _posterior_parameter_names(self, module):
        if self.subset_of_weights == "last_layer":
            return last_layer_parameter_names(module)
        return [name for name, _ in module.named_parameters()]

    def _check_fixed_prior_precision(self):
        if self.prior_precision == "evidence":
            return
        low, high = FIXED_HYPERPARAMETER_RANGE
        if not low <= self.prior_precision <= high:
            raise ValueError(
                f"prior_precision={self.prior_precision!r} is outside [{low:g}, {high:g}], the "
                "range in which training and the posterior stay finite in float32 and float64; "
                "use prior_precision='evidence' or a value in that range."
            )

    def _check_hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}."
            )
        return [int(s) for s in sizes]

    def _resolve_batch_size(self, n_samples):
        if self.batch_size == "auto":
            return n_samples if n_samples <= FULL_BATCH_MAX_ROWS else AUTO_MINIBATCH_SIZE
        return min(self.batch_size, n_samples)

    def _resolve_structure(self, module, param_names):
        """The GGN structure to use; refuses a dense GGN that would not fit in memory."""
        params = dict(module.named_parameters())
        n_params = sum(params[name].numel() for name in param_names)
        structure = self.hessian_structure
        layerwise = self.prior_structure == "layerwise"
        if structure == "auto":
            small = n_params <= AUTO_FULL_MAX_PARAMS and not layerwise
            structure = "full" if small else "kron"
        if structure == "full" and layerwise:
            raise ValueError(
                "prior_structure='layerwise' needs a GGN that does not mix layers: use "
                "hessian_structure='kron', 'diag' or 'auto' (which then picks 'kron')."
            )
        if structure == "full":
            needed = 2 * 8 * n_params**2  # the GGN and its eigenvectors, float64
            available = _physical_memory_bytes() * FULL_GGN_MAX_MEMORY_FRACTION
            if needed > available:
                raise ValueError(
                    f"hessian_structure='full' needs {needed / 2**30:.1f} GiB for the "
                    f"{n_params}×{n_params} GGN of this network, more than "
                    f"{available / 2**30:.1f} GiB available; use hessian_structure='kron' or "
                    "'diag', or subset_of_weights='last_layer'."
                )
        return structure

    def _resolve_max_iter(self, n_samples, batch_size):
        if self.max_iter != "auto":
            return self.max_iter
        steps_per_epoch = math.ceil(n_samples / batch_size)
        return int(np.clip(math.ceil(AUTO_TARGET_STEPS / steps_per_epoch), *AUTO_EPOCH_RANGE))

    def _split_validation(self, X, y, weights, generator):
        """Indices of the training rows and, with early stopping, the held-out validation set."""
        n_samples = X.shape[0]
        if not self.early_stopping:
            return torch.arange(n_samples, device=X.device), None
        n_validation = max(1, round(self.validation_fraction * n_samples))
        if n_samples - n_validation < 2:
            raise ValueError(
                f"early_stopping needs at least 2 training rows after holding out "
                f"validation_fraction={self.validation_fraction}; got n_samples={n_samples}."
            )
        order = torch.randperm(n_samples, generator=generator).to(X.device)
        val, train = order[:n_validation], order[n_validation:]
        return train, (X[val], y[val], weights[val])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class _EvidenceCheckpoint:
    """The weights and hyperparameters with the highest log evidence seen during training."""

    def __init__(self):
        self.score = -math.inf

    def offer(self, score, module, hyper, likelihood):
        if score > self.score:
            self.score = score
            self.state = copy.deepcopy(module.state_dict())
            self.hyper = replace(hyper)
            self.noise_std = copy.deepcopy(getattr(likelihood, "noise_std", None))

    def restore(self, module, hyper, likelihood):
        module.load_state_dict(self.state)
        hyper.prior_precision, hyper.noise_scale = (
            self.hyper.prior_precision,
            self.hyper.noise_scale,
        )
        if self.noise_std is not None:
            likelihood.noise_std = self.noise_std


def _uses_laplace(estimator):
    """partial_fit exists only for the Laplace posterior, whose recursion it implements."""
    return estimator.inference == "laplace"


def _warm_up_epochs(likelihood, max_iter):
    """Epochs that train a heteroscedastic network's mean alone before the full likelihood."""
    if not hasattr(likelihood, "warm_up_loss"):
        return 0
    return math.ceil(HETEROSCEDASTIC_WARM_UP * max_iter)


def _is_online_update_epoch(epoch, max_iter):
    """Refresh the evidence ~ONLINE_EVIDENCE_UPDATES times after the burn-in, not at the end."""
    burn_in = math.ceil(ONLINE_EVIDENCE_BURN_IN * max_iter)
    every = max(1, (max_iter - burn_in) // ONLINE_EVIDENCE_UPDATES)
    return burn_in <= epoch < max_iter and (epoch - burn_in) % every == 0


def glm_outputs(module, posterior, X):
    """Linearised outputs at X (float64): means f + J(μ − θ*) (n, K), covariances J Σ Jᵀ (n, K, K).

    KFAC posteriors use their rank-one layer form; the others go through per-sample Jacobians,
    a block of rows at a time.
    """
    if posterior.structure == "kron":
        return kron_glm_outputs(module, X, posterior)
    step = jacobian_batch_size(module[-1].out_features, posterior.n_params)
    means, covs = [], []
    offset = posterior.mean_offset
    for begin in range(0, X.shape[0], step):
        f, J = jacobians(module, X[begin : begin + step], posterior.param_names)
        means.append(f if offset is None else f + J @ offset)
        covs.append(posterior.functional_covariance(J))
    return torch.cat(means), torch.cat(covs)


def _posterior_at(module, curvature, hyper, param_names):
    """The Laplace posterior at the module's current weights and the current δ, c."""
    return LaplacePosterior(
        mean=flat_parameters(module, param_names),
        curvature=curvature,
        prior_precision=hyper.prior_precision,
        noise_scale=hyper.noise_scale,
        param_names=param_names,
        layer_sizes=layer_sizes(module, param_names),
    )


def _layer_norms_sq(module, names):
    """‖θ_l‖² of each Linear layer among ``names``, in order."""
    params = dict(module.named_parameters())
    norms: dict[str, float] = {}
    for name in names:
        layer = name.rsplit(".", 1)[0]
        norms[layer] = norms.get(layer, 0.0) + float(params[name].detach().square().sum())
    return tuple(norms.values())


def _as_float64(X, y, weights):
    """The training tensors in float64 (integer class labels stay as they are)."""
    return (
        X.to(torch.float64),
        y.to(torch.float64) if y.is_floating_point() else y,
        weights.to(torch.float64),
    )


def _posterior_to_cpu(posterior):
    lin = posterior.linearization_point
    return replace(
        posterior,
        mean=posterior.mean.cpu(),
        curvature=posterior.curvature.cpu(),
        linearization_point=None if lin is None else lin.cpu(),
    )


def _check_finite_at_map(values):
    if not np.isfinite(values).all():
        raise TrainingDivergedError(
            "The network's outputs or curvature at the trained weights are not finite. Lower "
            "learning_rate_init or standardise X and y."
        )


def _check_positive_finite(value, name):
    """A hyperparameter passed to a method (not the constructor): a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def _check_total_weight(sample_weight):
    """Σ w must be positive and finite: it is N in the objective and the evidence."""
    largest = float(sample_weight.max())
    if largest == 0:  # older scikit-learn versions let all-zero weights through
        raise ValueError("sample_weight must contain at least one non-zero number.")
    if not math.isfinite(largest * float(np.sum(sample_weight / largest))):
        raise ValueError(
            "sample_weight sums to infinity in float64; rescale the weights (their sum is the "
            "number of observations N of the evidence)."
        )


def _check_representable(X, y, weights, sample_weight, dtype_name):
    """X, y and the positive weights must survive the cast to the training dtype."""
    suggestion = "use dtype='float64' or rescale" if dtype_name == "float32" else "rescale"
    for name, values in [("X", X), ("y", y)]:
        if values.is_floating_point() and not torch.isfinite(values).all():
            raise ValueError(
                f"{name} has values beyond the range of dtype={dtype_name!r}; {suggestion} {name}."
            )
    lost = (weights == 0) & torch.as_tensor(sample_weight > 0, device=weights.device)
    if not torch.isfinite(weights).all() or lost.any():
        raise ValueError(
            f"sample_weight has values that over- or underflow in dtype={dtype_name!r}; "
            f"{suggestion} sample_weight."
        )


def _physical_memory_bytes():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        return 8 * 2**30


def _resolve_device(device):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; use device='auto' or 'cpu'."
        )
    return torch.device(device)

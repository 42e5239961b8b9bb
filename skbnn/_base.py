"""The scikit-learn shell shared by the estimators: parameters, validation, the fit and update.

``fit`` in both estimators is :meth:`BaseLaplaceMLP._fit`, which reads as the algorithm:

1. validate X, y and sample weights; encode the targets (subclass);
2. derive one :class:`torch.Generator` from ``random_state``;
3. build the network and the :class:`~skbnn._fitting.Problem`, resolve the 'auto' options
   (:mod:`skbnn._auto`) into the fit's settings;
4. fit the network (and an ensemble's other networks) and its posterior
   (:func:`skbnn._fitting.fit_networks`);
5. store the fitted attributes, on the CPU, and fit what the predictive needs (subclass).

``partial_fit`` does the same with :func:`skbnn._sequential.update_network`.
"""

from __future__ import annotations

import copy
import numbers
from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from skbnn import _auto
from skbnn._curvature import check_structure
from skbnn._fitting import (
    EvidenceSettings,
    FitSettings,
    FittedNetwork,
    Hyperparameters,
    Problem,
    fit_networks,
)
from skbnn._network import ACTIVATIONS, build_mlp, last_layer_parameter_names
from skbnn._persistence import compact_state, rebuild_posterior, restore_state
from skbnn._predictive import glm_jacobians, glm_outputs
from skbnn._sequential import update_network
from skbnn._training import TrainingConfig, split_validation
from skbnn._validation import (
    check_fixed_prior_precision,
    check_hidden_layer_sizes,
    check_representable,
    check_total_weight,
    resolve_device,
)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    def _encode_targets(self, y, sample_weight, classes=None):
        """Return (targets tensor, n_outputs, likelihood) and set target attributes."""

    @abstractmethod
    def _encode_more_targets(self, y, classes):
        """Encode the targets of a later ``partial_fit`` chunk as the first call did."""

    @abstractmethod
    def _fixed_noise_scale(self):
        """The fixed noise scale c, or None when it is tuned (always 1.0 for classification)."""

    @abstractmethod
    def _store_fitted_hyperparameters(self, hyper, terms):
        """Turn the internal δ, c into public fitted attributes."""

    def _fit_predictive(self, X, y, weights, update=False):
        """Fit what the predictive needs besides the posterior, from the training rows (float64).

        Called once the fitted posterior is stored, after ``fit`` and after each ``partial_fit``
        update (with the chunk's rows and ``update=True``); nothing by default.
        """

    def _log_likelihood_unit_shift(self):
        """What to subtract from a per-row log-likelihood of the internal targets for y's units."""
        return 0.0

    def _resolve_inference(self):
        return self.inference

    def _map_refinement_steps(self, n_epochs):
        """The Levenberg–Marquardt steps after training ``n_epochs`` epochs."""
        return self.map_refinement_steps

    def _keeps_best_evidence(self):
        return self.keep_best_evidence

    # -- fit and partial_fit -----------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, classes=None, streaming=False):
        """Fit; on any error the estimator keeps the fitted state it had before the call."""
        return self._keeping_state_on_error(
            self._fit_unguarded, X, y, sample_weight, classes, streaming
        )

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

    def _fit_unguarded(self, X, y, sample_weight, classes=None, streaming=False):
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=True)
        check_fixed_prior_precision(self.prior_precision)
        hidden = check_hidden_layer_sizes(self.hidden_layer_sizes)
        targets, n_outputs, likelihood = self._encode_targets(y, sample_weight, classes)
        X_t, y_t, w_t = self._training_tensors(X, targets, sample_weight)
        seeds = [None, *self._other_network_seeds(X.shape[0], len(hidden), streaming)]
        generators = [self._generator(seed) for seed in seeds]
        problems, validations = [], []
        fraction = self.validation_fraction if self.early_stopping else None
        for generator in generators:
            # Each network draws its validation rows, initial weights and minibatches from its
            # own generator, as if fitted alone; the likelihood's noise is its own to tune.
            train, validation = split_validation(X_t, y_t, w_t, fraction, generator)
            module = build_mlp(
                X.shape[1], hidden, n_outputs, self.activation, dtype=X_t.dtype, generator=generator
            ).to(X_t.device)
            rows = (X_t[train], y_t[train], w_t[train])
            problems.append(self._problem(module, copy.deepcopy(likelihood), *rows))
            validations.append(validation)
        settings = self._fit_settings(problems[0], streaming=False)
        fitted = fit_networks(problems, settings, generators, validations)
        self._store_network(fitted[0], settings)
        self._store_other_networks(fitted[1:], seeds[1:])
        self._mc_seed = int(torch.randint(2**31 - 1, (1,), generator=generators[0]))
        self._fit_predictive(*(t.cpu() for t in problems[0].float64))
        return self

    def _other_network_seeds(self, n_samples, n_hidden_layers, streaming):
        """The random states of the networks fitted besides this estimator's own: none."""
        return []

    def _store_other_networks(self, fitted, seeds):
        """Store the networks fitted besides this estimator's own (none by default)."""

    def _update_unguarded(self, X, y, sample_weight, classes):
        """One partial_fit step on a fitted estimator (:mod:`skbnn._sequential`)."""
        chunk = self._chunk_tensors(X, y, sample_weight, classes)
        network = (self.module_, self.posterior_, self._evidence_terms, self._likelihood)
        update, rows = self._sequential_update(network, chunk, self._generator())
        if self.inference_ == "ggn-vi":
            for name in ("elbo_", "expected_log_likelihood_", "kl_divergence_", "elbo_curve_"):
                # They describe an ELBO over all rows, which a chunk cannot update.
                self.__dict__.pop(name, None)
        self.module_, self.posterior_, self._evidence_terms = (
            update.module,
            update.posterior,
            update.terms,
        )
        self._ggn_rows = None  # the curvature now sums over chunks
        self._store_fitted_hyperparameters(update.hyperparameters, update.terms)
        self.scores_ = [*self.scores_, self._log_evidence(update.terms, update.hyperparameters)]
        self.n_iter_ += update.training.n_iter
        self.loss_curve_ = self.loss_curve_ + update.training.loss_curve
        self._fit_predictive(*(t.cpu() for t in rows), update=True)
        return self

    def _chunk_tensors(self, X, y, sample_weight, classes):
        """A later chunk's validated rows, targets and weights as training tensors."""
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=False)
        targets = self._encode_more_targets(y, classes)
        return self._training_tensors(X, targets, sample_weight)

    def _sequential_update(self, network, tensors, generator):
        """The network (module, posterior, terms, likelihood) after the chunk ``tensors``; also
        the chunk's rows in float64."""
        module, posterior, terms, likelihood = network
        X, y, weights = tensors
        copied = copy.deepcopy(module).to(device=X.device, dtype=X.dtype)
        chunk = Problem(
            copied, likelihood, posterior.param_names, self.hessian_structure_, X, y, weights
        )
        settings = self._fit_settings(chunk, streaming=True)
        update = update_network(
            module, posterior, terms, chunk, settings, self.inference_, generator
        )
        return update, chunk.float64

    def _problem(self, module, likelihood, X, y, weights):
        """The fit's :class:`Problem`; refuses a GGN structure that cannot be fitted."""
        if self.subset_of_weights == "last_layer":
            names = last_layer_parameter_names(module)
        else:
            names = [name for name, _ in module.named_parameters()]
        params = dict(module.named_parameters())
        n_params = sum(params[name].numel() for name in names)
        layerwise = self.prior_structure == "layerwise"
        structure = _auto.hessian_structure(self.hessian_structure, n_params, layerwise)
        check_structure(structure, n_params, layerwise)
        return Problem(module, likelihood, names, structure, X, y, weights)

    def _fit_settings(self, problem, streaming):
        """The options resolved for this problem (:mod:`skbnn._auto`)."""
        n_rows = problem.X.shape[0]
        batch_size = _auto.batch_size(self.batch_size, n_rows)
        max_iter = _auto.max_iter(self.max_iter, n_rows, batch_size)
        early_stopping = self.early_stopping and not streaming
        training = TrainingConfig(
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate_init=self.learning_rate_init,
            early_stopping=early_stopping,
            n_iter_no_change=10 if streaming else self.n_iter_no_change,
            verbose=self.verbose,
            warn_convergence=not streaming,
        )
        # Not with early stopping, whose weights are chosen by validation loss, not as a MAP.
        refine = not (streaming or early_stopping)
        return FitSettings(
            training=training,
            evidence=self._evidence_settings(),
            refinement_steps=self._map_refinement_steps(max_iter) if refine else 0,
            inference=self._resolve_inference(),
            warm_up_epochs=_auto.warm_up_epochs(
                hasattr(problem.likelihood, "warm_up_loss"), max_iter
            ),
        )

    def _evidence_settings(self):
        fixed_prior = None if self.prior_precision == "evidence" else self.prior_precision
        fixed_noise = self._fixed_noise_scale()
        tuned = fixed_prior is None or fixed_noise is None
        return EvidenceSettings(
            fixed_prior_precision=fixed_prior,
            fixed_noise_scale=fixed_noise,
            layerwise=self.prior_structure == "layerwise",
            online=tuned and self.evidence_tuning == "online",
            keep_best=self._keeps_best_evidence(),
            log_likelihood_shift=self._log_likelihood_unit_shift(),
        )

    def _store_network(self, fitted: FittedNetwork, settings: FitSettings):
        """The fitted attributes of one network's fit."""
        self.module_, self.posterior_ = fitted.module, fitted.posterior
        self._evidence_terms, self._likelihood = fitted.terms, fitted.likelihood
        self._ggn_rows = fitted.ggn_rows
        self.hessian_structure_ = fitted.posterior.structure
        self.inference_ = settings.inference
        self.batch_size_ = settings.training.batch_size
        self.max_iter_ = settings.training.max_iter
        self.map_refinement_steps_ = settings.refinement_steps
        self._store_fitted_hyperparameters(fitted.hyperparameters, fitted.terms)
        self.scores_ = fitted.scores
        training = fitted.training
        self.n_iter_, self.loss_curve_ = training.n_iter, training.loss_curve
        shift = self._log_likelihood_unit_shift()
        if settings.training.early_stopping:
            # Mean validation log-likelihood per row, in y's units (higher is better).
            self.validation_scores_ = [score - shift for score in training.validation_scores]
            self.best_validation_score_ = training.best_validation_score - shift
        if fitted.elbo is not None:
            n_shift = fitted.terms.n_data * shift
            self.elbo_ = fitted.elbo.elbo - n_shift
            self.expected_log_likelihood_ = fitted.elbo.expected_log_likelihood - n_shift
            self.kl_divergence_ = fitted.elbo.kl_divergence
            self.elbo_curve_ = fitted.elbo_curve

    def _log_evidence(self, terms, hyper):
        """The Laplace log evidence at δ, c, in y's units."""
        return self._evidence_settings().log_evidence(terms, hyper)

    def _log_evidence_at(self, prior_precision, noise_scale):
        """The fitted network's log evidence at other hyperparameters, in y's units."""
        return self._log_evidence(
            self._evidence_terms, Hyperparameters(prior_precision, noise_scale)
        )

    # -- data --------------------------------------------------------------------------------------

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
        check_total_weight(sample_weight)
        # torch takes no negative strides: any numpy layout becomes one C-contiguous copy here.
        return np.ascontiguousarray(X), np.ascontiguousarray(y), np.ascontiguousarray(sample_weight)

    def _training_tensors(self, X, targets, sample_weight):
        """X, targets and weights as tensors of the training dtype on the training device."""
        device, dtype = resolve_device(self.device), _DTYPES[self.dtype]
        X_t = torch.tensor(X, dtype=dtype, device=device)
        y_t = targets.to(device=device, dtype=dtype if targets.is_floating_point() else None)
        w_t = torch.tensor(sample_weight, dtype=dtype, device=device)
        check_representable(X_t, y_t, w_t, sample_weight, self.dtype)
        return X_t, y_t, w_t

    def _generator(self, random_state=None):
        """The fit's one source of randomness, derived from ``random_state`` (of another
        network of the fit when given)."""
        random_state = self.random_state if random_state is None else random_state
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        return torch.Generator().manual_seed(int(seed))

    # -- prediction helpers ------------------------------------------------------------------------

    def _validate_for_predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.ascontiguousarray(X)  # any numpy layout, as in fit

    def _glm_outputs(self, X):
        """Linearised outputs at X: means f (n, K) and covariances J Σ Jᵀ (n, K, K), float64."""
        return glm_outputs(self.module_, self.posterior_, torch.tensor(X, dtype=torch.float64))

    def _output_kernel(self, X, Y=None, prior=False):
        """J(X) Σ J(Y)ᵀ (or J P₀⁻¹ Jᵀ) in output space, shape (n_X, K, n_Y, K), float64."""
        X = self._validate_for_predict(X)
        J_x = self._jacobians(X)
        J_y = J_x if Y is None else self._jacobians(self._validate_for_predict(Y))
        if prior:
            prior_variance = 1.0 / self.posterior_.prior_precision_vector.to(J_x)
            return torch.einsum("akp,p,blp->akbl", J_x, prior_variance, J_y)
        return self.posterior_.functional_cross_covariance(J_x, J_y)

    def _jacobians(self, X):
        """Jacobians J (n, K, P) at validated X for the posterior's parameters."""
        X_t = torch.tensor(X, dtype=torch.float64)
        return glm_jacobians(self.module_, self.posterior_, X_t)[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def __getstate__(self):
        return compact_state(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(restore_state(self, state))
        rebuild_posterior(self)


def uses_laplace(estimator):
    """partial_fit exists only for the Laplace posterior, whose recursion it implements."""
    return estimator.inference == "laplace"

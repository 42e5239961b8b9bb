"""LaplaceMLPRegressor: an MLP with a Laplace-GGN posterior and evidence-tuned prior and noise."""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils import Bunch, check_random_state, check_scalar
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skbnn import _auto
from skbnn._base import BaseLaplaceMLP
from skbnn._conformal import (
    conformal_interval,
    normalized_residuals,
    select_calibration,
)
from skbnn._ensemble import (
    member_covariance,
    member_moments,
    member_samples,
    mixture_kernel,
)
from skbnn._likelihoods import GaussianLikelihood, HeteroscedasticGaussianLikelihood
from skbnn._members import NetworkEnsembleMixin
from skbnn._noise_choice import NOISE_MODELS, model_log_evidence
from skbnn._predictive import (
    mixture_cross_covariance,
    mixture_interval,
    mixture_mean_and_variance,
)
from skbnn._targets import noise_ratio, reference_noise, target_standardization
from skbnn._validation import (
    check_positive_finite,
    finite_predictions,
)


class LaplaceMLPRegressor(RegressorMixin, NetworkEnsembleMixin, BaseLaplaceMLP):
    """Multi-layer perceptron regressor with a Laplace-GGN posterior over its weights.

    The network is trained to its MAP weights θ* under a Gaussian prior N(0, δ⁻¹I) and Gaussian
    observation noise σ. The posterior is the Laplace approximation N(θ*, (G/σ² + δI)⁻¹) with G the
    generalized Gauss–Newton matrix, and predictions use the linearised (GLM) predictive, whose
    variance J Σ Jᵀ + σ² is exact for the network linearised at θ*. By default δ and σ maximise the
    Laplace marginal likelihood (evidence), both during training and once after it, so no
    cross-validation is needed. On small data, several such networks from different random
    initialisations are fitted, and predictions come from their equal-weight mixture.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50,)
        Width of each hidden layer; ``()`` gives Bayesian linear regression.
    activation : {"tanh", "relu", "logistic", "gelu", "silu", "identity"}, default="tanh"
        Hidden-layer activation.
    inference : {"auto", "laplace", "ggn-vi"}, default="auto"
        How the Gaussian posterior over the weights is found. ``"laplace"``: at the trained
        weights θ*, with the GGN as precision. ``"ggn-vi"``: variational inference on the
        network linearised at θ*; for this Gaussian likelihood its optimum is the exact
        posterior of the linearised model, in closed form: the same covariance as Laplace, and
        the mean one Newton step from θ* in the linearised model (Immer, Korzepa & Bauer 2021),
        with δ and σ from the Laplace evidence (for a linear model the ELBO's optimum). The
        step completes what stochastic training leaves undone, which matters most for data
        with little noise, at the cost of one more pass over the data. ``"auto"``: ``"ggn-vi"``
        for homoscedastic noise, ``"laplace"`` for heteroscedastic noise (whose likelihood has
        no closed-form optimum). The choice is stored in ``inference_``.
    sigma_noise : "evidence" or float, default="evidence"
        Observation noise standard deviation in the units of y. ``"evidence"`` tunes it by the
        marginal likelihood, one level per output for 2-D y (MacKay's per-output fixed point
        σ_k² = R_k/(N − γ_k), alternated with refits of the GGN). A fixed value
        must lie within [1e-12, 1e12] times the std of y (of 1 with ``normalize_y=False``).
    noise : {"homoscedastic", "heteroscedastic", "auto"}, default="homoscedastic"
        ``"heteroscedastic"``: the network outputs the mean and log-variance of N(μ(x), σ²(x))
        per target, so the noise may vary with x. The first 30% of the epochs fit the mean
        alone (Skafte et al. 2019). Its GGN uses the Fisher information, the evidence tunes δ
        (``sigma_noise`` must stay "evidence"), and the predictive linearises network and link
        together: mean μ(x), noise variance E[σ²(x)] under the linearised posterior (far from
        the data, where the linearised variance v of log σ²(x) grows without bound, v is capped
        at 2 ln 100, so the noise variance is at most 100 exp(E[log σ²(x)])). It uses
        ``inference="laplace"`` (or ``"auto"``). ``"auto"`` fits both models, from the same
        seeds, and keeps the one of higher evidence (the mean log evidence of its networks;
        ``noise_log_evidence_``), at twice the cost of one; the choice is stored in ``noise_``.
        The evidence scores the training rows only: it prefers heteroscedastic noise wherever
        most rows are more predictable than the average, and such a model can be far more
        surprised by a test row unlike its neighbours.
    normalize_y : bool, default=True
        Standardise y (weighted mean and std) before training; everything reported is in the
        original units.
    hessian_structure : {"auto", "full", "kron", "diag"}, default="auto"
        Structure of the GGN: dense over all posterior weights, Kronecker-factored per layer
        (KFAC), or diagonal. ``"auto"`` is ``"full"`` up to 2500 posterior weights and ``"kron"``
        beyond; the choice is stored in ``hessian_structure_``. A dense GGN too large for the
        machine's memory is refused before training.
    subset_of_weights : {"all", "last_layer"}, default="all"
        Weights with a posterior; the others are fixed at their MAP values.
    prior_precision : "evidence" or float, default="evidence"
        Precision δ of the isotropic Gaussian prior on all weights and biases (in the units of the
        standardised targets). ``"evidence"`` tunes it by the marginal likelihood. A fixed value
        must lie in [1e-12, 1e12].
    prior_structure : {"scalar", "layerwise"}, default="scalar"
        One prior precision for all weights, or one per layer (weights and bias of a layer share
        it), each tuned by the evidence. ``"layerwise"`` needs a GGN that does not mix layers,
        ``"kron"`` or ``"diag"``; with ``hessian_structure="auto"`` it selects ``"kron"``.
    evidence_tuning : {"online", "posthoc"}, default="online"
        With ``"online"``, δ and σ are re-estimated from the evidence 20 times during training
        after a 10% burn-in, so that the weight decay is the one the evidence chooses
        (Immer et al. 2021); with ``"posthoc"`` they are tuned only after training. Both finish
        with a post-hoc maximisation at the final weights.
    keep_best_evidence : "auto" or bool, default="auto"
        With online tuning, if the evidence was higher at a refresh than at the end of
        training, keep the weights of that refresh, as in Immer et al. (2021)'s algorithm (not
        with ``early_stopping``, which selects by validation loss). ``"auto"``: only with
        heteroscedastic noise, whose noise network can overfit late in training.
    map_refinement_steps : "auto" or int, default="auto"
        After training, at most this many Levenberg–Marquardt steps of the network towards the
        minimum of its regularised loss. Each step solves with the GGN eigendecomposition that
        the Laplace approximation computes anyway, and δ, σ are re-tuned by the evidence after
        it. The weights of highest evidence along the path are kept, the trained ones included.
        Adam stops short of the minimum where the noise is small. ``"auto"``: 20, or one per
        10 training epochs if that is fewer (a step costs a few passes over the data); the
        resolved number is ``map_refinement_steps_``. Never with ``early_stopping``, whose
        weights are chosen by validation loss; updates of ``partial_fit`` after the first chunk
        do not use it either.
    ensemble_size : "auto" or int, default="auto"
        Number of networks, each trained from its own random initialisation with its own
        posterior and evidence-tuned δ and σ. Predictions come from their equal-weight mixture
        (a mixture of Laplace approximations, Eschenhagen et al. 2021), whose variance adds the
        networks' disagreement to their own uncertainty. Each network is in ``members_``. The
        networks train together as one batched model, each as it would alone from its seed.
        ``"auto"``: 3 when
        :meth:`fit` sees at most 2000 rows and the network has a hidden layer, else 1 (a
        linear model, ``hidden_layer_sizes=()``, has a single mode). :meth:`partial_fit`,
        meant for data too large for :meth:`fit`, resolves ``"auto"`` to 1, and updates every
        member with each chunk.
    max_iter : "auto" or int, default="auto"
        Number of training epochs. ``"auto"`` aims at about 6000 optimiser steps, within 20 to 3000
        epochs: 3000 full-batch epochs for up to 1024 rows, fewer epochs of minibatches beyond.
        The resolved number is ``max_iter_``.
    batch_size : "auto" or int, default="auto"
        Minibatch size; ``"auto"`` trains full-batch up to 1024 rows, else uses batches of 256.
        The resolved size is ``batch_size_``.
    learning_rate_init : float, default=0.003
        Adam's initial learning rate; it decays to zero on a cosine schedule. The default suits
        the ~6000 steps of ``max_iter="auto"``; raise it for much shorter runs.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and restore the weights with the best
        validation score (``validation_scores_``); stops after ``n_iter_no_change`` epochs
        without an improvement by more than a relative 1e-4.
    validation_fraction : float, default=0.1
        Fraction held out with ``early_stopping``.
    n_iter_no_change : int, default=50
        Patience of early stopping, in epochs.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to train; ``"auto"`` uses CUDA when available. Fitted state is kept on the CPU.
    dtype : {"float64", "float32"}, default="float64"
        Training precision. Curvature, evidence and predictions are always computed in float64.
    random_state : int, RandomState instance or None, default=None
        Seeds one :class:`torch.Generator` for initialisation and minibatch order.
    verbose : int, default=0
        Print training progress when > 0.

    Attributes
    ----------
    module_ : torch.nn.Sequential
        The trained network (float64, on the CPU), mapping X to standardised targets.
    posterior_ : GaussianPosterior
        The Gaussian posterior over the weights in ``posterior_.param_names``.
    hessian_structure_ : str
        The GGN structure used ("full", "kron" or "diag").
    inference_ : str
        The inference used ("laplace" or "ggn-vi").
    max_iter_ : int
        The epoch limit of training, as ``max_iter`` resolved.
    batch_size_ : int
        The minibatch size of training, as ``batch_size`` resolved.
    map_refinement_steps_ : int
        The Levenberg–Marquardt steps allowed after training (0 with early stopping).
    prior_precision_ : float or ndarray of shape (n_layers,)
        The prior precision δ used by the posterior (one per layer with
        ``prior_structure="layerwise"``).
    sigma_noise_ : float or ndarray of shape (n_targets,)
        Observation noise std of the predictive in the units of y (an array for 2-D y): with
        several networks √(mean of their σ²), the mixture's noise; only with
        ``noise="homoscedastic"``.
    log_marginal_likelihood_value_ : float
        Laplace log evidence at the fitted δ, σ, in the units of y.
    noise_ : str
        The noise model fitted ("homoscedastic" or "heteroscedastic"), as ``noise`` resolved.
    noise_log_evidence_ : dict
        With ``noise="auto"`` only: the log evidence of each noise model, the mean over its
        networks of their Laplace log evidence in the units of y.
    ensemble_size_ : int
        The number of networks whose mixture predicts.
    members_ : list of NetworkMember
        Every network of the mixture, this estimator's own first: its ``module``,
        ``posterior``, ``prior_precision``, ``sigma_noise`` and ``log_marginal_likelihood``.
        ``module_``, ``posterior_``, ``prior_precision_``, ``log_marginal_likelihood_value_``,
        ``scores_``, ``n_iter_``, ``loss_curve_`` and the ELBO attributes are those of the first
        network, the one that ``ensemble_size=1`` fits with the same ``random_state``;
        ``sigma_noise_`` and every prediction are of the mixture.
    elbo_ : float
        Evidence lower bound at the fitted q (only when ``inference_`` is "ggn-vi"; set by
        :meth:`fit`, and removed by a later :meth:`partial_fit`, as a chunk cannot update it).
    expected_log_likelihood_ : float
        Its expected log-likelihood part (as ``elbo_``).
    kl_divergence_ : float
        Its KL(q ‖ prior) part (as ``elbo_``).
    elbo_curve_ : list of float
        The ELBO after each variational iteration (as ``elbo_``).
    scores_ : list of float
        The log evidence (as ``log_marginal_likelihood_value_``) after each online refresh of
        the hyperparameters, then at the fitted posterior (its last entry); one more entry per
        ``partial_fit`` call.
    n_iter_ : int
        Number of training epochs run.
    loss_curve_ : list of float
        Mean training objective per epoch.
    validation_scores_ : list of float
        The validation score after each epoch, the weighted mean log-likelihood per held-out row
        (higher is better; only with ``early_stopping=True``).
    best_validation_score_ : float
        The highest of ``validation_scores_``: the weights of that epoch are the ones restored
        and fitted (only with ``early_stopping=True``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    LaplaceMLPClassifier : The classification counterpart.
    sklearn.gaussian_process.GaussianProcessRegressor : Same ``predict`` semantics.
    sklearn.linear_model.BayesianRidge : The linear special case with evidence tuning.

    Notes
    -----
    The evidence is log p(D | δ, σ) ≈ log p(D | θ*) − ½δ‖θ*‖² − ½ log|G/σ² + δI| + ½P log δ;
    with G = V diag(λ) Vᵀ computed once, each evaluation costs O(P).

    Input scale: standardise X (e.g. with ``StandardScaler``). Badly scaled X (say ×1e8) still gives
    finite predictions and error bars, but a poor fit; X beyond the float32 range with
    ``dtype="float32"`` raises ValueError. Training whose loss becomes NaN or infinite raises
    ``TrainingDivergedError`` (a ValueError); a failed ``fit`` leaves a fitted estimator as it was.

    Persistence: a fitted estimator pickles (``pickle``, ``joblib``) with its posterior and the
    skbnn version; loading it under another version warns (``InconsistentVersionWarning``). With
    a dense GGN the pickle holds the training rows instead of the GGN's eigenvectors, and loading
    recomputes them (one GGN per network: the same numbers, a smaller file, a slower load), as
    GaussianProcessRegressor keeps ``X_train_``. Load such files only from trusted sources:
    unpickling can run arbitrary code.

    References
    ----------
    MacKay, D. J. C. (1992). Bayesian interpolation. Neural Computation.
    Immer, A., Korzepa, M. and Bauer, M. (2021). Improving predictions of Bayesian neural nets via
    local linearization. AISTATS.
    Immer, A. et al. (2021). Scalable marginal likelihood estimation for model selection in deep
    learning. ICML.
    Daxberger, E. et al. (2021). Laplace Redux – effortless Bayesian deep learning. NeurIPS.
    Eschenhagen, R. et al. (2021). Mixtures of Laplace approximations for improved post-hoc
    uncertainty in deep learning. arXiv:2111.03577.

    Examples
    --------
    >>> import numpy as np
    >>> from skbnn import LaplaceMLPRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-3, 3, size=(100, 1))
    >>> y = np.sin(X[:, 0]) + 0.1 * rng.randn(100)
    >>> reg = LaplaceMLPRegressor(max_iter=300, random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    >>> bool(0.05 < reg.sigma_noise_ < 0.2)
    True
    """

    _parameter_constraints: dict = {
        **BaseLaplaceMLP._parameter_constraints,
        "sigma_noise": [
            StrOptions({"evidence"}),
            Interval(numbers.Real, 0, None, closed="neither"),
        ],
        "inference": [StrOptions({"auto", "laplace", "ggn-vi"})],
        "keep_best_evidence": ["boolean", StrOptions({"auto"})],
        "map_refinement_steps": [
            StrOptions({"auto"}),
            Interval(numbers.Integral, 0, None, closed="left"),
        ],
        "ensemble_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "noise": [StrOptions({"homoscedastic", "heteroscedastic", "auto"})],
        "normalize_y": ["boolean"],
    }
    _multi_output = True
    _y_numeric = True

    def __init__(
        self,
        hidden_layer_sizes=(50,),
        activation="tanh",
        *,
        inference="auto",
        sigma_noise="evidence",
        noise="homoscedastic",
        normalize_y=True,
        hessian_structure="auto",
        subset_of_weights="all",
        prior_precision="evidence",
        prior_structure="scalar",
        evidence_tuning="online",
        keep_best_evidence="auto",
        map_refinement_steps="auto",
        ensemble_size="auto",
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
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            inference=inference,
            hessian_structure=hessian_structure,
            subset_of_weights=subset_of_weights,
            prior_precision=prior_precision,
            prior_structure=prior_structure,
            evidence_tuning=evidence_tuning,
            keep_best_evidence=keep_best_evidence,
            map_refinement_steps=map_refinement_steps,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            device=device,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )
        self.sigma_noise = sigma_noise
        self.noise = noise
        self.normalize_y = normalize_y
        self.ensemble_size = ensemble_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network(s), fit the Laplace posterior and tune δ and σ by the evidence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights: weight 2 is the same as the row appearing twice.

        Returns
        -------
        self : LaplaceMLPRegressor
            The fitted estimator.
        """
        return self._keeping_state_on_error(self._fit_noise_models, X, y, sample_weight, False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the posterior with one more chunk of data (sequential Bayesian updating).

        The first call fits as :meth:`fit` does (and fixes the standardisation of y, and with
        ``noise="auto"`` the noise model). Each later call takes the current posterior as the
        prior of the chunk:

        - ``inference_ == "ggn-vi"`` (the default): the posterior is that of the network
          linearised at the weights of the first call, a linear-Gaussian model that Bayes'
          rule updates with no training: the earlier rows enter through the previous
          posterior, the chunk's rows exactly, and δ and σ set to ``"evidence"`` maximise the
          evidence of all rows seen so far. With ``hessian_structure="full"`` (the default up
          to 2500 weights) the result does not depend on how the rows after the first call
          are chunked, and for a linear model (``hidden_layer_sizes=()``,
          ``normalize_y=False``) it is the exact posterior of all rows at the exact evidence
          maximum; KFAC and the diagonal approximate the earlier rows' quadratic form (the
          diagonal so coarsely that a stream can forget its earlier chunks: it warns). The
          network keeps the first call's weights: the features J(x) it learnt there must suit
          the later chunks (a first chunk that covers the input range is best). ``elbo_``
          and its parts are removed.
        - ``inference_ == "laplace"``: sequential Laplace (Ritter, Botev & Barber 2018). The
          weights move by MAP training on the chunk under the penalty ½(θ − μ)ᵀΛ(θ − μ), the
          chunk's GGN at the new weights is added to Λ, and δ and σ are re-estimated by the
          Laplace evidence of all data seen so far (with the residuals of each chunk at the
          weights of its own update, so the streamed evidence is approximate). For a linear
          model with fixed δ, σ and a full GGN the result equals :meth:`fit` on all rows.

        ``"kron"`` pools the Kronecker factors over chunks, an approximation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The chunk's inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            The chunk's targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights of the chunk's rows.

        Returns
        -------
        self : LaplaceMLPRegressor
            The updated estimator.
        """
        if not hasattr(self, "posterior_"):
            return self._keeping_state_on_error(self._fit_noise_models, X, y, sample_weight, True)
        return self._keeping_state_on_error(self._update_ensemble, X, y, sample_weight)

    def _fit_noise_models(self, X, y, sample_weight, streaming):
        """Fit with the noise model that ``noise`` names; with "auto", with both, keeping the
        one of higher evidence (:mod:`skbnn._noise_choice`)."""
        if self.noise != "auto":
            self.__dict__.pop("noise_log_evidence_", None)
            self.noise_ = self.noise
            return self._fit_ensemble(X, y, sample_weight, streaming)
        # Each model is fitted as fit with that noise would fit it, and its state kept whole.
        states, log_evidence = {}, {}
        for noise in NOISE_MODELS:
            self.noise_ = noise
            self._fit_ensemble(X, y, sample_weight, streaming)
            states[noise], log_evidence[noise] = dict(self.__dict__), model_log_evidence(self)
        chosen = states[max(log_evidence, key=log_evidence.get)]
        self.__dict__.clear()
        self.__dict__.update(chosen)
        self.noise_log_evidence_ = log_evidence
        return self

    def _stacked(self, per_member, X):
        """Each tensor that ``per_member(member, X, y_scale)`` returns, stacked over members."""
        X_t = torch.tensor(X, dtype=torch.float64)
        results = [per_member(member, X_t, self._y_scale) for member in self.members_]
        return [torch.stack(values) for values in zip(*results, strict=True)]

    def _resolve_inference(self):
        return _auto.regression_inference(self.inference, self.noise_)

    def _map_refinement_steps(self, n_epochs):
        return _auto.map_refinement_steps(self.map_refinement_steps, n_epochs)

    def _keeps_best_evidence(self):
        return _auto.keep_best_evidence(self.keep_best_evidence, self.noise_)

    @finite_predictions
    def predict(self, X, return_std=False, return_cov=False):
        """Predictive mean, and optionally its std or covariance, in the units of y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        return_std : bool, default=False
            Also return the predictive standard deviation, √(J Σ Jᵀ + σ²).
        return_cov : bool, default=False
            Also return the joint predictive covariance of the query points (σ² on its diagonal).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Only with ``return_std``.
        y_cov : ndarray of shape (n_samples, n_samples) or (n_samples, n_samples, n_targets)
            Only with ``return_cov``.
        """
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        X = self._validate_for_predict(X)
        scale = torch.as_tensor(self._y_scale)
        if return_cov:
            means, covariances, noise_variances = self._stacked(member_covariance, X)
            cov = mixture_cross_covariance(means, means, torch.diag_embed(covariances))
            cov = torch.diagonal(cov, dim1=2, dim2=3)  # (n, n, k): no cross-output terms
            cov = cov + torch.diag_embed(noise_variances.mean(0).T).permute(1, 2, 0)
            return self._to_output(self._to_y_units(means.mean(0))), self._to_output(cov * scale**2)
        mean, model_std, noise_std = self._predictive_moments(X)
        if not return_std:
            return self._to_output(mean)
        # √(model² + noise²) as a hypot: no overflow of the squares for y in huge units.
        return self._to_output(mean), self._to_output(torch.hypot(model_std, noise_std))

    @finite_predictions
    def predict_interval(self, X, confidence=0.9, method="bayes"):
        """Central interval of y at X that holds ``confidence`` of the probability.

        ``method="bayes"``: the predictive's own interval. For one network the predictive is
        N(μ, J Σ Jᵀ + σ²) and the interval μ ± z σ_total with z = Φ⁻¹(½ + confidence/2). With
        several networks it is the mixture's central interval: its ½ ∓ confidence/2 quantiles,
        which are not symmetric about the mean where the networks disagree.

        ``method="conformal"``: split conformal prediction with normalised residuals,
        μ ± q σ_total (μ, σ_total as ``predict(X, return_std=True)``), q the conformal quantile
        of |y_i − μ(x_i)| / σ_total(x_i) on the held-out rows given to :meth:`conformalize`:
        for rows exchangeable with those, the interval holds y with probability at least
        ``confidence``, whatever the noise model (:mod:`skbnn._conformal`).

        ``method="loo"``: the same rescaling calibrated by the training rows' leave-one-out
        residuals from the Laplace cavities, computed at fit with no rows held out and no refit
        (after :meth:`partial_fit`, the last chunk's rows). An approximation: the cavity leaves
        the row out of the linearised network, not out of its training, so where the network
        overfits the intervals are too narrow (benchmarks/RESULTS.md, "Conformal intervals").

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        confidence : float, default=0.9
            Probability of the interval, in (0, 1). Conformal intervals reach at most
            n/(n + 1) with n calibration rows (ValueError beyond).
        method : {"bayes", "conformal", "loo"}, default="bayes"
            The predictive's interval, or its rescaling calibrated on held-out rows or by
            leave-one-out.

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,) or (n_samples, n_targets)
            The interval's ends, in the units of y.
        """
        bounds = dict(min_val=0, max_val=1, include_boundaries="neither")
        check_scalar(confidence, "confidence", numbers.Real, **bounds)
        X = self._validate_for_predict(X)
        held_out = getattr(self, "_held_out_conformity", None)
        calibration = select_calibration(method, held_out, self._loo_conformity)
        if calibration is not None:
            mean, model_std, noise_std = self._predictive_moments(X)
            std = torch.hypot(model_std, noise_std)
            lower, upper = conformal_interval(mean, std, *calibration, float(confidence))
            return self._to_output(lower), self._to_output(upper)
        means, model_variances, noise_variances = self._stacked(member_moments, X)
        stds = (model_variances + noise_variances).sqrt() * torch.as_tensor(self._y_scale)
        lower, upper = mixture_interval(self._to_y_units(means), stds, float(confidence))
        return self._to_output(lower), self._to_output(upper)

    def conformalize(self, X, y, sample_weight=None):
        """Calibrate ``predict_interval(method="conformal")`` on rows held out from training.

        Stores the normalised residuals |y_i − μ(x_i)| / σ_total(x_i) of these rows; a later
        :meth:`fit` or :meth:`partial_fit` discards them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Calibration rows, not used in training.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights of the rows.

        Returns
        -------
        self : LaplaceMLPRegressor
            The estimator, calibrated.
        """
        check_is_fitted(self)
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=False)
        mean, std = self.predict(X, return_std=True)
        scores = normalized_residuals(y, mean, std)
        self._held_out_conformity = (scores.reshape(len(X), -1), sample_weight)
        return self

    def predict_std(self, X):
        """Predictive standard deviation √(J Σ Jᵀ + σ²), the same as ``predict(X, True)[1]``."""
        return self.predict(X, return_std=True)[1]

    @finite_predictions
    def predict_uncertainty(self, X):
        """Split the predictive standard deviation into its epistemic and aleatoric parts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.

        Returns
        -------
        result : Bunch
            ``mean``; ``epistemic_std`` = √diag(J Σ Jᵀ), the model's ignorance, which shrinks with
            more data; ``aleatoric_std`` = σ, the observation noise; ``total_std`` =
            √(epistemic² + aleatoric²), the std of :meth:`predict`. Arrays of shape (n_samples,)
            or (n_samples, n_targets). With several networks, the epistemic variance also holds
            their disagreement (the variance of their means), and the aleatoric variance is the
            mean of theirs.
        """
        mean, epistemic, aleatoric = self._predictive_moments(self._validate_for_predict(X))
        return Bunch(
            mean=self._to_output(mean),
            epistemic_std=self._to_output(epistemic),
            aleatoric_std=self._to_output(aleatoric),
            total_std=self._to_output(torch.hypot(epistemic, aleatoric)),
        )

    @finite_predictions
    def kernel(self, X, Y=None, *, prior=False):
        """The linearised network's Gaussian-process kernel, in the units of y².

        The GLM predictive is a Gaussian process (Khan et al. 2019) whose posterior kernel is
        k(x, x') = J(x) Σ J(x')ᵀ, the covariance of the latent function; with ``prior=True`` it is
        the prior kernel J(x) P₀⁻¹ J(x')ᵀ = J Jᵀ/δ (an empirical NTK scaled by 1/δ). Neither
        includes the observation noise. With several networks, the posterior kernel is the
        covariance of their mixture (the mean of their kernels plus the covariance of their
        means), and the prior kernel the mean of theirs.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Defaults to X.
        prior : bool, default=False
            Return the prior instead of the posterior kernel.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y), or
            (n_samples_X, n_samples_Y, n_targets, n_targets) for 2-D y.
        """
        X_t = torch.tensor(self._validate_for_predict(X), dtype=torch.float64)
        Y_t = (
            None if Y is None else torch.tensor(self._validate_for_predict(Y), dtype=torch.float64)
        )
        K = mixture_kernel(self.members_, X_t, Y_t, self._y_mean.shape[0], prior)
        scale = torch.as_tensor(self._y_scale)
        K = (K * scale[:, None] * scale[None, :]).numpy()
        return K[:, :, 0, 0] if self._y_1d else K

    @finite_predictions
    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw joint samples of y at X from the GLM predictive.

        Weights are sampled from the posterior, pushed through the network linearised at θ*, and
        observation noise is added, so samples are correlated across points and outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Query points.
        n_samples : int, default=1
            Number of samples per query point.
        random_state : int, RandomState instance or None, default=0
            Seed of the draws.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
        """
        X = self._validate_for_predict(X)
        check_scalar(n_samples, "n_samples", numbers.Integral, min_val=1)
        rng = check_random_state(random_state)
        X_t = torch.tensor(X, dtype=torch.float64)
        members, y_mean, y_scale = self.members_, self._y_mean, self._y_scale
        if len(members) == 1:
            seed = int(rng.randint(np.iinfo(np.int32).max))
            samples = member_samples(members[0], X_t, n_samples, seed, y_mean, y_scale)
        else:
            # Each draw comes from a network chosen uniformly: a draw from the mixture.
            chosen = rng.randint(len(members), size=n_samples)
            samples = np.empty((X.shape[0], y_mean.shape[0], n_samples))
            for index, member in enumerate(members):
                draws = np.flatnonzero(chosen == index)
                if draws.size:
                    seed = int(rng.randint(np.iinfo(np.int32).max))
                    samples[:, :, draws] = member_samples(
                        member, X_t, draws.size, seed, y_mean, y_scale
                    )
        return samples[:, 0, :] if self._y_1d else samples

    def log_marginal_likelihood(self, prior_precision=None, sigma_noise=None):
        """Laplace log evidence at the given δ and σ (default: the fitted ones), units of y.

        The GGN and the MAP weights stay those of the fit; this is the function the fit maximised.
        For multi-output y, ``sigma_noise`` is the noise of the first output; the others keep their
        fitted ratio to it.
        """
        check_is_fitted(self)
        delta = self.prior_precision_
        if prior_precision is not None:
            delta = check_positive_finite(prior_precision, "prior_precision")
        c = self.posterior_.noise_scale
        if sigma_noise is not None:
            if self.noise_ == "heteroscedastic":
                raise ValueError(
                    "sigma_noise is predicted by the network with heteroscedastic noise."
                )
            c *= noise_ratio(sigma_noise, float(self.members_[0].sigma_noise[0]))
        return self._log_evidence_at(delta, c)

    # -- hooks of BaseLaplaceMLP -------------------------------------------------------------------

    def _encode_targets(self, y, sample_weight, classes=None):
        self._y_1d = y.ndim == 1
        y2 = y.reshape(y.shape[0], -1).astype(np.float64)
        mean, scale = target_standardization(y2, sample_weight, self.normalize_y)
        self._y_mean, self._y_scale = mean, scale
        targets = torch.tensor((y2 - mean) / scale)
        if self.noise_ == "heteroscedastic":
            if self.sigma_noise != "evidence" or self.inference == "ggn-vi":
                raise ValueError(
                    f"noise={self.noise!r} fits heteroscedastic noise, which the network "
                    "predicts: it needs sigma_noise='evidence' and inference='laplace' (or "
                    "'auto')."
                )
            return targets, 2 * y2.shape[1], HeteroscedasticGaussianLikelihood()
        noise_ref = reference_noise(self.sigma_noise, scale, self.normalize_y)
        likelihood = GaussianLikelihood(torch.tensor(noise_ref, dtype=torch.float64))
        return targets, y2.shape[1], likelihood

    def _encode_more_targets(self, y, classes):
        y2 = y.reshape(y.shape[0], -1).astype(np.float64)
        if (y.ndim == 1) != self._y_1d or y2.shape[1] != self._y_mean.shape[0]:
            raise ValueError(
                f"y has shape {y.shape}, but the estimator was fitted on "
                f"{'1-D y' if self._y_1d else f'y with {self._y_mean.shape[0]} columns'}."
            )
        return torch.tensor((y2 - self._y_mean) / self._y_scale)

    def _fixed_noise_scale(self):
        if self.noise_ == "heteroscedastic" or self.sigma_noise != "evidence":
            return 1.0
        return None

    def _store_fitted_hyperparameters(self, hyper, terms):
        self.prior_precision_ = hyper.prior_precision
        if self.noise_ == "heteroscedastic":
            # No single noise level: see predict_uncertainty.
            self.__dict__.pop("sigma_noise_", None)
        else:
            # The reference noise may have moved (per-output noise of multi-output y).
            sigma = self._noise_std(hyper, self._likelihood)
            self.sigma_noise_ = float(sigma[0]) if self._y_1d else sigma
        self.log_marginal_likelihood_value_ = self._log_evidence(terms, hyper)

    def _log_likelihood_unit_shift(self):
        return float(np.log(self._y_scale).sum())

    def _noise_std(self, hyper, likelihood):
        """The noise std per output in y's units, c σ_ref × the scale of y."""
        return hyper.noise_scale * likelihood.noise_std.cpu().numpy() * self._y_scale

    # -- helpers -----------------------------------------------------------------------------------

    def _predictive_moments(self, X):
        """Mean, model std and noise std (n, k) of the networks' mixture, in y's units."""
        means, model_variances, noise_variances = self._stacked(member_moments, X)
        mean, model_variance = mixture_mean_and_variance(means, model_variances)
        scale = torch.as_tensor(self._y_scale)
        return (
            self._to_y_units(mean),
            model_variance.sqrt() * scale,
            noise_variances.mean(0).sqrt() * scale,
        )

    def _to_y_units(self, mean):
        return mean * torch.as_tensor(self._y_scale) + torch.as_tensor(self._y_mean)

    def _to_output(self, values):
        """Tensor (..., K) to numpy, dropping the output axis when y was 1-D."""
        values = values.detach().numpy()
        return values[..., 0] if self._y_1d else values

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        if "members_" in state:
            state["members_"] = [member.compact() for member in state["members_"]]
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "members_" in self.__dict__:
            own = replace(self.members_[0], module=self.module_, posterior=self.posterior_)
            self.members_ = [
                own,
                *(member.rebuilt(self.hessian_structure_) for member in self.members_[1:]),
            ]

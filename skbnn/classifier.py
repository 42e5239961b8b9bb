"""LaplaceMLPClassifier: an MLP classifier with a Laplace-GGN posterior and evidence-tuned prior."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from skbnn._base import BaseLaplaceMLP, uses_laplace
from skbnn._far_field import FarFieldPrior
from skbnn._likelihoods import BernoulliLikelihood, CategoricalLikelihood
from skbnn._links import (
    bridge_log_proba,
    bridge_proba,
    link_samples,
    mc_log_proba,
    mc_proba,
    probit_log_proba,
    probit_proba,
)
from skbnn._loo import loo_log_likelihood, loo_logits
from skbnn._validation import check_positive_finite, finite_predictions

# The temperatures among which posterior_temperature="loo" chooses: 0 (the MAP network's own
# probabilities), 31 log-spaced values from 1e-3, and 1 (the Laplace posterior itself).
LOO_TEMPERATURES = (0.0, *np.logspace(-3.0, 0.0, 31).tolist())


class LaplaceMLPClassifier(ClassifierMixin, BaseLaplaceMLP):
    """Multi-layer perceptron classifier with a Laplace-GGN posterior over its weights.

    Binary problems use one logit with a Bernoulli likelihood, multiclass problems a softmax. The
    network is trained to its MAP weights θ* under a Gaussian prior N(0, δ⁻¹I); the posterior is
    N(θ*, (G + δI)⁻¹) with G the generalized Gauss–Newton matrix Σ Jᵀ(diag p − ppᵀ)J, and
    ``predict_proba`` integrates the link over the linearised (GLM) logit distribution
    N(f(x; θ*), T · J Σ Jᵀ) instead of returning the MAP softmax. δ is tuned by the Laplace
    evidence; the temperature T ∈ [0, 1] of the posterior by its approximate leave-one-out
    log-likelihood of the training rows.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50,)
        Width of each hidden layer; ``()`` gives Bayesian logistic regression.
    activation : {"relu", "tanh", "logistic", "gelu", "silu", "identity"}, default="relu"
        Hidden-layer activation.
    inference : {"laplace", "ggn-vi"}, default="laplace"
        How the Gaussian posterior over the weights is found. ``"laplace"``: at the MAP, with
        the GGN as precision. ``"ggn-vi"``: variational inference on the network linearised at
        the MAP, maximising the ELBO by natural-gradient steps with the same GGN structure.
        For a Gaussian likelihood it is the exact posterior of the linearised model, with δ and
        σ from the Laplace evidence (for a linear model the ELBO's optimum); for classification
        it averages the curvature over the posterior, moves the mean off the MAP and tunes δ by
        the ELBO (Immer, Korzepa & Bauer 2021).
    link_approx : {"probit", "mc", "bridge"}, default="probit"
        How the predictive integral is approximated: MacKay's probit approximation, Monte Carlo
        over the logits (repeatable: seeded at fit), or the Laplace bridge.
    n_samples : int, default=1000
        Number of logit samples with ``link_approx="mc"``.
    posterior_temperature : "loo" or float, default="loo"
        Temperature T of the posterior that predictions use, N(θ*, T Σ): 1 is the Laplace
        posterior, T < 1 a colder one, 0 the MAP network's own probabilities. ``"loo"`` picks T
        in [0, 1] with the highest approximate leave-one-out log-likelihood of the training
        rows: each row's logits without it are the cavity of the Laplace posterior (the row's
        share of the GGN removed, one Newton step; Vehtari et al. 2016), so no refit is needed.
        Classification needs it: with the evidence-tuned δ, the linearised predictive can be far
        wider than the data warrant. With ``inference="ggn-vi"``, ``"loo"`` keeps the
        variational posterior (T = 1).
    far_field_variance : float, default=1.0
        σ² of the Gaussian process added to every logit beyond the box of the training rows
        (:mod:`skbnn._far_field`): infinitely many ReLU features with kinks outside the data,
        whose variance grows as the cube of the distance beyond the box, in units of each
        feature's training std. Zero inside the box, so fitting and predictions there are
        unchanged; far from the data the predictive tends to uniform (with ``"probit"`` or
        ``"mc"``: the bridge's Dirichlet mean ignores a variance shared by all logits). 0 turns
        it off.
    hessian_structure : {"auto", "full", "kron", "diag"}, default="auto"
        Structure of the GGN: dense over all posterior weights, Kronecker-factored per layer
        (KFAC), or diagonal. ``"auto"`` is ``"full"`` up to 2500 posterior weights and ``"kron"``
        beyond; the choice is stored in ``hessian_structure_``. A dense GGN too large for the
        machine's memory is refused before training.
    subset_of_weights : {"all", "last_layer"}, default="all"
        Weights with a posterior; the others are fixed at their MAP values.
    prior_precision : "evidence" or float, default="evidence"
        Precision δ of the isotropic Gaussian prior on all weights and biases; ``"evidence"`` tunes
        it by the marginal likelihood. A fixed value must lie in [1e-12, 1e12].
    prior_structure : {"scalar", "layerwise"}, default="scalar"
        One prior precision for all weights, or one per layer (weights and bias of a layer share
        it), each tuned by the evidence. ``"layerwise"`` needs a GGN that does not mix layers,
        ``"kron"`` or ``"diag"``; with ``hessian_structure="auto"`` it selects ``"kron"``.
    evidence_tuning : {"online", "posthoc"}, default="online"
        When δ is re-estimated: during training as well (online: 20 times after a 10% burn-in)
        or only after it (post hoc).
    keep_best_evidence : bool, default=True
        With online tuning, if the evidence was higher at a refresh than at the end of
        training, keep the weights of that refresh, as in Immer et al. (2021)'s algorithm (not
        with ``early_stopping``, which selects by validation loss).
    map_refinement_steps : int, default=0
        After training, at most this many Levenberg–Marquardt steps of the network towards the
        minimum of its regularised loss. Each step solves with the GGN eigendecomposition that
        the Laplace approximation computes anyway, and δ is re-tuned by the evidence after it.
        The weights of highest evidence along the path are kept, the trained ones included.
        Never with ``early_stopping``, whose weights are chosen by validation loss; updates of
        ``partial_fit`` after the first chunk do not use it either.
    max_iter : "auto" or int, default="auto"
        Number of training epochs. ``"auto"`` aims at about 6000 optimiser steps, within 20 to 3000
        epochs: 3000 full-batch epochs for up to 1024 rows, fewer epochs of minibatches beyond.
    batch_size : "auto" or int, default="auto"
        Minibatch size; ``"auto"`` trains full-batch up to 1024 rows, else uses batches of 256.
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
        Training precision; curvature, evidence and predictions are computed in float64.
    random_state : int, RandomState instance or None, default=None
        Seeds one :class:`torch.Generator` for initialisation, minibatches and MC predictions.
    verbose : int, default=0
        Print training progress when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    module_ : torch.nn.Sequential
        The trained network (float64, on the CPU), mapping X to logits.
    posterior_ : GaussianPosterior
        The Gaussian posterior over the weights in ``posterior_.param_names``.
    hessian_structure_ : str
        The GGN structure used ("full", "kron" or "diag").
    inference_ : str
        The inference used (``inference``).
    max_iter_ : int
        The epoch limit of training, as ``max_iter`` resolved.
    batch_size_ : int
        The minibatch size of training, as ``batch_size`` resolved.
    map_refinement_steps_ : int
        The Levenberg–Marquardt steps allowed after training (0 with early stopping).
    prior_precision_ : float or ndarray of shape (n_layers,)
        The prior precision δ used by the posterior (one per layer with
        ``prior_structure="layerwise"``).
    log_marginal_likelihood_value_ : float
        Laplace log evidence at ``prior_precision_``.
    posterior_temperature_ : float
        The temperature T of the posterior behind the predictions.
    far_field_ : FarFieldPrior
        The box of the training rows (grown by ``partial_fit``) and the feature scales of the
        far-field prior.
    loo_log_likelihood_ : float
        Approximate leave-one-out log-likelihood of the training rows at
        ``posterior_temperature_``, a weighted mean per row (only with ``inference="laplace"``;
        after ``partial_fit``, of the last chunk's rows).
    elbo_ : float
        Evidence lower bound at the fitted q (only with ``inference="ggn-vi"``).
    expected_log_likelihood_ : float
        Its expected log-likelihood part (only with ``inference="ggn-vi"``).
    kl_divergence_ : float
        Its KL(q ‖ prior) part (only with ``inference="ggn-vi"``).
    elbo_curve_ : list of float
        The ELBO after each variational iteration (only with ``inference="ggn-vi"``).
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
    LaplaceMLPRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : The same network without a posterior.

    Notes
    -----
    Input scale: standardise X (e.g. with ``StandardScaler``). Badly scaled X (say ×1e8) still gives
    finite probabilities, but a poor fit; X beyond the float32 range with ``dtype="float32"``
    raises ValueError. Training whose loss becomes NaN or infinite raises
    ``TrainingDivergedError`` (a ValueError); a failed ``fit`` leaves a fitted estimator as it was.

    Persistence: a fitted estimator pickles (``pickle``, ``joblib``) with its posterior and the
    skbnn version; loading it under another version warns (``InconsistentVersionWarning``). With
    a dense GGN the pickle holds the training rows instead of the GGN's eigenvectors, and loading
    recomputes them (one GGN per network: the same numbers, a smaller file, a slower load), as
    GaussianProcessRegressor keeps ``X_train_``. Load such files only from trusted sources:
    unpickling can run arbitrary code.

    References
    ----------
    MacKay, D. J. C. (1992). The evidence framework applied to classification networks.
    Immer, A., Korzepa, M. and Bauer, M. (2021). Improving predictions of Bayesian neural nets via
    local linearization. AISTATS.
    Vehtari, A., Mononen, T., Tolvanen, V., Sivula, T. and Winther, O. (2016). Bayesian
    leave-one-out cross-validation approximations for Gaussian latent variable models. JMLR 17.

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from skbnn import LaplaceMLPClassifier
    >>> X, y = make_moons(n_samples=200, noise=0.2, random_state=0)
    >>> clf = LaplaceMLPClassifier(random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _parameter_constraints: dict = {
        **BaseLaplaceMLP._parameter_constraints,
        "link_approx": [StrOptions({"probit", "mc", "bridge"})],
        "n_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "posterior_temperature": [
            StrOptions({"loo"}),
            Interval(numbers.Real, 0, None, closed="left"),
        ],
        "far_field_variance": [Interval(numbers.Real, 0, None, closed="left")],
    }
    _multi_output = False
    _y_numeric = False

    def __init__(
        self,
        hidden_layer_sizes=(50,),
        activation="relu",
        *,
        inference="laplace",
        link_approx="probit",
        n_samples=1000,
        posterior_temperature="loo",
        far_field_variance=1.0,
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
        self.link_approx = link_approx
        self.n_samples = n_samples
        self.posterior_temperature = posterior_temperature
        self.far_field_variance = far_field_variance

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network, fit the Laplace posterior and tune δ by the evidence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels (at least two distinct ones).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights.

        Returns
        -------
        self : LaplaceMLPClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight)

    @available_if(uses_laplace)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the posterior with one more chunk of data (sequential Bayesian updating).

        The first call fits the network and the posterior as :meth:`fit` does and needs
        ``classes``. Each later call takes the current posterior N(μ, Λ⁻¹) as the prior: the
        weights move by MAP training on the chunk under the penalty ½(θ − μ)ᵀΛ(θ − μ), the chunk's
        GGN at the new weights is added to Λ, and a prior precision set to ``"evidence"`` is
        re-estimated by the Laplace evidence of all data seen so far. For a linear model with a
        full GGN this recursion is exact; ``hessian_structure="kron"`` pools the Kronecker
        factors (sum of output factors, data-weighted mean of input factors), an approximation;
        ``"diag"`` keeps the earlier chunks only as a diagonal penalty, which can forget them
        (it warns). With ``posterior_temperature="loo"`` the temperature is chosen again, on
        the chunk's rows.

        Only available with ``inference="laplace"``: the recursion updates a Laplace posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The chunk's inputs.
        y : array-like of shape (n_samples,)
            The chunk's labels, all in ``classes``.
        classes : array-like of shape (n_classes,), default=None
            All labels of the problem; required on the first call, optional (and checked) later.
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights of the chunk's rows.

        Returns
        -------
        self : LaplaceMLPClassifier
            The updated estimator.
        """
        if not hasattr(self, "posterior_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._partial_fit(X, y, sample_weight, classes)

    @finite_predictions
    def predict_proba(self, X):
        """Posterior predictive class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return self._predict_proba_tensor(self._validate_for_predict(X)).numpy()

    @finite_predictions
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed in log space (finite far from the data)."""
        mean, cov = self._glm_outputs(self._validate_for_predict(X))
        return self._link_log_proba(mean, cov).numpy()

    def predict(self, X):
        """The class with the highest predictive probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    @finite_predictions
    def predict_uncertainty(self, X):
        """Predictive entropy split into aleatoric and epistemic parts (BALD).

        With S logit samples f_s ~ N(f(x; θ*), J Σ Jᵀ) (``n_samples`` of them, seeded at fit):
        the total uncertainty is the entropy of the mean prediction H[p̄]; the aleatoric part is
        the expected entropy E_s H[p_s], what remains with the weights known; the epistemic part
        is their difference, the mutual information between the label and the weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.

        Returns
        -------
        result : Bunch
            ``proba`` (the Monte Carlo predictive, shape (n_samples, n_classes)),
            ``predictive_entropy``, ``expected_entropy`` and ``mutual_information`` (in nats,
            shape (n_samples,)).
        """
        mean, cov = self._glm_outputs(self._validate_for_predict(X))
        generator = torch.Generator().manual_seed(self._mc_seed)
        samples = link_samples(mean, cov, self.n_samples, generator)  # (n, S, n_classes)
        proba = samples.mean(1)
        total = _entropy(proba)
        expected = _entropy(samples).mean(1)
        return Bunch(
            proba=proba.numpy(),
            predictive_entropy=total.numpy(),
            expected_entropy=expected.numpy(),
            mutual_information=(total - expected).clamp_min(0.0).numpy(),
        )

    @finite_predictions
    def kernel(self, X, Y=None, *, prior=False):
        """The linearised network's Gaussian-process kernel over the logits.

        k(x, x') = T · J(x) Σ J(x')ᵀ + k_far(x, x') I, the covariance of the logits under the
        (tempered) posterior that the predictions use (Khan et al. 2019) plus the far-field
        prior's (zero within the training box), or with ``prior=True`` the prior kernel
        J(x) P₀⁻¹ J(x')ᵀ + k_far(x, x') I = J Jᵀ/δ + k_far I.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y) for binary problems (one logit), else
            (n_samples_X, n_samples_Y, n_classes, n_classes).
        """
        K = self._output_kernel(X, Y, prior=prior).permute(0, 2, 1, 3).numpy()
        return K[:, :, 0, 0] if K.shape[-1] == 1 else K

    def log_marginal_likelihood(self, prior_precision=None):
        """Laplace log evidence at ``prior_precision`` (default: the fitted δ)."""
        check_is_fitted(self)
        delta = self.prior_precision_
        if prior_precision is not None:
            delta = check_positive_finite(prior_precision, "prior_precision")
        return self._log_evidence_at(delta, 1.0)

    # -- hooks of BaseLaplaceMLP -------------------------------------------------------------------

    def _encode_targets(self, y, sample_weight, classes=None):
        _check_label_types(y)
        check_classification_targets(y)
        if classes is None:
            classes, encoded = np.unique(y, return_inverse=True)
        else:
            classes = np.unique(classes)
            encoded = _encode_labels(y, classes)
        if classes.shape[0] < 2:
            raise ValueError(
                f"LaplaceMLPClassifier needs samples of at least 2 classes; got only one class: "
                f"{classes[0]!r}."
            )
        if np.unique(encoded[sample_weight > 0]).shape[0] < 2 and classes.shape[0] == len(
            np.unique(encoded)
        ):
            raise ValueError(
                "sample_weight leaves only one class with positive weight; a classifier needs "
                "at least 2 classes."
            )
        self.classes_ = classes
        if classes.shape[0] == 2:
            return torch.tensor(encoded, dtype=torch.float64), 1, BernoulliLikelihood()
        return torch.tensor(encoded, dtype=torch.long), classes.shape[0], CategoricalLikelihood()

    def _encode_more_targets(self, y, classes):
        _check_label_types(y)
        check_classification_targets(y)
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={classes!r} differs from the classes of the first partial_fit call, "
                f"{self.classes_!r}."
            )
        encoded = _encode_labels(y, self.classes_)
        if self.classes_.shape[0] == 2:
            return torch.tensor(encoded, dtype=torch.float64)
        return torch.tensor(encoded, dtype=torch.long)

    def _fixed_noise_scale(self):
        return 1.0

    def _store_fitted_hyperparameters(self, hyper, terms):
        self.prior_precision_ = hyper.prior_precision
        self.log_marginal_likelihood_value_ = self._log_evidence(terms, hyper)

    def _fit_predictive(self, X, y, weights, update=False):
        """The far-field prior's box, and the posterior's temperature, chosen (or scored) by the
        leave-one-out cavities (training rows lie in the box: the far field does not enter)."""
        if update:
            self.far_field_ = self.far_field_.including(X, weights)
        else:
            self.far_field_ = FarFieldPrior.from_rows(X, weights, self.far_field_variance)
        self.__dict__.pop("loo_log_likelihood_", None)
        fixed = self.posterior_temperature != "loo"
        if self.inference_ != "laplace":
            self.posterior_temperature_ = float(self.posterior_temperature) if fixed else 1.0
            return
        mean, cov = loo_logits(self.module_, self.posterior_, self._likelihood, X, y, weights)
        temperatures = [float(self.posterior_temperature)] if fixed else LOO_TEMPERATURES
        scores = [
            loo_log_likelihood(mean, t * cov, y, weights, self._link_proba) for t in temperatures
        ]
        best = int(np.argmax(scores))  # the first, so the coldest, of equal scores
        self.posterior_temperature_ = temperatures[best]
        self.loo_log_likelihood_ = scores[best]
        if self.verbose:
            print(
                f"Posterior temperature {self.posterior_temperature_:.4g}: leave-one-out "
                f"log-likelihood {self.loo_log_likelihood_:.6g} per row",
                flush=True,
            )

    def _glm_outputs(self, X):
        """Logits N(f, T · J Σ Jᵀ + k_far(x, x) I)."""
        mean, cov = super()._glm_outputs(X)
        far = self.far_field_.diagonal(torch.as_tensor(X))
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
        return mean, self.posterior_temperature_ * cov + far[:, None, None] * eye

    def _output_kernel(self, X, Y=None, prior=False):
        K = super()._output_kernel(X, Y, prior=prior)
        X = torch.as_tensor(self._validate_for_predict(X))
        Y = X if Y is None else torch.as_tensor(self._validate_for_predict(Y))
        far = self.far_field_.kernel(X, Y)[:, None, :, None] * torch.eye(K.shape[1])[:, None]
        return (K if prior else self.posterior_temperature_ * K) + far

    # -- helpers -----------------------------------------------------------------------------------

    def _predict_proba_tensor(self, X):
        return self._link_proba(*self._glm_outputs(X))

    def _link_proba(self, mean, cov):
        """Class probabilities from logits N(mean, cov) by the link approximation."""
        if self.link_approx == "mc":
            # A fresh generator from the seed drawn at fit: every call gives the same result.
            generator = torch.Generator().manual_seed(self._mc_seed)
            return mc_proba(mean, cov, self.n_samples, generator)
        if self.link_approx == "bridge":
            return bridge_proba(mean, cov)
        return probit_proba(mean, cov)

    def _link_log_proba(self, mean, cov):
        """Log class probabilities from logits N(mean, cov), by the same link, in log space."""
        if self.link_approx == "mc":
            generator = torch.Generator().manual_seed(self._mc_seed)
            return mc_log_proba(mean, cov, self.n_samples, generator)
        if self.link_approx == "bridge":
            return bridge_log_proba(mean, cov)
        return probit_log_proba(mean, cov)


def _entropy(p):
    """Entropy in nats over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def _check_label_types(y):
    """Object labels must be all strings or all numbers (None or a mix cannot be sorted)."""
    if y.dtype != object:
        return
    kinds = {_label_kind(label) for label in y}
    if len(kinds) > 1 or not kinds <= {"str", "number"}:
        raise TypeError(
            f"Class labels must be all strings or all numbers; got labels of types {sorted(kinds)}."
        )


def _label_kind(label):
    if isinstance(label, str):
        return "str"
    return "number" if isinstance(label, numbers.Number) else type(label).__name__


def _encode_labels(y, classes):
    """Positions of the labels y in the sorted ``classes``; unknown labels are an error."""
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(f"y contains labels {unknown!r} that are not in classes {classes!r}.")
    return np.searchsorted(classes, y)

"""The regressor's networks as an ensemble: each fitted, updated and kept as a record.

:class:`NetworkEnsembleMixin` fits the estimator's own network and ``ensemble_size_ − 1`` more,
from seeds drawn from ``random_state``: each network is initialised and trained as a clone with
``ensemble_size=1`` and that seed would be (they train together, :mod:`skbnn._fitting`), and
the others become :class:`~skbnn._ensemble.NetworkMember` records; ``partial_fit`` updates every
member on the chunk. Records are replaced, never changed in place. After either, the mixture's noise
and the leave-one-out calibration of conformal intervals (:mod:`skbnn._conformal`) are stored.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from sklearn.utils import check_random_state

from skbnn import _auto
from skbnn._conformal import loo_calibration
from skbnn._ensemble import NetworkMember, mixture_noise_std


class NetworkEnsembleMixin:
    """Ensemble fitting for :class:`~skbnn.LaplaceMLPRegressor` (see the module docstring)."""

    def _fit_ensemble(self, X, y, sample_weight, streaming):
        """Fit this estimator's own network and the ensemble's others (trained together)."""
        self._fit(X, y, sample_weight, streaming=streaming)
        self._store_mixture_noise()
        self._store_conformity_scores(self._chunk_tensors(X, y, sample_weight, None))
        return self

    def _other_network_seeds(self, n_samples, n_hidden_layers, streaming):
        """The random states of the ensemble's other networks: ``ensemble_size_ − 1`` seeds."""
        size = _auto.ensemble_size(self.ensemble_size, n_samples, n_hidden_layers, streaming)
        # With an int random_state the first of these seeds is the one of this estimator's own
        # network (BaseLaplaceMLP._generator), so the first network is the same for any size.
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=size)
        return [int(seed) for seed in seeds[1:]]

    def _store_other_networks(self, fitted, seeds):
        """``members_``: this estimator's own network, then the others as records."""
        self.ensemble_size_ = 1 + len(fitted)
        self.members_ = [
            self._own_member(),
            *(self._member(network, seed) for network, seed in zip(fitted, seeds, strict=True)),
        ]

    def _update_ensemble(self, X, y, sample_weight):
        """One partial_fit step of every network (records are replaced, never changed)."""
        self._partial_fit(X, y, sample_weight)
        chunk = self._chunk_tensors(X, y, sample_weight, None)
        self.members_ = [
            self._own_member(),
            *(self._updated_member(member, chunk) for member in self.members_[1:]),
        ]
        self._store_mixture_noise()
        self._store_conformity_scores(chunk)
        return self

    def _own_member(self):
        """This estimator's own network as a :class:`NetworkMember`."""
        sigma = getattr(self, "sigma_noise_", None)  # this network's own, before the mixture's
        return NetworkMember(
            module=self.module_,
            posterior=self.posterior_,
            prior_precision=self.prior_precision_,
            sigma_noise=None if sigma is None else np.atleast_1d(sigma).astype(np.float64),
            log_marginal_likelihood=self.log_marginal_likelihood_value_,
            random_state=None,
            likelihood=self._likelihood,
            terms=self._evidence_terms,
            ggn_rows=self._ggn_rows,
        )

    def _member(self, fitted, random_state):
        """Another network of the fit (a :class:`~skbnn._fitting.FittedNetwork`) as a record."""
        return NetworkMember(
            **self._network_fields(
                fitted.module, fitted.posterior, fitted.terms, fitted.hyperparameters,
                fitted.likelihood,
            ),
            random_state=random_state,
            likelihood=fitted.likelihood,
            ggn_rows=fitted.ggn_rows,
        )  # fmt: skip

    def _updated_member(self, member, chunk):
        """A member after one more chunk, by the update of this estimator's own network."""
        seed = check_random_state(member.random_state).randint(np.iinfo(np.int32).max)
        generator = torch.Generator().manual_seed(int(seed))
        network = (member.module, member.posterior, member.terms, member.likelihood)
        update, _ = self._sequential_update(network, chunk, generator)
        fields = self._network_fields(
            update.module, update.posterior, update.terms, update.hyperparameters,
            member.likelihood,
        )  # fmt: skip
        return replace(member, **fields, ggn_rows=None)

    def _network_fields(self, module, posterior, terms, hyper, likelihood):
        """A member's network, posterior, δ, σ (in y's units) and log evidence."""
        sigma = None
        if self.noise_ != "heteroscedastic":
            sigma = self._noise_std(hyper, likelihood).astype(np.float64)
        return dict(
            module=module,
            posterior=posterior,
            terms=terms,
            prior_precision=hyper.prior_precision,
            sigma_noise=sigma,
            log_marginal_likelihood=self._log_evidence(terms, hyper),
        )

    def _store_mixture_noise(self):
        """``sigma_noise_`` of the mixture: √(mean of the members' σ²), the predictive's noise."""
        if self.noise_ != "heteroscedastic" and len(self.members_) > 1:
            sigma = mixture_noise_std(self.members_)
            self.sigma_noise_ = float(sigma[0]) if self._y_1d else sigma

    def _store_conformity_scores(self, rows):
        """The leave-one-out scores of the training ``rows`` (``method="loo"`` intervals); a
        refitted model has no held-out ones (:meth:`conformalize`)."""
        self.__dict__.pop("_held_out_conformity", None)
        y_scale = torch.as_tensor(self._y_scale)
        self._loo_conformity = loo_calibration(self.members_, rows, y_scale, self._generator())

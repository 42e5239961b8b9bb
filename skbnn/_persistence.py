"""What a pickle of a fitted estimator holds: the skbnn version, and no curvature it can rebuild.

A dense GGN's eigenvectors (P × r floats) are most of a fitted estimator's state, while the
training rows they were computed from are n × d. Where the posterior's curvature is exactly the
GGN of those rows at the stored weights (see :class:`skbnn._fitting.FittedNetwork`), the pickle
stores the rows instead and loading recomputes the curvature: the same numbers, up to the
round-off of another machine's linear algebra, at the cost of one GGN per network at load time.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

from skbnn._fitting import rebuild_curvature
from skbnn._version import InconsistentVersionWarning, __version__


def compact_state(state: dict) -> dict:
    """The estimator's ``__dict__`` as pickled: versioned, the rebuildable curvature dropped."""
    state = {**state, "_skbnn_version": __version__}
    posterior = state.get("posterior_")
    if rebuildable(posterior, state.get("_ggn_rows")):
        state["posterior_"] = replace(posterior, curvature=None)
    return state


def restore_state(estimator, state: dict) -> dict:
    """The pickled state to load: warns if another skbnn version saved it (as scikit-learn does
    for its own estimators)."""
    state = dict(state)
    original = state.pop("_skbnn_version", "unknown")
    if original != __version__:
        warnings.warn(
            InconsistentVersionWarning(type(estimator).__name__, __version__, original),
            stacklevel=3,
        )
    return state


def rebuild_posterior(estimator) -> None:
    """Recompute the curvature that :func:`compact_state` dropped, in place."""
    posterior = estimator.__dict__.get("posterior_")
    if posterior is not None and posterior.curvature is None:
        estimator.posterior_ = rebuild_curvature(
            estimator.module_,
            posterior,
            estimator._likelihood,
            estimator._ggn_rows,
            estimator.hessian_structure_,
        )


def rebuildable(posterior, rows) -> bool:
    """Whether a pickle stores the rows that rebuild this posterior's curvature instead of it."""
    return posterior is not None and rows is not None and posterior.curvature.rebuild_when_pickled

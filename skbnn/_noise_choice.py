"""``noise="auto"``: the noise model of higher evidence.

Homoscedastic noise N(f(x), σ²) and heteroscedastic noise N(μ(x), σ²(x)) are two models of the
same data, and the Bayesian choice between them is the one of higher marginal likelihood
p(y | X, m) (MacKay 1992, §3). Each is fitted as it would be alone, from the same seeds, and its
evidence is the mean Laplace log evidence of its networks j = 1..M (each in the units of y),

    log Z_m = (1/M) Σ_j [ log p(y | X, θ*_j) + log p(θ*_j) + (P/2) log 2π − ½ log det Λ_j ],

with Λ_j the posterior precision of network j at its δ (and σ). The evidence scores the training
rows only: a test row that neither model saw can still be far more surprising under the
heteroscedastic one, whose noise is small where its neighbours agree (RESULTS.md, "Choosing the
noise model").

MacKay, D. J. C. (1992). Bayesian interpolation. Neural Computation, 4(3), 415–447.
"""

from __future__ import annotations

import numpy as np

# Heteroscedastic first: settings it cannot take fail before any network is trained.
NOISE_MODELS = ("heteroscedastic", "homoscedastic")


def model_log_evidence(fitted) -> float:
    """log Z_m of a fitted regressor: the mean log evidence of its networks."""
    return float(np.mean([member.log_marginal_likelihood for member in fitted.members_]))

"""A Gaussian-process prior on the logits beyond the training data: humility far from it.

Along any ray away from the data a ReLU network's logits grow linearly, and so does their
standard deviation under the linearised posterior: the predictive's confidence tends to a
constant below 1, but often near it (Kristiadi, Hein & Hennig 2020). After Kristiadi, Hein &
Hennig (2021), each logit gains an independent Gaussian process made of infinitely many ReLU
features whose kinks lie beyond the data, with Gaussian output weights. Per input feature i and
side of its training range [a_i, b_i], in the excess u of x_i beyond that side in units of the
feature's training std s_i,

    u_i = (x_i − b_i)/s_i above b_i,   (x_i − a_i)/s_i below a_i,   0 inside,

the features (|u| − z)₊ for kinks z ≥ 0 give the cubic-spline kernel

    k(u, u') = ∫₀^∞ (|u| − z)₊ (|u'| − z)₊ dz = m³/3 + | |u| − |u'| | m²/2,   m = min(|u|, |u'|),

for u, u' on the same side (0 otherwise), and the logits' kernel is

    k(x, x') = σ² Σ_i k(u_i, u'_i).

Inside the box of the training rows the term is exactly 0: the fit and the predictions there
are unchanged. Outside, the variance grows as the cube of the excess while the logits grow
linearly, so the predictive tends to the uniform distribution far from the data.

Kristiadi, A., Hein, M. and Hennig, P. (2020). Being Bayesian, even just a bit, fixes
overconfidence in ReLU networks. ICML.
Kristiadi, A., Hein, M. and Hennig, P. (2021). An infinite-feature extension for Bayesian ReLU
nets that fixes their asymptotic overconfidence. NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FarFieldPrior:
    """The kernel above for the box [lower, upper] (d,), in units of ``scale`` (d,)."""

    lower: torch.Tensor
    upper: torch.Tensor
    scale: torch.Tensor
    variance: float

    @classmethod
    def from_rows(cls, X: torch.Tensor, weights: torch.Tensor, variance: float) -> FarFieldPrior:
        """The box of the rows with positive weight and their std under the frequency weights
        (a constant feature: std 1)."""
        keep = weights > 0
        X, w = X[keep].to(torch.float64), weights[keep].to(torch.float64)[:, None]
        mean = (w * X).sum(0) / w.sum()
        scale = ((w * (X - mean) ** 2).sum(0) / w.sum()).sqrt()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(X.amin(0), X.amax(0), scale, float(variance))

    def including(self, X: torch.Tensor, weights: torch.Tensor) -> FarFieldPrior:
        """The same prior with the box grown to hold the rows of positive weight."""
        X = X[weights > 0].to(torch.float64)
        if len(X) == 0:
            return self
        lower = torch.minimum(self.lower, X.amin(0))
        return FarFieldPrior(lower, torch.maximum(self.upper, X.amax(0)), self.scale, self.variance)

    def excess(self, X: torch.Tensor) -> torch.Tensor:
        """u (n, d): signed distance beyond the box, in units of the features' std."""
        X = X.to(torch.float64)
        above = (X - self.upper).clamp_min(0.0)
        below = (X - self.lower).clamp_max(0.0)
        return (above + below) / self.scale

    def kernel(self, X: torch.Tensor, Y: torch.Tensor | None = None) -> torch.Tensor:
        """k(x, x') (n_X, n_Y), of one logit."""
        u = self.excess(X)
        v = u if Y is None else self.excess(Y)
        u, v = u[:, None, :], v[None, :, :]
        m = torch.minimum(u.abs(), v.abs())
        same_side = (u * v) > 0
        cubic = m**3 / 3 + (u.abs() - v.abs()).abs() * m**2 / 2
        return self.variance * torch.where(same_side, cubic, 0.0).sum(-1)

    def diagonal(self, X: torch.Tensor) -> torch.Tensor:
        """k(x, x) (n,): σ² Σ_i |u_i|³ / 3."""
        return self.variance * (self.excess(X).abs() ** 3).sum(-1) / 3

"""A Gaussian-process prior on the logits beyond the training data: humility far from it.

Along any ray away from the data a ReLU network's logits grow linearly, and so does their
standard deviation under the linearised posterior: the predictive's confidence tends to a
constant below 1, but often near it (Kristiadi, Hein & Hennig 2020). After Kristiadi, Hein &
Hennig (2021), each logit gains an independent Gaussian process made of infinitely many ReLU
features whose kinks lie beyond the data, with Gaussian output weights. Per input feature i and
side of its training range [a_i, b_i], in the excess u of x_i beyond that side in units of the
range's width w_i = b_i − a_i (1 for a constant feature),

    u_i = (x_i − b_i)/w_i above b_i,   (x_i − a_i)/w_i below a_i,   0 inside,

the features (|u| − z)₊ for kinks z ≥ 0 give the cubic-spline kernel

    k(u, u') = ∫₀^∞ (|u| − z)₊ (|u'| − z)₊ dz = m³/3 + | |u| − |u'| | m²/2,   m = min(|u|, |u'|),

for u, u' on the same side (0 otherwise), and the logits' kernel is

    k(x, x') = σ² Σ_i k(u_i, u'_i).

Inside the box of the training rows the term is exactly 0: the fit and the predictions there
are unchanged. Outside, the variance grows as the cube of the excess while the logits grow
linearly, so the predictive tends to the uniform distribution far from the data.

The unit is the box's width, not the feature's std: a feature that is nearly always constant (a
rare pixel, a skewed count) has a small std next to the values it takes, and a row just beyond
its range would count as many stds out, costing confidence on rows that are in the data's
support (RESULTS.md, "Far from the data").

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
    """The kernel above for the box [lower, upper] (d,)."""

    lower: torch.Tensor
    upper: torch.Tensor
    variance: float

    @classmethod
    def from_rows(cls, X: torch.Tensor, weights: torch.Tensor, variance: float) -> FarFieldPrior:
        """The box of the rows with positive weight."""
        X = X[weights > 0].to(torch.float64)
        return cls(X.amin(0), X.amax(0), float(variance))

    @property
    def width(self) -> torch.Tensor:
        """w (d,): the box's width per feature, the unit of the excess (a constant feature: 1)."""
        width = self.upper - self.lower
        return torch.where(width > 0, width, torch.ones_like(width))

    def including(self, X: torch.Tensor, weights: torch.Tensor) -> FarFieldPrior:
        """The same prior with the box (and so its width) grown to hold the rows of positive
        weight."""
        X = X[weights > 0].to(torch.float64)
        if len(X) == 0:
            return self
        lower, upper = torch.minimum(self.lower, X.amin(0)), torch.maximum(self.upper, X.amax(0))
        return FarFieldPrior(lower, upper, self.variance)

    def excess(self, X: torch.Tensor) -> torch.Tensor:
        """u (n, d): signed distance beyond the box, in units of its width."""
        X = X.to(torch.float64)
        above = (X - self.upper).clamp_min(0.0)
        below = (X - self.lower).clamp_max(0.0)
        return (above + below) / self.width

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

"""Several MLPs of one architecture evaluated as one batched model, for training them together.

Layer l of M networks holds its weights as one tensor W_l of shape (M, fan_in, fan_out) and its
biases as b_l of shape (M, 1, fan_out), so that a forward pass on inputs X of shape (M, n, d),
or (n, d) shared by all networks, is one batched matrix product per layer,

    h_{l+1} = a(h_l W_l + b_l)    (torch.baddbmm),

whatever M is: an ensemble's networks then cost about one network's per-step overhead. Slice m of
every tensor is network m exactly, so training the stacked model with a loss that sums the
networks' own losses gives each network the gradients it would get alone, and an elementwise
optimiser (Adam) the same steps.

Two CPU kernels of torch are slow at the sizes of tabular MLPs, so the stacked model avoids them
(the values agree to float round-off, the networks' own modules are untouched):

- a layer with one output is the row-wise dot product Σ_j h_j W_j + b, a broadcast product and a
  sum, where a batched product with a (fan_in, 1) matrix takes several times as long forwards and
  backwards;
- tanh on CPU is the identity tanh(x) = 2σ(2x) − 1, its derivative 1 − tanh², as the logistic
  kernel is about six times faster than torch's tanh (absolute error ≤ 2e-7 in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class StackedMLP(nn.Module):
    """The networks ``modules`` (``nn.Sequential`` MLPs of one architecture) as one model.

    The stacked parameters are copies: :meth:`copy_to_modules` writes them back.
    """

    def __init__(self, modules: Sequence[nn.Sequential]):
        super().__init__()
        self.networks = list(modules)
        first = self.networks[0]
        self.linear_indices = [i for i, layer in enumerate(first) if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            self.weights = nn.ParameterList(
                torch.stack([m[i].weight.T for m in self.networks]).contiguous()
                for i in self.linear_indices
            )
            self.biases = nn.ParameterList(
                torch.stack([m[i].bias for m in self.networks])[:, None, :].contiguous()
                for i in self.linear_indices
            )
        # The activation between Linear layers (elementwise, so it applies to (M, n, h) as is).
        activation = first[1] if len(first) > 1 else nn.Identity()
        self.activation = _tanh if isinstance(activation, nn.Tanh) else activation
        # Destination and source of copy_to_modules: each network's parameters, in named order.
        self._module_parameters = [p for m in self.networks for p in m.parameters()]
        self._stacked_views = [
            view for m in range(len(self.networks)) for view in self._views(m, detached=True)
        ]

    @property
    def n_networks(self) -> int:
        return len(self.networks)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs (M, n, K) for inputs (M, n, d), or (n, d) shared by the networks."""
        h = X if X.dim() == 3 else X.expand(self.n_networks, *X.shape)
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if weight.shape[-1] == 1:  # one output: a dot product per row
                h = (h * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
            else:
                h = torch.baddbmm(bias, h, weight)
            if layer < last:
                h = self.activation(h)
        return h

    def layer_parameters(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(W_l, b_l) of each Linear layer, stacked over the networks."""
        return list(zip(self.weights, self.biases, strict=True))

    def network_parameters(self, m: int) -> dict[str, torch.Tensor]:
        """Network m's parameters as differentiable views, named as in its ``nn.Sequential``."""
        return dict(zip(self._names(), self._views(m, detached=False), strict=True))

    def copy_to_modules(self) -> None:
        """Write the stacked parameters into the networks' own modules."""
        with torch.no_grad():
            for destination, source in zip(
                self._module_parameters, self._stacked_views, strict=True
            ):
                destination.copy_(source)

    def _names(self) -> list[str]:
        return [f"{i}.{kind}" for i in self.linear_indices for kind in ("weight", "bias")]

    def _views(self, m: int, detached: bool) -> list[torch.Tensor]:
        """Network m's weight (fan_out, fan_in) and bias (fan_out,) of each layer, as views."""
        views = []
        for weight, bias in self.layer_parameters():
            if detached:
                weight, bias = weight.detach(), bias.detach()
            views += [weight[m].T, bias[m, 0]]
        return views


class _CpuTanh(torch.autograd.Function):
    """tanh(x) = 2σ(2x) − 1, with the derivative 1 − tanh²(x) from the saved output."""

    @staticmethod
    def forward(ctx, x):
        t = torch.sigmoid(2 * x).mul_(2).sub_(1)
        ctx.save_for_backward(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return grad.addcmul(grad * t, t, value=-1)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """torch's tanh, through the logistic function on CPU (see the module docstring)."""
    return _CpuTanh.apply(x) if x.is_cpu else torch.tanh(x)

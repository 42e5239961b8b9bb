"""The MLP module factory and helpers that address its parameters by name.

The network is a plain :class:`torch.nn.Sequential` of ``Linear`` layers and activations, so that
curvature code can address its parameters by name (``"0.weight"``, ``"0.bias"``, ...) and the last
``Linear`` layer is always the final module.

MAP training lives in :mod:`skbnn._training`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "logistic": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def build_mlp(
    n_features: int,
    hidden_layer_sizes: Sequence[int],
    n_outputs: int,
    activation: str,
    *,
    dtype: torch.dtype,
    generator: torch.Generator,
) -> nn.Sequential:
    """Build an MLP with LeCun-uniform initialisation drawn from ``generator`` only.

    ``hidden_layer_sizes=()`` gives a linear model. Parameters are created with
    :func:`torch.nn.utils.skip_init` so that torch's global random state is never touched.
    """
    sizes = [n_features, *hidden_layer_sizes, n_outputs]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=dtype)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def layer_sizes(module: nn.Sequential, names: Sequence[str]) -> tuple[int, ...]:
    """Number of parameters of each Linear layer among ``names`` (weight and bias together)."""
    params = dict(module.named_parameters())
    sizes: dict[str, int] = {}
    for name in names:
        layer = name.rsplit(".", 1)[0]
        sizes[layer] = sizes.get(layer, 0) + params[name].numel()
    return tuple(sizes.values())


def last_layer_parameter_names(module: nn.Sequential) -> list[str]:
    """Names of the weight and bias of the final ``Linear`` layer."""
    index = len(module) - 1
    return [f"{index}.weight", f"{index}.bias"]


# Sums over the data run over blocks of this many rows (bounded activation memory).
DATA_BLOCK_ROWS = 65536


def row_blocks(n_rows: int, block: int = DATA_BLOCK_ROWS):
    """Slices covering ``range(n_rows)`` in blocks of ``block`` rows."""
    return (slice(begin, begin + block) for begin in range(0, n_rows, block))


def flat_parameters(module: nn.Module, names: Sequence[str] | None = None) -> torch.Tensor:
    """Concatenate (a subset of) the module's parameters into one detached vector."""
    params = dict(module.named_parameters())
    names = list(params) if names is None else names
    return torch.cat([params[name].detach().reshape(-1) for name in names])


def unflatten_parameters(
    module: nn.Module, names: Sequence[str], values: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Views of a flat vector (as from :func:`flat_parameters`) shaped like the named parameters."""
    params = dict(module.named_parameters())
    chunks = values.split([params[name].numel() for name in names])
    return {name: chunk.view_as(params[name]) for name, chunk in zip(names, chunks, strict=True)}


def set_flat_parameters(module: nn.Module, names: Sequence[str], values: torch.Tensor) -> None:
    """Copy a flat vector (as from :func:`flat_parameters`) into the named parameters, in place."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in unflatten_parameters(module, names, values).items():
            params[name].copy_(value)

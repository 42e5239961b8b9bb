"""Per-sample Jacobians of a network's outputs with respect to (some of) its parameters."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

# Elements of the (batch, K, P) Jacobian block processed at once: 2**22 float64 = 32 MiB.
_JACOBIAN_BLOCK_ELEMENTS = 2**22


def jacobians(
    module: nn.Module, X: torch.Tensor, param_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs f (batch, K) and per-sample Jacobians J (batch, K, P) w.r.t. ``param_names``.

    The columns of J follow ``param_names`` in order, each parameter flattened row-major, the same
    order as :func:`skbnn._network.flat_parameters`.
    """
    # functional_call swaps the module's parameters while it runs: on a private copy, so that
    # threads predicting with one fitted estimator never see each other's weights.
    return _jacobians_of_own_module(copy.deepcopy(module), X, param_names)


def _jacobians_of_own_module(module, X, param_names):
    """:func:`jacobians` of a module that no other thread uses."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    differentiated = {name: params[name] for name in param_names}

    def single_output(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(module, {**params, **theta}, (x.unsqueeze(0),)).squeeze(0)

    per_param = vmap(jacrev(single_output), in_dims=(None, 0))(differentiated, X)
    J = torch.cat([per_param[name].flatten(start_dim=2) for name in param_names], dim=2)
    with torch.no_grad():
        f = module(X)
    return f, J


def jacobian_batch_size(n_outputs: int, n_params: int) -> int:
    """Rows per Jacobian block so that one block stays near 32 MiB."""
    return max(1, _JACOBIAN_BLOCK_ELEMENTS // max(1, n_outputs * n_params))


def jacobian_blocks(
    module: nn.Module, X: torch.Tensor, param_names: Sequence[str]
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield (rows, f, J): :func:`jacobians` of X[rows] for consecutive blocks of rows of X, each
    block's J near 32 MiB."""
    n_params = sum(dict(module.named_parameters())[name].numel() for name in param_names)
    n_outputs = module(X[:1]).shape[-1]
    step = jacobian_batch_size(n_outputs, n_params)
    module = copy.deepcopy(module)  # one private copy for all blocks (see jacobians)
    for begin in range(0, X.shape[0], step):
        rows = slice(begin, begin + step)
        yield (rows, *_jacobians_of_own_module(module, X[rows], param_names))

"""The stacked model of several networks against the networks themselves."""

import pytest
import torch
from numpy.testing import assert_allclose

from skbnn._network import build_mlp
from skbnn._stacked import StackedMLP, _tanh


def networks(n_outputs, activation, n_networks=3):
    return [
        build_mlp(
            4,
            (6, 5),
            n_outputs,
            activation,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(seed),
        )
        for seed in range(n_networks)
    ]


@pytest.mark.parametrize("n_outputs", [1, 3])  # the dot-product output layer, and baddbmm
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_outputs_and_gradients_are_each_networks(n_outputs, activation):
    modules = networks(n_outputs, activation)
    stacked = StackedMLP(modules)
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = stacked(X)
    out.square().sum().backward()
    for m, module in enumerate(modules):
        expected = module(X)
        assert_allclose(out[m].detach(), expected.detach(), rtol=1e-13, atol=1e-14)
        expected.square().sum().backward()
        for name, parameter in module.named_parameters():
            assert_allclose(_stacked_grad(stacked, name, m), parameter.grad, rtol=1e-12, atol=1e-13)


def _stacked_grad(stacked, name, m):
    """The gradient of network m's parameter ``name`` within the stacked tensors."""
    layer = stacked.linear_indices.index(int(name.split(".")[0]))
    weight, bias = stacked.layer_parameters()[layer]
    return weight.grad[m].T if name.endswith("weight") else bias.grad[m, 0]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-15), (torch.float32, 3e-7)])
def test_tanh_through_the_logistic_function_is_tanh(dtype, tolerance):
    x = torch.linspace(-40, 40, 20001, dtype=dtype, requires_grad=True)
    value = _tanh(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    reference = torch.tanh(x.detach())
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert float((value - reference).abs().max()) <= tolerance
    assert float((grad - (1 - reference.square())).abs().max()) <= 2 * tolerance


def test_tanh_gradient_matches_finite_differences():
    x = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.autograd.gradcheck(_tanh, x.requires_grad_())

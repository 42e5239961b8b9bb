"""The MLP factory, the flat-parameter helpers and the MAP training loop.

``train_map`` is checked on a linear model, where its objective (1/N) Σ w_n ℓ_n + δ‖θ‖²/(2N)
with a Gaussian ℓ has the closed-form minimiser of weighted ridge regression.
"""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from skbnn._likelihoods import GaussianLikelihood
from skbnn._network import (
    build_mlp,
    flat_parameters,
    last_layer_parameter_names,
    layer_sizes,
    row_blocks,
    set_flat_parameters,
    unflatten_parameters,
)
from skbnn._training import MapTrainer, TrainingConfig, TrainingDivergedError, train_map


def mlp(seed=0, hidden=(5, 4), activation="tanh"):
    generator = torch.Generator().manual_seed(seed)
    return build_mlp(3, hidden, 2, activation, dtype=torch.float64, generator=generator)


def test_build_mlp_layers_shapes_and_initialisation():
    module = mlp()
    assert [type(m) for m in module] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {
        "0.weight": (5, 3),
        "0.bias": (5,),
        "2.weight": (4, 5),
        "2.bias": (4,),
        "4.weight": (2, 4),
        "4.bias": (2,),
    }
    for layer in module[::2]:
        bound = 1 / math.sqrt(layer.in_features)  # LeCun uniform, weights and biases
        for p in (layer.weight, layer.bias):
            assert p.dtype == torch.float64
            assert p.abs().max() <= bound
    assert module(torch.zeros(7, 3, dtype=torch.float64)).shape == (7, 2)


def test_build_mlp_without_hidden_layers_is_linear():
    module = build_mlp(4, [], 1, "relu", dtype=torch.float32, generator=torch.Generator())
    assert len(module) == 1 and isinstance(module[0], nn.Linear)
    assert module[0].weight.shape == (1, 4) and module[0].weight.dtype == torch.float32


@pytest.mark.parametrize("activation", ["relu", "logistic", "identity"])
def test_build_mlp_activation(activation):
    expected = {"relu": nn.ReLU, "logistic": nn.Sigmoid, "identity": nn.Identity}[activation]
    module = mlp(activation=activation)
    assert isinstance(module[1], expected) and isinstance(module[3], expected)


def test_build_mlp_is_seeded_by_the_generator_alone():
    global_state = torch.random.get_rng_state()
    first, again, other = mlp(seed=0), mlp(seed=0), mlp(seed=1)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # torch's global RNG untouched
    assert torch.equal(flat_parameters(first), flat_parameters(again))
    assert not torch.allclose(flat_parameters(first), flat_parameters(other))


def test_flat_parameters_follow_named_parameters_order():
    module = mlp()
    reference = np.concatenate([p.detach().numpy().ravel() for p in module.parameters()])
    assert_allclose(flat_parameters(module).numpy(), reference, rtol=0)
    names = ["4.weight", "0.bias"]  # any subset, in the order given
    params = dict(module.named_parameters())
    subset = np.concatenate([params[n].detach().numpy().ravel() for n in names])
    assert_allclose(flat_parameters(module, names).numpy(), subset, rtol=0)
    assert not flat_parameters(module).requires_grad


def test_set_and_unflatten_parameters_round_trip():
    module = mlp()
    names = [name for name, _ in module.named_parameters()]
    params = dict(module.named_parameters())
    values = torch.randn(sum(p.numel() for p in params.values()), dtype=torch.float64)
    views = unflatten_parameters(module, names, values)
    assert list(views) == names
    start = 0
    for name in names:
        size = params[name].numel()
        assert views[name].shape == params[name].shape
        assert torch.equal(views[name].reshape(-1), values[start : start + size])
        start += size
    set_flat_parameters(module, names, values)
    assert torch.equal(flat_parameters(module, names), values)
    # A subset leaves the other parameters as they were.
    before = flat_parameters(module)
    last = last_layer_parameter_names(module)
    set_flat_parameters(module, last, torch.zeros(10, dtype=torch.float64))
    after = flat_parameters(module)
    assert torch.equal(after[:-10], before[:-10]) and not after[-10:].any()


def test_layer_sizes_and_last_layer_names():
    module = mlp()
    names = [name for name, _ in module.named_parameters()]
    assert layer_sizes(module, names) == (5 * 3 + 5, 4 * 5 + 4, 2 * 4 + 2)
    assert last_layer_parameter_names(module) == ["4.weight", "4.bias"]
    assert layer_sizes(module, last_layer_parameter_names(module)) == (10,)
    linear = mlp(hidden=())
    assert last_layer_parameter_names(linear) == ["0.weight", "0.bias"]


@pytest.mark.parametrize(("n_rows", "block"), [(0, 4), (1, 4), (8, 4), (10, 4), (10, 100)])
def test_row_blocks_cover_the_rows_once_in_order(n_rows, block):
    blocks = list(row_blocks(n_rows, block))
    assert len(blocks) == math.ceil(n_rows / block)
    rows = np.arange(n_rows)
    covered = np.concatenate([rows[s] for s in blocks]) if blocks else rows
    assert_allclose(covered, rows)
    assert all(len(rows[s]) <= block for s in blocks)


# -- train_map ------------------------------------------------------------------------------------

DELTA, SIGMA = 3.0, 0.5


@pytest.fixture(scope="module")
def ridge_problem():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.7 + 0.3 * rng.randn(40)
    weights = rng.randint(1, 4, size=40).astype(float)
    return X, y, weights


def ridge_map(X, y, weights, delta, sigma):
    """argmin Σ w_n (y_n − φ_nᵀθ)²/(2σ²) + δ‖θ‖²/2, φ = [x, 1] (weight then bias)."""
    Phi = np.hstack([X, np.ones((len(X), 1))])
    precision = Phi.T @ (weights[:, None] * Phi) / sigma**2 + delta * np.eye(Phi.shape[1])
    return np.linalg.solve(precision, Phi.T @ (weights * y) / sigma**2)


def linear_training(problem, max_iter, seed=0, y=None):
    """A linear model, its Gaussian loss and the arguments of train_map, full-batch."""
    X, y_default, weights = problem
    module = build_mlp(
        3, [], 1, "tanh", dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    likelihood = GaussianLikelihood(torch.tensor([SIGMA], dtype=torch.float64))
    targets = torch.tensor(y_default if y is None else y)[:, None]
    config = TrainingConfig(max_iter=max_iter, batch_size=len(X), learning_rate_init=0.05)
    data = (torch.tensor(X), targets, torch.tensor(weights))
    return module, likelihood.negative_log_likelihood, data, config


def train_linear(problem, max_iter, seed=0, y=None):
    module, loss, data, config = linear_training(problem, max_iter, seed, y)
    generator = torch.Generator().manual_seed(seed)
    result = train_map(
        module, loss, *data, config=config, prior_precision=DELTA, generator=generator
    )
    return module, result


def train_linear_epochwise(problem, max_iter, after_epoch, seed=0):
    """The loop of train_map with MapTrainer, calling ``after_epoch(module, epoch)``."""
    module, loss, data, config = linear_training(problem, max_iter, seed)
    trainer = MapTrainer([module], *data, config, [torch.Generator().manual_seed(seed)])
    with trainer.interruptible():
        for epoch in trainer.epochs():
            trainer.run_epoch(loss, [DELTA])
            after_epoch(module, epoch)
    return module, trainer.finish()[0]


def test_full_batch_training_reaches_the_weighted_ridge_map(ridge_problem):
    module, result = train_linear(ridge_problem, max_iter=1500)
    reference = ridge_map(*ridge_problem, DELTA, SIGMA)
    assert_allclose(flat_parameters(module).numpy(), reference, atol=1e-6)
    assert result.n_iter == 1500 and len(result.loss_curve) == 1500
    assert not result.interrupted
    # The recorded loss is the objective (1/N) Σ w ℓ + δ‖θ‖²/(2N) at the epoch's end weights.
    X, y, weights = ridge_problem
    Phi = np.hstack([X, np.ones((len(X), 1))])
    nll = 0.5 * ((y - Phi @ reference) / SIGMA) ** 2 + math.log(SIGMA) + 0.5 * math.log(2 * math.pi)
    objective = (weights @ nll + 0.5 * DELTA * reference @ reference) / weights.sum()
    assert_allclose(result.loss_curve[-1], objective, rtol=1e-8)
    assert result.loss_curve[-1] < result.loss_curve[0]


def test_keyboard_interrupt_stops_training_and_keeps_the_weights(ridge_problem):
    stop_at = 7
    snapshots = {}

    def record(module, epoch):
        snapshots[epoch] = flat_parameters(module).clone()

    def interrupt(module, epoch):
        if epoch == stop_at:
            raise KeyboardInterrupt

    # The same run, uninterrupted, records the weights at the end of each epoch.
    _, reference_run = train_linear_epochwise(ridge_problem, 50, record)
    assert reference_run.loss_curve == train_linear(ridge_problem, 50)[1].loss_curve
    with pytest.warns(UserWarning, match=f"interrupted at epoch {stop_at}"):
        module, result = train_linear_epochwise(ridge_problem, 50, interrupt)
    assert result.interrupted
    assert result.n_iter == stop_at and len(result.loss_curve) == stop_at
    assert_allclose(result.loss_curve, reference_run.loss_curve[:stop_at], rtol=0)
    assert torch.equal(flat_parameters(module), snapshots[stop_at])
    assert not torch.equal(snapshots[stop_at], snapshots[stop_at + 1])  # it did stop there


def test_nan_loss_raises_training_diverged(ridge_problem):
    y = ridge_problem[1].copy()
    y[3] = np.nan
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        train_linear(ridge_problem, max_iter=5, y=y)
    assert issubclass(TrainingDivergedError, ValueError)

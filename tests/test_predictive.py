"""The linearised (GLM) predictive against a dense reference, for every curvature structure.

The reference Jacobian is torch.autograd.functional.jacobian of the network's outputs over the
flat parameter vector, one row at a time; the reference covariance is the posterior's dense Σ.
Then f + J(μ − θ*) and J Σ Jᵀ must match ``glm_outputs`` (per-sample Jacobians in blocks, or
KFAC's rank-one layer form), and joint draws must have those moments.
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch.func import functional_call

from skbnn import _jacobians
from skbnn._curvature import fit_curvature
from skbnn._likelihoods import GaussianLikelihood
from skbnn._network import build_mlp, flat_parameters, layer_sizes, unflatten_parameters
from skbnn._posterior import GaussianPosterior
from skbnn._predictive import glm_jacobians, glm_outputs, glm_samples


def posterior_of(structure, offset=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    module = build_mlp(3, [4], 2, "tanh", dtype=torch.float64, generator=generator)
    X = torch.randn(25, 3, generator=generator, dtype=torch.float64)
    names = [name for name, _ in module.named_parameters()]
    likelihood = GaussianLikelihood(torch.tensor([0.5, 1.5], dtype=torch.float64))
    curvature = fit_curvature(
        module, likelihood, X, torch.ones(25, dtype=X.dtype), names, structure
    )
    theta = flat_parameters(module, names)
    shift = 0.05 * torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
    posterior = GaussianPosterior(
        mean=theta + shift if offset else theta,
        curvature=curvature,
        prior_precision=0.7,
        noise_scale=1.3,
        param_names=names,
        linearization_point=theta if offset else None,
        layer_sizes=layer_sizes(module, names),
    )
    return module, posterior, X


def dense_jacobian(module, posterior, X):
    """(n, K, P) by autograd over the flat parameters, row by row."""
    theta = flat_parameters(module, posterior.param_names)

    def outputs(x):
        def f(flat):
            params = unflatten_parameters(module, posterior.param_names, flat)
            return functional_call(module, params, (x[None],))[0]

        return torch.autograd.functional.jacobian(f, theta)

    return torch.stack([outputs(x) for x in X])


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
@pytest.mark.parametrize("offset", [False, True], ids=["laplace", "vi-mean"])
def test_glm_outputs_match_the_dense_jacobian_and_covariance(structure, offset, monkeypatch):
    module, posterior, X = posterior_of(structure, offset)
    J = dense_jacobian(module, posterior, X)
    with torch.no_grad():
        f = module(X)
    mean = f if not offset else f + J @ (posterior.mean - posterior.linearization_point)
    cov = J @ posterior.covariance() @ J.mT
    monkeypatch.setattr(_jacobians, "_JACOBIAN_BLOCK_ELEMENTS", 7 * 2 * posterior.n_params)
    fast_mean, fast_cov = glm_outputs(module, posterior, X)  # blocks of 7 rows
    assert_allclose(fast_mean, mean, rtol=1e-10, atol=1e-12)
    assert_allclose(fast_cov, cov, rtol=1e-9, atol=1e-12)
    block_mean, block_J = glm_jacobians(module, posterior, X)
    assert_allclose(block_J, J, rtol=1e-10, atol=1e-12)
    assert_allclose(block_mean, mean, rtol=1e-10, atol=1e-12)


def test_joint_draws_have_the_glm_moments():
    module, posterior, X = posterior_of("full", offset=True)
    X = X[:4]
    J = dense_jacobian(module, posterior, X).reshape(8, -1)  # (n K, P), row-major
    mean, _ = glm_outputs(module, posterior, X)
    draws = glm_samples(module, posterior, X, 40_000, torch.Generator().manual_seed(1))
    assert draws.shape == (4, 2, 40_000)
    flat = draws.reshape(8, -1).numpy()
    joint = (J @ posterior.covariance() @ J.T).numpy()
    scale = np.sqrt(np.diag(joint))
    assert_allclose(flat.mean(1), mean.reshape(-1).numpy(), atol=5 * scale.max() / 200)
    assert_allclose(np.cov(flat), joint, atol=0.05 * scale.max() ** 2)

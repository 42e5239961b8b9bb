"""The likelihoods against scipy.stats and their output curvature against autograd Hessians."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.special import expit, log_softmax
from scipy.stats import bernoulli, norm
from torch.autograd.functional import hessian

from skbnn._likelihoods import (
    BernoulliLikelihood,
    CategoricalLikelihood,
    GaussianLikelihood,
    HeteroscedasticGaussianLikelihood,
)

NOISE_STD = np.array([0.5, 2.0, 1.3])  # reference σ_k of three outputs
N = 9


@pytest.fixture
def rng():
    return np.random.RandomState(0)


def gaussian():
    return GaussianLikelihood(torch.tensor(NOISE_STD))


@pytest.mark.parametrize("noise_scale", [1.0, 0.3, 2.5])
def test_gaussian_negative_log_likelihood_is_norm_logpdf(rng, noise_scale):
    f, y = rng.randn(N, 3), rng.randn(N, 3) * 2
    nll = gaussian().negative_log_likelihood(torch.tensor(f), torch.tensor(y), noise_scale)
    reference = -norm.logpdf(y, loc=f, scale=noise_scale * NOISE_STD).sum(-1)
    assert nll.shape == (N,)
    assert_allclose(nll.numpy(), reference, rtol=1e-12)


def test_gaussian_data_fit_and_log_noise_ref(rng):
    f, y = rng.randn(N, 3), rng.randn(N, 3)
    likelihood = gaussian()
    data_fit = likelihood.data_fit(torch.tensor(f), torch.tensor(y))
    assert_allclose(data_fit.numpy(), (((y - f) / NOISE_STD) ** 2).sum(-1), rtol=1e-12)
    assert_allclose(likelihood.log_noise_ref, np.log(NOISE_STD).sum(), rtol=1e-12)


def test_heteroscedastic_negative_log_likelihood_is_norm_logpdf(rng):
    mean, log_var, y = rng.randn(N, 3), rng.randn(N, 3), rng.randn(N, 3)
    f = torch.tensor(np.hstack([mean, log_var]))
    nll = HeteroscedasticGaussianLikelihood().negative_log_likelihood(f, torch.tensor(y))
    reference = -norm.logpdf(y, loc=mean, scale=np.exp(0.5 * log_var)).sum(-1)
    assert_allclose(nll.numpy(), reference, rtol=1e-12)


def test_heteroscedastic_warm_up_loss_is_the_unit_variance_squared_error(rng):
    mean, log_var, y = rng.randn(N, 3), rng.randn(N, 3), rng.randn(N, 3)
    f = torch.tensor(np.hstack([mean, log_var]), requires_grad=True)
    loss = HeteroscedasticGaussianLikelihood().warm_up_loss(f, torch.tensor(y))
    assert_allclose(loss.detach().numpy(), 0.5 * ((y - mean) ** 2).sum(-1), rtol=1e-12)
    # Up to a constant it is the NLL at unit variance, and the log-variances get no gradient.
    unit = HeteroscedasticGaussianLikelihood().negative_log_likelihood(
        torch.tensor(np.hstack([mean, np.zeros((N, 3))])), torch.tensor(y)
    )
    assert_allclose(loss.detach().numpy(), unit.numpy() - 1.5 * np.log(2 * np.pi), rtol=1e-12)
    loss.sum().backward()
    assert not f.grad[:, 3:].any()


def test_bernoulli_negative_log_likelihood_is_bernoulli_logpmf(rng):
    f = rng.randn(N, 1) * 3
    y = (rng.rand(N) > 0.5).astype(float)
    nll = BernoulliLikelihood().negative_log_likelihood(torch.tensor(f), torch.tensor(y))
    assert_allclose(nll.numpy(), -bernoulli.logpmf(y, expit(f[:, 0])), rtol=1e-10)


def test_categorical_negative_log_likelihood_is_log_softmax(rng):
    f = rng.randn(N, 4) * 3
    y = rng.randint(0, 4, size=N)
    nll = CategoricalLikelihood().negative_log_likelihood(torch.tensor(f), torch.tensor(y))
    assert_allclose(nll.numpy(), -log_softmax(f, axis=1)[np.arange(N), y], rtol=1e-12)


@pytest.mark.parametrize("likelihood", [BernoulliLikelihood(), CategoricalLikelihood()])
def test_classifiers_ignore_the_noise_scale(rng, likelihood):
    f = torch.tensor(rng.randn(N, 1 if likelihood.name == "bernoulli" else 3))
    y = torch.tensor(rng.randint(0, f.shape[1] + (f.shape[1] == 1), size=N))
    assert torch.equal(
        likelihood.negative_log_likelihood(f, y), likelihood.negative_log_likelihood(f, y, 3.0)
    )


# -- output curvature: L Lᵀ = ∂²(−log p(y | f))/∂f², per row ---------------------------------------


def row_hessians(likelihood, f, y):
    """The autograd Hessian of each row's negative log-likelihood in its outputs, (n, K, K)."""
    return torch.stack(
        [
            hessian(
                lambda fi, i=i: likelihood.negative_log_likelihood(fi[None], y[i : i + 1])[0], f[i]
            )
            for i in range(f.shape[0])
        ]
    )


def gram(L):
    return L @ L.transpose(-1, -2)


def classification_problem(name, rng):
    if name == "bernoulli":
        return BernoulliLikelihood(), rng.randn(N, 1) * 3, (rng.rand(N) > 0.5).astype(float)
    return CategoricalLikelihood(), rng.randn(N, 4) * 2, rng.randint(0, 4, size=N)


@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_classification_hessian_sqrt_is_the_autograd_hessian(rng, name):
    likelihood, f, y = classification_problem(name, rng)
    f, y = torch.tensor(f), torch.tensor(y)
    L = likelihood.output_hessian_sqrt(f)
    assert L.shape[:2] == f.shape
    assert_allclose(gram(L).numpy(), row_hessians(likelihood, f, y).numpy(), atol=1e-12)


def test_gaussian_hessian_sqrt_is_the_autograd_hessian_at_reference_noise(rng):
    f, y = torch.tensor(rng.randn(N, 3)), torch.tensor(rng.randn(N, 3))
    likelihood = gaussian()
    L = likelihood.output_hessian_sqrt(f)
    reference = row_hessians(likelihood, f, y)  # noise_scale = 1: the reference noise
    assert_allclose(gram(L).numpy(), reference.numpy(), rtol=1e-12, atol=1e-15)
    assert_allclose(reference[0].numpy(), np.diag(1 / NOISE_STD**2), rtol=1e-12)


def test_heteroscedastic_hessian_sqrt_is_the_fisher(rng):
    """The GGN convention is the Fisher diag(1/σ², ½) in (μ, log σ²), i.e. E_y[Hessian].

    The Hessian is a polynomial of degree 2 in y − μ, so its mean under y ~ N(μ, σ²) is exactly
    the average of the Hessians at y = μ ± σ. At a single y the Hessian is not the Fisher (it
    couples μ and log σ², and need not be PSD).
    """
    mean, log_var = rng.randn(N, 2), rng.randn(N, 2)
    f = torch.tensor(np.hstack([mean, log_var]))
    std = np.exp(0.5 * log_var)
    likelihood = HeteroscedasticGaussianLikelihood()
    fisher = 0.5 * sum(
        row_hessians(likelihood, f, torch.tensor(mean + sign * std)) for sign in (-1.0, 1.0)
    )
    L = likelihood.output_hessian_sqrt(f)
    assert L.shape == (N, 4, 4)
    assert_allclose(gram(L).numpy(), fisher.numpy(), rtol=1e-12, atol=1e-14)
    expected = np.stack([np.diag(np.concatenate([1 / s**2, [0.5, 0.5]])) for s in std])
    assert_allclose(gram(L).numpy(), expected, rtol=1e-12)
    at_one_y = row_hessians(likelihood, f, torch.tensor(mean + 2 * std))
    assert not np.allclose(at_one_y.numpy(), fisher.numpy())

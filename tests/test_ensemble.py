"""Ensembles of Laplace networks (``ensemble_size``): the mixture's moments and its parts.

The mixture functions are compared with the non-centred formula E[xxᵀ] − E[x]E[x]ᵀ; the
estimator's predictions with those of single networks fitted from its members' seeds, combined
by hand.
"""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skbnn import LaplaceMLPRegressor
from skbnn._ensemble import member_moments
from skbnn._predictive import mixture_cross_covariance, mixture_mean_and_variance

SMALL = dict(hidden_layer_sizes=(8,), max_iter=60, learning_rate_init=0.01)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(60, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.randn(60)
    return X, y


@pytest.fixture(scope="module")
def ensemble(data):
    return LaplaceMLPRegressor(**SMALL, ensemble_size=3, random_state=0).fit(*data)


def test_mixture_moments_match_the_non_centred_formula():
    rng = np.random.RandomState(1)
    M, n, k = 4, 5, 2
    means = torch.tensor(rng.randn(M, n, k))
    factors = torch.tensor(rng.randn(M, n * k, n * k))
    joint = factors @ factors.transpose(1, 2)  # (M, nk, nk): each network's joint covariance
    covariances = joint.reshape(M, n, k, n, k).permute(0, 1, 3, 2, 4)  # (M, n, n, k, l)

    flat = means.reshape(M, n * k)
    second_moment = (joint + flat[:, :, None] * flat[:, None, :]).mean(0)
    expected = second_moment - flat.mean(0)[:, None] * flat.mean(0)[None, :]
    expected = expected.reshape(n, k, n, k).permute(0, 2, 1, 3)
    assert_allclose(mixture_cross_covariance(means, means, covariances), expected, rtol=1e-12)

    variances = torch.diagonal(torch.diagonal(covariances, dim1=1, dim2=2), dim1=1, dim2=2)
    mean, variance = mixture_mean_and_variance(means, variances)
    assert_allclose(mean, flat.mean(0).reshape(n, k), rtol=1e-12)
    diagonal = torch.diagonal(torch.diagonal(expected, dim1=0, dim2=1), dim1=0, dim2=1)
    assert_allclose(variance, diagonal, rtol=1e-12)


def single_networks(ensemble, X, y, **fit_params):
    """Each member refitted alone, with ``ensemble_size=1`` and the member's seed."""
    seeds = [ensemble.random_state, *(m.random_state for m in ensemble.members_[1:])]
    return [
        LaplaceMLPRegressor(**{**ensemble.get_params(), "ensemble_size": 1, "random_state": s}).fit(
            X, y, **fit_params
        )
        for s in seeds
    ]


def test_predictions_are_the_mixture_of_the_members(ensemble, data):
    X = data[0][:7]
    assert ensemble.ensemble_size_ == 3 and len(ensemble.members_) == 3
    y_mean, y_scale = ensemble._y_mean, torch.as_tensor(ensemble._y_scale)
    parts = [member_moments(m, torch.tensor(X), y_scale) for m in ensemble.members_]
    means = np.array([(f * y_scale + y_mean)[:, 0].numpy() for f, _, _ in parts])
    model_var = np.array([(v * y_scale**2)[:, 0].numpy() for _, v, _ in parts])
    noise_var = np.array([(s * y_scale**2)[:, 0].numpy() for _, _, s in parts])
    assert np.ptp(means, axis=0).min() > 0  # the networks differ

    mean, std = ensemble.predict(X, return_std=True)
    assert_allclose(mean, means.mean(0), rtol=1e-12)
    assert_allclose(std**2, (model_var + noise_var).mean(0) + means.var(0), rtol=1e-10)

    split = ensemble.predict_uncertainty(X)
    noise = np.array([m.sigma_noise[0] for m in ensemble.members_])
    assert_allclose(noise_var, np.repeat(noise[:, None] ** 2, len(X), 1), rtol=1e-12)
    assert_allclose(split.aleatoric_std**2, np.full(len(X), (noise**2).mean()), rtol=1e-10)
    assert ensemble.sigma_noise_ == pytest.approx(np.sqrt((noise**2).mean()), rel=1e-12)
    assert_allclose(split.total_std, std, rtol=1e-12)


@pytest.mark.parametrize("batch_size", ["auto", 16])
def test_networks_trained_together_equal_networks_trained_alone(data, batch_size):
    """The members train as one batched model; each is the network its seed gives alone
    (float64, so that only rounding separates the two: the issue's 1e-6)."""
    X, y = data
    params = dict(SMALL, dtype="float64", batch_size=batch_size, random_state=0)
    together = LaplaceMLPRegressor(**params, ensemble_size=3).fit(X, y)
    alone = single_networks(together, X, y)
    X_test = X[:9]
    means, stds = zip(*(net.predict(X_test, return_std=True) for net in alone), strict=True)
    for member, net in zip(together.members_, alone, strict=True):
        for name, value in net.module_.state_dict().items():
            assert_allclose(member.module.state_dict()[name], value, rtol=1e-6, atol=1e-9)
        assert_allclose(member.sigma_noise[0], net.sigma_noise_, rtol=1e-6)
        assert_allclose(
            member.log_marginal_likelihood, net.log_marginal_likelihood_value_, rtol=1e-6
        )
    mean, std = together.predict(X_test, return_std=True)
    means, stds = np.array(means), np.array(stds)
    assert_allclose(mean, means.mean(0), rtol=1e-6, atol=1e-9)
    assert_allclose(std**2, (stds**2).mean(0) + means.var(0), rtol=1e-6)
    # The loss curves (float64 training) agree as closely.
    assert_allclose(together.loss_curve_, alone[0].loss_curve_, rtol=1e-9)


def test_covariance_kernel_and_std_agree(ensemble, data):
    X = data[0][:6]
    _, std = ensemble.predict(X, return_std=True)
    _, cov = ensemble.predict(X, return_cov=True)
    assert_allclose(np.sqrt(np.diag(cov)), std, rtol=1e-10)
    split = ensemble.predict_uncertainty(X)
    K = ensemble.kernel(X)
    assert_allclose(cov - np.diag(split.aleatoric_std**2), K, rtol=1e-10, atol=1e-14)
    assert_allclose(ensemble.kernel(X, X[:2]), K[:, :2], rtol=1e-10, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(K) > -1e-12 * np.abs(K).max())


def test_samples_follow_the_mixture(ensemble, data):
    X = data[0][:4]
    mean, std = ensemble.predict(X, return_std=True)
    samples = ensemble.sample_y(X, n_samples=20_000, random_state=3)
    assert samples.shape == (4, 20_000)
    assert_allclose(samples.mean(1), mean, atol=4 * std.max() / np.sqrt(20_000))
    assert_allclose(samples.std(1), std, rtol=0.03)
    assert_array_equal(samples, ensemble.sample_y(X, n_samples=20_000, random_state=3))


def test_the_first_network_is_the_single_one(ensemble, data):
    """The same seed, the same first network, for any size (to the rounding of the batched
    products the networks train with, float32 here)."""
    single = LaplaceMLPRegressor(**SMALL, ensemble_size=1, random_state=0).fit(*data)
    assert len(single.members_) == 1 and single.members_[0].module is single.module_
    assert single.sigma_noise_ == single.members_[0].sigma_noise[0]
    assert_allclose(
        single.log_marginal_likelihood_value_, ensemble.log_marginal_likelihood_value_, rtol=1e-6
    )
    for name, value in single.module_.state_dict().items():
        assert_allclose(value, ensemble.module_.state_dict()[name], rtol=1e-6, atol=1e-7)
    members = ensemble.members_
    assert members[0].module is ensemble.module_ and members[0].random_state is None
    assert len({member.random_state for member in members[1:]}) == 2


def test_auto_size(data):
    X, y = data
    fitted = LaplaceMLPRegressor(**SMALL, random_state=0).fit(X, y)
    assert fitted.ensemble_size_ == 3
    linear = LaplaceMLPRegressor(hidden_layer_sizes=(), max_iter=5, random_state=0).fit(X, y)
    assert linear.ensemble_size_ == 1
    streamed = LaplaceMLPRegressor(**SMALL, random_state=0).partial_fit(X, y)
    assert streamed.ensemble_size_ == 1
    rng = np.random.RandomState(0)
    X_large = rng.randn(2001, 2)
    large = LaplaceMLPRegressor(hidden_layer_sizes=(2,), max_iter=1, random_state=0)
    assert large.fit(X_large, X_large[:, 0]).ensemble_size_ == 1
    assert large.fit(X_large[:2000], X_large[:2000, 0]).ensemble_size_ == 3


def test_partial_fit_updates_every_member_or_none(data):
    X, y = data
    reg = LaplaceMLPRegressor(**SMALL, ensemble_size=2, random_state=0)
    reg.partial_fit(X[:40], y[:40])
    member = reg.members_[1]
    alone = LaplaceMLPRegressor(**SMALL, ensemble_size=1, random_state=member.random_state)
    alone.partial_fit(X[:40], y[:40]).partial_fit(X[40:], y[40:])

    before = reg.predict_std(X)
    y_bad = y[40:].copy()
    y_bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.partial_fit(X[40:], y_bad)
    assert_array_equal(reg.predict_std(X), before)
    assert reg.members_[1] is member

    reg.partial_fit(X[40:], y[40:])
    updated = reg.members_[1]
    assert_allclose(updated.posterior.mean, alone.posterior_.mean, rtol=1e-12)
    assert updated.log_marginal_likelihood == alone.log_marginal_likelihood_value_
    assert_allclose(updated.sigma_noise[0], alone.sigma_noise_, rtol=1e-12)
    assert reg.ensemble_size_ == 2


def test_pickle_round_trip(ensemble, data):
    X = data[0][:5]
    loaded = pickle.loads(pickle.dumps(ensemble))
    assert_array_equal(loaded.predict_std(X), ensemble.predict_std(X))
    assert_array_equal(loaded.kernel(X), ensemble.kernel(X))


def test_every_network_sees_the_sample_weights(data):
    X, y = data
    weights = np.random.RandomState(2).randint(0, 3, size=len(y))
    weighted = LaplaceMLPRegressor(**SMALL, ensemble_size=2, random_state=0)
    weighted.fit(X, y, sample_weight=weights)
    repeated = LaplaceMLPRegressor(**SMALL, ensemble_size=2, random_state=0)
    repeated.fit(X.repeat(weights, axis=0), y.repeat(weights))
    assert_allclose(weighted.predict_std(X), repeated.predict_std(X), rtol=1e-7)
    for a, b in zip(weighted.members_, repeated.members_, strict=True):
        assert_allclose(a.posterior.mean, b.posterior.mean, rtol=1e-6, atol=1e-9)

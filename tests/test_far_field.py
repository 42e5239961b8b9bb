"""The far-field prior: its kernel against the integral over ReLU features, and the classifier's
predictive with it (unchanged inside the training box, uniform far away)."""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.integrate import quad
from sklearn.datasets import make_classification

from skbnn import LaplaceMLPClassifier
from skbnn._far_field import FarFieldPrior


@pytest.fixture
def prior():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    return FarFieldPrior.from_rows(rows, torch.ones(40, dtype=torch.float64), variance=0.7)


def far_points(prior, n=7, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return 4 * torch.randn(n, 3, generator=gen, dtype=torch.float64)


def relu_features(z, s, t):
    """The product of the features (|u| − z)₊ at u = s and u = t, for a kink z."""
    return max(abs(s) - z, 0.0) * max(abs(t) - z, 0.0)


def test_kernel_is_the_integral_over_relu_features_beyond_the_box(prior):
    X, Y = far_points(prior), far_points(prior, n=5, seed=2)
    u, v = prior.excess(X), prior.excess(Y)
    reference = np.zeros((len(X), len(Y)))
    for a in range(len(X)):
        for b in range(len(Y)):
            for i in range(3):
                s, t = float(u[a, i]), float(v[b, i])
                if s * t > 0:  # features on the same side: kinks z from 0 to the nearer point
                    reference[a, b] += quad(relu_features, 0, min(abs(s), abs(t)), (s, t))[0]
    assert_allclose(prior.kernel(X, Y), 0.7 * reference, rtol=1e-10, atol=1e-12)
    assert np.count_nonzero(reference) > 10  # the check is not of zeros only


def test_kernel_is_positive_semidefinite_with_the_diagonal_as_its_diagonal(prior):
    X = far_points(prior, n=30)
    K = prior.kernel(X)
    assert_allclose(K, K.T, rtol=1e-12)
    assert torch.linalg.eigvalsh(K).min() > -1e-9 * K.diagonal().max()
    assert_allclose(prior.diagonal(X), K.diagonal(), rtol=1e-12)


def test_excess_is_zero_inside_the_box_and_in_units_of_the_std(prior):
    inside = prior.lower + 0.5 * (prior.upper - prior.lower)
    assert torch.equal(prior.kernel(inside[None]), torch.zeros(1, 1, dtype=torch.float64))
    beyond = prior.upper + 2 * prior.scale
    assert_allclose(prior.excess(beyond[None]), [[2.0, 2.0, 2.0]], rtol=1e-12)
    assert_allclose(prior.diagonal(beyond[None]), [0.7 * 3 * 8 / 3], rtol=1e-12)


def test_frequency_weights_are_repeated_rows(prior):
    rows = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights = torch.tensor([0.0, 1.0, 2.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    repeated = rows.repeat_interleave(weights.long(), dim=0)
    weighted = FarFieldPrior.from_rows(rows, weights, 1.0)
    plain = FarFieldPrior.from_rows(repeated, torch.ones(len(repeated), dtype=torch.float64), 1.0)
    for field in ("lower", "upper", "scale"):
        assert_allclose(getattr(weighted, field), getattr(plain, field), rtol=1e-12)


def test_growing_the_box_keeps_the_scale_and_ignores_zero_weight_rows(prior):
    rows = torch.tensor([[100.0, 0.0, 0.0], [0.0, -50.0, 0.0]], dtype=torch.float64)
    grown = prior.including(rows, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert grown.upper[0] == 100.0 and grown.lower[1] == prior.lower[1]
    assert torch.equal(grown.scale, prior.scale)


def fit_classifier(n_classes, variance, **params):
    X, y = make_classification(
        200, 4, n_informative=3, n_redundant=0, n_classes=n_classes, random_state=0
    )
    model = LaplaceMLPClassifier(
        max_iter=300, far_field_variance=variance, random_state=0, **params
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y), X


@pytest.mark.parametrize("link_approx", ["probit", "mc"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_predictive_is_unchanged_in_the_box_and_tends_to_uniform_far_away(
    n_classes, link_approx
):
    humble, X = fit_classifier(n_classes, 1.0, link_approx=link_approx)
    plain, _ = fit_classifier(n_classes, 0.0, link_approx=link_approx)
    assert humble.posterior_temperature_ == plain.posterior_temperature_
    assert_allclose(humble.predict_proba(X), plain.predict_proba(X), rtol=0, atol=0)
    far = 1e6 * X[:20]  # the ratio of logit to std falls as (distance)^(-1/2)
    # Along rays a ReLU network's predictive keeps a confidence well above uniform (Kristiadi
    # et al. 2020); the far field makes it uniform.
    assert plain.predict_proba(far).max(axis=1).mean() > 1 / n_classes + 0.25
    monte_carlo_error = 3 * np.sqrt(0.25 / humble.n_samples) if link_approx == "mc" else 0.0
    assert_allclose(humble.predict_proba(far), 1 / n_classes, atol=0.02 + monte_carlo_error)
    assert np.all(np.isfinite(humble.predict_log_proba(far)))


def test_kernel_and_uncertainty_include_the_far_field():
    humble, X = fit_classifier(3, 1.0)
    plain, _ = fit_classifier(3, 0.0)
    far = 5 * X[:6]
    far_kernel = humble.far_field_.kernel(torch.as_tensor(far)).numpy()
    for prior in (False, True):
        difference = humble.kernel(far, prior=prior) - plain.kernel(far, prior=prior)
        assert_allclose(difference, far_kernel[:, :, None, None] * np.eye(3), atol=1e-8)
    assert (
        humble.predict_uncertainty(far).mutual_information
        > plain.predict_uncertainty(far).mutual_information
    ).all()


def test_partial_fit_grows_the_box():
    X, y = make_classification(200, 3, n_informative=3, n_redundant=0, random_state=0)
    order = np.argsort(X[:, 0])
    model = LaplaceMLPClassifier(hidden_layer_sizes=(), max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(X[order[:100]], y[order[:100]], classes=[0, 1])
        first = model.far_field_
        model.partial_fit(X[order[100:]], y[order[100:]])
    assert float(model.far_field_.upper[0]) == X[:, 0].max() > float(first.upper[0])
    assert torch.equal(model.far_field_.scale, first.scale)

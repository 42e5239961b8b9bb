"""skbnn: scikit-learn estimators for Bayesian neural networks.

:class:`LaplaceMLPRegressor` and :class:`LaplaceMLPClassifier` train a PyTorch MLP, fit a Gaussian
(Laplace-GGN) posterior over its weights, tune the prior and noise by the marginal likelihood and
predict with the linearised (GLM) predictive.
"""

from skbnn._training import TrainingDivergedError
from skbnn._version import InconsistentVersionWarning, __version__
from skbnn.classifier import LaplaceMLPClassifier
from skbnn.regressor import LaplaceMLPRegressor

__all__ = [
    "InconsistentVersionWarning",
    "LaplaceMLPClassifier",
    "LaplaceMLPRegressor",
    "TrainingDivergedError",
    "__version__",
]

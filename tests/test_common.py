"""scikit-learn's own estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

# The checks test the API contract, not convergence: like scikit-learn's own common tests
# (``_set_checking_parameters``), cap the training length below the "auto" default.
CHECK_MAX_ITER = 1000
ESTIMATORS = [
    LaplaceMLPRegressor(max_iter=CHECK_MAX_ITER),
    LaplaceMLPClassifier(max_iter=CHECK_MAX_ITER),
    LaplaceMLPRegressor(inference="laplace", max_iter=CHECK_MAX_ITER),
    LaplaceMLPClassifier(inference="ggn-vi", max_iter=CHECK_MAX_ITER),
]


# Also without expected failures on CUDA: on an H100 the order, subset and sample-weight
# invariance checks passed (benchmarks/gpu_check.sh).
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

"""scikit-learn's own estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

# The checks test the API contract, not convergence: like scikit-learn's own common tests
# (``_set_checking_parameters``), cap the training length below the "auto" default.
CHECK_MAX_ITER = 1000
# The default regressor fits an ensemble of three networks on such data, three times the work:
# 300 epochs each keep CI within its time. At 1000 epochs its third network (seed 924231285
# after the checks' set_random_state(0)) fails check_sample_weight_equivalence_on_dense_data:
# on the check's 15 rows × 30 features, long training amplifies the round-off between weighted
# and repeated rows to a relative 4e-6 (rtol 1e-7). That seed does the same alone, with
# ensemble_size=1, and other seeds agree to 1e-10: a property of long training on this data.
CHECK_ENSEMBLE_MAX_ITER = 300
ESTIMATORS = [
    LaplaceMLPRegressor(max_iter=CHECK_ENSEMBLE_MAX_ITER),
    LaplaceMLPClassifier(max_iter=CHECK_MAX_ITER),
    LaplaceMLPRegressor(inference="laplace", ensemble_size=1, max_iter=CHECK_MAX_ITER),
    LaplaceMLPClassifier(inference="ggn-vi", max_iter=CHECK_MAX_ITER),
    # Both noise models fitted and one kept: the contract must hold across the swap of state.
    LaplaceMLPRegressor(noise="auto", ensemble_size=1, max_iter=CHECK_ENSEMBLE_MAX_ITER),
]


# On CUDA too (single networks): on an H100 the order, subset and sample-weight invariance
# checks passed (benchmarks/gpu_check.sh).
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

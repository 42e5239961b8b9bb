"""scikit-learn's own estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

# The checks test the API contract, not convergence: like scikit-learn's own common tests
# (``_set_checking_parameters``), cap the training length below the "auto" default.
CHECK_MAX_ITER = 1000
ESTIMATORS = [
    LaplaceMLPRegressor(max_iter=CHECK_MAX_ITER),  # an ensemble of 3 networks on such data
    LaplaceMLPClassifier(max_iter=CHECK_MAX_ITER),
    LaplaceMLPRegressor(inference="laplace", ensemble_size=1, max_iter=CHECK_MAX_ITER),
    LaplaceMLPClassifier(inference="ggn-vi", max_iter=CHECK_MAX_ITER),
]


def expected_failed_checks(estimator):
    """The one expected failure, of a training property rather than of the API."""
    if isinstance(estimator, LaplaceMLPRegressor) and estimator.ensemble_size == "auto":
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "With random_state=0 the ensemble's third network has seed 924231285, whose "
                "training on the check's 15 rows × 30 features amplifies the round-off between "
                "weighted and repeated rows to a relative 4e-6 of the predictions (rtol 1e-7). "
                "That seed alone, with ensemble_size=1, does the same; other seeds agree to "
                "1e-10. tests/test_ensemble.py checks the weights of every network."
            )
        }
    return {}


# On CUDA too: on an H100 the order, subset and sample-weight invariance checks passed
# (benchmarks/gpu_check.sh).
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

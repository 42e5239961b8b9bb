"""dask-ml, joblib's dask backend and persistence: the estimators beyond one process.

A LocalCluster of two worker processes on 127.0.0.1 is started once for the module.
"""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.model_selection import GridSearchCV

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

pytest.importorskip("dask_ml")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
from dask_ml.wrappers import Incremental, ParallelPostFit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(90, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 / 2 + 0.2 * rng.randn(90)
    return X, y, rng.uniform(-2, 2, size=(25, 2))


@pytest.fixture(scope="module")
def fitted_regressor(regression_data):
    X, y, _ = regression_data
    return LaplaceMLPRegressor(
        hidden_layer_sizes=(8,), max_iter=60, device="cpu", random_state=0
    ).fit(X, y)


@pytest.fixture(scope="module")
def fitted_classifier():
    rng = np.random.RandomState(1)
    X = rng.randn(90, 2)
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = LaplaceMLPClassifier(hidden_layer_sizes=(6,), max_iter=60, device="cpu", random_state=0)
    return clf.fit(X, y), rng.randn(25, 2)


def test_incremental_linear_gaussian_equals_fit(client, linear_data):
    """Incremental feeds the 10 blocks to partial_fit in order: sequential Laplace is exact."""
    X, y, X_test = linear_data
    params = dict(
        hidden_layer_sizes=(),
        normalize_y=False,
        prior_precision=2.0,
        sigma_noise=0.4,
        hessian_structure="full",
        inference="laplace",  # trains on each block, so n_iter_ counts the blocks
        max_iter=400,
        learning_rate_init=0.05,
        random_state=0,
    )
    batch = LaplaceMLPRegressor(**params).fit(X, y)
    X_dask, y_dask = da.from_array(X, chunks=(6, 3)), da.from_array(y, chunks=6)
    assert X_dask.numblocks == (10, 1)
    stream = Incremental(LaplaceMLPRegressor(**params), shuffle_blocks=False).fit(X_dask, y_dask)
    fitted = stream.estimator_
    # Each block seen exactly once: 10 partial_fit calls of max_iter epochs each.
    assert fitted.n_iter_ == 10 * 400
    mean, std = batch.predict(X_test, return_std=True)
    stream_mean, stream_std = fitted.predict(X_test, return_std=True)
    assert_allclose(stream_std, std, rtol=1e-6)
    assert_allclose(stream_mean, mean, atol=1e-3 * np.ptp(mean))


def test_incremental_classifier_passes_classes_to_each_block(client):
    rng = np.random.RandomState(2)
    X = rng.randn(120, 2)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    # Five tanh units learn this boundary in 3 × 40 epochs (five ReLUs, the default, less surely).
    clf = LaplaceMLPClassifier((5,), activation="tanh", max_iter=40, random_state=0)
    stream = Incremental(clf, shuffle_blocks=False).fit(
        da.from_array(X, chunks=(40, 2)), da.from_array(y, chunks=40), classes=[0, 1]
    )
    assert_array_equal(stream.estimator_.classes_, [0, 1])
    assert stream.estimator_.n_iter_ == 3 * 40
    assert stream.estimator_.score(X, y) > 0.85


def test_parallel_post_fit_predicts_blockwise(
    client, regression_data, fitted_regressor, fitted_classifier
):
    _, _, X_test = regression_data
    X_dask = da.from_array(X_test, chunks=(10, 2))
    prediction = ParallelPostFit(fitted_regressor).predict(X_dask)
    assert isinstance(prediction, da.Array)
    assert_allclose(prediction.compute(), fitted_regressor.predict(X_test), rtol=1e-12)

    clf, X_clf = fitted_classifier
    wrapped = ParallelPostFit(clf)
    X_clf_dask = da.from_array(X_clf, chunks=(10, 2))
    assert_allclose(
        wrapped.predict_proba(X_clf_dask).compute(), clf.predict_proba(X_clf), rtol=1e-12
    )
    assert_array_equal(wrapped.predict(X_clf_dask).compute(), clf.predict(X_clf))


def test_grid_search_with_the_dask_joblib_backend(client, regression_data):
    X, y, _ = regression_data

    def search():
        return GridSearchCV(
            LaplaceMLPRegressor(max_iter=30, random_state=0),
            {"hidden_layer_sizes": [(), (5,)]},
            cv=3,
            n_jobs=2,
        )

    # The reference runs in this process (n_jobs=1 gives the same scores, without the cost of
    # starting joblib's worker processes).
    local = search().set_params(n_jobs=1).fit(X, y)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        on_dask = search().fit(X, y)
    assert len(tasks.data) >= 6  # the 2 candidates × 3 folds ran on the cluster
    assert on_dask.best_params_ == local.best_params_
    assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-6
    )


def _predictions(estimator, X):
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(X)
    return np.column_stack(estimator.predict(X, return_std=True))


@pytest.mark.parametrize("which", ["regressor", "classifier"])
def test_pickle_and_joblib_round_trips(
    which, tmp_path, regression_data, fitted_regressor, fitted_classifier
):
    if which == "regressor":
        estimator, X_test = fitted_regressor, regression_data[2]
    else:
        estimator, X_test = fitted_classifier
    expected = _predictions(estimator, X_test)
    assert_array_equal(_predictions(pickle.loads(pickle.dumps(estimator)), X_test), expected)
    joblib.dump(estimator, tmp_path / "model.joblib")
    assert_array_equal(_predictions(joblib.load(tmp_path / "model.joblib"), X_test), expected)


def _load_in_fresh_process(tmp_path, models):
    """Pickle {name: (estimator, X)}, unpickle each in one new interpreter (no CUDA visible,
    one torch thread as in these tests) and return {name: (its predictions, the original's)}."""
    code = textwrap.dedent(
        """
        import pickle, sys
        import numpy as np
        import torch
        torch.set_num_threads(1)
        for stem in sys.argv[1:]:
            with open(stem + ".pkl", "rb") as f:
                model = pickle.load(f)
            X = np.load(stem + "_X.npy")
            if hasattr(model, "predict_proba"):
                out = model.predict_proba(X)
            else:
                out = np.column_stack(model.predict(X, return_std=True))
            np.save(stem + "_out.npy", out)
        """
    )
    stems = {name: str(tmp_path / name) for name in models}
    for name, (estimator, X) in models.items():
        Path(stems[name] + ".pkl").write_bytes(pickle.dumps(estimator))
        np.save(stems[name] + "_X.npy", X)
    subprocess.run(
        [sys.executable, "-c", code, *stems.values()],
        check=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    return {
        name: (np.load(stems[name] + "_out.npy"), _predictions(estimator, X))
        for name, (estimator, X) in models.items()
    }


def test_pickle_loads_in_a_fresh_process(
    tmp_path, regression_data, fitted_regressor, fitted_classifier
):
    loaded = _load_in_fresh_process(
        tmp_path,
        {"regressor": (fitted_regressor, regression_data[2]), "classifier": fitted_classifier},
    )
    for name, (fresh, original) in loaded.items():
        assert_array_equal(fresh, original, err_msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fitted_on_cuda_loads_on_a_cpu_only_process(tmp_path, regression_data):
    X, y, X_test = regression_data
    gpu = LaplaceMLPRegressor(hidden_layer_sizes=(8,), max_iter=60, device="cuda", random_state=0)
    gpu.fit(X, y)
    # The fitted state is stored on the CPU, so CPU-only processes can load it.
    assert all(p.device.type == "cpu" for p in gpu.module_.parameters())
    fresh, original = _load_in_fresh_process(tmp_path, {"gpu": (gpu, X_test)})["gpu"]
    assert_allclose(fresh, original, rtol=1e-12)


def test_out_of_core_example_smoke(client):
    """examples/out_of_core_dask.py in its smoke size, on this module's cluster."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "out_of_core_dask.py"),
            "--scheduler-address",
            client.scheduler.address,
        ],
        env={**os.environ, "SKBNN_EXAMPLE_SMOKE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test RMSE" in result.stdout
    assert "peak RSS" in result.stdout

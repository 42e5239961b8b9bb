#!/usr/bin/env bash
# One prepared call for a lent GPU machine (CI never has one):
#   1. the test suite with device="auto" resolving to CUDA (dask and the example gallery are
#      left out: the machine has no dask, and the gallery is smoke-tested on CPU in CI);
#   2. a model fitted on CUDA is pickled and loaded in a process that sees no GPU;
#   3. CPU vs CUDA fit + predict time of the same estimator on the same data, predictions compared;
#   4. 200,000 rows on CUDA with the default minibatch of 256 and larger ones: time and test LL.
#   usage (on the GPU machine, repository root): bash benchmarks/gpu_check.sh
# The machine's python3 already has torch, numpy, scipy, scikit-learn and pytest-xdist; skbnn
# runs from the tree. Logs go to $OUT (the device tool brings them back) or /tmp.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import numpy, scipy, sklearn, torch; print('python', __import__('sys').version.split()[0],
'torch', torch.__version__, 'sklearn', sklearn.__version__, 'numpy', numpy.__version__,
'scipy', scipy.__version__, 'cuda', torch.cuda.is_available())"

# SIGINT at the limit still prints pytest's summary of what ran.
timeout -s INT "${GPU_TEST_SECONDS:-270}" python3 -m pytest -q -p no:cacheprovider -n 6 \
    --ignore=tests/test_dask.py -m "not examples" tests 2>&1 | tail -n 60 | tee "$out/gpu_tests.log"

python3 - <<'PY' 2>&1 | tee "$out/gpu_pickle.log"
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np

from skbnn import LaplaceMLPClassifier, LaplaceMLPRegressor

rng = np.random.RandomState(0)
X = rng.randn(300, 4)
y = np.sin(X[:, 0]) + 0.1 * rng.randn(300)
models = {
    "regressor": LaplaceMLPRegressor(hidden_layer_sizes=(16,), max_iter=100, device="cuda",
                                     random_state=0).fit(X, y),
    "classifier": LaplaceMLPClassifier(hidden_layer_sizes=(16,), max_iter=100, device="cuda",
                                       random_state=0).fit(X, y > 0),
}
path = os.path.join(tempfile.mkdtemp(), "models.pkl")
with open(path, "wb") as f:
    pickle.dump((models, X), f)
expected = {"regressor": models["regressor"].predict_std(X),
            "classifier": models["classifier"].predict_proba(X)}
code = (
    "import pickle, sys, numpy as np, torch; assert not torch.cuda.is_available();"
    f"models, X = pickle.load(open({path!r}, 'rb'));"
    "np.save(sys.argv[1], models['regressor'].predict_std(X));"
    "np.save(sys.argv[2], models['classifier'].predict_proba(X))"
)
files = [path + ".std.npy", path + ".proba.npy"]
env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
subprocess.run([sys.executable, "-c", code, *files], check=True, env=env)
for name, file in zip(expected, files):
    difference = np.abs(np.load(file) - expected[name]).max()
    print(f"{name} fitted on CUDA, loaded without a GPU: max |difference| {difference:.1e}")
    assert difference < 1e-10
PY

timeout 170 python3 - <<'PY' 2>&1 | tee "$out/gpu_timing.log"
import time

import numpy as np

from skbnn import LaplaceMLPRegressor

rng = np.random.RandomState(0)
for n, hidden, structure in [(7_373, (50,), "full"), (200_000, (100, 100), "kron")]:
    X = rng.uniform(-1, 1, size=(n, 20)).astype(np.float32)
    y = np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.randn(n)
    X_test = X[:10_000]
    for inference in ("laplace", "ggn-vi"):
        result = {}
        for device in ("cpu", "cuda"):
            reg = LaplaceMLPRegressor(hidden_layer_sizes=hidden, hessian_structure=structure,
                                      inference=inference, dtype="float32", max_iter=10,
                                      device=device, random_state=0)
            start = time.perf_counter()
            reg.fit(X, y)
            fit = time.perf_counter() - start
            mean, std = reg.predict(X_test, return_std=True)
            result[device] = (fit, time.perf_counter() - start, mean, std)
        agree = np.abs(result["cpu"][3] - result["cuda"][3]).max() / result["cpu"][3].mean()
        print(f"n={n} hidden={hidden} {structure} {inference}: fit cpu {result['cpu'][0]:.1f}s "
              f"cuda {result['cuda'][0]:.1f}s (x{result['cpu'][0] / result['cuda'][0]:.1f}); "
              f"fit+predict cpu {result['cpu'][1]:.1f}s cuda {result['cuda'][1]:.1f}s; "
              f"std relative difference {agree:.2e}", flush=True)
PY

# 4. Large data on CUDA: the default minibatch of 256 against larger ones (time and test LL).
timeout "${GPU_BATCH_SECONDS:-120}" python3 - <<'PY' 2>&1 | tee "$out/gpu_batch.log"
import time

import numpy as np
from scipy.stats import norm

from skbnn import LaplaceMLPRegressor

rng = np.random.RandomState(1)
X = rng.uniform(-1, 1, size=(210_000, 20)).astype(np.float32)
y = np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.randn(len(X))
X_train, y_train, X_test, y_test = X[:200_000], y[:200_000], X[200_000:], y[200_000:]
for batch_size, epochs in [(256, 10), (2048, 10), (2048, 40), (8192, 80)]:
    reg = LaplaceMLPRegressor(hidden_layer_sizes=(100, 100), hessian_structure="kron",
                              dtype="float32", max_iter=epochs, batch_size=batch_size,
                              device="cuda", random_state=0)
    start = time.perf_counter()
    reg.fit(X_train, y_train)
    fit = time.perf_counter() - start
    mean, std = reg.predict(X_test, return_std=True)
    print(f"batch_size={batch_size} epochs={epochs}: fit {fit:.1f}s, test LL "
          f"{norm.logpdf(y_test, mean, std).mean():.3f}, RMSE "
          f"{np.sqrt(np.mean((mean - y_test) ** 2)):.4f}", flush=True)
PY

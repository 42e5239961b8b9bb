#!/usr/bin/env bash
# One prepared call for a lent GPU machine (CI never has one): the GPU tests, then CPU vs CUDA
# fit + predict time of the same estimator on the same data, with predictions compared.
#   usage (on the GPU machine, repository root): bash benchmarks/gpu_check.sh
# The machine's python3 already has torch, numpy, scipy and scikit-learn; skbnn runs from the tree.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_estimators.py 2>&1 | tee "$out/gpu_tests.log"
python3 - <<'PY' 2>&1 | tee "$out/gpu_timing.log"
import time

import numpy as np
import torch

from skbnn import LaplaceMLPRegressor

rng = np.random.RandomState(0)
rows = []
for n, hidden, structure in [(7_373, (50,), "full"), (200_000, (100, 100), "kron")]:
    X = rng.uniform(-1, 1, size=(n, 20)).astype(np.float32)
    y = np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.randn(n)
    X_test = X[:10_000]
    result = {}
    for device in ("cpu", "cuda"):
        reg = LaplaceMLPRegressor(hidden_layer_sizes=hidden, hessian_structure=structure,
                                  dtype="float32", max_iter=10, device=device, random_state=0)
        start = time.perf_counter()
        reg.fit(X, y)
        fit = time.perf_counter() - start
        mean, std = reg.predict(X_test, return_std=True)
        result[device] = (fit, time.perf_counter() - start, mean, std)
    agree = np.abs(result["cpu"][3] - result["cuda"][3]).max() / result["cpu"][3].mean()
    rows.append((n, hidden, structure, result["cpu"][0], result["cuda"][0], agree))
    print(f"n={n} hidden={hidden} {structure}: fit cpu {result['cpu'][0]:.1f}s cuda "
          f"{result['cuda'][0]:.1f}s (x{result['cpu'][0] / result['cuda'][0]:.1f}); "
          f"std relative difference {agree:.2e}", flush=True)
PY

"""Shared test configuration (for tests/ and the doctests in skbnn/).

The estimators train many tiny networks here; one intra-op thread makes them several times faster
than two threads fighting over two cores.
"""

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

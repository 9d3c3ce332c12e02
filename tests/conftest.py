from __future__ import annotations

import os

import pytest
import torch

# Timing-free, deterministic tests on a shared machine: one thread everywhere.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def demo_analysis():
    from hwprune.pruning import analyze
    from hwprune.models import load_model

    return analyze(load_model("demo"))

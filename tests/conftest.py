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


@pytest.fixture(autouse=True, scope="session")
def _work_dir_outside_the_checkout(tmp_path_factory):
    """Commands write the user's tables and runs under the work folder: keep them out of
    the checkout (using hwprune never changes tracked or untracked files there)."""
    old = os.environ.get("HWPRUNE_WORK_DIR")
    os.environ["HWPRUNE_WORK_DIR"] = str(tmp_path_factory.mktemp("hwprune-work"))
    yield
    if old is None:
        os.environ.pop("HWPRUNE_WORK_DIR", None)
    else:
        os.environ["HWPRUNE_WORK_DIR"] = old

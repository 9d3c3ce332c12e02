"""Moved to :mod:`hwprune.latency._estimate` (``from hwprune.latency import AnalyticEstimator``).

Kept only while ``hwprune/cli`` still imports the estimator from here; delete it once the
CLI imports from :mod:`hwprune.latency`. Latency sits above devices, so this resolves
names lazily instead of importing upward at import time.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from hwprune.latency import _estimate

    return getattr(_estimate, name)

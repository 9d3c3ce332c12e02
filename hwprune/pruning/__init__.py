"""Pruning space, plans, applying a plan, the analytic cost of a plan, and the kernel
templates of a model (its kernels with channel counts that follow the plan)."""
from __future__ import annotations

from hwprune.pruning._analysis import Analysis, analyze
from hwprune.pruning._plan import PruningPlan
from hwprune.pruning._space import Group, PruningSpace, UnsafePruning, rebuild_pruned

__all__ = ["Analysis", "analyze", "Group", "PruningPlan", "PruningSpace", "UnsafePruning", "rebuild_pruned"]

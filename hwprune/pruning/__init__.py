"""Pruning space, plans, applying a plan, and the analytic cost of a plan."""
from __future__ import annotations

from hwprune.pruning._plan import PruningPlan
from hwprune.pruning._space import Group, PruningSpace

__all__ = ["Group", "PruningPlan", "PruningSpace"]

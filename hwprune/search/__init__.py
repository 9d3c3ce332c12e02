"""Search: task data, training and scoring of pruned candidates, the search loop.

Implementation lives in underscore modules (``_data``, ``_train``, ...); the public
names are re-exported here.
"""
from __future__ import annotations

from hwprune.search._budget import Budget, check_reachable, parse_latency_budget, parse_memory_budget
from hwprune.search._run import load_pruned, run_search
from hwprune.search._study import AccuracyScorer, PlanSearch, SearchOutcome, TrialRecord

__all__: list[str] = [
    "AccuracyScorer",
    "Budget",
    "PlanSearch",
    "SearchOutcome",
    "TrialRecord",
    "check_reachable",
    "load_pruned",
    "parse_latency_budget",
    "parse_memory_budget",
    "run_search",
]

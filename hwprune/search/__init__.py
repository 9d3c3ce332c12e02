"""Search: budgets, the Optuna study over per-group channel counts, finalists, the run.

``run_search`` is a chain of public steps (:func:`prepare_search` -> :func:`run_study`
-> :func:`choose_winner` -> :func:`measure_winner` -> :func:`write_run`); the task data,
training and the fine-tune recipe live in :mod:`hwprune.task`, the run directory in
:mod:`hwprune.rundir`. Implementation lives in underscore modules; the public names are
re-exported here.
"""
from __future__ import annotations

from hwprune.search._budget import Budget, check_reachable, parse_latency_budget, parse_memory_budget
from hwprune.search._run import load_pruned, run_search
from hwprune.search._scoring import AccuracyScorer, finalist_plans, finetune_finalists, prune_and_recover
from hwprune.search._steps import (SearchConfig, SearchSetup, StudyResult, Winner, WinnerScores,
                                   choose_winner, measure_winner, prepare_search, run_study, write_run)
from hwprune.search._study import (UNIFORM_RATIOS, PlanSearch, SearchOutcome, TrialRecord,
                                   widest_uniform_plan)

__all__: list[str] = [
    "AccuracyScorer",
    "Budget",
    "PlanSearch",
    "SearchConfig",
    "SearchOutcome",
    "SearchSetup",
    "StudyResult",
    "TrialRecord",
    "UNIFORM_RATIOS",
    "Winner",
    "WinnerScores",
    "check_reachable",
    "choose_winner",
    "finalist_plans",
    "finetune_finalists",
    "load_pruned",
    "measure_winner",
    "parse_latency_budget",
    "parse_memory_budget",
    "prepare_search",
    "prune_and_recover",
    "run_search",
    "run_study",
    "widest_uniform_plan",
    "write_run",
]

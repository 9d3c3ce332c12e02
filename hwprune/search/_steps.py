"""``hwprune search`` as a chain of steps, each usable on its own.

::

    config = SearchConfig(model="demo", latency="50%", run_dir="runs/demo")
    setup = prepare_search(config)        # model, task, predictor, budget (checked reachable)
    study = run_study(setup)              # the Optuna study (PlanSearch.run)
    winner = choose_winner(setup, study)  # finalists fine-tuned alike, the best on validation
    scores = measure_winner(setup, winner)  # accuracy, ONNX check, latency on the device
    summary = write_run(setup, study, winner, scores)  # the run directory, summary.json last

:func:`hwprune.search.run_search` is exactly this chain.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from hwprune import __version__
from hwprune.errors import ConfigError, HwpruneError
from hwprune.pruning import PruningPlan
from hwprune.rundir import RunDir, RunSummary, model_file_sha256
from hwprune.search._budget import Budget, check_reachable
from hwprune.search._plot import trials_figure
from hwprune.search._report import model_facts, summary_markdown
from hwprune.search._scoring import AccuracyScorer, finalist_plans, finetune_finalists, prune_and_recover
from hwprune.search._storage import GRACE_PERIOD_S, HEARTBEAT_S
from hwprune.search._study import PlanSearch, SearchOutcome, TrialRecord, plan_from_keep, widest_uniform_plan
from hwprune.task import FinetuneRecipe, TaskData, evaluate, load_task

__all__ = ["SearchConfig", "SearchSetup", "StudyResult", "Winner", "WinnerScores", "build_summary", "choose_winner",
           "measure_winner", "prepare_search", "run_study", "write_run"]

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search is asked to do: the keyword arguments of ``run_search``."""

    model: str
    run_dir: str | os.PathLike
    weights: str | os.PathLike | None = None
    input_shape: str | tuple[int, ...] | None = None
    device: str = "host"
    latency: str | None = None
    memory: str | None = None
    trials: int = 40
    seed: int = 0
    resume: bool = False
    storage_url: str | None = None
    study_name: str | None = None
    pareto: bool = False
    sampler: str | None = None
    finetune_steps: int = 300
    finalists: int = 3
    candidate_finetune_steps: int = 0
    lr: float = 0.01
    data_dir: str | None = None
    task: str | None = None
    tables: str | os.PathLike | None = None
    calibration_images: int = 512
    val_images: int | None = 2000
    measure: bool = True
    progress: bool = True
    rescale: bool = True
    latency_stat: str = "median"
    keep_layers: tuple[str, ...] = ()
    heartbeat_s: int = HEARTBEAT_S
    grace_period_s: int = GRACE_PERIOD_S

    def __post_init__(self) -> None:
        if self.trials <= 0:
            raise ConfigError(f"the number of trials must be positive, got {self.trials}")
        if self.finetune_steps < 0 or self.candidate_finetune_steps < 0:
            raise ConfigError("fine-tuning steps must be zero or positive, got "
                              f"{self.finetune_steps} and {self.candidate_finetune_steps}")

    @property
    def recipe(self) -> FinetuneRecipe:
        """The fine-tune of each finalist and of the winner."""
        return FinetuneRecipe(steps=self.finetune_steps, lr=self.lr, seed=self.seed)

    @property
    def candidate_recipe(self) -> FinetuneRecipe | None:
        """The short fine-tune of each candidate before it is scored (None: no fine-tune)."""
        return self.recipe.with_steps(self.candidate_finetune_steps) if self.candidate_finetune_steps else None


@dataclass
class SearchSetup:
    """What :func:`prepare_search` loaded and checked."""

    config: SearchConfig
    profile: Any
    lm: Any
    analysis: Any
    predictor: Any
    budget: Budget
    dense_ms: float
    floor_ms: float
    data: TaskData
    run: RunDir
    warnings: list[str]
    log: Log = _quiet
    started_s: float = field(default_factory=time.perf_counter)
    lease: Any = None  # the study's leases (hwprune.search._lease); set by run_study

    @property
    def space(self) -> Any:
        return self.analysis.space

    @property
    def dense(self) -> nn.Module:
        return self.lm.model

    @property
    def model_spec(self) -> str:
        return self.lm.spec or self.lm.model_id

    def fits(self, plan: PruningPlan) -> bool:
        return self.budget.fits(self.predictor.predict_ms(plan), self.analysis.cost.cost(plan).memory_bytes)


def _table_warnings(predictor: Any, profile: Any, model_spec: str, floor_ms: float) -> list[str]:
    from hwprune.latency._store import table_warning

    device = profile.name
    warnings = [w for w in [table_warning(predictor.table.kind, profile, model_spec, predictor.table.meta.estimator)] if w]
    if floor_ms <= 0:
        warnings.append(f"the latency table predicts {floor_ms:.4g} ms for the smallest plan: its "
                        f"calibration offset is off, so small plans look faster than they are; "
                        f"re-profile with: hwprune profile --device {device} "
                        f"--model {model_spec} --rebuild")
    return warnings


def _loose_budget(budget: Budget, dense_ms: float, dense_bytes: int) -> list[str]:
    """A budget the dense model already meets constrains nothing: every plan is feasible."""
    out = []
    if budget.latency_ms is not None and budget.latency_ms >= dense_ms:
        out.append(f"the latency budget {budget.latency_ms:.4g} ms is {budget.latency_ms / dense_ms:.1f}x the dense "
                   f"model's predicted {dense_ms:.4g} ms: every plan fits it, so it prunes nothing for speed")
    if budget.memory_bytes is not None and budget.memory_bytes >= dense_bytes:
        out.append(f"the memory budget is {budget.memory_bytes / dense_bytes:.1f}x the dense model's "
                   f"{dense_bytes / 1e6:.2f} MB: every plan fits it")
    return out


def prepare_search(config: SearchConfig, log: Log | None = None) -> SearchSetup:
    """Load the model, its latency predictor and the task; parse the budget and stop early
    (:class:`~hwprune.errors.BudgetError`) when the pruning space cannot reach it, or when
    the run directory holds another search and ``resume`` is off. Creates nothing on disk.
    """
    from hwprune.devices import load_profile
    from hwprune.latency import open_predictor
    from hwprune.models import load_model
    from hwprune.pruning import analyze

    say, started = log or _quiet, time.perf_counter()
    profile = load_profile(config.device)
    lm = load_model(config.model, config.weights, config.input_shape)
    lm.keep_layers = config.keep_layers
    analysis = analyze(lm)
    # workers of a shared study must agree on the budget and on every plan's feasibility:
    # each would measure its own drift, so there the drift is reported, not applied
    shared = bool(config.storage_url)
    # a relative latency budget (50%) scales with the drift exactly as every prediction does,
    # so the same plans fit either way: the search keeps the table's values, and the same
    # command resumes the same study whatever the machine's speed today
    relative = config.latency is None or str(config.latency).strip().endswith("%")
    predictor = open_predictor(analysis, profile.name, config.tables, drift=True,
                               rescale=config.rescale and not shared and not relative, stat=config.latency_stat)
    space, cost = analysis.space, analysis.cost
    dense_ms = float(predictor.predict_ms(space.dense_plan()))
    budget = Budget.parse(config.latency, config.memory, dense_ms, cost.cost(space.dense_plan()).memory_bytes)
    floor_plan = space.smallest_plan()
    floor_ms = float(predictor.predict_ms(floor_plan))
    check_reachable(budget, floor_ms, cost.cost(floor_plan).memory_bytes, lm.model_id, profile.name)
    warnings = _table_warnings(predictor, profile, lm.spec or lm.model_id, floor_ms)
    if predictor.drift is not None and predictor.drift.significant:
        warnings.append(predictor.drift.describe(profile.name) + (
            f"; predictions scaled by {predictor.drift.factors()}" if predictor.rescale != 1.0 else
            "; not applied (workers of a shared study use the table's values)" if shared else
            "; not applied (a relative budget scales with it, so the same plans fit)" if relative else ""))
    warnings += _loose_budget(budget, dense_ms, cost.cost(space.dense_plan()).memory_bytes)
    run = RunDir.create(config.run_dir, resume=config.resume, shared_study=bool(config.storage_url))
    data = load_task(config.task, config.data_dir, lm.input_shape, lm.model_id)
    lm.model.eval()
    say(f"budget: {budget.describe()}; dense predicted {dense_ms:.4g} ms, "
        f"fastest reachable {floor_ms:.4g} ms ({predictor.table.kind} table)")
    for w in warnings:  # said at the start, not only in the summary
        say(f"warning: {w}")
    return SearchSetup(config, profile, lm, analysis, predictor, budget, dense_ms, floor_ms, data,
                       run, warnings, say, started)


@dataclass
class StudyResult:
    """What :func:`run_study` found: the search, its outcome and every trial."""

    search: PlanSearch
    outcome: SearchOutcome
    records: list[TrialRecord]
    started: str | None = None

    @property
    def best(self) -> TrialRecord:
        return self.outcome.best


def run_study(setup: SearchSetup, on_open: Callable[[PlanSearch], None] | None = None) -> StudyResult:
    """Open (or resume) the study, claim the run directory ("running") and run until the
    study holds ``config.trials`` evaluated candidates. Candidates are scored by
    :class:`AccuracyScorer` with ``config.candidate_recipe``."""
    c, say = setup.config, setup.log
    scorer = AccuracyScorer(setup.space, setup.data, calibration_images=c.calibration_images,
                            val_images=c.val_images, recipe=c.candidate_recipe,
                            teacher=setup.dense if c.candidate_recipe else None)
    search = PlanSearch(setup.analysis, setup.predictor, setup.budget, scorer, device=setup.profile.name,
                        seed=c.seed, sampler=c.sampler, pareto=c.pareto, run_dir=setup.run.path,
                        storage_url=c.storage_url, study_name=c.study_name, resume=c.resume,
                        progress=c.progress, heartbeat_s=c.heartbeat_s, grace_period_s=c.grace_period_s)
    setup.lease = search.lease
    if on_open is not None:
        on_open(search)
    # The study opened and matches this run: from here on the directory is not
    # "finished" until the final summary says so (an earlier summary is superseded).
    # A shared study's directory belongs to whichever worker writes the winner.
    started = None if search.storage else setup.run.mark_running().started
    if search.existed:
        say(f"resuming study '{search.study_name}' with {search.evaluated_count()} evaluated candidates")
    outcome = search.run(c.trials)
    best = outcome.best
    if best is None:  # the uniform seeds fit, so only failures get here
        raise HwpruneError("the search scored no candidate within the budget",
                           "see the error column of trials.csv")
    say(f"search: {outcome.evaluated} evaluated, {outcome.infeasible} over budget; best trial "
        f"{best.number}: val {best.val_accuracy:.4f} at {best.predicted_ms:.4g} ms predicted "
        f"({outcome.wall_s:.0f} s)")
    return StudyResult(search, outcome, search.records(), started)


@dataclass
class Winner:
    """The chosen plan (with its provenance in ``plan.meta``) and its fine-tuned model."""

    plan: PruningPlan
    model: nn.Module
    predicted_ms: float
    chosen: TrialRecord | None
    finalists: list[dict[str, Any]]
    finetune_wall_s: float = 0.0
    finetune_loss: float | None = None


def _finalists(setup: SearchSetup, study: StudyResult) -> tuple[dict[str, int], nn.Module, list[dict]]:
    c, space = setup.config, setup.space
    cands = finalist_plans(space, study.records, c.finalists, widest_uniform_plan(space, setup.fits))
    setup.log(f"fine-tuning {len(cands)} finalists {c.finetune_steps} steps each with the dense model "
              f"as teacher; the best on validation wins")
    i, model, rows = finetune_finalists(space, cands, setup.data, setup.dense, recipe=c.recipe,
                                        calibration_images=c.calibration_images,
                                        progress=c.progress, say=setup.log)
    for j, row in enumerate(rows):
        row["chosen"] = j == i
        row["predicted_ms"] = float(setup.predictor.predict_ms(cands[j][1]))
    return dict(space.full_keep(cands[i][1])), model, rows


def choose_winner(setup: SearchSetup, study: StudyResult) -> Winner:
    """The winner: with ``config.finalists > 1`` the best on validation of the finalists
    (the top-scored candidates and the widest uniform plan within budget, each pruned,
    recalibrated and distilled with ``config.recipe``); otherwise the top-scored
    candidate, distilled with the same recipe."""
    c, space = setup.config, setup.space
    keep, model, rows = study.best.keep, None, []
    if c.finalists > 1 and c.finetune_steps > 0:
        keep, model, rows = _finalists(setup, study)
    bare = plan_from_keep(space, keep)
    chosen = next((r for r in study.records
                   if r.scored and plan_from_keep(space, r.keep).keep == bare.keep), None)
    predicted_ms = float(setup.predictor.predict_ms(bare))
    plan = plan_from_keep(space, keep, created_by="hwprune search", device=setup.profile.name,
                          budget=setup.budget.to_dict(), predicted_ms=predicted_ms,
                          memory_bytes=setup.analysis.cost.cost(bare).memory_bytes,
                          trial=chosen.number if chosen else None,
                          search_val_accuracy=chosen.val_accuracy if chosen else None, seed=c.seed)
    if rows:
        return Winner(plan, model, predicted_ms, chosen, rows,
                      sum(r["finetune_s"] for r in rows), next(r["final_loss"] for r in rows if r["chosen"]))
    if c.finetune_steps > 0:
        setup.log(f"fine-tuning the winner {c.finetune_steps} steps with the dense model as teacher")
    model, ft = prune_and_recover(space, plan, setup.data, calibration_images=c.calibration_images,
                                  teacher=setup.dense, recipe=c.recipe, progress=c.progress)
    return Winner(plan, model, predicted_ms, chosen, [], ft.wall_s if ft else 0.0,
                  ft.final_loss if ft else None)


@dataclass
class WinnerScores:
    """Accuracy and end-to-end latency of the dense model and the winner."""

    accuracy: dict[str, dict[str, float | None]]  # "dense"/"pruned" -> {"val", "test"}
    onnx: bytes
    onnx_max_rel_diff: float
    measured: dict[str, dict[str, Any] | None]      # "dense"/"pruned" -> runtime measurement
    device_wait_s: float = 0.0                       # waited for the device lease


def measure_winner(setup: SearchSetup, winner: Winner) -> WinnerScores:
    """Validation and test accuracy of the dense model and the winner; the winner's ONNX
    export, checked against torch; and, when ``config.measure`` and the device is this
    machine, both models timed end to end through the device's runtime."""
    from hwprune.onnx_export import check_onnx, to_onnx_bytes

    data, shape = setup.data, tuple(setup.lm.input_shape)
    accuracy = {name: {"val": evaluate(m, data.val),
                       "test": evaluate(m, data.test) if data.test is not None else None}
                for name, m in (("pruned", winner.model), ("dense", setup.dense))}
    onnx = to_onnx_bytes(winner.model, shape)
    onnx_diff = check_onnx(winner.model, onnx, shape)
    measured: dict[str, dict[str, Any] | None] = {"dense": None, "pruned": None}
    wait_s = 0.0
    if setup.config.measure and setup.profile.measurable_here:
        from hwprune.search._lease import LocalLease, device_lease_name

        runtime = setup.profile.local_runtime()
        dense_onnx = to_onnx_bytes(setup.dense, shape)
        # one measurement at a time on a device, whichever worker of the study asks
        lease = setup.lease or LocalLease()
        with lease.hold(device_lease_name(setup.profile.name, local=True), ttl_s=60) as held:
            wait_s = held.wait_s
            setup.log(f"measuring dense and pruned latency with {runtime.name}"
                      + (f" (waited {wait_s:.1f} s for the device)" if wait_s >= 0.1 else ""))
            dense_m, pruned_m = runtime.bench([dense_onnx, onnx], min_time_s=1.0, readings=3)
        measured = {"dense": dense_m, "pruned": pruned_m}
    return WinnerScores(accuracy, onnx, onnx_diff, measured, wait_s)


def _search_record(setup: SearchSetup, study: StudyResult, winner: Winner) -> dict[str, Any]:
    c, out, search = setup.config, study.outcome, study.search
    scored = [r for r in study.records if r.evaluated and r.duration_s is not None]
    front = [{"trial": r.number, "predicted_ms": r.predicted_ms, "val_accuracy": r.val_accuracy}
             for r in out.front]
    return {"trials": c.trials, "evaluated": out.evaluated, "proposed_this_run": out.proposed,
            "proposed_total": len(study.records), "infeasible": out.infeasible,
            "sampler": search.sampler_name, "seed": c.seed, "pareto": c.pareto,
            "best_trial": winner.chosen.number if winner.chosen else None,
            "top_scored_trial": study.best.number, "finalists": winner.finalists,
            "stop_reason": out.stop_reason, "wall_s": out.wall_s,
            "mean_candidate_s": sum(r.duration_s for r in scored) / len(scored) if scored else None,
            "candidate_finetune_steps": c.candidate_finetune_steps,
            "calibration_images": c.calibration_images, "study_name": search.study_name,
            "storage": search.storage_url or str(setup.run.file(RunDir.JOURNAL)),
            "workers": len(search.study.user_attrs.get("hwprune_workers", [])) or 1,
            "pareto_front": front if c.pareto else None}


def build_summary(setup: SearchSetup, study: StudyResult, winner: Winner, scores: WinnerScores,
                  files: list[str]) -> RunSummary:
    """The run's :class:`~hwprune.rundir.RunSummary` (status still "running")."""
    c, lm, data, cost = setup.config, setup.lm, setup.data, setup.analysis.cost
    acc, measured = scores.accuracy, scores.measured
    space = setup.space
    return RunSummary(
        hwprune_version=__version__, started=study.started, device=setup.profile.name,
        model={"spec": setup.model_spec, "model_id": lm.model_id,
               "input_shape": list(lm.input_shape), "weights": lm.weights,
               **({"sha256": digest} if (digest := model_file_sha256(setup.model_spec)) else {})},
        task={"name": data.name, **{k: v for k, v in data.meta.items() if isinstance(v, (str, int, float))}},
        budget={**setup.budget.to_dict(), "latency_stat": c.latency_stat},
        budget_text=setup.budget.describe() + (" (p90 of single runs)" if c.latency_stat == "p90" else ""),
        dense=model_facts(cost.cost(space.dense_plan()), setup.dense_ms, measured["dense"],
                          acc["dense"]["val"], acc["dense"]["test"]),
        pruned=model_facts(cost.cost(winner.plan), winner.predicted_ms, measured["pruned"],
                           acc["pruned"]["val"], acc["pruned"]["test"]),
        predicted_latency_ms=winner.predicted_ms,
        predicted_table_ms=setup.predictor.stat_factor * setup.predictor.table_ms(winner.plan),
        measured_latency_ms=measured["pruned"][f"{c.latency_stat}_ms"] if measured["pruned"] else None,
        accuracy={**acc["pruned"], "search_val": winner.chosen.val_accuracy if winner.chosen else None,
                  "search_val_images": c.val_images},
        fastest_reachable_ms=setup.floor_ms, table_kind=setup.predictor.table.kind,
        calibration_scope=setup.predictor.calibration_scope,
        plan_keep=dict(winner.plan.keep), plan_dense=dict(winner.plan.dense),
        search=_search_record(setup, study, winner),
        finetune={**c.recipe.to_dict(), "finalists": len(winner.finalists) or 1, "teacher": "dense",
                  "wall_s": winner.finetune_wall_s, "final_loss": winner.finetune_loss},
        onnx_max_rel_diff=scores.onnx_max_rel_diff,
        host={"machine": platform.node(), "torch_threads": torch.get_num_threads(),
              "device_lease_wait_s": scores.device_wait_s},
        files=files, warnings=list(setup.warnings), notes=list(study.outcome.notes),
        wall_s=time.perf_counter() - setup.started_s)


def _winner_point(winner: Winner, scores: WinnerScores) -> dict[str, Any]:
    """The winner as shipped: fine-tuned validation accuracy, predicted and measured latency."""
    measured = scores.measured.get("pruned")
    return {"val_accuracy": scores.accuracy["pruned"]["val"], "predicted_ms": winner.predicted_ms,
            "measured_ms": measured["median_ms"] if measured else None}


def write_run(setup: SearchSetup, study: StudyResult, winner: Winner, scores: WinnerScores) -> RunSummary:
    """Write the run directory: plan, model, ONNX, trials (and the Pareto front), the
    trials figure, then ``summary.md`` and, last, ``summary.json`` with status "finished"."""
    run, c, out = setup.run, setup.config, study.outcome
    run.write_plan(winner.plan)
    run.write_model(winner.model)
    run.write_onnx(scores.onnx)
    run.write_rows(RunDir.TRIALS, [r.row() for r in study.records])
    files = [RunDir.PLAN, RunDir.MODEL, RunDir.ONNX, RunDir.TRIALS, RunDir.PLOT, RunDir.REPORT]
    if c.pareto:
        run.write_rows(RunDir.PARETO, [r.row() for r in out.front])
        files.append(RunDir.PARETO)
    title = f"{setup.lm.model_id} on {setup.profile.name}: {setup.budget.describe()}"
    run.write_figure(RunDir.PLOT, trials_figure(
        study.records, setup.budget, chosen=winner.chosen.number if winner.chosen else None,
        dense_ms=setup.dense_ms, front=out.front if c.pareto else (), title=title,
        finalists=winner.finalists, winner=_winner_point(winner, scores)))
    summary = build_summary(setup, study, winner, scores, files)
    return run.finish(summary, summary_markdown(summary))

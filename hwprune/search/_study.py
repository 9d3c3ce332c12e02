"""The search loop: an Optuna study over per-group channel counts under a budget.

Each coupled channel group of the pruning space is one integer Optuna variable, named by
the group, holding an *index* into the group's channel counts (ordered, so TPE can exploit
"a bit wider / a bit narrower"). Under a latency-only budget the counts that a wider count
matches in predicted latency are left out (:func:`efficient_choices`: the runtime pads
channels to its SIMD block, so they would cost accuracy and buy no speed). A trial:

1. turns its parameters into a :class:`PruningPlan`;
2. predicts the plan's latency (latency table) and memory (analytic cost) - about a
   millisecond, no model is built;
3. records both as user attributes and as Optuna constraints
   (``trial.set_constraint``, Optuna 5; feasible means every value ``<= 0``);
4. **only if the plan fits the budget** applies it, recalibrates BatchNorm on a few
   hundred training images, optionally fine-tunes briefly, and scores validation
   accuracy. An infeasible trial returns a sentinel (:data:`INFEASIBLE_SCORE`) without
   touching the model, and is never chosen: the winner is picked from trials whose
   ``evaluated`` attribute is true and whose prediction fits the budget.

``trials`` counts *evaluated* candidates (the expensive part); infeasible proposals are
free and are capped separately (``max_proposals``). A plan already scored in the study
reuses that score (``duplicate_of``) instead of being evaluated again.

Seeding: before sampling, the widest uniform-width plan that fits the budget and the next
narrower uniform plans are enqueued, so a feasible, sensible answer exists after the
first evaluation.

Storage and resuming
--------------------
By default the study lives in ``RUN_DIR/study.journal`` (Optuna's
``JournalStorage(JournalFileBackend(...))``). ``resume=True`` reopens it: finished trials
are kept, trials left ``RUNNING`` by a killed process are marked failed and their
parameters re-queued, and the search runs until the study holds ``trials`` evaluated
candidates.

Workers: sharing one study
--------------------------
``storage_url`` (see :mod:`hwprune.search._storage`: a PostgreSQL/SQLite/MySQL URL or a
``.journal`` file) makes the study shared: every process started with the same command
joins it, and ``trials`` is the budget **of the study**, not of each process:

* before a candidate is evaluated its worker *claims a slot* under the study's claims
  lease (:mod:`hwprune.search._lease`): claimed candidates still running plus evaluated
  ones never exceed ``trials``; when every slot is taken by a running candidate the
  worker waits for one to finish or go stale, so the study ends with exactly ``trials``
  evaluated candidates;
* under the same lease a plan another worker has RUNNING or COMPLETE is recognised and
  skipped (``duplicate_of``) without counting;
* each worker registers in the study and gets an index; worker 0 samples with ``seed``,
  the others with a seed derived from the study name and their index;
* heartbeats: a trial whose worker died (SIGKILL) is failed after ``grace_period_s``
  by the next worker that looks, its parameters re-queued
  (``RetryHeartbeatStaleTrialCallback``), and its reason shown in ``trials.csv``.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hwprune import __version__
from hwprune.errors import ConfigError, HwpruneError
from hwprune.pruning import PruningPlan, PruningSpace
from hwprune.rundir import RunDir
from hwprune.search._budget import Budget
from hwprune.search._lease import Lease, LocalLease, open_lease, worker_id
from hwprune.search._storage import GRACE_PERIOD_S, HEARTBEAT_S, StorageSpec, open_storage, resolve_storage

__all__ = ["INFEASIBLE_SCORE", "SAMPLERS", "PlanCodec", "PlanSearch",
           "SearchOutcome", "TrialRecord", "open_study", "plan_from_keep", "uniform_seed_plans",
           "widest_uniform_plan"]

INFEASIBLE_SCORE = -1.0
"""Objective value of a trial over budget: below any accuracy, and never selected."""

SAMPLERS = ("tpe", "random", "nsga2")
UNIFORM_RATIOS = tuple(round(0.05 * i, 2) for i in range(19))  # 0.0 .. 0.9
_MAX_CONSECUTIVE_FAILURES = 3
_WAIT_POLL_S = 0.5

Scorer = Callable[[PruningPlan], float]


class _CandidateError(Exception):
    """Scoring one candidate failed: the trial is recorded as failed, the search goes on."""


# --------------------------------------------------------------------------- plans

class PlanCodec:
    """Maps a plan to Optuna parameters (one int index per group) and back.

    ``choices`` (default: every group's choices) are the channel counts the search may
    use per group; see :func:`efficient_choices`.
    """

    def __init__(self, space: PruningSpace, choices: dict[str, list[int]] | None = None) -> None:
        self.space = space
        self.groups = list(space.groups)
        self.choices = {g.name: list((choices or {}).get(g.name) or g.choices) for g in self.groups}

    def suggest(self, trial: optuna.Trial) -> PruningPlan:
        keep = {g.name: self.choices[g.name][trial.suggest_int(g.name, 0, len(self.choices[g.name]) - 1)]
                for g in self.groups}
        return plan_from_keep(self.space, keep)

    def params(self, plan: PruningPlan) -> dict[str, int]:
        full = self.space.full_keep(plan)
        out = {}
        for g in self.groups:
            k, options = full[g.name], self.choices[g.name]
            if k not in options:
                raise ConfigError(f"group '{g.name}' keeps {k} channels, not one of its choices "
                                  f"{', '.join(map(str, options))}")
            out[g.name] = options.index(k)
        return out

    def snap(self, plan: PruningPlan) -> PruningPlan:
        """``plan`` with each group raised to the nearest allowed count (at least as wide)."""
        full = self.space.full_keep(plan)
        keep = {g: next((c for c in self.choices[g] if c >= k), self.choices[g][-1]) for g, k in full.items()}
        return plan_from_keep(self.space, keep, **plan.meta)

    def value(self, group: str, index: Any) -> int:
        return self.choices[group][int(index)]

    def plan(self, params: dict[str, Any]) -> PruningPlan:
        keep = {g.name: self.value(g.name, params[g.name]) if g.name in params else g.size
                for g in self.groups}
        return plan_from_keep(self.space, keep)

    def signature(self) -> dict[str, list[int]]:
        return {g.name: list(self.choices[g.name]) for g in self.groups}


def efficient_choices(space: PruningSpace, predict_ms: Callable[[PruningPlan], float]) -> dict[str, list[int]]:
    """Per group, the channel counts that buy latency: a count is dropped when a wider one
    is predicted no slower (the runtime pads channels to its SIMD block, so 56 channels
    cost what 64 do, and the wider layer is the more accurate one).

    Judged with every other group dense; the widest count always stays. Only for
    latency-only budgets: a narrower layer always saves memory.
    """
    out: dict[str, list[int]] = {}
    dense = space.full_keep(space.dense_plan())
    for g in space.groups:
        kept: list[int] = []
        best = math.inf  # lowest latency among the wider kept counts
        for c in sorted(g.choices, reverse=True):
            ms = predict_ms(plan_from_keep(space, {**dense, g.name: c}))
            if not kept or ms < best:
                kept.append(c)
                best = min(best, ms)
        out[g.name] = sorted(kept)
    return out


def plan_from_keep(space: PruningSpace, keep: dict[str, int], **meta: Any) -> PruningPlan:
    """A plan of ``space``'s model keeping ``keep[group]`` channels (others stay dense)."""
    full = {g.name: int(keep.get(g.name, g.size)) for g in space.groups}
    return PruningPlan(space.model_id, tuple(space.lm.input_shape), full,
                       {g.name: g.size for g in space.groups}, meta=dict(meta))


def widest_uniform_plan(space: PruningSpace, fits: Callable[[PruningPlan], bool],
                        ratios: Sequence[float] = UNIFORM_RATIOS) -> PruningPlan | None:
    """The least-pruned uniform-width plan for which ``fits(plan)`` holds, or None.

    This is the *uniform baseline*: every group keeps the same share of its channels.
    """
    for r in sorted(ratios):
        plan = space.uniform_plan(r)
        if fits(plan):
            return plan
    return None


def uniform_seed_plans(space: PruningSpace, fits: Callable[[PruningPlan], bool],
                       count: int = 3) -> list[PruningPlan]:
    """The widest uniform plan that fits plus the next narrower fitting ones (``count``
    in all, distinct). Falls back to the smallest plan when no uniform plan fits."""
    out: list[PruningPlan] = []
    seen: set[tuple[int, ...]] = set()
    for r in UNIFORM_RATIOS:
        plan = space.uniform_plan(r)
        key = tuple(space.full_keep(plan).values())
        if key in seen or not fits(plan):
            continue
        seen.add(key)
        out.append(plan)
        if len(out) >= count:
            break
    if not out:
        smallest = space.smallest_plan()
        if fits(smallest):
            smallest.meta["uniform_ratio"] = "floor"
            out.append(smallest)
    return out


# --------------------------------------------------------------------------- storage

def open_study(*, study_name: str, directions: Sequence[str], sampler: optuna.samplers.BaseSampler,
               run_dir: str | Path | None = None, storage_url: str | None = None,
               resume: bool = False, heartbeat_s: int = HEARTBEAT_S,
               grace_period_s: int = GRACE_PERIOD_S) -> tuple[optuna.Study, bool]:
    """Create or reopen the study; returns ``(study, existed)``.

    With ``storage_url`` (an RDB URL, a ``.journal`` path or ``env:NAME``; see
    :func:`~hwprune.search._storage.resolve_storage`) the study is shared: it is loaded
    when it exists, whatever ``resume`` says, and trials send heartbeats. Otherwise it is
    ``run_dir/study.journal``, which must not exist unless ``resume`` is true.
    """
    spec = resolve_storage(storage_url)
    if spec is not None:
        storage: Any = open_storage(spec, heartbeat_s=heartbeat_s, grace_period_s=grace_period_s)
        try:
            existed = study_name in [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
        except Exception as exc:  # the server went away between connect and query
            raise ConfigError(f"cannot read studies from '{spec.masked}': "
                              f"{spec.scrub(str(exc)).splitlines()[0]}") from None
    else:
        if run_dir is None:
            raise ConfigError("a search needs a run directory or a storage URL")
        run = RunDir.create(run_dir, resume=resume)  # refuses a study unless resuming
        run.path.mkdir(parents=True, exist_ok=True)
        journal = run.file(RunDir.JOURNAL)
        existed = run.has_study
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(journal)))
        if existed and study_name not in [s.study_name for s in
                                          optuna.study.get_all_study_summaries(storage)]:
            raise ConfigError(f"'{journal}' holds another search than '{study_name}'",
                              "resume with the same model, device and budgets, or use another --run-dir")
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=study_name,
                                directions=list(directions), load_if_exists=True)
    return study, existed


# --------------------------------------------------------------------------- records

@dataclass
class TrialRecord:
    """One trial as the search reports it."""

    number: int
    state: str
    keep: dict[str, int]
    predicted_ms: float | None
    memory_bytes: int | None
    feasible: bool
    evaluated: bool
    val_accuracy: float | None
    source: str
    duration_s: float | None
    duplicate_of: int | None = None
    error: str | None = None
    worker: str | None = None

    @classmethod
    def from_trial(cls, t: FrozenTrial, codec: PlanCodec) -> "TrialRecord":
        ua = t.user_attrs
        keep = {}
        for g in codec.groups:
            if g.name in t.params:
                keep[g.name] = codec.value(g.name, t.params[g.name])
        dur = t.duration.total_seconds() if t.duration is not None else None
        return cls(t.number, t.state.name, keep, ua.get("predicted_ms"), ua.get("memory_bytes"),
                   bool(ua.get("feasible", False)), bool(ua.get("evaluated", False)),
                   ua.get("val_accuracy"), str(ua.get("source", "sampler")), dur,
                   ua.get("duplicate_of"), ua.get("error") or ua.get("skipped"), ua.get("worker"))

    @property
    def scored(self) -> bool:
        """Has a real validation accuracy and fits the budget (eligible as the answer)."""
        return self.state == "COMPLETE" and self.feasible and self.val_accuracy is not None

    def row(self) -> dict[str, Any]:
        d = {"number": self.number, "state": self.state, "source": self.source}
        d.update({f"keep:{g}": k for g, k in self.keep.items()})
        d.update({"predicted_ms": self.predicted_ms, "memory_bytes": self.memory_bytes,
                  "feasible": self.feasible, "evaluated": self.evaluated,
                  "val_accuracy": self.val_accuracy, "duplicate_of": self.duplicate_of,
                  "duration_s": self.duration_s, "error": self.error, "worker": self.worker})
        return d


@dataclass
class SearchOutcome:
    """What :meth:`PlanSearch.run` found. ``best`` fits the budget by prediction."""

    best: TrialRecord | None
    front: list[TrialRecord]
    records: list[TrialRecord]
    evaluated: int
    proposed: int
    stop_reason: str
    wall_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def infeasible(self) -> int:
        return sum(1 for r in self.records if r.state == "COMPLETE" and not r.feasible)


def _pick_best(records: Iterable[TrialRecord]) -> TrialRecord | None:
    scored = [r for r in records if r.scored]
    if not scored:
        return None
    # highest accuracy; ties go to the faster plan, then the earlier trial
    return min(scored, key=lambda r: (-r.val_accuracy, r.predicted_ms, r.number))


def _pareto_front(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    pts = sorted((r for r in records if r.scored), key=lambda r: (r.predicted_ms, -r.val_accuracy))
    front: list[TrialRecord] = []
    best_acc = -math.inf
    for r in pts:  # sweeping by latency: keep each point more accurate than all faster ones
        if r.val_accuracy > best_acc:
            front.append(r)
            best_acc = r.val_accuracy
    return front


# --------------------------------------------------------------------------- the search

class PlanSearch:
    """An Optuna search for the most accurate plan within a budget.

    >>> # search = PlanSearch(analysis, predictor, Budget(latency_ms=0.25), scorer,
    >>> #                     run_dir="runs/demo", seed=0)
    >>> # outcome = search.run(trials=40)
    >>> # outcome.best.keep, outcome.best.val_accuracy

    ``scorer(plan) -> accuracy`` is called only for plans that fit the budget.
    ``sampler`` is "tpe" (default; "nsga2" in ``pareto`` mode) or "random".
    ``enqueue_uniform`` seeds the study with the uniform plans that fit (raised onto the
    counts the search uses). Under a latency-only budget, channel counts that a wider
    count matches in predicted latency are left out (:func:`efficient_choices`).
    """

    def __init__(self, analysis: Any, predictor: Any, budget: Budget, scorer: Scorer, *,
                 device: str = "host", seed: int = 0, sampler: str | None = None,
                 pareto: bool = False, run_dir: str | Path | None = None,
                 storage_url: str | None = None, study_name: str | None = None,
                 resume: bool = False, enqueue_uniform: bool = True,
                 progress: bool = True, heartbeat_s: int = HEARTBEAT_S,
                 grace_period_s: int = GRACE_PERIOD_S, register: bool = True) -> None:
        self.analysis = analysis
        self.space: PruningSpace = analysis.space
        self.predictor = predictor
        self.budget = budget
        self.scorer = scorer
        self.device = device
        self.seed = seed
        self.pareto = pareto
        self.sampler_name = sampler or ("nsga2" if pareto else "tpe")
        if self.sampler_name not in SAMPLERS:
            raise ConfigError(f"unknown sampler '{self.sampler_name}'; known: {', '.join(SAMPLERS)}")
        if not pareto and budget.latency_ms is None and budget.memory_bytes is None:
            raise ConfigError("a search needs a latency or memory budget",
                              "pass --latency (e.g. 50%) and/or --memory (e.g. 2MB), or use --pareto")
        self.progress = progress
        self._cost_cache: dict[tuple[int, ...], tuple[float, int]] = {}
        # latency-only budgets: counts a wider count matches in latency are left out
        self.codec = PlanCodec(self.space, efficient_choices(self.space, lambda p: self.predict(p)[0])
                               if budget.memory_bytes is None and not pareto else None)
        self.enqueue_uniform = enqueue_uniform
        self.study_name = study_name or self.default_study_name()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.storage: StorageSpec | None = resolve_storage(storage_url)
        self.storage_url = self.storage.masked if self.storage else None  # never the password
        self.resume = resume
        self.grace_period_s = grace_period_s
        with _quiet_optuna():
            self.study, self.existed = open_study(
                study_name=self.study_name,
                directions=["maximize", "minimize"] if pareto else ["maximize"],
                sampler=self._make_sampler(self.seed), run_dir=run_dir,
                storage_url=self.storage.url if self.storage else None, resume=resume,
                heartbeat_s=heartbeat_s, grace_period_s=grace_period_s)
        self.notes: list[str] = []
        self._check_or_record_identity()
        self._scored: dict[tuple[int, ...], tuple[int, float]] = {}
        self._keys: dict[int, tuple[int, ...]] = {}
        self._target = 0
        self.lease_wait_s = 0.0  # waited for the claims lease
        self.worker = worker_id()
        self.lease: Lease = open_lease(self.storage) if self.storage else LocalLease()
        self.worker_index, self.worker_seed = self._register_worker() if self.storage and register \
            else (0, seed)

    # ---- setup -------------------------------------------------------------------------
    def default_study_name(self) -> str:
        b = self.budget
        lat = f"{b.latency_ms:.6g}ms" if b.latency_ms is not None else "any"
        mem = f"{b.memory_bytes}B" if b.memory_bytes is not None else "any"
        mode = "pareto" if self.pareto else "best"
        if getattr(self.predictor, "stat", "median") != "median":
            lat += f"@{self.predictor.stat}"
        return (f"hwprune:{self.analysis.model_key}:{self.device}:latency={lat}:memory={mem}:"
                f"{mode}:{self.sampler_name}:seed={self.seed}")

    def _make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler_name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
        # multivariate: group widths interact (a narrow stem starves a wide stage); the
        # joint density models that, the independent one does not.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)

    def _lock_name(self, what: str) -> str:
        return f"study:{self.study_name}:{what}"

    def _register_worker(self) -> tuple[int, int]:
        """This worker's index in the shared study and its sampler seed: worker 0 uses
        ``seed``, later ones a seed derived from the study name and their index, so
        workers started with the same command propose different plans."""
        with self.lease.hold(self._lock_name("workers"), ttl_s=15) as held:
            self.lease_wait_s += held.wait_s
            workers = list(self.study.user_attrs.get("hwprune_workers", []))
            index = len(workers)
            self.study.set_user_attr("hwprune_workers", workers + [self.worker])
        seed = self.seed
        if index:
            digest = hashlib.sha256(f"{self.study_name}:{self.seed}:{index}".encode()).digest()
            seed = int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
        self.study.sampler = self._make_sampler(seed)
        return index, seed

    def _identity(self) -> dict[str, Any]:
        return {"model_key": self.analysis.model_key, "device": self.device,
                "budget": self.budget.to_dict(), "pareto": self.pareto,
                "sampler": self.sampler_name, "seed": self.seed,
                "groups": self.codec.signature(), "latency_stat": getattr(self.predictor, "stat", "median")}

    def _check_or_record_identity(self) -> None:
        mine = self._identity()
        stored = self.study.user_attrs.get("hwprune")
        if stored is None:
            self.study.set_user_attr("hwprune", mine)
            self.study.set_user_attr("hwprune_version", __version__)
            return
        defaults = {"latency_stat": "median"}  # studies stored before the key existed
        diffs = [k for k in mine if k != "budget" and stored.get(k, defaults.get(k)) != mine[k]]
        sb, mb = stored.get("budget", {}), mine["budget"]
        for key in ("latency_ms", "memory_bytes"):
            a, b = sb.get(key), mb.get(key)
            if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=1e-9)):
                diffs.append(f"budget.{key}")
        if diffs:
            raise ConfigError(f"the stored study '{self.study_name}' was made with a different "
                              f"{', '.join(diffs)}",
                              "resume with the same model, device, budgets, seed and mode, "
                              "or start a new run directory")

    def _requeue_orphans(self) -> int:
        """Trials a killed process left RUNNING: fail them and queue their parameters again.

        Only for the run directory's journal: there we own the study. A shared RDB study
        uses heartbeats instead, since its RUNNING trials may belong to live workers.
        """
        if self.storage_url:
            return 0
        storage = self.study._storage
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # attributes first: a finished trial can no longer be changed
            storage.set_trial_user_attr(t._trial_id, "error", "interrupted (process killed)")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            if t.params:
                attrs = {"source": t.user_attrs.get("source", "sampler"), "requeued_from": t.number}
                self.study.enqueue_trial(dict(t.params), user_attrs=attrs)
            n += 1
        return n

    def _enqueue_seeds(self) -> list[PruningPlan]:
        plans: list[PruningPlan] = []
        for p in uniform_seed_plans(self.space, self.fits, count=8):  # spares: snapping can merge some
            p = self.codec.snap(p)  # onto the counts the search uses, if still within budget
            if self.fits(p) and p.keep not in [q.keep for q in plans]:
                plans.append(p)
            if len(plans) == 3:
                break
        for p in plans:
            ratio = p.meta.get("uniform_ratio")
            self.study.enqueue_trial(self.codec.params(p),
                                     user_attrs={"source": "uniform", "uniform_ratio": ratio},
                                     skip_if_exists=True)
        return plans

    # ---- prediction --------------------------------------------------------------------
    def predict(self, plan: PruningPlan) -> tuple[float, int]:
        """``(predicted_ms, memory_bytes)`` of ``plan`` (cached)."""
        key = tuple(self.space.full_keep(plan).values())
        hit = self._cost_cache.get(key)
        if hit is None:
            hit = (float(self.predictor.predict_ms(plan)),
                   int(self.analysis.cost.cost(plan).memory_bytes))
            self._cost_cache[key] = hit
        return hit

    def fits(self, plan: PruningPlan) -> bool:
        return self.budget.fits(*self.predict(plan))

    # ---- the objective -----------------------------------------------------------------
    def _refresh_scored(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if ua.get("evaluated") and ua.get("val_accuracy") is not None:
                key = tuple(self.space.full_keep(self.codec.plan(t.params)).values())
                self._scored.setdefault(key, (t.number, float(ua["val_accuracy"])))

    def _objective(self, trial: optuna.Trial) -> float | tuple[float, float]:
        plan = self.codec.suggest(trial)
        ms, mem = self.predict(plan)
        feasible = self.budget.fits(ms, mem)
        trial.set_user_attr("predicted_ms", ms)
        trial.set_user_attr("memory_bytes", mem)
        trial.set_user_attr("feasible", feasible)
        if "source" not in trial.user_attrs:
            trial.set_user_attr("source", "sampler")
        for name, value in self.budget.violations(ms, mem).items():
            trial.set_constraint(name, value)
        if not feasible:
            trial.set_user_attr("evaluated", False)
            return (INFEASIBLE_SCORE, ms) if self.pareto else INFEASIBLE_SCORE
        key = tuple(self.space.full_keep(plan).values())
        if key not in self._scored:
            self._refresh_scored()  # another worker may have scored it
        decision, other = ("duplicate", self._scored[key]) if key in self._scored else self._claim(trial, key)
        if decision == "duplicate":
            number, acc = other
            trial.set_user_attr("duplicate_of", number)
            trial.set_user_attr("evaluated", False)
        elif decision == "evaluate":
            acc = self._score(trial, plan, key)
        else:  # the slots are full, or another worker is evaluating this very plan
            trial.set_user_attr("evaluated", False)
            if decision == "running":
                trial.set_user_attr("duplicate_of", other)
            trial.set_user_attr("skipped", decision)
            raise optuna.TrialPruned(decision)
        trial.set_user_attr("val_accuracy", acc)
        return (acc, ms) if self.pareto else acc

    def _score(self, trial: optuna.Trial, plan: PruningPlan, key: tuple[int, ...]) -> float:
        t0 = time.perf_counter()
        try:
            acc = float(self.scorer(plan))
        except Exception as exc:  # one bad candidate must not end a long search
            msg = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", msg)
            raise _CandidateError(msg) from exc
        trial.set_user_attr("score_s", time.perf_counter() - t0)
        trial.set_user_attr("evaluated", True)
        self._scored[key] = (trial.number, acc)
        return acc

    def _trial_key(self, t: FrozenTrial) -> tuple[int, ...]:
        key = self._keys.get(t.number)
        if key is None:
            key = self._keys[t.number] = tuple(self.space.full_keep(self.codec.plan(t.params)).values())
        return key

    def _slots(self, me: int, key: tuple[int, ...]) -> tuple[int, int, tuple[str, Any] | None]:
        """``(taken, evaluated, duplicate)``: slots held by candidates evaluated or being
        evaluated (claimed and RUNNING) by any worker, and ``key``'s twin among them."""
        taken = done = 0
        dup: tuple[str, Any] | None = None
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
            evaluated = t.state == TrialState.COMPLETE and bool(t.user_attrs.get("evaluated"))
            running = t.state == TrialState.RUNNING and t.user_attrs.get("claim") == t.number
            if t.number == me or not (evaluated or running):
                continue
            taken += 1
            done += evaluated
            if dup is None and self._trial_key(t) == key:
                dup = ("duplicate", (t.number, float(t.user_attrs["val_accuracy"]))) if evaluated \
                    else ("running", t.number)
        return taken, done, dup

    def _claim(self, trial: optuna.Trial, key: tuple[int, ...]) -> tuple[str, Any]:
        """Take one of the study's ``trials`` slots for ``trial`` (``("evaluate", None)``),
        or say why not: ``("duplicate", (number, acc))``, ``("running", number)`` (another
        worker evaluates the same plan) or ``("full", None)``. Waits while every slot is
        held by a running candidate: one may yet fail and free its slot."""
        trial.set_user_attr("worker", self.worker)
        while True:
            with self.lease.hold(self._lock_name("claims"), ttl_s=15) as held:
                self.lease_wait_s += held.wait_s
                taken, done, dup = self._slots(trial.number, key)
                if dup is not None:
                    return dup
                if done >= self._target:
                    return "full", None
                if taken < self._target:
                    trial.set_user_attr("claim", trial.number)
                    return "evaluate", None
            time.sleep(_WAIT_POLL_S)
            with _quiet_optuna():
                optuna.storages.fail_stale_trials(self.study)  # a dead worker's slot comes back

    # ---- running -----------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        trials = self.study.get_trials(deepcopy=False)
        retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials
                      if t.system_attrs.get("retry_history")}
        out = []
        for t in trials:
            rec = TrialRecord.from_trial(t, self.codec)
            if rec.state == "FAIL" and not rec.error:  # failed by a heartbeat check
                rec.error = (f"worker {rec.worker or '?'} stopped sending heartbeats (killed?); "
                             f"failed after the {self.grace_period_s} s grace period")
                if t.number in retried_as:
                    rec.error += f", re-queued as trial {retried_as[t.number]}"
            out.append(rec)
        return out

    def evaluated_count(self) -> int:
        return sum(1 for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("evaluated"))

    def run(self, trials: int, max_proposals: int | None = None) -> SearchOutcome:
        """Run until the study holds ``trials`` evaluated candidates.

        ``max_proposals`` (default ``50 * trials + 20``) bounds the trials this call makes,
        infeasible and duplicate ones included, for budgets that few plans meet.
        """
        if trials <= 0:
            raise ConfigError(f"the number of trials must be positive, got {trials}")
        start = time.perf_counter()
        self._target = trials
        with _quiet_optuna():  # enqueueing logs INFO lines ("already exists") on a resume
            if self.existed:
                n = self._requeue_orphans()
                if n:
                    self.notes.append(f"re-queued {n} trial(s) interrupted by a killed process")
            if self.enqueue_uniform:
                with self.lease.hold(self._lock_name("claims"), ttl_s=15):  # one worker seeds
                    self._enqueue_seeds()
        self._refresh_scored()
        max_proposals = max_proposals or 50 * trials + 20
        done = self.evaluated_count()
        state = {"proposed": 0, "fail_streak": 0, "reason": "reached the trial count"}
        best_rec = _pick_best(self.records())
        bar = _progress_bar(trials, done, self.progress)

        def postfix(rec: TrialRecord | None, infeasible: int) -> None:
            if rec is not None:
                bar.set_postfix_str(f"best {rec.val_accuracy:.4f} @ {rec.predicted_ms:.3g}ms, "
                                    f"over budget {infeasible}", refresh=False)

        infeasible = [sum(1 for r in self.records() if r.state == "COMPLETE" and not r.feasible)]
        postfix(best_rec, infeasible[0])

        def callback(study: optuna.Study, t: FrozenTrial) -> None:
            nonlocal best_rec
            state["proposed"] += 1
            if t.state == TrialState.FAIL:
                state["fail_streak"] += 1
                if state["fail_streak"] >= _MAX_CONSECUTIVE_FAILURES:
                    state["reason"] = "failed"
                    study.stop()
                return
            state["fail_streak"] = 0
            if not t.user_attrs.get("feasible"):
                infeasible[0] += 1
            rec = TrialRecord.from_trial(t, self.codec)
            if rec.scored and (best_rec is None or _pick_best([best_rec, rec]) is rec):
                best_rec = rec
            if t.user_attrs.get("evaluated"):
                bar.update(1)
            postfix(best_rec, infeasible[0])
            if t.user_attrs.get("skipped") == "full" or self.evaluated_count() >= trials:
                study.stop()
            elif state["proposed"] >= max_proposals:
                state["reason"] = "proposal cap"
                study.stop()

        try:
            with _quiet_optuna():
                if done < trials:
                    self.study.optimize(self._objective, n_trials=max_proposals,
                                        callbacks=[callback], catch=(_CandidateError,))
                else:
                    state["reason"] = "already complete"
        finally:
            bar.close()
        records = self.records()
        if state["reason"] == "failed":
            errors = [r.error for r in records if r.state == "FAIL" and r.error]
            raise HwpruneError(f"{_MAX_CONSECUTIVE_FAILURES} candidate evaluations in a row failed; "
                               f"last: {errors[-1] if errors else 'unknown error'}")
        evaluated = self.evaluated_count()
        if state["reason"] == "proposal cap":
            self.notes.append(f"stopped after {state['proposed']} proposals with {evaluated} of "
                              f"{trials} candidates evaluated: few plans fit the budget")
        return SearchOutcome(_pick_best(records), _pareto_front(records), records, evaluated,
                             state["proposed"], state["reason"], time.perf_counter() - start,
                             list(self.notes))


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs one INFO line per trial; the progress bar says it better."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _progress_bar(total: int, initial: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="search", unit="cand",
                disable=not (progress and sys.stderr.isatty()), leave=True)

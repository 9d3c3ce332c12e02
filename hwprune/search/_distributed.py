"""Several workers on one shared study, and choosing its winner once.

Every process started with the same ``hwprune search ... --storage URL --study-name NAME``
is a *worker* (:func:`run_worker`): it joins the study, evaluates candidates until the
study holds ``--trials`` of them (a budget of the study, see :mod:`hwprune.search._study`)
and records itself in ``RUN_DIR/workers/WORKER_ID/worker.json``. The winner is chosen from
the whole study, its finalists fine-tuned and the run directory written **once**:

* by the last worker to finish (no candidate of another worker still running), or
* by ``hwprune search --finish --storage URL --study-name NAME`` (:func:`finish_study`),
  which reads the search settings the first worker stored in the study.

Both take the study's ``finish`` lease and mark the study ``written``, so a second
finisher only reports where the winner is. :func:`run_local_workers` starts N worker
processes on this machine with the torch threads split between them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from hwprune._io import atomic_write
from hwprune.errors import ConfigError, HwpruneError
from hwprune.search._steps import (SearchConfig, SearchSetup, StudyResult, choose_winner, measure_winner,
                                   prepare_search, run_study, write_run)
from hwprune.search._storage import resolve_storage
from hwprune.search._study import SearchOutcome, _pareto_front, _pick_best, _quiet_optuna

__all__ = ["finish_study", "run_local_workers", "run_worker"]

Log = Callable[[str], None]
CONFIG_ATTR = "hwprune_config"
WINNER_ATTR = "hwprune_winner"
THREADS_ENV = "HWPRUNE_TORCH_THREADS"
_LOCAL_FIELDS = ("storage_url", "run_dir", "progress", "resume")  # never stored in the study


def _config_doc(config: SearchConfig) -> dict[str, Any]:
    doc = {}
    for f in dataclasses.fields(config):
        if f.name in _LOCAL_FIELDS:
            continue
        v = getattr(config, f.name)
        doc[f.name] = list(v) if isinstance(v, tuple) else (os.fspath(v) if isinstance(v, os.PathLike) else v)
    return doc


def _refreshed(study: StudyResult) -> StudyResult:
    """``study`` with every worker's trials, as they stand now."""
    search, out = study.search, study.outcome
    records = search.records()
    outcome = dataclasses.replace(out, best=_pick_best(records), front=_pareto_front(records),
                                  records=records, evaluated=search.evaluated_count())
    return StudyResult(search, outcome, records, study.started)


def _running(search: Any) -> list[int]:
    with _quiet_optuna():
        optuna.storages.fail_stale_trials(search.study)  # a dead worker's trial is no reason to wait
    return [t.number for t in search.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def _finalize(setup: SearchSetup, study: StudyResult, who: str) -> dict[str, Any] | None:
    """Choose, measure and write the winner unless another finisher already has; returns
    the summary, or None when the study's winner was written elsewhere."""
    optuna_study = study.search.study
    with setup.lease.hold(study.search._lock_name("finish"), ttl_s=60):
        done = optuna_study.user_attrs.get(WINNER_ATTR) or {}
        if done.get("status") == "written":
            return None
        study = _refreshed(study)
        if study.best is None:
            raise HwpruneError("the study scored no candidate within the budget",
                               "see the error column of trials.csv")
        setup.log(f"choosing the winner of {study.outcome.evaluated} evaluated candidates ({who})")
        winner = choose_winner(setup, study)
        study.started = study.started or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        summary = write_run(setup, study, winner, measure_winner(setup, winner))
        optuna_study.set_user_attr(WINNER_ATTR, {"status": "written", "by": who,
                                                 "machine": platform.node(),
                                                 "run_dir": str(setup.run.path.resolve())})
    return summary.to_dict()


def _write_worker(setup: SearchSetup, study: StudyResult, status: str) -> Path:
    search = study.search
    mine = [r for r in study.records if r.worker == search.worker]
    doc = {"worker": search.worker, "index": search.worker_index, "seed": search.worker_seed,
           "status": status, "study_name": search.study_name, "storage": search.storage_url,
           "evaluated": sum(1 for r in mine if r.evaluated), "trials": [r.number for r in mine],
           "study_evaluated": study.outcome.evaluated, "target": setup.config.trials,
           "stop_reason": study.outcome.stop_reason, "wall_s": study.outcome.wall_s,
           "claims_lease_wait_s": search.lease_wait_s, "machine": platform.node(),
           "torch_threads": _torch_threads()}
    path = setup.run.path / "workers" / search.worker / "worker.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc, indent=2) + "\n")
    return path


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_worker(config: SearchConfig, log: Log | None = None) -> dict[str, Any]:
    """One worker of a shared study (``config.storage_url`` set); see the module doc.

    Returns the finished summary when this worker wrote the winner, otherwise a dict
    with ``status`` "worker-done", this worker's counts and ``winner`` (who wrote it, or
    how to write it)."""
    threads = os.environ.get(THREADS_ENV)
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    setup = prepare_search(config, log)

    def store_config(search: Any) -> None:  # what --finish needs, before any work
        if CONFIG_ATTR not in search.study.user_attrs:
            search.study.set_user_attr(CONFIG_ATTR, _config_doc(config))

    study = _refreshed(run_study(setup, store_config))
    search = study.search
    evaluated, running = study.outcome.evaluated, _running(search)
    capped = study.outcome.stop_reason == "proposal cap"
    worker_json = _write_worker(setup, study, "done")
    result = {"status": "worker-done", "worker": search.worker, "worker_json": str(worker_json),
              "run_dir": str(setup.run.path), "study_name": search.study_name,
              "evaluated_by_worker": json.loads(worker_json.read_text())["evaluated"],
              "study_evaluated": evaluated, "trials": config.trials, "warnings": setup.warnings}
    if not running and (evaluated >= config.trials or capped):
        summary = _finalize(setup, study, f"last worker {search.worker}")
        if summary is not None:
            return {**summary, "run_dir": str(setup.run.path), "worker": search.worker}
    result["winner"] = search.study.user_attrs.get(WINNER_ATTR) or {
        "status": "pending", "running_trials": running,
        "how": f"the last worker to finish writes it, or: hwprune search --finish --storage "
               f"{search.storage_url} --study-name '{search.study_name}'"}
    return result


def finish_study(storage_url: str, study_name: str, run_dir: str | os.PathLike,
                 log: Log | None = None, **overrides: Any) -> dict[str, Any]:
    """Choose the winner of a shared study once: fine-tune its finalists, measure and write
    ``run_dir``, with the search settings the first worker stored in the study. Refuses
    while candidates are still being evaluated (trials of dead workers are failed first,
    once their heartbeat grace period is over)."""
    spec = resolve_storage(storage_url)
    if spec is None:
        raise ConfigError("--finish needs --storage (the study's URL or journal file)")
    from hwprune.search._storage import open_storage

    with _quiet_optuna():
        try:
            stored = optuna.load_study(study_name=study_name, storage=open_storage(spec))
        except KeyError:
            raise ConfigError(f"no study '{study_name}' in '{spec.masked}'",
                              "pass the --study-name the workers used") from None
    done = stored.user_attrs.get(WINNER_ATTR) or {}
    if done.get("status") == "written":  # say where, and touch nothing
        return {"status": "already-written", "winner": done, "run_dir": done.get("run_dir")}
    doc = stored.user_attrs.get(CONFIG_ATTR)
    if not doc:
        raise ConfigError(f"study '{study_name}' has no finished worker yet (no search settings stored)",
                          "wait for a worker to finish its share, then rerun --finish")
    config = SearchConfig(**{**doc, **overrides, "storage_url": spec.url, "study_name": study_name,
                             "run_dir": run_dir, "resume": False})
    setup = prepare_search(config, log)
    study = run_study_for_finish(setup)
    running = _running(study.search)
    if running:
        raise ConfigError(f"{len(running)} candidate(s) of study '{study_name}' are still running "
                          f"(trials {', '.join(map(str, running))})",
                          f"let the workers finish, or rerun after the heartbeat grace period "
                          f"({config.grace_period_s} s) if they died")
    summary = _finalize(setup, study, "hwprune search --finish")
    if summary is None:
        where = study.search.study.user_attrs.get(WINNER_ATTR, {})
        return {"status": "already-written", "winner": where, "run_dir": where.get("run_dir")}
    return {**summary, "run_dir": str(setup.run.path)}


def run_study_for_finish(setup: SearchSetup) -> StudyResult:
    """The study as it stands, without proposing anything."""
    from hwprune.search._study import PlanSearch

    c = setup.config
    search = PlanSearch(setup.analysis, setup.predictor, setup.budget, lambda plan: 0.0,
                        device=setup.profile.name, seed=c.seed, sampler=c.sampler, pareto=c.pareto,
                        run_dir=setup.run.path, storage_url=c.storage_url, study_name=c.study_name,
                        progress=False, heartbeat_s=c.heartbeat_s, grace_period_s=c.grace_period_s,
                        register=False)
    setup.lease = search.lease
    records = search.records()
    outcome = SearchOutcome(_pick_best(records), _pareto_front(records), records,
                            search.evaluated_count(), 0, "finish", 0.0, [])
    return StudyResult(search, outcome, records, None)


def run_local_workers(config: SearchConfig, workers: int, log: Log | None = None) -> dict[str, Any]:
    """``workers`` processes on this machine on one study (``config.storage_url``, or the
    journal ``RUN_DIR/study.journal``), each with ``cpu_count // workers`` torch threads.
    The URL reaches the children through the environment, never their command line."""
    say = log or (lambda _m: None)
    storage = config.storage_url or str(Path(config.run_dir).resolve() / "study.journal")
    resolve_storage(storage)  # fails here, once, on a bad URL
    threads = max(1, (os.cpu_count() or 1) // workers)
    doc = {**_config_doc(config), "run_dir": os.fspath(config.run_dir), "progress": False}
    env = {**os.environ, "HWPRUNE_WORKER_CONFIG": json.dumps(doc), "HWPRUNE_WORKER_STORAGE": storage,
           THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
    say(f"starting {workers} workers with {threads} torch thread(s) each")
    cmd = [sys.executable, "-c", "from hwprune.search._distributed import _child; _child()"]
    procs = [subprocess.Popen(cmd, env=env) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise HwpruneError(f"{sum(1 for c in codes if c)} of {workers} workers failed "
                           f"(exit codes {', '.join(map(str, codes))})", "see their messages above")
    from hwprune.rundir import FINISHED, RunDir

    run = RunDir(config.run_dir)
    if run.file(RunDir.SUMMARY).is_file() and run.read_summary().status == FINISHED:
        return {**run.read_summary().to_dict(), "run_dir": str(run.path)}
    raise HwpruneError(f"the workers finished but none wrote the winner into '{run.path}'",
                       "run hwprune search --finish with the same --storage and --study-name")


def _child() -> None:
    """Entry point of a worker started by :func:`run_local_workers`."""
    from hwprune.errors import HwpruneError as _E

    doc = json.loads(os.environ["HWPRUNE_WORKER_CONFIG"])
    try:
        run_worker(SearchConfig(**doc, storage_url=os.environ["HWPRUNE_WORKER_STORAGE"]))
    except _E as exc:
        print(f"hwprune: error: {exc}", file=sys.stderr)
        sys.exit(1)

"""MetaSchedule on top of the schedule library: bounded, per task, never slower.

How :func:`hwprune.runtimes.tvm.tune` spends a budget of trials:

1. every conv/matmul/dense task of the fused module is scheduled by the library and
   timed once with MetaSchedule's own builder and runner; its share of the model's
   latency is that time x the task's weight (how often it occurs);
2. only the largest tasks get trials, at least :data:`MIN_TRIALS_PER_TASK` each;
3. per tuned task, the best record and the library schedule are timed again, in
   alternating rounds with the same runner, and the faster is kept: a record must beat
   the library by :data:`WIN_MARGIN` to be used. The decision (both times) goes to
   ``decisions.json`` beside the database, keyed by the task's structural hash.

:func:`apply_decisions` then applies a record only where it won; the library schedules
every other function. A database from another target or a corrupt file is refused
(:func:`check_database`) before anything is read into TVM or written.

Why the library schedule is the baseline and not a seed of the search: MetaSchedule
0.27 replays a library trace as a database record (structurally identical PrimFuncs),
but its evolutionary search only mutates sampled decisions (tile sizes, unroll factors,
compute locations) and a library trace has none, so the search cannot evolve from it.

The builder runs :func:`build_candidate` (no ``tvm.s_tir.tensor_intrin`` import: that
costs ~30 s of CPU in every fresh build pool of the default build function).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from hwprune.errors import CompileError

__all__ = ["DECISIONS", "MIN_TRIALS_PER_TASK", "WIN_MARGIN", "build_candidate", "check_database",
           "load_decisions", "task_key", "tune_tasks", "apply_decisions"]

DECISIONS = "decisions.json"
MIN_TRIALS_PER_TASK = 16   # fewer trials per task rarely find anything (measured: 16-64 never beat the library)
WIN_MARGIN = 0.97          # a tuned record is kept only when >= 3% faster than the library (timing noise)
_TARGET_KEYS = ("kind", "mcpu", "mtriple", "mattr")
_FIX = "pass another --tuning-db (one per device), or delete the folder to tune afresh"


# --------------------------------------------------------------------------- database files

def _identity(target: dict[str, Any]) -> dict[str, Any]:
    """What makes tuned code valid elsewhere: kind, CPU, triple, features (not num-cores)."""
    return {k: target[k] for k in _TARGET_KEYS if target.get(k) not in (None, "", [])}


def _db_files(database_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    d = Path(database_dir)
    return d / "database_workload.json", d / "database_tuning_record.json", d / DECISIONS


def _json_lines(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CompileError(f"tuning database file {path} is corrupt (line {n}: {exc.msg})", _FIX) from None
    return out


def check_database(database_dir: str | os.PathLike, target: dict[str, Any]) -> None:
    """Refuse (CompileError, one line) a database with a corrupt file or tuned for another
    target; reads the files only, creates and changes nothing."""
    workloads, records, decisions = _db_files(database_dir)
    _json_lines(workloads)
    want = _identity(target)
    for n, rec in enumerate(_json_lines(records), 1):
        try:
            got = _identity(rec[1][2])
        except (TypeError, IndexError, KeyError, AttributeError):
            raise CompileError(f"tuning database file {records} is corrupt (line {n}: not a tuning record)",
                               _FIX) from None
        if got != want:
            raise CompileError(f"tuning database {database_dir} was tuned for target {json.dumps(got)}, "
                               f"not {json.dumps(want)}", _FIX)
    doc = load_decisions(database_dir)
    if doc["tasks"] and _identity(doc.get("target") or {}) != want:
        raise CompileError(f"tuning database {database_dir} was tuned for target "
                           f"{json.dumps(_identity(doc.get('target') or {}))}, not {json.dumps(want)}", _FIX)


def load_decisions(database_dir: str | os.PathLike) -> dict[str, Any]:
    """``decisions.json``: ``{"target": ..., "tasks": {key: {"decision": "tuned"|"library",
    "library_ms", "tuned_ms", ...}}}``; an empty document when there is none."""
    path = _db_files(database_dir)[2]
    if not path.is_file():
        return {"schema_version": 1, "target": {}, "tasks": {}}
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), dict):
            raise ValueError("no 'tasks' table")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CompileError(f"tuning database file {path} is corrupt ({str(exc).splitlines()[0][:120]})",
                           _FIX) from None
    return doc


def _save_decisions(database_dir: str | os.PathLike, doc: dict[str, Any]) -> None:
    from hwprune._io import atomic_write

    # atomic: a killed export leaves the old decisions
    atomic_write(_db_files(database_dir)[2], json.dumps(doc, indent=1, sort_keys=True) + "\n")


def task_key(task_mod: Any) -> str:
    """The task's structural hash (what MetaSchedule's database matches workloads by)."""
    import tvm_ffi  # noqa: PLC0415
    return f"{int(tvm_ffi.structural_hash(task_mod)) & (2**64 - 1):016x}"


# --------------------------------------------------------------------------- build / measure

def build_candidate(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule builder function: the default one without its tensor_intrin import."""
    from tvm.driver import build as tvm_build  # noqa: PLC0415
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock  # noqa: PLC0415
    # weight re-layouts happen at compile time in the artifact: never timed
    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _measure(mods: list[Any], tgt: Any, builder: Any, runner: Any, rounds: int = 1) -> list[float | None]:
    """Milliseconds per call of each module's ``main``: built once, then run ``rounds``
    times in alternation (module 0, 1, ..., 0, 1, ...) and the fastest round kept, so that
    load from other jobs hits every module alike. None where building or running failed."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from hwprune.runtimes.tvm import seconds_to_ms  # noqa: PLC0415
    built = builder.build([ms.builder.BuilderInput(m, tgt) for m in mods])
    best: list[float | None] = [None] * len(mods)
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    args = {i: ms.arg_info.ArgInfo.from_entry_func(mods[i], remove_preproc=True) for i in ok}
    order = ok * rounds
    try:
        futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu", args[i]) for i in order])
        for i, fut in zip(order, futures):
            res = fut.result()
            if res.error_msg is None and res.run_secs:
                secs = [float(getattr(s, "value", s)) for s in res.run_secs]
                t = seconds_to_ms(sum(secs) / len(secs))
                best[i] = t if best[i] is None else min(best[i], t)
    finally:
        for b in built:
            if b.artifact_path:
                shutil.rmtree(os.path.dirname(str(b.artifact_path)), ignore_errors=True)
    return best


def _library_mod(task: Any, target: dict[str, Any], tgt: Any) -> Any:
    """The task as the schedule library compiles it (unscheduled where no rule matches)."""
    import tvm  # noqa: PLC0415

    from hwprune.runtimes.tvm.schedule import _schedule_func, vector_lanes  # noqa: PLC0415
    func = task.dispatched[0]["main"]
    try:
        func, _ = _schedule_func(func, vector_lanes(target), tgt)
    except Exception:  # noqa: BLE001  a failing rule leaves the function to TVM, as in build
        pass
    return tvm.IRModule({"main": func})


# --------------------------------------------------------------------------- tuning

def tune_tasks(tasks: list[Any], target: dict[str, Any], tgt: Any, db: Any, database_dir: str | os.PathLike,
               max_trials: int, *, builder: Any, runner: Any, work_dir: Path, seed: int) -> dict[str, Any]:
    """Rank ``tasks`` (none decided yet) by latency share, tune the largest within
    ``max_trials``, decide per task and save the decisions. Returns a report dict."""
    lib = _measure([_library_mod(t, target, tgt) for t in tasks], tgt, builder, runner)
    total = sum((ms_ or 0.0) * t.weight for t, ms_ in zip(tasks, lib)) or 1.0
    ranked = sorted((i for i, v in enumerate(lib) if v is not None),
                    key=lambda i: -(lib[i] or 0.0) * tasks[i].weight)
    chosen = ranked[:max(1, min(len(ranked), max_trials // MIN_TRIALS_PER_TASK))]
    per_task = max_trials // max(1, len(chosen))
    if chosen:
        _search([tasks[i] for i in chosen], tgt, db, per_task, builder=builder, runner=runner,
                work_dir=work_dir, seed=seed)
    doc = load_decisions(database_dir)
    doc["target"] = _identity(target)
    rows = []
    for i in chosen:
        row = _decide(tasks[i], target, tgt, db, builder, runner)
        row.update(task=tasks[i].task_name, trials=per_task, weight=int(tasks[i].weight),
                   share=round((lib[i] or 0.0) * tasks[i].weight / total, 4), decided_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        doc["tasks"][task_key(tasks[i].dispatched[0])] = row
        rows.append(row)
    _save_decisions(database_dir, doc)
    return {"tuned": rows, "skipped": [tasks[i].task_name for i in range(len(tasks)) if i not in chosen]}


def _cpu_tensor_intrinsics() -> None:
    """Register only this CPU's tensor intrinsics before MetaSchedule asks for all of them.

    ``TuneContext`` imports ``tvm.s_tir.tensor_intrin``, whose CUDA, ROCm and Hexagon
    modules parse hundreds of TVMScript functions: 70 s on two busy cores, against 0.4 s
    for the x86 module the CPU schedule rules (VNNI/AVX-512 dot products) look up. The
    package is entered in ``sys.modules`` without running its ``__init__``; a GPU
    submodule can still be imported by name (hwprune compiles CUDA in a child process).
    """
    import importlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415
    import platform  # noqa: PLC0415
    import sys  # noqa: PLC0415

    import tvm.s_tir  # noqa: PLC0415
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    sys.modules[name] = importlib.util.module_from_spec(spec)
    tvm.s_tir.tensor_intrin = sys.modules[name]
    arm = platform.machine().lower() in ("aarch64", "arm64")
    importlib.import_module(f"{name}.{'arm_cpu' if arm else 'x86'}")


def _search(tasks: list[Any], tgt: Any, db: Any, per_task: int, *, builder: Any, runner: Any,
            work_dir: Path, seed: int) -> None:
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
    _cpu_tensor_intrinsics()
    per_iter = max(1, min(16, per_task))
    # small populations: the default (512) costs minutes of search per task on 2 cores
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=max(32, 4 * per_iter), init_min_unmeasured=max(8, per_iter), genetic_num_iters=2)
    with _unnamed_handlers_aside():
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted_tasks=tasks, work_dir=str(work_dir), space="post-order-apply", strategy=strategy, seed=seed)
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir),
            max_trials_global=per_task * len(tasks), max_trials_per_task=per_task, num_trials_per_iter=per_iter,
            builder=builder, runner=runner, database=db, cost_model="xgb" if _has_xgboost() else "random",
            measure_callbacks="default", task_scheduler="round-robin", module_equality="structural")


@contextlib.contextmanager
def _unnamed_handlers_aside() -> Iterator[None]:
    """MetaSchedule's logging setup refers to every handler of its logger by name and fails
    on an unnamed one (e.g. a log-capturing handler of the caller): set those aside."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    aside = [h for h in logger.handlers if h.get_name() is None]
    for h in aside:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in aside:
            logger.addHandler(h)


def _decide(task: Any, target: dict[str, Any], tgt: Any, db: Any, builder: Any, runner: Any,
            rounds: int = 3) -> dict[str, Any]:
    """Best record vs library, timed alternately in one batch; the faster wins."""
    tuned = db.query_ir_module(task.dispatched[0], tgt, task.task_name)
    library = _library_mod(task, target, tgt)
    if tuned is None:
        (lib_ms,) = _measure([library], tgt, builder, runner)
        return {"decision": "library", "library_ms": lib_ms, "tuned_ms": None, "why": "no valid record"}
    lib_ms, tuned_ms = _measure([library, tuned], tgt, builder, runner, rounds=rounds)
    won = tuned_ms is not None and (lib_ms is None or tuned_ms <= WIN_MARGIN * lib_ms)
    return {"decision": "tuned" if won else "library", "library_ms": lib_ms, "tuned_ms": tuned_ms}


def _has_xgboost() -> bool:
    try:
        import xgboost  # noqa: F401,PLC0415
        return True
    except ImportError:
        return False


# --------------------------------------------------------------------------- build side

def apply_decisions(fused: Any, tgt: Any, database_dir: str | os.PathLike, open_database: Any) -> Any:
    """``fused`` with the functions whose tuned record won compiled from that record (marked
    scheduled); every other function is left for the schedule library."""
    from tvm import relax  # noqa: PLC0415
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
    won = {k for k, v in load_decisions(database_dir)["tasks"].items() if v.get("decision") == "tuned"}
    if not won:
        return fused
    db = open_database(database_dir)
    winners = ms.database.MemoryDatabase(module_equality="structural")
    for task in ms.relax_integration.extract_tasks(fused, tgt):
        if task_key(task.dispatched[0]) not in won:
            continue
        rec = db.query_tuning_record(task.dispatched[0], tgt, task.task_name)
        if rec is not None:
            wl = winners.commit_workload(task.dispatched[0])
            winners.commit_tuning_record(ms.database.TuningRecord(rec.trace, wl, rec.run_secs, rec.target,
                                                                  rec.args_info))
    if len(winners) == 0:
        return fused
    with tgt, winners:
        return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(fused)

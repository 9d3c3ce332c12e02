"""``hwprune search`` end to end: budget, study, winner fine-tune, measurement, run directory.

The run directory a search leaves behind::

    RUN_DIR/
      study.journal   the Optuna study (append-only; --resume continues it)
      plan.json       the winning PruningPlan
      model.pt        the pruned, fine-tuned model's state_dict (rebuild: load_pruned)
      model.onnx      the same model in ONNX (input "input", output "output")
      trials.csv      every trial: kept channels per group, prediction, feasibility, accuracy
      pareto.csv      --pareto only: the accuracy/latency front of the scored trials
      trials.png      predicted latency vs validation accuracy, budget line, chosen model
      summary.md      the same as summary.json, for people
      summary.json    written last; "status": "finished" only once everything above exists

A pruned model's ``state_dict`` has narrower tensors than the original architecture, so
it loads only into a model pruned by the same plan::

    from hwprune.search import load_pruned
    model = load_pruned("runs/demo")          # rebuilds from plan.json, loads model.pt

which is ``PruningSpace(load_model(spec, pretrained=False)).apply(plan)`` followed by
``load_state_dict``: the plan fixes every tensor shape, the weights come from model.pt.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from hwprune import __version__
from hwprune.errors import ConfigError, HwpruneError, PlanError
from hwprune.pruning import PruningPlan
from hwprune.search._budget import Budget, check_reachable, format_bytes
from hwprune.search._study import (JOURNAL_NAME, AccuracyScorer, PlanSearch, TrialRecord,
                                    plan_from_keep, widest_uniform_plan)

__all__ = ["run_search", "load_pruned", "estimated_table_warning", "fresh_train_loader"]

SUMMARY_NAME = "summary.json"
KD_ALPHA = 0.5
KD_TEMPERATURE = 4.0


# --------------------------------------------------------------------------- helpers

def _atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def fresh_train_loader(loader: Any) -> Any:
    """A copy of a :class:`TensorLoader` restarted at its seed, so every fine-tune sees
    the same batches in the same order whatever ran before (other loaders pass through).
    """
    from hwprune.task._data import TensorLoader

    if not isinstance(loader, TensorLoader):
        return loader
    return TensorLoader(loader.images, loader.labels, batch_size=loader.batch_size,
                        shuffle=loader.shuffle, seed=loader.seed, augment=loader.augment,
                        pad=loader.pad, mean=loader.mean, std=loader.std,
                        drop_last=loader.drop_last)


def estimated_table_warning(table_kind: str, device: str, model_spec: str) -> str | None:
    """The warning for a table that is not all measured on the device (None if it is)."""
    if table_kind == "measured":
        return None
    return (f"the '{device}' latency table is {table_kind} (not measured on the device), so "
            f"predicted latencies and the budget check are estimates; measure the real device "
            f"with: hwprune profile --device {device} --model {model_spec} "
            f"--runner 'ssh user@board hwprune worker' (onnxruntime) or --rpc HOST:PORT (TVM RPC)")


def _load_task(task: str | None, data_dir: str | os.PathLike | None, input_shape: tuple[int, ...],
               model_id: str):
    from hwprune.task._data import load_fashion_mnist, load_user_task

    if task:
        data = load_user_task(task)
    else:
        if tuple(input_shape[1:]) != (1, 28, 28):
            raise ConfigError(f"model '{model_id}' takes {'x'.join(map(str, input_shape))} inputs; "
                              "the built-in task is Fashion-MNIST (1x28x28)",
                              "pass --task path/to/data.py defining train_loader() and val_loader()")
        data = load_fashion_mnist(data_dir)
    if data.input_shape is not None and tuple(data.input_shape) != tuple(input_shape[1:]):
        raise ConfigError(f"task '{data.name}' yields {'x'.join(map(str, data.input_shape))} samples, "
                          f"the model takes {'x'.join(map(str, input_shape[1:]))}",
                          "pass a matching --input-shape or task")
    return data


def _model_facts(cost: Any, predicted_ms: float,
                 measured: dict | None, val: float | None, test: float | None) -> dict[str, Any]:
    return {"accuracy": {"val": val, "test": test},
            "predicted_ms": predicted_ms,
            "measured_ms": measured["median_ms"] if measured else None,
            "measured": measured,
            "params": cost.params, "macs": cost.macs, "weight_bytes": cost.weight_bytes,
            "peak_activation_bytes": cost.peak_activation_bytes,
            "memory_bytes": cost.memory_bytes}


def _trials_csv(records: list[TrialRecord], path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame([r.row() for r in records])
    _atomic_write(path, frame.to_csv(index=False))


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _winner_text(s: dict[str, Any]) -> str:
    trial = s["search"]["best_trial"]
    if s["search"].get("finalists"):
        label = next(r["finalist"] for r in s["search"]["finalists"] if r.get("chosen"))
        return f"the best of {len(s['search']['finalists'])} finalists ({label})"
    return f"trial {trial}"


def _summary_md(s: dict[str, Any]) -> str:
    d, p = s["dense"], s["pruned"]
    b = s["budget"]
    lines = [
        f"# hwprune search: {s['model']['model_id']} on {s['device']}",
        "",
        f"Budget: {s['budget_text']}. Latency table: {s['table_kind']} "
        f"(calibration: {s['calibration_scope']}).",
        "",
        "| | dense | pruned |",
        "|---|---:|---:|",
        f"| val accuracy | {_fmt(d['accuracy']['val'])} | {_fmt(p['accuracy']['val'])} |",
        f"| test accuracy | {_fmt(d['accuracy']['test'])} | {_fmt(p['accuracy']['test'])} |",
        f"| predicted latency (ms) | {_fmt(d['predicted_ms'], '.4g')} | {_fmt(p['predicted_ms'], '.4g')} |",
        f"| measured latency (ms, onnxruntime) | {_fmt(d['measured_ms'], '.4g')} | {_fmt(p['measured_ms'], '.4g')} |",
        f"| params | {d['params']:,} | {p['params']:,} |",
        f"| MACs | {d['macs']:,} | {p['macs']:,} |",
        f"| memory (weights + peak activations) | {format_bytes(d['memory_bytes'])} | "
        f"{format_bytes(p['memory_bytes'])} |",
        "",
        f"Search: {s['search']['evaluated']} candidates evaluated of {s['search']['proposed_total']} "
        f"proposed ({s['search']['infeasible']} over budget, not evaluated), sampler "
        f"{s['search']['sampler']}, seed {s['search']['seed']}, {s['search']['wall_s']:.0f} s. "
        f"Winner: {_winner_text(s)}, fine-tuned {s['finetune']['steps']} steps "
        f"with the dense model as teacher ({s['finetune']['wall_s']:.0f} s in all).",
        "",
        "Kept channels per group:",
        "",
        "| group | kept | of |",
        "|---|---:|---:|",
    ]
    for g, k in s["plan_keep"].items():
        lines.append(f"| {g} | {k} | {s['plan_dense'][g]} |")
    if s["search"].get("finalists"):
        lines += ["", "Finalists (each fine-tuned identically; the best on validation won):", "",
                  "| finalist | val accuracy | chosen |", "|---|---:|:---:|"]
        for r in s["search"]["finalists"]:
            lines.append(f"| {r['finalist']} | {r['val_accuracy']:.4f} | {'yes' if r.get('chosen') else ''} |")
    if b.get("latency_ms") is not None and p["measured_ms"] is not None:
        lines += ["", f"Measured latency is {p['measured_ms'] / b['latency_ms']:.0%} of the latency budget."]
    for w in s["warnings"]:
        lines += ["", f"**Warning:** {w}"]
    for n in s["notes"]:
        lines += ["", f"Note: {n}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- finalists

def finalist_plans(space: Any, records: list[TrialRecord], count: int,
                   uniform: PruningPlan | None) -> list[tuple[str, PruningPlan]]:
    """The ``count`` best-scored distinct candidates, plus the uniform-width plan.

    The search's score (accuracy right after pruning and BatchNorm recalibration) ranks
    plans of similar quality poorly; the finalists are therefore fine-tuned in full and
    compared again. The widest uniform plan within budget always competes, so the answer
    is never worse on validation than narrowing every layer alike.
    """
    out: list[tuple[str, PruningPlan]] = []
    seen: set[tuple[int, ...]] = set()
    ranked = sorted((r for r in records if r.scored), key=lambda r: (-r.val_accuracy, r.predicted_ms, r.number))
    for r in ranked:
        plan = plan_from_keep(space, r.keep)
        key = tuple(space.full_keep(plan).values())
        if key not in seen:
            seen.add(key)
            out.append((f"trial {r.number}", plan))
        if len(out) >= count:
            break
    if uniform is not None and tuple(space.full_keep(uniform).values()) not in seen:
        out.append(("uniform width", uniform))
    return out


def finetune_finalists(space: Any, finalists: list[tuple[str, PruningPlan]], data: Any, dense: Any, *,
                       steps: int, lr: float, seed: int, calibration_images: int,
                       progress: bool = False, say: Callable[[str], None] = lambda _m: None
                       ) -> tuple[int, Any, list[dict[str, Any]]]:
    """Prune, recalibrate and distil each finalist identically; the best on validation wins.

    Returns the winner's index, its fine-tuned model and one row per finalist (label,
    validation accuracy, fine-tune seconds). Ties go to the earlier finalist.
    """
    from hwprune.task._train import adaptive_bn, evaluate, finetune

    best_i, best_model, best_val, rows = -1, None, -1.0, []
    for i, (label, plan) in enumerate(finalists):
        model = space.apply(plan)
        adaptive_bn(model, data.calibration_batches(calibration_images), calibration_images)
        ft = finetune(model, fresh_train_loader(data.train), steps, lr, teacher=dense, kd_alpha=KD_ALPHA,
                      temperature=KD_TEMPERATURE, seed=seed, progress=progress)
        model.eval()
        val = evaluate(model, data.val)
        rows.append({"finalist": label, "val_accuracy": val, "finetune_s": ft.wall_s,
                     "final_loss": ft.final_loss, "keep": dict(space.full_keep(plan))})
        say(f"finalist {i + 1}/{len(finalists)} ({label}): val {val:.4f} after {steps} fine-tune steps")
        if val > best_val:
            best_i, best_model, best_val = i, model, val
    return best_i, best_model, rows


# --------------------------------------------------------------------------- run_search

def run_search(*, model: str, weights: str | os.PathLike | None = None,
               input_shape: str | tuple[int, ...] | None = None, device: str = "host",
               latency: str | None = None, memory: str | None = None, trials: int = 40,
               seed: int = 0, run_dir: str | os.PathLike, resume: bool = False,
               storage_url: str | None = None, study_name: str | None = None,
               pareto: bool = False, sampler: str | None = None, finetune_steps: int = 300,
               finalists: int = 3,
               candidate_finetune_steps: int = 0, lr: float = 0.01, data_dir: str | None = None,
               task: str | None = None, tables: str | os.PathLike | None = None,
               calibration_images: int = 512, val_images: int | None = 2000,
               measure: bool = True, progress: bool = True,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Search per-group pruning ratios for the most accurate model within a budget.

    ``latency`` is ``"20ms"``, ``"0.02s"`` or ``"50%"`` (of the dense model's predicted
    latency on ``device``); ``memory`` is ``"4MB"``, ``"512KB"`` or ``"50%"`` (weights +
    peak activations). ``trials`` candidates are *evaluated* (adaptive BN on
    ``calibration_images`` training images, ``candidate_finetune_steps`` of fine-tuning,
    accuracy on the first ``val_images`` validation images); plans predicted over budget
    are recorded but cost no evaluation. The ``finalists`` best-scored candidates and the
    widest uniform-width plan within budget are each fine-tuned ``finetune_steps`` steps
    with the dense model as teacher; the best on the full validation set wins (with
    ``finalists=1`` only the top-scored candidate is fine-tuned). The winner is scored on
    the validation and test sets and, on a measurable device (the host), timed end to end
    with onnxruntime.

    ``resume`` continues the study in ``run_dir``; ``storage_url`` (RDB URL, e.g.
    ``postgresql://user:pw@host/db``) shares one study between worker processes; see
    :mod:`hwprune.search._study`. Returns the summary (also written to
    ``run_dir/summary.json``) with ``run_dir`` and ``warnings``.

    >>> r = run_search(model="demo", latency="50%", trials=40, run_dir="runs/demo")  # doctest: +SKIP
    >>> r["pruned"]["predicted_ms"] <= r["budget"]["latency_ms"]
    True
    """
    from hwprune.pruning import analyze
    from hwprune.devices import load_profile
    from hwprune.latency import open_predictor
    from hwprune.models import load_model
    from hwprune.onnx_export import check_onnx, to_onnx_bytes
    from hwprune.search._plot import plot_trials
    from hwprune.task._train import adaptive_bn, evaluate, finetune

    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    if trials <= 0:
        raise ConfigError(f"the number of trials must be positive, got {trials}")
    if finetune_steps < 0 or candidate_finetune_steps < 0:
        raise ConfigError("fine-tuning steps must be zero or positive, got "
                          f"{finetune_steps} and {candidate_finetune_steps}")
    run_dir = Path(run_dir)
    profile = load_profile(device)
    lm = load_model(model, weights, input_shape)
    analysis = analyze(lm)
    space = analysis.space
    predictor = open_predictor(analysis, profile.name, tables)
    table_kind = predictor.table.kind
    model_spec = lm.spec or lm.model_id

    # ---- budget: parse and check reachability before anything expensive ---------------
    dense_plan, floor_plan = space.dense_plan(), space.smallest_plan()
    dense_ms = float(predictor.predict_ms(dense_plan))
    dense_cost = analysis.cost.cost(dense_plan)
    budget = Budget.parse(latency, memory, dense_ms, dense_cost.memory_bytes)
    floor_ms = float(predictor.predict_ms(floor_plan))
    check_reachable(budget, floor_ms, analysis.cost.cost(floor_plan).memory_bytes,
                    lm.model_id, profile.name)
    warnings = [w for w in [estimated_table_warning(table_kind, profile.name, model_spec)] if w]
    if floor_ms <= 0:
        warnings.append(f"the latency table predicts {floor_ms:.4g} ms for the smallest plan: its "
                        f"calibration offset is off, so small plans look faster than they are; "
                        f"re-profile with: hwprune profile --device {profile.name} "
                        f"--model {model_spec} --rebuild")
    if not storage_url and (run_dir / JOURNAL_NAME).is_file() and not resume:
        raise ConfigError(f"run directory '{run_dir}' already holds a search ({JOURNAL_NAME})",
                          "pass --resume to continue it, or choose another --run-dir")
    say(f"budget: {budget.describe()}; dense predicted {dense_ms:.4g} ms, "
        f"fastest reachable {floor_ms:.4g} ms ({table_kind} table)")

    # ---- search -----------------------------------------------------------------------
    data = _load_task(task, data_dir, lm.input_shape, lm.model_id)
    dense = lm.model.eval()
    scorer = AccuracyScorer(space, data, calibration_images=calibration_images,
                            val_images=val_images, finetune_steps=candidate_finetune_steps,
                            teacher=dense if candidate_finetune_steps else None, lr=lr, seed=seed)
    search = PlanSearch(analysis, predictor, budget, scorer, device=profile.name, seed=seed,
                        sampler=sampler, pareto=pareto, run_dir=run_dir, storage_url=storage_url,
                        study_name=study_name, resume=resume, progress=progress)
    # The study opened and matches this run: from here on the directory is not
    # "finished" until the final summary says so (an earlier summary is superseded).
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / SUMMARY_NAME, json.dumps({"status": "running", "started": _now()},
                                                     indent=2) + "\n")
    if search.existed:
        say(f"resuming study '{search.study_name}' with {search.evaluated_count()} evaluated candidates")
    outcome = search.run(trials)
    best = outcome.best
    if best is None:  # the uniform seeds fit, so only failures get here
        raise HwpruneError("the search scored no candidate within the budget",
                           "see the error column of trials.csv")
    say(f"search: {outcome.evaluated} evaluated, {outcome.infeasible} over budget; best trial "
        f"{best.number}: val {best.val_accuracy:.4f} at {best.predicted_ms:.4g} ms predicted "
        f"({outcome.wall_s:.0f} s)")
    records = search.records()

    # ---- the winner: the best finalist after pruning, recalibration and distillation ----
    ft_wall, ft_loss, finalist_rows = 0.0, None, []
    keep, pruned = best.keep, None
    if finalists > 1 and finetune_steps > 0:
        def fits(p: PruningPlan) -> bool:
            return budget.fits(predictor.predict_ms(p), analysis.cost.cost(p).memory_bytes)

        cands = finalist_plans(space, records, finalists, widest_uniform_plan(space, fits))
        say(f"fine-tuning {len(cands)} finalists {finetune_steps} steps each with the dense model "
            f"as teacher; the best on validation wins")
        i, pruned, finalist_rows = finetune_finalists(
            space, cands, data, dense, steps=finetune_steps, lr=lr, seed=seed,
            calibration_images=calibration_images, progress=progress, say=say)
        keep = dict(space.full_keep(cands[i][1]))
        ft_wall = sum(r["finetune_s"] for r in finalist_rows)
        ft_loss = finalist_rows[i]["final_loss"]
        for j, row in enumerate(finalist_rows):
            row["chosen"] = j == i
    bare = plan_from_keep(space, keep)
    chosen = next((r for r in records if r.scored and plan_from_keep(space, r.keep).keep == bare.keep), None)
    predicted_ms = float(predictor.predict_ms(bare))
    plan = plan_from_keep(space, keep, created_by="hwprune search", device=profile.name,
                          budget=budget.to_dict(), predicted_ms=predicted_ms,
                          memory_bytes=analysis.cost.cost(bare).memory_bytes,
                          trial=chosen.number if chosen else None,
                          search_val_accuracy=chosen.val_accuracy if chosen else None, seed=seed)
    if pruned is None:
        pruned = space.apply(plan)
        adaptive_bn(pruned, data.calibration_batches(calibration_images), calibration_images)
        if finetune_steps > 0:
            say(f"fine-tuning the winner {finetune_steps} steps with the dense model as teacher")
            ft = finetune(pruned, fresh_train_loader(data.train), finetune_steps, lr, teacher=dense,
                          kd_alpha=KD_ALPHA, temperature=KD_TEMPERATURE, seed=seed, progress=progress)
            ft_wall, ft_loss = ft.wall_s, ft.final_loss
    pruned.eval()
    pruned_val = evaluate(pruned, data.val)
    pruned_test = evaluate(pruned, data.test) if data.test is not None else None
    dense_val = evaluate(dense, data.val)
    dense_test = evaluate(dense, data.test) if data.test is not None else None

    # ---- artifacts and end-to-end latency ----------------------------------------------
    shape = tuple(lm.input_shape)
    pruned_onnx = to_onnx_bytes(pruned, shape)
    onnx_diff = check_onnx(pruned, pruned_onnx, shape)
    dense_measured = pruned_measured = None
    if measure and profile.measurable_here:
        runtime = profile.local_runtime()
        say(f"measuring dense and pruned latency with {runtime.name}")
        dense_measured, pruned_measured = runtime.measure_latencies([to_onnx_bytes(dense, shape), pruned_onnx])
    plan.save(run_dir / "plan.json")
    tmp = run_dir / "model.pt.tmp"
    torch.save(pruned.state_dict(), tmp)
    tmp.replace(run_dir / "model.pt")
    _atomic_write(run_dir / "model.onnx", pruned_onnx)
    _trials_csv(records, run_dir / "trials.csv")
    files = ["plan.json", "model.pt", "model.onnx", "trials.csv", "trials.png", "summary.md"]
    if pareto:
        _trials_csv(outcome.front, run_dir / "pareto.csv")
        files.append("pareto.csv")
    plot_trials(records, budget, run_dir / "trials.png", chosen=chosen.number if chosen else None, dense_ms=dense_ms,
                front=outcome.front if pareto else (),
                title=f"{lm.model_id} on {profile.name}: {budget.describe()}")

    scored = [r for r in records if r.evaluated and r.duration_s is not None]
    pruned_cost = analysis.cost.cost(plan)
    summary: dict[str, Any] = {
        "status": "finished",
        "hwprune_version": __version__,
        "finished": _now(),
        "device": profile.name,
        "model": {"spec": model_spec, "model_id": lm.model_id, "input_shape": list(shape),
                  "weights": lm.weights},
        "task": {"name": data.name, **{k: v for k, v in data.meta.items()
                                       if isinstance(v, (str, int, float))}},
        "budget": budget.to_dict(),
        "budget_text": budget.describe(),
        "dense": _model_facts(dense_cost, dense_ms, dense_measured, dense_val, dense_test),
        "pruned": _model_facts(pruned_cost, predicted_ms, pruned_measured,
                               pruned_val, pruned_test),
        "predicted_latency_ms": predicted_ms,
        "measured_latency_ms": pruned_measured["median_ms"] if pruned_measured else None,
        "accuracy": {"val": pruned_val, "test": pruned_test,
                     "search_val": chosen.val_accuracy if chosen else None,
                     "search_val_images": val_images},
        "fastest_reachable_ms": floor_ms,
        "table_kind": table_kind,
        "calibration_scope": predictor.calibration_scope,
        "plan_keep": dict(plan.keep),
        "plan_dense": dict(plan.dense),
        "search": {"trials": trials, "evaluated": outcome.evaluated,
                   "proposed_this_run": outcome.proposed, "proposed_total": len(records),
                   "infeasible": outcome.infeasible, "sampler": search.sampler_name,
                   "seed": seed, "pareto": pareto, "best_trial": chosen.number if chosen else None,
                   "top_scored_trial": best.number, "finalists": finalist_rows,
                   "stop_reason": outcome.stop_reason, "wall_s": outcome.wall_s,
                   "mean_candidate_s": (sum(r.duration_s for r in scored) / len(scored)
                                        if scored else None),
                   "candidate_finetune_steps": candidate_finetune_steps,
                   "calibration_images": calibration_images,
                   "study_name": search.study_name,
                   "storage": storage_url or str(run_dir / JOURNAL_NAME),
                   "pareto_front": [{"trial": r.number, "predicted_ms": r.predicted_ms,
                                     "val_accuracy": r.val_accuracy} for r in outcome.front]
                   if pareto else None},
        "finetune": {"steps": finetune_steps, "finalists": len(finalist_rows) or 1, "lr": lr,
                     "teacher": "dense", "kd_alpha": KD_ALPHA,
                     "temperature": KD_TEMPERATURE, "wall_s": ft_wall, "final_loss": ft_loss},
        "onnx_max_rel_diff": onnx_diff,
        "host": {"machine": platform.node(), "torch_threads": torch.get_num_threads()},
        "files": files,
        "warnings": warnings,
        "notes": outcome.notes,
        "wall_s": time.perf_counter() - t_start,
    }
    _atomic_write(run_dir / "summary.md", _summary_md(summary))
    _atomic_write(run_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")  # last
    return {**summary, "run_dir": str(run_dir)}


def load_pruned(run_dir: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the pruned model of a finished run: architecture from ``plan.json``,
    weights from ``model.pt``. Returns the module in eval mode.

    >>> model = load_pruned("runs/demo")   # doctest: +SKIP
    """
    from hwprune.models import load_model
    from hwprune.pruning import PruningSpace

    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / SUMMARY_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"'{run_dir}' has no readable {SUMMARY_NAME}: {exc}",
                        "run hwprune search to completion first") from exc
    if summary.get("status") != "finished":
        raise PlanError(f"the search in '{run_dir}' has not finished",
                        "resume it with hwprune search --resume")
    m = summary["model"]
    lm = load_model(m["spec"], None, tuple(m["input_shape"]), pretrained=False)
    model = PruningSpace(lm).apply(PruningPlan.load(run_dir / "plan.json"))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    return model.eval()

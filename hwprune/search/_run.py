"""``hwprune search`` end to end, and rebuilding the model a search left behind.

:func:`run_search` is the chain of steps in :mod:`hwprune.search._steps`; the run
directory it writes is described in :mod:`hwprune.rundir`.

A pruned model's ``state_dict`` has narrower tensors than the original architecture, so
it loads only into a model pruned by the same plan::

    from hwprune.search import load_pruned
    model = load_pruned("runs/demo")          # rebuilds from plan.json, loads model.pt
    model = load_pruned("runs/mine", model="nets/my_net.py:build")  # a user model: name it yourself

which is ``PruningSpace(load_model(spec, pretrained=False)).apply(plan)`` followed by
``load_state_dict``: the plan fixes every tensor shape, the weights come from model.pt.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from hwprune.rundir import RunDir
from hwprune.search._steps import (SearchConfig, choose_winner, measure_winner, prepare_search,
                                   run_study, write_run)

__all__ = ["run_search", "load_pruned"]


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
               log: Callable[[str], None] | None = None, rescale: bool = True,
               latency_stat: str = "median", keep_layers: Sequence[str] = (), **workers: Any) -> dict[str, Any]:
    """Search per-group pruning ratios for the most accurate model within a budget.

    ``latency`` is ``"20ms"``, ``"0.02s"`` or ``"50%"`` (of the dense model's predicted
    latency on ``device``); ``memory`` is ``"4MB"``, ``"512KB"`` or ``"50%"`` (weights +
    peak activations). ``trials`` candidates are *evaluated* (adaptive BN on
    ``calibration_images`` training images, ``candidate_finetune_steps`` of fine-tuning,
    accuracy on the first ``val_images`` validation images); plans predicted over budget
    are recorded but cost no evaluation. The ``finalists`` best-scored candidates and the
    widest uniform-width plan within budget are each fine-tuned ``finetune_steps`` steps
    with the dense model as teacher (:class:`hwprune.task.FinetuneRecipe`); the best on
    the full validation set wins (with ``finalists=1`` only the top-scored candidate is
    fine-tuned). The winner is scored on the validation and test sets and, on a
    measurable device (the host), timed end to end through the device's runtime.

    ``resume`` continues the study in ``run_dir``; ``storage_url`` (RDB URL, e.g.
    ``postgresql://user:pw@host/db``, a ``.journal`` file or ``env:NAME``) makes this
    process one worker of a shared study (``workers``: ``heartbeat_s``,
    ``grace_period_s``); see :mod:`hwprune.search._distributed`. ``rescale``: when this
    machine runs more than 5% faster or slower than when its table was built, predictions
    (and so the budget check) follow that drift (:mod:`hwprune.latency._drift`).
    ``latency_stat`` ``"p90"`` holds the 90th percentile of single runs under the latency
    budget instead of their median.
    ``keep_layers`` are never pruned. Returns the summary (also written to
    ``run_dir/summary.json``) with ``run_dir`` and ``warnings``. The steps are public:
    see :func:`hwprune.search.prepare_search`.

    >>> r = run_search(model="demo", latency="50%", trials=40, run_dir="runs/demo")  # doctest: +SKIP
    >>> r["pruned"]["predicted_ms"] <= r["budget"]["latency_ms"]
    True
    """
    config = SearchConfig(
        model=model, weights=weights, input_shape=input_shape, device=device, latency=latency,
        memory=memory, trials=trials, seed=seed, run_dir=run_dir, resume=resume,
        storage_url=storage_url, study_name=study_name, pareto=pareto, sampler=sampler,
        finetune_steps=finetune_steps, finalists=finalists,
        candidate_finetune_steps=candidate_finetune_steps, lr=lr, data_dir=data_dir, task=task,
        tables=tables, calibration_images=calibration_images, val_images=val_images,
        measure=measure, progress=progress, rescale=rescale, latency_stat=latency_stat,
        keep_layers=tuple(keep_layers), **workers)
    if storage_url:
        from hwprune.search._distributed import run_worker

        return run_worker(config, log)
    setup = prepare_search(config, log)
    study = run_study(setup)
    winner = choose_winner(setup, study)
    summary = write_run(setup, study, winner, measure_winner(setup, winner))
    return {**summary.to_dict(), "run_dir": str(setup.run.path)}


def load_pruned(run_dir: str | os.PathLike, model: str | None = None) -> torch.nn.Module:
    """Rebuild the pruned model of a finished run: architecture from ``plan.json``,
    weights from ``model.pt``. Returns the module in eval mode. An unfinished or
    incomplete run raises :class:`~hwprune.errors.ConfigError`.

    Nothing named inside the run directory is imported: a zoo model needs nothing more;
    for a user model pass ``model`` (the ``path/to/file.py:factory`` or
    ``package.module:factory`` the search pruned). Weights are read with
    ``weights_only=True``.

    >>> model = load_pruned("runs/demo")                              # doctest: +SKIP
    >>> model = load_pruned("runs/mine", model="nets/my_net.py:build")  # doctest: +SKIP
    """
    from hwprune.pruning import rebuild_pruned

    run = RunDir.open(run_dir)
    summary = run.require_finished(RunDir.MODEL)
    spec, _ = run.model_to_load(summary, model)
    pruned = rebuild_pruned(spec, run.load_plan())   # pins and tied channels as the plan records them
    pruned.load_state_dict(run.load_state_dict())
    return pruned.eval()

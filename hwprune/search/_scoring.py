"""From a plan to a trained pruned model: candidate scoring, finalists and the winner.

Every pruned model the search builds goes through :func:`prune_and_recover`: apply the
plan, recalibrate BatchNorm on a fixed sample of training images (adaptive BN), then,
when a recipe is given, distil it from the dense model with the one fine-tune recipe
(:func:`hwprune.task.finetune_kd`). A candidate gets a short recipe (or none), each
finalist and the winner the full one, so they differ only in the number of steps.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from hwprune.errors import ConfigError
from hwprune.pruning import PruningPlan, PruningSpace
from hwprune.search._study import TrialRecord, plan_from_keep
from hwprune.task import FinetuneRecipe, FinetuneResult, TaskData, adaptive_bn, evaluate, finetune_kd

__all__ = ["AccuracyScorer", "finalist_plans", "finetune_finalists", "prune_and_recover"]


def prune_and_recover(space: PruningSpace, plan: PruningPlan, data: TaskData, *,
                      calibration_images: int, teacher: nn.Module | None = None,
                      recipe: FinetuneRecipe | None = None, progress: bool = False
                      ) -> tuple[nn.Module, FinetuneResult | None]:
    """The pruned model of ``plan``: BatchNorm recalibrated on ``calibration_images``
    training images (the same ones for every plan), then distilled from ``teacher`` when
    ``recipe`` has steps. Returns the model (eval mode) and the fine-tune result (None
    without fine-tuning)."""
    model = space.apply(plan)
    adaptive_bn(model, data.calibration_batches(calibration_images), calibration_images)
    result = None
    if recipe is not None and recipe.steps > 0:
        result = finetune_kd(model, teacher, data, recipe, progress=progress)
    model.eval()
    return model, result


class AccuracyScorer:
    """Scores a plan: prune, recalibrate BatchNorm, optionally fine-tune, validate.

    ``calibration_images`` training images (a fixed sample, the same for every
    candidate) re-estimate the BatchNorm statistics (adaptive BN, as in EagleEye);
    ``val_images`` caps the validation images scored (the first ones of the split);
    a ``recipe`` with steps adds a short distillation from ``teacher`` (the dense model)
    on the same batches for every candidate. ``calls`` counts the plans evaluated.
    """

    def __init__(self, space: PruningSpace, task: TaskData, *, calibration_images: int = 512,
                 val_images: int | None = 2000, teacher: nn.Module | None = None,
                 recipe: FinetuneRecipe | None = None) -> None:
        if recipe is not None and recipe.steps > 0 and teacher is None:
            raise ConfigError("fine-tuning candidates needs a teacher (the dense model)")
        self.space = space
        self.task = task
        self.calibration_images = calibration_images
        self.val_images = val_images
        self.teacher = teacher
        self.recipe = recipe
        self.calls = 0

    def __call__(self, plan: PruningPlan) -> float:
        self.calls += 1
        model, _ = prune_and_recover(self.space, plan, self.task,
                                     calibration_images=self.calibration_images,
                                     teacher=self.teacher, recipe=self.recipe)
        return evaluate(model, self.task.val, max_images=self.val_images)


def finalist_plans(space: PruningSpace, records: list[TrialRecord], count: int,
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


def finetune_finalists(space: PruningSpace, finalists: list[tuple[str, PruningPlan]], data: TaskData,
                       dense: nn.Module, *, recipe: FinetuneRecipe, calibration_images: int,
                       progress: bool = False, say: Callable[[str], None] = lambda _m: None
                       ) -> tuple[int, nn.Module, list[dict[str, Any]]]:
    """Prune, recalibrate and distil each finalist with ``recipe``; the best on validation wins.

    Returns the winner's index, its fine-tuned model and one row per finalist (label,
    validation accuracy, fine-tune seconds, final loss, kept channels). Ties go to the
    earlier finalist. ``recipe.steps`` must be positive.
    """
    if recipe.steps <= 0:
        raise ConfigError(f"finalists need fine-tuning steps, got {recipe.steps}")
    best_i, best_model, best_val, rows = -1, None, -1.0, []
    for i, (label, plan) in enumerate(finalists):
        model, ft = prune_and_recover(space, plan, data, calibration_images=calibration_images,
                                      teacher=dense, recipe=recipe, progress=progress)
        val = evaluate(model, data.val)
        rows.append({"finalist": label, "val_accuracy": val, "finetune_s": ft.wall_s, "predicted_ms": None,
                     "final_loss": ft.final_loss, "keep": dict(space.full_keep(plan))})
        say(f"finalist {i + 1}/{len(finalists)} ({label}): val {val:.4f} after {recipe.steps} "
            "fine-tune steps")
        if val > best_val:
            best_i, best_model, best_val = i, model, val
    return best_i, best_model, rows
